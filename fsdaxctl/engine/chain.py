"""The memory-failure chain, walked the way the kernel walks it, with a decision for every owner.

    memory_failure(pfn, flags)                                   mm/memory-failure.c
      memory_failure_dev_pagemap -> pgmap->ops->memory_failure
        pmem_pagemap_memory_failure: pfn -> offset in /dev/pmemN    drivers/nvdimm/pmem.c
          dax_holder_notify_failure(dax_dev, offset, len, flags)   drivers/dax/super.c
            xfs_dax_notify_failure                                 fs/xfs/xfs_notify_failure.c
              xfs_dax_translate_range: minus the partition start, BTOBB() to daddrs
              xfs_dax_notify_dev_failure: per AG, xfs_rmap_query_range -> xfs_dax_failure_fn per record:
                non-inode owner, attr fork, bmbt block: want_shutdown (PRE_REMOVE: continue)
                file data: pgoff/pgcnt -> mf_dax_kill_procs (DAX mapping); PRE_REMOVE: invalidate too
              PRE_REMOVE: shutdown(FORCE_UMOUNT); want_shutdown: shutdown(CORRUPT_ONDISK), -EFSCORRUPTED
      action_result: "Memory failure: %#lx: recovery action for dax page: Recovered|Failed"

The device part of the walk is the device stack's routing (fsdaxctl.stack); the filesystem part runs on the
owner map. Everything that would happen is a Decision; nothing here touches a live system (act.py does that).
Events that enter lower down (a block-device sector range, a daddr, a file range) start at that step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.engine.flags import MF_ACTION_REQUIRED, MF_MEM_PRE_REMOVE, MF_MUST_KILL, flags_text
from fsdaxctl.stack import DEVICE_KINDS, FS, PHYS, Dropped, Hop
from fsdaxctl.stack.pmem import NamespaceLayer
from fsdaxctl.units import PAGE_SHIFT
from fsdaxctl.xfs.geometry import BBSHIFT
from fsdaxctl.xfs.owners import as_records

DAX, PAGE_CACHE = "dax", "page-cache"


def btobb(n: int) -> int:
    """BTOBB(): bytes to 512-byte basic blocks, rounding up (xfs_fs.h)."""
    return (n + (1 << BBSHIFT) - 1) >> BBSHIFT


@dataclass
class Decision:
    action: str
    reason: str
    owner: str = ""
    offset: int | None = None   # filesystem device bytes the decision is about
    length: int | None = None
    inode: int | None = None
    paths: list = field(default_factory=list)
    fork: str | None = None
    file_offset: int | None = None
    file_length: int | None = None
    pgoff: int | None = None
    pgcnt: int | None = None
    si_code: str | None = None
    when: str | None = None        # kill-mappers: 'now' or 'on-access' (the kernel's late kill)
    mappers: list | None = None    # live: the processes mapping those pages (None: not looked up)
    shutdown: str | None = None    # SHUTDOWN_CORRUPT_ONDISK / SHUTDOWN_FORCE_UMOUNT
    mount: str | None = None
    beyond_kernel: bool = False    # an action the merged kernel does not take (rewrite-cached-page)
    impact: str | None = None      # the owner piece's impact (fsdaxctl.xfs.detail): exit bits follow it

    def to_dict(self) -> dict:
        d = {"action": self.action, "reason": self.reason}
        for key in ("owner", "offset", "length", "inode", "paths", "fork", "file_offset", "file_length", "pgoff",
                    "pgcnt", "si_code", "when", "mappers", "shutdown", "mount", "impact"):
            v = getattr(self, key)
            if v not in (None, "", []) or (key == "mappers" and v == []):
                d[key] = v
        if self.beyond_kernel:
            d["beyond_kernel"] = True
        return d

    def key(self) -> tuple:
        """What must not change between the dry run and the action (nothing runs when it does)."""
        pids = tuple(sorted(m["pid"] for m in self.mappers or ()))
        return (self.action, self.inode, self.pgoff, self.pgcnt, self.shutdown, self.offset, self.length, pids)


@dataclass
class Outcome:
    event: dict
    flags: int
    trace: list = field(default_factory=list)       # (depth, text)
    decisions: list[Decision] = field(default_factory=list)
    result: str = ""                                # Recovered / Failed / Ignored, as action_result says
    notes: list[str] = field(default_factory=list)

    def line(self, depth: int, text: str) -> None:
        self.trace.append((depth, text))

    def to_dict(self) -> dict:
        return {"event": self.event, "flags": flags_text(self.flags), "result": self.result,
                "trace": [{"depth": d, "call": t} for d, t in self.trace],
                "decisions": [d.to_dict() for d in self.decisions], "notes": self.notes}


class Mapping:
    """How file pages are mapped, and (live) who maps them. The default is the image case: no mount to ask,
    so decide as for DAX, the chain this tool models, and say so."""

    def __init__(self, mode: str | None = None, why: str = ""):
        self.mode_default = mode or DAX
        self.why = why or ("no mount to ask (an image or an unmounted device): deciding as for a DAX mapping"
                           if mode is None else f"mapping given: {mode}")
        self.mount = None

    def mode(self, ino: int, paths=()) -> tuple[str, str]:
        return self.mode_default, self.why

    def mappers(self, ino: int, pgoff: int, pgcnt: int):
        return None  # offline: nobody to ask

    def cached(self, ino: int, pgoff: int, pgcnt: int, paths=()):
        return None

    def early_kill(self) -> bool | None:
        return None


def _call(stack, path, i) -> str:
    """The kernel function of the layer that took the bytes to path[i] (each layer names its own), else the hop's
    layer name."""
    layer = stack.by_upper.get(path[i - 1].space)
    return getattr(layer, "kernel_call", "") or path[i].layer


def run(answer, omap, event: dict, flags: int, mapping: Mapping) -> list[Outcome]:
    """One Outcome per routed input of the Answer (pipeline.route), in input order."""
    return [_run_route(answer, omap, route, event, flags, mapping) for route in answer.routes]


def _has_pagemap(stack, path) -> bool:
    """Did the bytes pass a pfn/dax namespace? Only those have struct pages (a dev_pagemap) for memory_failure;
    raw namespaces do not (the kernel says "memory outside kernel control")."""
    for i in range(1, len(path)):
        layer = stack.by_upper.get(path[i - 1].space)
        if isinstance(layer, NamespaceLayer) and layer.info is not None:
            return True
    return False


@dataclass
class _Reach:
    """What the paths of one route came to."""
    rc_fs: int = 0              # the filesystem's answer (0 or -errno)
    rc_drop: int = 0            # the first dropped piece's -errno
    reached: bool = False       # some bytes reached the filesystem
    outside: Hop | None = None  # bytes that reached it without struct pages (a raw namespace)


def _run_route(answer, omap, route, event, flags, mapping) -> Outcome:
    out = Outcome(event=dict(event, origin=route.extent.origin), flags=flags)
    ext = route.extent
    pfn = ext.offset >> PAGE_SHIFT if ext.space.kind == PHYS else None
    depth = _entry(out, ext, pfn, flags)
    reach = _Reach()
    for path in route.paths:
        _follow_path(answer, omap, path, ext, pfn, flags, mapping, out, depth, reach)
    if reach.outside is not None:
        return _outside_kernel_control(out, pfn, reach.outside)
    # xfs_dax_translate_range clips a range that is partly outside the filesystem and goes on: bytes dropped
    # on the way decide the result only when nothing reached the filesystem.
    _settle(out, route, pfn, reach.rc_fs if reach.reached else reach.rc_drop, reach.reached)
    return out


def _entry(out: Outcome, ext, pfn: int | None, flags: int) -> int:
    """Where the event enters the kernel: memory_failure for a page, the holder walk for filesystem bytes, the
    block layer for the rest. Returns the depth the hops start at."""
    if pfn is not None:
        out.line(0, f"memory_failure(pfn={pfn:#x}, flags={flags_text(flags)})")
        out.line(1, ext.note)
        return 1
    if ext.space.kind == FS:
        out.line(0, f"{ext.origin}: {ext.note}")
        return 0
    out.line(0, f"block layer error on {ext.space}: {{offset={ext.offset}, len={ext.length}}} ({ext.note}), "
                f"flags={flags_text(flags)}")
    out.line(1, "the kernel has no notify_failure for a block-layer error (the reader gets EIO; XFS shuts down "
                "if it was metadata it needed); fsdaxctl follows the same holder walk to say who is hit")
    return 1


def _follow_path(answer, omap, path, ext, pfn, flags, mapping, out: Outcome, d: int, reach: _Reach) -> None:
    """One routed path: its hops down the device stack, then the filesystem's notify_failure if it got there."""
    last = path[-1]
    device = isinstance(last, Hop) and last.space.kind in DEVICE_KINDS  # the fs's realtime or log device
    at_fs = isinstance(last, Hop) and (last.space.kind == FS or device)
    if pfn is not None and at_fs and not _has_pagemap(answer.stack, path):
        reach.outside = last
        return
    d = _trace_hops(answer.stack, path, out, d, reach)
    if not at_fs:
        return
    reach.reached = True
    if ext.space.kind != FS:
        call = "dax_holder_notify_failure" if pfn is not None else "holder walk"
        out.line(d, f"{call}(offset={last.offset}, len={last.length}, flags={flags_text(flags)})")
        d += 1
    if device:
        from fsdaxctl.engine import devices

        rc = (devices.logdev_failure(answer.fs, last.offset, last.length, flags, out, d)
              if DEVICE_KINDS[last.space.kind] == "log" else
              devices.rtdev_failure(answer.fs, last.offset, last.length, flags, mapping, out, d, pfn is not None))
    else:
        rc = _xfs_notify_failure(answer.fs, omap, last.offset, last.length, flags, mapping, out, d,
                                 pfn is not None)
    reach.rc_fs = rc or reach.rc_fs


