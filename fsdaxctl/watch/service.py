"""The `watch` loop: poll() over every source, one output line per event, state and metrics kept, systemd told.

Readiness and stopping go to systemd by hand (sd_notify's datagram to $NOTIFY_SOCKET: READY=1, STATUS=...,
WATCHDOG=1 at half of $WATCHDOG_USEC, STOPPING=1): a few lines, no library needed. SIGTERM and SIGINT end the
loop after the event in hand (state and metrics written, sources closed); SIGHUP re-reads the policy and looks
for filesystems again.
"""

from __future__ import annotations

import datetime
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from fsdaxctl.errors import FsdaxError
from fsdaxctl.watch import actions, sources
from fsdaxctl.watch.metrics import Metrics
from fsdaxctl.watch.resolve import (close_all, discover, resolve_hit, route_report, whole_filesystem)
from fsdaxctl.watch.state import State


@dataclass
class Options:
    targets: list[str] = field(default_factory=list)
    once: bool = False
    fmt: str = "jsonl"                     # jsonl | text
    state: str | None = None
    metrics: str | None = None
    policy: object = None                  # watch.policy.Policy
    policy_file: str | None = None
    act: bool = False
    forced: str | None = None              # DAX / PAGE_CACHE / None
    label: str = ""
    kmsg: str | None = "/dev/kmsg"         # a path, '-' (stdin text), or None
    from_now: bool = False
    kmsg_user: bool = False
    badblocks: list[str] | None = None     # [DEV=]PATH specs; None: every attribute sysfs has
    poll_interval: float = 30.0
    uevents: bool = True
    sysfs: str = "/sys"
    buffer_block_size: int = 4096


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds")


