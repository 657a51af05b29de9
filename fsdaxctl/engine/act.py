"""Carrying the chain's decisions out on a live system, and drills on copies.

Nothing here runs unless the user asked (--act, --poison). --act shows the dry run, asks (or takes --yes), walks
the chain again and acts only if the second walk decides exactly what was shown: a process that started or
stopped mapping the pages in between means the confirmation was for something else. Every action is one JSON
line in the action log.
"""

from __future__ import annotations

import json
import os
import shlex
import signal as signals
import sys
import time


from fsdaxctl.engine.chain import DAX, PAGE_CACHE, Mapping
from fsdaxctl.errors import EXIT_FAILED, FsdaxError, UsageError
from fsdaxctl.units import PAGE_SHIFT, PAGE_SIZE, SECTOR

POISON = b"fsdaxctl poison!"  # 16 bytes: recognisable in a hex dump, and it breaks every XFS magic and CRC


class LiveMapping(Mapping):
    """The target is mounted here: ask the mount (dax option, inode flag) and /proc (who maps the pages)."""

    def __init__(self, fs, point: str, forced: str | None, label: str):
        from fsdaxctl.engine import live

        self.live = live
        st = os.stat(point)
        self.devt = (os.major(st.st_dev), os.minor(st.st_dev))
        self.mount = point
        self.forced = forced
        self.snapshot = None
        for m in live.mounts_of_device(self.devt):
            if m.mount_point == point:
                self.mnt = m
                self.dax = live.dax_option(m)
                break
        else:
            self.mnt, self.dax = None, "never"
        if forced:
            why = f"{label}: every mapping taken as {forced} (mounted at {point})"
        else:
            why = f"mounted at {point} with dax={self.dax}"
        super().__init__(forced or DAX, why)
        self.mount = point  # Mapping.__init__ says "not mounted"

    def mode(self, ino: int, paths=()) -> tuple[str, str]:
        if self.forced:
            return self.forced, self.why
        for p in paths:  # xfs_inode_should_enable_dax, as live.mapping_is_dax follows it
            try:
                state = self.live.mapping_is_dax(self.live.real_path(self.mount, p, ino), self.mnt)
            except FsdaxError:
                continue
            return (DAX if state.dax else PAGE_CACHE), state.why
        if self.dax == "always":
            return DAX, f"mount option dax=always at {self.mount} (no path to ask about inode {ino})"
        return PAGE_CACHE, f"mounted at {self.mount} with dax={self.dax}; no path to ask about inode {ino}"

    def mappers(self, ino: int, pgoff: int, pgcnt: int):
        if self.snapshot is None:  # one pass over /proc per walk of the chain, however many owners it has
            self.snapshot = self.live.read_all_maps()
        found = self.live.find_mappers(self.devt, ino, pgoff, max(pgcnt, 1), snapshot=self.snapshot)
        return [m.to_dict() for m in found]

    def cached(self, ino: int, pgoff: int, pgcnt: int, paths=()):
        """Are these pages in the page cache? mincore(2) on a mapping that is never touched (live.cached_pages)."""
        for p in paths:
            try:
                fd = os.open(self.live.real_path(self.mount, p, ino), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                n = self.live.cached_pages(fd, pgoff, max(pgcnt, 1))
            finally:
                os.close(fd)
            return None if n is None else n == max(pgcnt, 1)
        return None

    def early_kill(self):
        try:
            with open("/proc/sys/vm/memory_failure_early_kill") as fh:
                return fh.read().strip() == "1"
        except OSError:
            return None


def live_mapping(fs, forced: str | None, label: str) -> Mapping:
    """A LiveMapping when the target is mounted on this machine, else the offline one."""
    from fsdaxctl.device import mount_points

    mounts = mount_points(fs.dev)
    if not mounts:
        if forced:
            return Mapping(forced, f"{label}: every mapping taken as {forced} (not mounted here)")
        return Mapping()
    return LiveMapping(fs, mounts[0][0], forced, label)


def _log(log, record: dict) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    (log or sys.stderr).write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    (log or sys.stderr).flush()


def _plan_lines(outcomes, mapping, rewrite: bool) -> list[str]:
    lines = []
    for oc in outcomes:
        for d in oc.decisions:
            if d.action == "kill-mappers":
                if d.mappers is None:
                    who = "not looked up (not mounted here)"
                else:
                    who = ", ".join(f"{m['pid']} ({m.get('comm', '')})" for m in d.mappers) or "nobody maps them now"
                    if any(m.get("kernel_signals") == "on-access" for m in d.mappers):
                        who += " (all now: the kernel would leave late-kill tasks until they touch the page)"
                last = d.pgoff + max(d.pgcnt, 1) - 1
                lines.append(f"signal the processes mapping inode {d.inode} pages {d.pgoff}..{last}: {who}")
            elif d.action == "shutdown-filesystem":
                lines.append(f"shut down the filesystem mounted at {mapping.mount or '(not mounted here)'} "
                             f"({d.shutdown})")
            elif d.action == "invalidate-mappings":
                lines.append(f"drop the cached pages {d.pgoff}..{d.pgoff + max(d.pgcnt, 1) - 1} of inode {d.inode}")
            elif d.action == "rewrite-cached-page" and rewrite:
                lines.append(f"rewrite the cached pages of inode {d.inode} over the bad media (beyond the kernel)")
    return lines


def _say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def act(outcomes, mapping, *, rerun, yes: bool, sig: str, exec_cmd: str | None, log, rewrite: bool = False,
        ranges=(), confirm=None) -> int:
    """Dry run, confirmation, second walk, then the actions. Returns exit bits (1 when an action failed).
    `confirm(question) -> bool` asks the user (the CLI's prompt); without it, only --yes goes ahead."""
    signum = _signal(sig)
    argv = _exec_argv(exec_cmd)
    if mapping.mount is None and not argv:
        raise FsdaxError("--act: TARGET is not mounted on this machine: there is no live system to act on "
                         "(--exec CMD hands each decision to a command anyway)")
    if mapping.mount and ranges:  # before anything else: "nothing to do" on stale metadata is a wrong answer too
        _check_with_the_kernel(mapping.mount, ranges, outcomes)
    if not _confirmed(outcomes, mapping, rewrite, argv, yes, confirm):
        return 0
    again = _walk_again(rerun, outcomes, mapping, ranges)
    return _carry_out(again, mapping, signum, argv, log, rewrite)


def _signal(sig: str) -> signals.Signals:
    """--signal: a name with or without SIG, any case."""
    try:
        return signals.Signals[sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()]
    except KeyError:
        raise UsageError(f"--signal: unknown signal {sig!r}") from None


def _exec_argv(exec_cmd: str | None) -> list[str] | None:
    try:
        return shlex.split(exec_cmd) if exec_cmd else None
    except ValueError as e:
        raise UsageError(f"--exec: {e}") from None


def _confirmed(outcomes, mapping, rewrite: bool, argv, yes: bool, confirm) -> bool:
    """Show the plan and ask (or take --yes). False when there is nothing to do; raises when not confirmed."""
    plan = _plan_lines(outcomes, mapping, rewrite)
    if argv:
        plan.append(f"run {' '.join(argv)} once per decision ({sum(len(o.decisions) for o in outcomes)})")
    if not plan:
        _say("fsdaxctl: --act: nothing to do\n")
        return False
    _say("fsdaxctl: --act will:\n" + "".join(f"  {line}\n" for line in plan))
    if not yes:
        if confirm is None or not sys.stdin.isatty():
            raise UsageError("--act: not on a terminal, cannot ask for confirmation: add --yes")
        if not confirm("fsdaxctl: go ahead?"):
            raise FsdaxError("--act: not confirmed: nothing done")
    return True


def _walk_again(rerun, outcomes, mapping, ranges):
    """The second walk: it must decide exactly what was shown, else nothing is done."""
    again = rerun()
    before = [d.key() for o in outcomes for d in o.decisions]
    after = [d.key() for o in again for d in o.decisions]
    if before != after:
        raise FsdaxError("--act: the situation changed since the dry run (processes mapping the pages or the "
                         "decisions differ): nothing done; run it again")
    if mapping.mount and ranges:
        _check_with_the_kernel(mapping.mount, ranges, again)
    return again


def _carry_out(outcomes, mapping, signum, argv, log, rewrite: bool) -> int:
    """Every decision's action (and --exec), one log line each; the shutdown last, once. Exit bits."""
    from fsdaxctl.engine import live

    status = 0
    shutdowns = []
    for oc in outcomes:
        for d in oc.decisions:
            if d.action == "shutdown-filesystem":
                shutdowns.append(d)  # after the walk, as xfs_dax_notify_dev_failure does
            status |= _log_records(log, d, _action_records(live, d, mapping, signum, rewrite))
            if argv:
                rec = live.run_exec(argv, d.to_dict())
                rec = rec if isinstance(rec, dict) else rec.to_dict()
                status |= EXIT_FAILED if rec.get("error") or rec.get("exit_status") not in (0, None) else 0
                _log(log, {"decision": d.action, **rec})
    for d in shutdowns[:1]:
        status |= _shut_down(live, d, mapping, log)
    return status


def _action_records(live, d, mapping, signum, rewrite: bool) -> list:
    """Carry out one decision (the shutdown excepted): what was done, as action records."""
    if d.action == "kill-mappers" and d.mappers:
        return live.signal_mappers(_mapper_objects(d.mappers), signum)
    if d.action == "invalidate-mappings" and mapping.mount and d.paths:
        return [live.invalidate_mappings(live.real_path(mapping.mount, d.paths[0], d.inode), d.pgoff,
                                         max(d.pgcnt, 1))]
    if d.action == "rewrite-cached-page" and not rewrite:
        return [{"action": "rewrite-cached-page", "target": d.paths[0] if d.paths else d.inode,
                 "outcome": "skipped", "note": "beyond the merged kernel: --rewrite-cached to do it"}]
    if d.action == "rewrite-cached-page" and mapping.mount and d.paths:
        return [_rewrite(live.real_path(mapping.mount, d.paths[0], d.inode), d.pgoff, max(d.pgcnt, 1))]
    return []


def _log_records(log, d, records) -> int:
    status = 0
    for rec in records:
        rec = rec if isinstance(rec, dict) else rec.to_dict()
        status |= EXIT_FAILED if rec.get("error") else 0
        _log(log, {"decision": d.action, **rec})
    return status


def _shut_down(live, d, mapping, log) -> int:
    if not mapping.mount:
        _log(log, {"decision": d.action, "action": "shutdown", "outcome": "skipped",
                   "error": "the filesystem is not mounted on this machine"})
        return EXIT_FAILED
    return _log_records(log, d, [live.shutdown_filesystem(mapping.mount)])


def _check_with_the_kernel(mount: str, ranges, outcomes) -> None:
    """The offline answer comes from the metadata on disk; a mounted filesystem's newest changes may still be in
    its log. Before acting, ask the kernel (GETFSMAP) who owns the file data in those bytes: if it names other
    inodes, the decisions were made on stale metadata and nothing is done."""
    from fsdaxctl.engine import live

    files = [d for o in outcomes for d in o.decisions if d.inode is not None and d.owner == "file"]
    items = [(off, n, {d.inode for d in files if d.offset < off + n and off < d.offset + d.length})
             for off, n in ranges]
    stale = live.stale_ranges(mount, items)
    if stale:
        off, n, kernel, ours = stale[0]
        raise FsdaxError(f"--act: the metadata on disk is behind the mounted filesystem for bytes {off}+{n} (the "
                         f"kernel says file data of inode(s) {sorted(kernel) or 'none'}, the disk says "
                         f"{sorted(ours) or 'none'}): nothing done; 'fsfreeze -f {mount}; fsfreeze -u {mount}' "
                         "writes the log back, then run it again")


def _mapper_objects(mappers):
    from fsdaxctl.engine import live

    return [live.Mapper.from_dict(m) for m in mappers]


def _rewrite(path: str, pgoff: int, pgcnt: int) -> dict:
    """Beyond the kernel: write resident page-cache contents back, so writeback puts good data on the media
    (for a shared extent XFS copies on write: this file moves off the bad blocks; other sharers do not)."""
    rec = {"action": "rewrite-cached-page", "target": path, "args": {"pgoff": pgoff, "pgcnt": pgcnt}}
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            for pg in range(pgoff, pgoff + pgcnt):
                buf = bytearray(PAGE_SIZE)
                n = os.preadv(fd, [buf], pg << PAGE_SHIFT, os.RWF_NOWAIT)
                os.pwrite(fd, bytes(buf[:n]), pg << PAGE_SHIFT)
            os.fsync(fd)
        finally:
            os.close(fd)
        rec["outcome"] = "rewritten"
    except OSError as e:
        rec["outcome"], rec["error"] = "failed", e.strerror
    return rec


def poison_copy(target: str, copy: str, fs, answer) -> list[str]:
    """Drill: write POISON over the damaged bytes of COPY (a copy of TARGET) and append them, in 512-byte
    sectors of COPY, to COPY.badblocks in the sysfs format; never TARGET itself, never a mounted copy."""
    from fsdaxctl.device import Device, mount_points
    from fsdaxctl.pipeline import fs_paths

    try:
        if os.path.samefile(target, copy):
            raise UsageError("--poison: that is TARGET itself; drills write to a copy")
    except FileNotFoundError:
        raise UsageError(f"--poison: {copy} does not exist (make a copy of TARGET first)") from None
    with Device(copy) as dev:
        if mount_points(dev):
            raise UsageError(f"--poison: {copy} is mounted; unmount it first")
        size = dev.size
    base = getattr(fs.dev, "start", 0)  # where the filesystem starts on TARGET (a partition, a namespace)
    lines, entries = [], []
    fd = os.open(copy, os.O_WRONLY)
    try:
        for _, path in fs_paths(answer.routes):
            hop = path[-1]
            first = (base + hop.offset) // SECTOR
            last = (base + hop.offset + hop.length + SECTOR - 1) // SECTOR
            if last * SECTOR > size:
                raise UsageError(f"--poison: {copy} is smaller than TARGET ({size} bytes)")
            n = (last - first) * SECTOR
            os.pwrite(fd, (POISON * (n // len(POISON) + 1))[:n], first * SECTOR)
            entries.append(f"{first} {last - first}\n")
            lines.append(f"poisoned {copy} sectors {first}..{last - 1} ({n} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(copy + ".badblocks", "a") as fh:
        fh.writelines(entries)
    lines.append(f"appended {len(entries)} range(s) to {copy}.badblocks (sysfs badblocks format)")
    return lines