def _trace_hops(stack, path, out: Outcome, d: int, reach: _Reach) -> int:
    """One trace line per device-stack hop, one level deeper each; a dropped piece ends the path (the first
    one's -errno is kept). Returns the depth reached."""
    for i in range(1, len(path)):
        step = path[i]
        if isinstance(step, Dropped):
            out.line(d, f"{step.layer}: {step.length} bytes at byte {step.offset} of {step.space}: {step.reason}")
            reach.rc_drop = reach.rc_drop or _dropped_rc(out, d, step)
            break
        if step.layer == "filesystem":
            continue
        out.line(d, f"{_call(stack, path, i)}: {step.arithmetic}")
        d += 1
    return d


def _outside_kernel_control(out: Outcome, pfn: int, hop: Hop) -> Outcome:
    """A page of a raw namespace: no struct pages, so memory_failure cannot act on it."""
    out.line(1, f"Memory failure: {pfn:#x}: memory outside kernel control (a raw namespace has no struct "
                "pages): -ENXIO; the bad range is recorded in badblocks and the next read fails with EIO")
    out.decisions.append(Decision("none", "the kernel cannot act on memory without struct pages; run "
                                          "'fsdaxctl locate' for who owns these bytes", owner="raw-namespace",
                                  offset=hop.offset, length=hop.length))
    out.result = "-ENXIO (no action_result)"
    return out