def sd_notify(text: str) -> bool:
    """One datagram to systemd's $NOTIFY_SOCKET ('@' = abstract namespace); False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(text.encode())
        return True
    except OSError:
        return False


class Watcher:
    def __init__(self, opts: Options, out=None, err=None):
        self.o = opts
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.stop = False
        self.reload = False
        self.rebuild = False
        self.sessions = []
        self.srcs: list = []
        self.badblocks: dict[str, sources.BadblocksSource] = {}
        self.scrubs: list = []
        self.status = 0
        self.events = 0
        self.metrics = Metrics(opts.metrics)
        self.state = State(opts.state, sources.boot_id())
        self._wake_r = self._wake_w = -1
        self._old_handlers = {}
        self._old_wakeup = None
        self._batch: dict = {}
        self._next_poll = 0.0
        self._next_dog = 0.0
        dog = os.environ.get("WATCHDOG_USEC")
        self.dog_every = int(dog) / 2e6 if dog and dog.isdigit() and int(dog) > 0 else None

    # -- messages ------------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A note on stderr (journald: one line, one message)."""
        self.err.write(f"fsdaxctl: watch: {text}\n")
        self.err.flush()

    # -- set-up --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.state.note:
            self.say(self.state.note)
        self._discover()
        o = self.o
        if o.kmsg == "-":
            self.srcs.append(sources.TextSource("-", o.buffer_block_size))
        elif o.kmsg:
            self.srcs.append(sources.KmsgSource(o.kmsg, after_seq=self.state.kmsg_seq, user=o.kmsg_user,
                                                from_now=o.from_now and self.state.kmsg_seq is None,
                                                buffer_block_size=o.buffer_block_size))
        self._badblocks_sources()
        if not o.once:
            if o.uevents:
                try:
                    self.srcs.append(sources.UeventSource())
                except (OSError, ImportError) as e:
                    self.say(f"uevents: not watched: {e}")
            self.srcs.append(sources.MountsSource())
            for path in sources.scrub_paths(o.sysfs):
                try:
                    self.scrubs.append(sources.ScrubSource(path))
                except OSError as e:
                    self.say(f"{path}: {e.strerror}")
        live = [s for s in self.sessions if s.live]
        self.say(sources.health_monitor_note(live[0].mount if live else None))
        self._signals()

    def _discover(self) -> None:
        close_all(self.sessions)
        self.sessions, notes = discover(self.o.targets)
        for n in notes:
            self.say(n)
        self.metrics.set("fsdaxctl_watch_filesystems", len(self.sessions))

    def _badblocks_sources(self) -> None:
        from fsdaxctl.inputs.badblocks import space_for_sysfs_path
        from fsdaxctl.stack import BLOCK, Space

        specs = self.o.badblocks if self.o.badblocks is not None else sources.sysfs_badblocks_paths(self.o.sysfs)
        wanted = {}
        for spec in specs:
            name, sep, path = spec.partition("=")
            if not sep or "/" in name or os.path.exists(spec):
                name, path = None, spec
            space = Space(BLOCK, name) if name else space_for_sysfs_path(path)
            if space is None:
                self.say(f"--badblocks {spec}: which device does it count from? give DEV={path}")
                continue
            wanted[path] = space
        for path in list(self.badblocks):
            if path not in wanted:
                self.badblocks.pop(path).close()
        for path, space in wanted.items():
            if path in self.badblocks:
                continue
            src = sources.BadblocksSource(path, space, self.state.badblocks.get(path))
            if src.problem:
                self.say(src.problem)
            self.badblocks[path] = src

    def _signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread (tests driving a Watcher directly): signals are theirs
            self._old_wakeup = None
            return

        def on_stop(signum, frame):
            self.stop = True

        def on_hup(signum, frame):
            self.reload = True

        for sig, fn in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup)):
            self._old_handlers[sig] = signal.signal(sig, fn)

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.start()
        try:
            if self.o.once:
                self._once()
            else:
                self._ready()
                self._loop()
        finally:
            self.close()
        return self.status if self.o.once else 0

    def _ready(self) -> None:
        what = (f"watching {len(self.sessions)} filesystem(s) "
                f"[{', '.join(s.mount or s.target for s in self.sessions)}]; sources: "
                + ", ".join(sorted({s.name for s in self.srcs} | ({"badblocks"} if self.badblocks else set()))))
        sd_notify(f"READY=1\nSTATUS={what}\nMAINPID={os.getpid()}")
        self.say(f"ready: {what}")

    def _once(self) -> None:
        for src in self.srcs:
            if isinstance(src, sources.TextSource):
                while not src.done and not self.stop:
                    select.select([src.fileno()], [], [], 1.0)
                    self._handle_all(src.read())
            else:
                self._handle_all(src.read())
        for src in list(self.badblocks.values()):
            self._read_badblocks(src)

    def _loop(self) -> None:
        self._next_poll = time.monotonic() + self.o.poll_interval
        while not self.stop:
            p, by_fd = self._poller()
            try:
                ready = p.poll(self._timeout_ms())
            except InterruptedError:
                ready = []
            for fd, _ in ready:
                self._on_ready(fd, by_fd)
                if self.stop:
                    break
            if self._only_text_and_it_ended():
                break  # journal text was the only source and it ended
            self._timers()
            self._flush()

    def _poller(self):
        """A poll object over every open source and the wake-up pipe; fd -> source."""
        p = select.poll()
        by_fd = {}
        for src in list(self.srcs) + list(self.badblocks.values()) + self.scrubs:
            if getattr(src, "done", False) or not src.events or src.fileno() < 0:
                continue
            p.register(src.fileno(), src.events)
            by_fd[src.fileno()] = src
        p.register(self._wake_r, select.POLLIN)
        return p, by_fd

    def _timeout_ms(self) -> int:
        now = time.monotonic()
        deadline = self._next_poll
        if self.dog_every:
            deadline = min(deadline, self._next_dog)
        if self.state.dirty or self.metrics.dirty:
            deadline = min(deadline, now + 1.0)
        return max(0, int((deadline - now) * 1000))

    def _on_ready(self, fd: int, by_fd: dict) -> None:
        if fd == self._wake_r:
            self._drain_wakeup()
            return
        src = by_fd.get(fd)
        if src is None:
            return
        if isinstance(src, sources.MountsSource):
            self.rebuild = True
        elif isinstance(src, sources.ScrubSource):
            if src.changed():
                for bb in list(self.badblocks.values()):
                    self._read_badblocks(bb)
        elif isinstance(src, sources.BadblocksSource):
            self._read_badblocks(src)
        else:
            self._handle_all(src.read())

    def _only_text_and_it_ended(self) -> bool:
        srcs = self.srcs
        return (any(isinstance(s, sources.TextSource) for s in srcs)
                and all(getattr(s, "done", False) for s in srcs if isinstance(s, sources.TextSource))
                and not any(isinstance(s, (sources.KmsgSource, sources.UeventSource)) for s in srcs))

    def _timers(self) -> None:
        """The badblocks poll fallback, the systemd watchdog, a reload asked for, mounts that changed."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.o.poll_interval
            for bb in list(self.badblocks.values()):
                self._read_badblocks(bb)
        if self.dog_every and now >= self._next_dog:
            sd_notify("WATCHDOG=1")
            self._next_dog = now + self.dog_every
        if self.reload:
            self._reload()
        if self.rebuild:
            self.rebuild = False
            self._discover()
            if self.o.badblocks is None:
                self._badblocks_sources()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reload(self) -> None:
        self.reload = False
        if self.o.policy_file:
            from fsdaxctl.watch.policy import load_policy

            try:
                self.o.policy = load_policy(self.o.policy_file)
                self.say(f"SIGHUP: policy {self.o.policy_file} read again")
            except FsdaxError as e:
                self.say(f"SIGHUP: {e}: keeping the policy in force")
        self.rebuild = True

    def _flush(self, force: bool = False) -> None:
        for src in self.srcs:
            if isinstance(src, sources.KmsgSource):
                self.state.set_kmsg(src.last_seq)
        try:
            self.state.save(force)
        except OSError as e:
            self.say(f"--state {self.o.state}: cannot write it: {e.strerror}")
            self.state.dirty = False
        try:
            self.metrics.write(force)
        except OSError as e:
            self.say(f"--metrics {self.o.metrics}: cannot write it: {e.strerror}")
            self.metrics.dirty = False

    def close(self) -> None:
        sd_notify("STOPPING=1")
        self._flush(force=True)
        for src in self.srcs + list(self.badblocks.values()) + self.scrubs:
            src.close()
        self.srcs, self.badblocks, self.scrubs = [], {}, []
        close_all(self.sessions)
        self.sessions = []
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers = {}
        if self._old_wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._old_wakeup = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- events --------------------------------------------------------------------------------------------------
    def _read_badblocks(self, src) -> None:
        reports = src.read()
        self._handle_all(reports)
        if not src.problem:
            self.state.set_badblocks(src.path, src.seen)

    def _handle_all(self, reports) -> None:
        self._batch = {}  # reports read together share one look at /proc (the dry run; acting looks again)
        for rep in reports:
            if self.stop:
                return
            try:
                if rep.uevent is not None:
                    self._uevent(rep)
                else:
                    self._damage(rep)
            except FsdaxError as e:
                self._failed(rep, str(e))
            except Exception as e:  # noqa: BLE001 - a service goes on; the event line says what broke
                if os.environ.get("FSDAXCTL_DEBUG"):
                    raise
                self._failed(rep, f"internal error: {type(e).__name__}: {e}")
        for src in self.srcs:
            if isinstance(src, sources.KmsgSource):
                self.state.set_kmsg(src.last_seq)

    def _failed(self, rep, error: str) -> None:
        self.metrics.inc("fsdaxctl_watch_failures_total", source=rep.source)
        self.status |= 1
        self.emit({"event": "error", "source": rep.source, "time": iso(rep.time), "origin": rep.origin,
                   "report": rep.text, "error": error})

    def _damage(self, rep) -> None:
        m = self.metrics
        m.inc("fsdaxctl_watch_reports_total", source=rep.source)
        parsed = rep.parsed
        if not parsed.extents and not parsed.inodes:
            self.emit({"event": "unreadable-report", "source": rep.source, "time": iso(rep.time),
                       "origin": rep.origin, "report": rep.text, "notes": [why for _, why in parsed.skipped]})
            m.inc("fsdaxctl_watch_events_total", source=rep.source)
            return
        hits, unrouted = route_report(self.sessions, parsed)
        if not hits:
            key = "unwatched:" + ",".join(f"{u.get('space')}:{u.get('offset')}+{u.get('length')}" for u in unrouted)
            if self.state.seen(key, rep.time):
                m.inc("fsdaxctl_watch_merged_total", source=rep.source)
                return
            self.state.remember(key, key, rep.time)
            if self.o.targets:  # about a device nobody asked us to watch
                return
            self._count_event(rep)
            self.emit({"event": "media-error", "source": rep.source, "time": iso(rep.time), "id": key,
                       "origin": rep.origin, "report": rep.text, "filesystem": None, "owners": [], "decisions": [],
                       "done": [], "unresolved": unrouted,
                       "notes": ["no watched filesystem holds these bytes"]})
            return
        from fsdaxctl.pipeline import fs_paths

        for session, routes in hits:
            ranges = sorted({(p[-1].offset, p[-1].length) for _, p in fs_paths(routes)})
            key = f"{session.uuid}:" + ",".join(f"{o}+{n}" for o, n in ranges)
            first = self.state.seen(key, rep.time)
            if first is not None:
                m.inc("fsdaxctl_watch_merged_total", source=rep.source)
                continue
            hit = resolve_hit(session, routes, {"kind": "watch", "source": rep.source}, 0, self.o.forced,
                              self.o.label, self._batch)
            self._count_event(rep)
            rec = self._hit_record(rep, hit, key)
            self.state.remember(key, key, rep.time)
            self.emit(rec)

    def _count_event(self, rep) -> None:
        self.events += 1
        self.metrics.inc("fsdaxctl_watch_events_total", source=rep.source)
        self.metrics.set("fsdaxctl_watch_last_event_timestamp_seconds", rep.time)

    def _hit_record(self, rep, hit, key: str, event: str = "media-error") -> dict:
        m = self.metrics
        for p in hit.owners:
            m.inc("fsdaxctl_watch_owners_hit_total", owner=p["owner"], impact=p.get("impact", ""))
        for d in hit.decisions:
            m.inc("fsdaxctl_watch_decisions_total", decision=d.action)
        planned = actions.plan(hit, self.o.policy)
        done: list[dict] = []
        if self.o.act and planned:
            done = actions.carry_out(hit, self.o.policy, self.err)
            for r in done:
                m.inc("fsdaxctl_watch_actions_total", action=r.get("action", "?"), outcome=r.get("outcome", "?"))
                if r.get("error") or r.get("outcome") in ("failed", "timeout"):
                    hit.status |= 1
        self.status |= hit.status
        rec = {"event": event, "source": rep.source, "time": iso(rep.time), "id": key, "origin": rep.origin,
               "report": rep.text, "filesystem": hit.session.describe(),
               "ranges": [{"offset": o, "length": n} for o, n in hit.ranges],
               "owners": hit.owners, "decisions": [d.to_dict() for d in hit.decisions],
               "result": ", ".join(dict.fromkeys(oc.result for oc in hit.outcomes if oc.result)),
               "done": done}
        if planned and not self.o.act:
            rec["would"] = [{"decision": d.action, "inode": d.inode, "do": acts, "rule": rule.where}
                            for d, _, acts, rule in planned]
        notes = list(dict.fromkeys(hit.notes + [n for oc in hit.outcomes for n in oc.notes]))
        if notes:
            rec["notes"] = notes
        return rec

    def _uevent(self, rep) -> None:
        ev = rep.uevent
        action, subsystem = ev.get("ACTION", "?"), ev.get("SUBSYSTEM", "")
        self.metrics.inc("fsdaxctl_watch_uevents_total", action=action, subsystem=subsystem)
        devpath = ev.get("DEVPATH", "")
        dev = ev.get("DEVNAME") or os.path.basename(devpath)
        affected = [s for s in self.sessions if s.name and (s.name == dev or self._under(s.name, dev, subsystem))]
        dax_dev = subsystem in ("nd", "dax") or dev.startswith("pmem")
        if not affected and not dax_dev:
            if subsystem == "block" and action in ("add", "remove"):
                self.rebuild = self.rebuild or bool(self.o.badblocks is None)
            return  # a disk nobody watches: counted, not reported
        self._count_event(rep)
        base = {"event": "uevent", "source": "uevent", "time": iso(rep.time), "origin": rep.origin,
                "action": action, "subsystem": subsystem, "device": dev, "devpath": devpath,
                "uevent": ev}
        if action in ("add", "change", "bind", "remove", "unbind", "move", "online", "offline"):
            self.rebuild = True
        if not affected:
            self.emit({**base, "filesystem": None, "notes": ["no watched filesystem is on this device"]})
            return
        for s in affected:
            going = action in ("remove", "unbind", "offline")
            if going and (dax_dev or self.o.forced == "dax"):
                from fsdaxctl.engine.flags import MF_MEM_PRE_REMOVE

                hit = resolve_hit(s, whole_filesystem(s), {"kind": "pre-remove", "uevent": action}, MF_MEM_PRE_REMOVE,
                                  self.o.forced, self.o.label)
                summary: dict[str, int] = {}
                for d in hit.decisions:
                    summary[d.action] = summary.get(d.action, 0) + 1
                keep = [d.to_dict() for d in hit.decisions if d.action == "shutdown-filesystem" or d.mappers]
                self.emit({**base, "event": "pre-remove", "filesystem": s.describe(), "flags": "MF_MEM_PRE_REMOVE",
                           "decisions": keep, "summary": summary, "done": [],
                           "notes": ["the kernel's MF_MEM_PRE_REMOVE (dax_holder_notify_failure over the whole "
                                     "device): every DAX mapping of every file is dropped and its processes get "
                                     "SIGBUS, then the filesystem is shut down (SHUTDOWN_FORCE_UMOUNT); listed: "
                                     "the shutdown and the decisions with processes mapping pages now"]
                           + (["rehearsed: --assume-dax treats this device as DAX"] if not dax_dev else [])})
            elif going:
                self.emit({**base, "filesystem": s.describe(),
                           "notes": ["the device under this filesystem is going away: the kernel does not notify "
                                     "the filesystem (no DAX holder); it shuts down at its next failed metadata "
                                     "I/O"]})
            else:
                self.emit({**base, "filesystem": s.describe()})

    def _under(self, name: str, dev: str, subsystem: str) -> bool:
        """Is watched device `name` (sdb2, pmem0) on the device the uevent is about (sdb, namespace0.0)?"""
        if subsystem == "block":
            return name.startswith(dev) and name[len(dev):].lstrip("p").isdigit()
        try:  # an nd device: the block devices under it (a namespace's pmemN, a pfn's)
            return name in os.listdir(f"{self.o.sysfs}/bus/nd/devices/{dev}/block")
        except OSError:
            return False

    # -- output --------------------------------------------------------------------------------------------------
    def emit(self, rec: dict) -> None:
        if self.o.fmt == "jsonl":
            line = json.dumps(rec, ensure_ascii=False, default=str)
        else:
            line = text_line(rec)
        self.out.write(line + "\n")
        self.out.flush()


def _owner_words(owners) -> str:
    words = []
    for p in owners:
        if p["owner"] == "file":
            name = ", ".join(p.get("paths") or ()) or f"inode {p.get('inode')}"
            what = ("extent map" if p.get("extent_map") else
                    f"{p.get('fork')} bytes {p.get('file_offset')}+{p['length']}")
            words.append(f"{name} ({what}{', shared' if p.get('shared') else ''})")
        else:
            words.append(p["owner"])
    return "; ".join(dict.fromkeys(words)) or "nothing"


def text_line(rec: dict) -> str:
    from fsdaxctl.render import printable

    t = rec.get("time", "")[11:23]
    head = f"{t} {rec.get('source')} {rec.get('origin')}"
    fs = rec.get("filesystem") or {}
    where = fs.get("mount") or fs.get("device") or "no watched filesystem"
    ev = rec.get("event")
    if ev == "uevent":
        return printable(f"{head}: uevent {rec.get('action')} {rec.get('subsystem')} {rec.get('device')}: {where}"
                         + ("; " + "; ".join(rec["notes"]) if rec.get("notes") else ""))
    if ev == "error":
        return printable(f"{head}: ERROR: {rec.get('error')}")
    if ev == "unreadable-report":
        return printable(f"{head}: not understood: {'; '.join(rec.get('notes', []))}")
    decisions = ", ".join(dict.fromkeys(d["action"] for d in rec.get("decisions", []))) or "none"
    done = rec.get("done") or []
    did = ", ".join(f"{d.get('action')} {d.get('target', '')} {d.get('outcome')}".replace("  ", " ") for d in done)
    if rec.get("would"):
        did = did or "report only (--act would: " + ", ".join(sorted({w for x in rec["would"] for w in x["do"]})) + ")"
    ranges = ", ".join(f"{r['offset']}+{r['length']}" for r in rec.get("ranges", []))
    return printable(f"{head}: {where} bytes {ranges}: {_owner_words(rec.get('owners', []))} -> {decisions}; "
                     f"done: {did or 'nothing (report only)'}")