def _settle(out: Outcome, route, pfn: int | None, rc: int, reached: bool) -> None:
    """The result line: action_result for a page, the return code for the rest."""
    if pfn is None:
        out.result = "Recovered" if rc == 0 else "Failed"
        out.line(0, f"result: {rc or 0} ({out.result})")
        return
    if not reached and any(isinstance(p[-1], Dropped) and p[-1].kind in ("not-pmem", "unallocated-region-space")
                           for p in route.paths):
        out.result = "-ENXIO (no action_result)"
        return
    out.result = "Recovered" if rc == 0 else "Failed"
    out.line(0, f"action_result: Memory failure: {pfn:#x}: recovery action for dax page: {out.result}")


def _dropped_rc(out: Outcome, d: int, step: Dropped) -> int:
    if step.kind in ("struct-page-reserve", "namespace-metadata"):
        # Both lie before the first data pfn (the altmap reserve): pgmap_pfn_valid() is false.
        out.line(d, "memory_failure_dev_pagemap: -ENXIO: device metadata space is not recoverable")
        why = ("the device's struct-page reserve (map=dev): no file or filesystem structure lives there; the "
               "struct pages are rebuilt when the namespace is enabled" if step.kind == "struct-page-reserve" else
               "the namespace's info block: without it the namespace comes up raw and the data area is "
               "unreachable; rewrite it (ndctl create-namespace -f -e ... with the same settings) or restore")
        out.decisions.append(Decision("none", why, owner=step.kind))
        return -6
    if step.kind == "not-pmem":
        out.line(d, "not device memory of an nd region: the ordinary memory_failure path for a RAM page, which "
                    "fsdaxctl does not model")
        out.decisions.append(Decision("none", step.reason, owner="not-pmem"))
        return -6
    if step.kind == "unallocated-region-space":
        out.line(d, "Memory failure: memory outside kernel control (no namespace, no struct pages): -ENXIO")
        out.decisions.append(Decision("none", step.reason, owner=step.kind))
        return -6
    out.decisions.append(Decision("none", f"{step.kind}: {step.reason}", owner=step.kind))
    return -6  # -ENXIO: the holder ignores ranges outside the filesystem


def _xfs_notify_failure(fs, omap, offset, length, flags, mapping, out: Outcome, d: int, memory: bool) -> int:
    pre_remove = bool(flags & MF_MEM_PRE_REMOVE)
    section = fs.geo.internal_rt
    if section is not None and offset + length > section[0]:  # bytes of the realtime section inside TARGET
        if offset >= section[0]:
            return _internal_rt(fs, omap, offset, length, flags, mapping, out, d)
        rc = _xfs_notify_failure(fs, omap, offset, section[0] - offset, flags, mapping, out, d, memory)
        return _internal_rt(fs, omap, section[0], offset + length - section[0], flags, mapping, out, d) or rc
    out.line(d, "xfs_dax_notify_failure: the data device")
    d += 1
    if not fs.has_rmapbt:
        return no_rmapbt(fs, omap, offset, length, flags, mapping, out, d, memory)
    span = _translate_range(fs.geo, offset, length, out, d)
    if span is None:
        return -6
    if pre_remove:
        out.line(d, "MF_MEM_PRE_REMOVE: \"Device is about to be removed!\": freeze the filesystem for the walk")
    want_shutdown, metadata_hits = _query_ags(fs, omap, span, flags, mapping, out, d)
    return _shutdown(pre_remove, want_shutdown, metadata_hits, mapping, out, d)


def _internal_rt(fs, omap, offset, length, flags, mapping, out: Outcome, d: int) -> int:
    """Bytes of a zoned filesystem's realtime section inside the data device (rtstart): the rt target is that
    same device, so xfs_dax_notify_failure takes XG_TYPE_RTG and walks the rt groups."""
    rtmap = getattr(omap, "rt_map", None)
    if rtmap is None:  # the data map is not a DataDeviceMap (never, on a filesystem with an rt section)
        from fsdaxctl.xfs.devices import RT, owner_map

        rtmap = owner_map(fs, RT)
    out.line(d, "xfs_dax_notify_failure: the realtime section of this device (m_rtdev_targp, from sb_rtstart)")
    return rt_groups_walk(fs, rtmap, offset, length, flags, mapping, out, d + 1)


def no_rmapbt(fs, omap, offset, length, flags, mapping, out: Outcome, d: int, memory: bool,
              size: int | None = None) -> int:
    """A filesystem without rmapbt (on whichever device: `size` its bytes, default the data device's): the
    holder refuses, the generic path kills what page->mapping names; every owner is still named."""
    out.line(d, "xfs_dax_notify_dev_failure: notify_failure() needs rmapbt enabled! -> -EOPNOTSUPP")
    if memory:
        out.line(d, "memory_failure_dev_pagemap: -EOPNOTSUPP -> mf_generic_kill_procs: the page's one "
                    "mapping (page->mapping) only; filesystem metadata is not noticed until it is read")
    else:
        out.line(d, "no reverse mapping: the kernel cannot tell who owns these blocks; each owner learns at "
                    "its next read (EIO)")
    return _generic(fs, omap, offset, length, flags, mapping, out, d + 1, fs.geo.size if size is None else size)


def _translate_range(geo, offset: int, length: int, out: Outcome, d: int) -> tuple[int, int, int, int] | None:
    """xfs_dax_translate_range: clip to the filesystem, then BTOBB() both ends (rounding up, as the kernel does);
    then xfs_dax_notify_dev_failure's first and last block. (start AG, agbno, end AG, agbno), or None when the
    range starts past the filesystem (-ENXIO)."""
    dev_len = geo.size
    if offset > dev_len - 1:
        out.line(d, f"xfs_dax_translate_range: offset {offset} is past the filesystem ({dev_len} bytes): -ENXIO")
        out.decisions.append(Decision("none", "outside the filesystem", owner="outside-filesystem",
                                      offset=offset, length=length))
        return None
    if offset + length - 1 > dev_len - 1:
        length = dev_len - offset
    daddr, bblen = btobb(offset), btobb(length)
    out.line(d, f"xfs_dax_translate_range: daddr = BTOBB({offset}) = {daddr:#x}, bblen = BTOBB({length}) = {bblen}")
    sag, sagbno = geo.lin_to_ag(geo.byte_to_lin(geo.daddr_to_byte(daddr)))
    eag, eagbno = geo.lin_to_ag(geo.byte_to_lin(geo.daddr_to_byte(daddr + bblen - 1)))
    out.line(d, f"xfs_dax_notify_dev_failure: start_bno = AG {sag} block {sagbno}, end_bno = AG {eag} block "
                f"{eagbno} (fsblocks {geo.ag_to_fsb(sag, sagbno)}..{geo.ag_to_fsb(eag, eagbno)})")
    return sag, sagbno, eag, eagbno


def _query_ags(fs, omap, span, flags, mapping, out: Outcome, d: int) -> tuple[bool, list[str]]:
    """xfs_dax_notify_dev_failure's walk: an rmap query per AG, xfs_dax_failure_fn per owner.
    (want_shutdown, the metadata hit)."""
    geo = fs.geo
    sag, sagbno, eag, eagbno = span
    want_shutdown = False
    metadata_hits = []
    for agno in range(sag, eag + 1):
        low = sagbno if agno == sag else 0
        high = eagbno if agno == eag else geo.ag_length(agno) - 1
        # notify.blockcount = min(ag blocks, high + 1) - low: the intent. In C, high is all ones in every AG but
        # the last and high + 1 wraps to 0 (xfs_agblock_t); only a range crossing an AG boundary meets that.
        count = min(geo.ag_length(agno), high + 1) - low
        out.line(d + 1, f"AG {agno}: xfs_rmap_query_range(agbno {low}..{high}), notify {{startblock={low}, "
                        f"blockcount={count}}}")
        start = geo.ag_to_byte(agno, low)
        for p in _described(fs, as_records(omap.pieces(start, count << geo.blocklog))):
            ws, hit = _failure_fn(fs, p, flags, mapping, out, d + 2)
            want_shutdown |= ws
            if hit:
                metadata_hits.append(hit)
    return want_shutdown, metadata_hits


def rt_groups_walk(fs, omap, offset: int, length: int, flags: int, mapping, out: Outcome, d: int) -> int:
    """xfs_dax_notify_dev_failure(XG_TYPE_RTG): the realtime groups the bytes lie in, an rt rmap query in each,
    xfs_dax_failure_fn per owner, then the shutdown rule of the data device's walk."""
    from fsdaxctl.xfs.rt import byte_to_group, group_blocks, group_start

    sb, bl = fs.sb, fs.geo.blocklog
    pre_remove = bool(flags & MF_MEM_PRE_REMOVE)
    end = min(offset + length, omap.size)
    out.line(d, f"xfs_dax_notify_dev_failure(XG_TYPE_RTG): realtime bytes {offset}..{end - 1}")
    want_shutdown, metadata_hits = False, []
    for rgno in range(byte_to_group(sb, offset), byte_to_group(sb, end - 1) + 1):
        g0 = group_start(sb, rgno) << bl
        lo, hi = max(offset, g0), min(end, g0 + (group_blocks(sb, rgno) << bl))
        if lo >= hi:  # only the group's zone gap: no realtime block there
            continue
        out.line(d + 1, f"rtgroup {rgno}: xfs_rmap_query_range(rgbno {(lo - g0) >> bl}.."
                        f"{(hi - 1 - g0) >> bl}) on its rt rmap btree")
        for p in _described(fs, as_records(omap.pieces(lo, hi - lo))):
            ws, hit = _failure_fn(fs, p, flags, mapping, out, d + 2)
            want_shutdown |= ws
            if hit:
                metadata_hits.append(hit)
    return _shutdown(pre_remove, want_shutdown, metadata_hits, mapping, out, d)


def _shutdown(pre_remove: bool, want_shutdown: bool, metadata_hits: list[str], mapping, out: Outcome,
              d: int) -> int:
    """After the walk: the forced unmount of a device going away, or the shutdown for damaged metadata."""
    if pre_remove:
        out.line(d, "xfs_force_shutdown(SHUTDOWN_FORCE_UMOUNT): the device is going away")
        out.decisions.append(Decision("shutdown-filesystem", "the device is being removed (MF_MEM_PRE_REMOVE)",
                                      shutdown="SHUTDOWN_FORCE_UMOUNT", mount=mapping.mount))
        return 0
    if want_shutdown:
        out.line(d, "xfs_force_shutdown(SHUTDOWN_CORRUPT_ONDISK) -> -EFSCORRUPTED")
        out.decisions.append(Decision("shutdown-filesystem", "filesystem metadata is damaged: " +
                                      "; ".join(metadata_hits[:8]) + (" ..." if len(metadata_hits) > 8 else "") +
                                      ". Unmount and run xfs_repair", shutdown="SHUTDOWN_CORRUPT_ONDISK",
                                      mount=mapping.mount))
        return -117  # EFSCORRUPTED (EUCLEAN)
    return 0


def _described(fs, pieces):
    """Owners with their paths (the decisions name files, not just inode numbers)."""
    from fsdaxctl.xfs.detail import Describer

    return Describer(fs).describe(list(pieces))


def _owner_text(p) -> str:
    if p.owner == "file":
        what = "extent map (bmbt) block" if p.extent_map else f"{p.fork} fork"
        return f"inode {p.inode} {what}"
    return p.owner


def _failure_fn(fs, p, flags, mapping, out: Outcome, d: int) -> tuple[bool, str]:
    """xfs_dax_failure_fn for one owner piece: (want_shutdown, what metadata was hit)."""
    pre_remove = bool(flags & MF_MEM_PRE_REMOVE)
    where = f"bytes {p.offset}+{p.length}"
    if p.owner in ("free",):
        out.line(d, f"{where}: free space: no rmap record, nothing to do")
        out.decisions.append(Decision("none", "free space: no owner", owner="free", offset=p.offset,
                                      length=p.length))
        return False, ""
    if p.owner == "unknown":
        why = (p.detail or {}).get("error") or (p.detail or {}).get("why", "unreadable")
        out.line(d, f"{where}: the rmap query failed here ({why}): error -> "
                    "shutdown")
        return (not pre_remove), f"unreadable rmapbt at {where}"
    if p.owner != "file" or p.fork == "attr" or p.extent_map:
        return _metadata_owner(p, where, pre_remove, out, d)
    _file_data(p, where, flags, mapping, out, d)
    return False, ""


def _metadata_owner(p, where: str, pre_remove: bool, out: Outcome, d: int) -> tuple[bool, str]:
    """Not file data: a non-inode owner, an attr fork block, a bmbt block. The filesystem shuts down."""
    what = _owner_text(p)
    if pre_remove:
        out.line(d, f"{where}: {what}: not a failure during pre-remove: continue")
        return False, ""
    kind = ("an attr fork block" if p.fork == "attr" else "an extent map (bmbt) block" if p.extent_map
            else "a non-inode owner (XFS_RMAP_NON_INODE_OWNER)")
    out.line(d, f"{where}: {what}: {kind}: want_shutdown")
    return True, f"{what} ({where})"


@dataclass
class _FilePages:
    """A file-data owner piece in the kernel's page units, and the Decision fields every decision about it
    carries."""
    p: object
    pgoff: int
    pgcnt: int
    base: dict
    after: Decision  # what the admin does once the kernel is done with the mappers (_after_kill)


def _file_data(p, where: str, flags: int, mapping, out: Outcome, d: int) -> None:
    """File data: pgoff/pgcnt of the file range, then mf_dax_kill_procs for a DAX mapping, the page-cache policy
    otherwise."""
    pgoff = p.file_offset >> PAGE_SHIFT
    pgcnt = p.length >> PAGE_SHIFT
    mode, why = mapping.mode(p.inode, p.paths)
    base = dict(owner="file", offset=p.offset, length=p.length, inode=p.inode, paths=list(p.paths), fork="data",
                file_offset=p.file_offset, file_length=p.length, pgoff=pgoff, pgcnt=pgcnt, impact=p.impact)
    names = ", ".join(p.paths) or f"inode {p.inode}"
    pages = _FilePages(p, pgoff, pgcnt, base, _after_kill(p, names, base))
    out.line(d, f"{where}: inode {p.inode} ({names}) file offset {p.file_offset}: xfs_iget(INCORE); "
                f"pgoff = {p.file_offset} >> {PAGE_SHIFT} = {pgoff}, pgcnt = {p.length} >> {PAGE_SHIFT} = {pgcnt}"
                + (" (shared: every owner is told)" if p.shared else ""))
    if pgcnt == 0:
        out.line(d + 1, "pgcnt is 0 (a block smaller than a page): mf_dax_kill_procs finds no page to kill")
    mappers = mapping.mappers(p.inode, pgoff, pgcnt)
    if mode == DAX:
        _kill_dax_mappers(pages, mappers, flags, mapping, out, d + 1)
    else:
        _page_cache(pages, why, flags, mapping, out, d + 1)


def _kill_dax_mappers(pages: _FilePages, mappers, flags: int, mapping, out: Outcome, d: int) -> None:
    """mf_dax_kill_procs: unmap the pages, SIGBUS to the tasks that map them (all at once before a removal)."""
    pre_remove = bool(flags & MF_MEM_PRE_REMOVE)
    kflags = flags | MF_ACTION_REQUIRED | MF_MUST_KILL
    early = None
    if pre_remove:
        when, text = "now", "every task mapping the pages (pre-remove collects all tasks)"
    else:
        early = mapping.early_kill()
        when = "now" if early else "on-access"
        text = ("early-kill tasks now (vm.memory_failure_early_kill=1)" if early else
                "the task that touched the page (BUS_MCEERR_AR) and early-kill tasks now; the others lose "
                "the mapping and get SIGBUS when they next touch it")
    for m in mappers or ():
        # collect_procs_fsdax: without PRE_REMOVE only task_early_kill() tasks are signalled at once
        m["kernel_signals"] = "now" if pre_remove or early or m.get("early_kill_tid") else "on-access"
    pgoff, pgcnt = pages.pgoff, pages.pgcnt
    out.line(d, f"mf_dax_kill_procs(mapping of inode {pages.p.inode}, pgoff={pgoff}, count={pgcnt}, "
                f"flags={flags_text(kflags)}): unmap, SIGBUS to {text}"
                + (f"; {len(mappers)} process(es) map these pages now" if mappers is not None else ""))
    out.decisions.append(Decision("kill-mappers", "DAX mapping: processes mapping the damaged pages get SIGBUS",
                                  si_code="BUS_MCEERR_AO", when=when,
                                  mappers=mappers, **pages.base))
    if pre_remove:
        out.line(d, f"invalidate_inode_pages2_range(pgoff {pgoff}..{pgoff + pgcnt - 1})")
        out.decisions.append(Decision("invalidate-mappings", "the device is being removed: drop the DAX "
                                                             "mappings of these pages", **pages.base))
    else:
        out.decisions.append(pages.after)


def _page_cache(pages: _FilePages, why: str, flags: int, mapping, out: Outcome, d: int) -> None:
    """Page cache: the holder path leaves it alone (dax_mapping() is false); the page-cache policy applies."""
    pgoff, pgcnt, base = pages.pgoff, pages.pgcnt, pages.base
    out.line(d, f"not a DAX mapping ({why}): no kill")
    if flags & MF_MEM_PRE_REMOVE:
        out.line(d, f"invalidate_inode_pages2_range(pgoff {pgoff}..{pgoff + pgcnt - 1})")
        out.decisions.append(Decision("invalidate-mappings", "the device is being removed: drop cached pages",
                                      **base))
        return
    cached = mapping.cached(pages.p.inode, pgoff, pgcnt, pages.p.paths)
    if cached:
        out.line(d, "the pages are in the page cache: rewrite them over the bad media (beyond the merged "
                    "kernel: the 2020 design, not merged)")
        out.decisions.append(Decision("rewrite-cached-page", "a cached copy of the pages exists: writing it back "
                                                             "replaces the bad media's contents", beyond_kernel=True,
                                      **base))
        return
    out.line(d, "no cached copy " + ("(looked: not resident)" if cached is False else "(offline: cannot look)")
             + ": the next read fails; mapping_set_error(-EIO) reports it at the next fsync")
    out.decisions.append(Decision("report-writeback-error", "no good copy in memory: readers and the next fsync "
                                                            "get EIO", **base))
    out.decisions.append(pages.after)


def _after_kill(p, names: str, base: dict) -> Decision:
    """What the admin does once the kernel has dealt with the mappers, by the piece's impact (one rule with
    locate's advice): restore written data, repair a directory or symlink, re-allocate unwritten space."""
    span = f"{names} bytes {p.file_offset}..{p.file_offset + p.length - 1}"
    if p.impact in ("directory", "symlink"):
        return Decision("repair-filesystem", f"{span}: a {p.impact}'s blocks (its names or target) are metadata to "
                                             "xfs_repair, which rebuilds them; no backup of a file restores them "
                                             "(the kernel does not shut down for them)", **base)
    if p.impact == "file-unwritten":
        return Decision("reallocate-space", f"{span}: preallocated, never written (unwritten): no data lost; "
                                            "re-allocate that space so no later write lands on the damaged media",
                        **base)
    return Decision("restore-from-backup", f"the data is lost: restore {span}", **base)


def _generic(fs, omap, offset, length, flags, mapping, out, d, size: int) -> int:
    """No rmapbt: the kernel knows only page->mapping; we still name every owner (from the walk)."""
    for p in _described(fs, as_records(omap.pieces(offset, min(length, max(0, size - offset))))):
        if p.owner == "file" and p.fork == "data" and not p.extent_map:
            _failure_fn(fs, p, flags, mapping, out, d)
        elif p.owner not in ("free",):
            out.line(d, f"bytes {p.offset}+{p.length}: {_owner_text(p)}: the kernel is not told (no rmapbt); the "
                        "next read of it fails")
            out.decisions.append(Decision("none", f"{_owner_text(p)}: the kernel cannot notice this without rmapbt; "
                                                  "unmount and run xfs_repair", owner=p.owner, offset=p.offset,
                                          length=p.length, inode=p.inode))
    return 0
