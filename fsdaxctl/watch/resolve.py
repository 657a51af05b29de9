"""Watched filesystems and what a report means for each: owners and the kernel's decisions.

A Session is one filesystem kept open for the life of the service (its device stack built once, as `locate`
builds it: partitions and nd layers from sysfs). A report's extents are routed through every session's stack;
those that reach a filesystem are answered there:
- mounted here: owners from the running kernel (fsdaxctl.live.LiveOwnerMap, FS_IOC_GETFSMAP), names from the
  mounted tree (LivePathResolver: the machine's paths), mappers from /proc;
- not mounted (a TARGET image or device given with its kernel name): owners from the disk (OwnerMap).
The engine's chain (fsdaxctl.engine.chain.run) then decides per owner, the same walk `inject` prints.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from fsdaxctl.engine.act import LiveMapping
from fsdaxctl.engine.chain import DAX, PAGE_CACHE, Mapping
from fsdaxctl.errors import FsdaxError
from fsdaxctl.stack import FS, Space

_XFS_DEV = re.compile(r"^XFS \(([^)\s]+)\)")


class WatchMapping(LiveMapping):
    """LiveMapping with the inodes' names from the mounted tree (the disk's names can lag the kernel's)."""

    def __init__(self, fs, point, forced, label, names: dict[int, list[str]], shared: dict | None = None):
        super().__init__(fs, point, forced, label)
        self.names = names
        self.shared = shared  # one /proc snapshot for a batch of reports read together (None: a fresh one)

    def mappers(self, ino: int, pgoff: int, pgcnt: int):
        if self.snapshot is None and self.shared is not None:
            if "maps" not in self.shared:
                self.shared["maps"] = self.live.read_all_maps()
            self.snapshot = self.shared["maps"]
        return super().mappers(ino, pgoff, pgcnt)

    def _rel(self, ino: int) -> list[str]:
        mp = self.mount.rstrip("/")
        return [p[len(mp):] or "/" for p in self.names.get(ino, ()) if p == mp or p.startswith(mp + "/")]

    def mode(self, ino: int, paths=()):
        return super().mode(ino, self._rel(ino) or paths)

    def cached(self, ino: int, pgoff: int, pgcnt: int, paths=()):
        return super().cached(ino, pgoff, pgcnt, self._rel(ino) or paths)


@dataclass
class Session:
    target: str                 # what was opened: the mounted device node, or the TARGET image/device
    name: str | None            # the kernel's name for it (loop3, pmem0, sdb2): what reports say
    mount: str | None           # mounted here: the mount point (owners from the kernel)
    fs: object
    stack: object
    devt: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.mount is not None

    @property
    def uuid(self) -> str:
        return str(self.fs.uuid)

    def names(self) -> set[str]:
        """What a policy rule's `filesystem` may say to mean this one."""
        out = {self.uuid, self.target}
        if self.name:
            out |= {self.name, f"/dev/{self.name}"}
        if self.mount:
            out.add(self.mount)
        return out

    def describe(self) -> dict:
        d = {"uuid": self.uuid, "device": self.target, "name": self.name, "mount": self.mount,
             "source": "kernel" if self.live else "disk"}
        return {k: v for k, v in d.items() if v is not None}

    def close(self) -> None:
        try:
            self.fs.close()
        except Exception:  # noqa: BLE001 - closing what may already be gone (a removed device)
            pass


def open_session(target: str, name: str | None, mount: str | None) -> Session:
    """The filesystem on `target` with its stack, as the application layer builds them for `locate`."""
    from fsdaxctl.session import Inputs, Session as App, Spec

    app = App.open(Spec(target, device=name))
    try:
        answer = app.route(Inputs())
    except BaseException:
        app.close()
        raise
    fs = app.fs
    devt = None
    if mount:
        st = os.stat(mount)
        devt = (os.major(st.st_dev), os.minor(st.st_dev))
    return Session(target, name, mount, fs, answer.stack, devt, list(answer.warnings))


def discover(targets: list[str]) -> tuple[list[Session], list[str]]:
    """Sessions for the given TARGETs ([NAME=]PATH: mount point, device, image), or for every mounted XFS."""
    from fsdaxctl.device import Device, mount_points, mounts
    from fsdaxctl.live import find_live_target
    from fsdaxctl.live.target import device_node

    found: list[tuple[str, str | None, str | None]] = []
    notes: list[str] = []
    if not targets:
        seen = set()
        for m in mounts():
            if m.fs_type != "xfs" or m.dev in seen:
                continue
            seen.add(m.dev)
            try:
                node = device_node(m.dev)
            except FsdaxError as e:
                notes.append(f"{m.mount_point}: {e}: not watched")
                continue
            found.append((node, os.path.basename(node), m.mount_point))
    for spec in targets:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or os.path.exists(spec):
            name, path = None, spec
        if os.path.isdir(path):
            lt = find_live_target(path)
            found.append((lt.device, os.path.basename(lt.device), lt.mount_point))
            continue
        with Device(path) as dev:
            points = mount_points(dev)
            is_block = dev.is_block_device
        lt = find_live_target(path, points) if points else None
        if lt is not None:
            found.append((lt.device, os.path.basename(lt.device), lt.mount_point))
        else:
            kname = name or (os.path.basename(os.path.realpath(path)) if is_block else None)
            if kname is None:
                notes.append(f"{path}: an image not mounted here: give its kernel name as NAME={path} so reports "
                             "about NAME reach it")
            found.append((path, kname, None))
    sessions = []
    for target, name, mount in found:
        try:
            sessions.append(open_session(target, name, mount))
        except FsdaxError as e:
            notes.append(f"{target}: not watched: {e}")
    return sessions, notes


def close_all(sessions) -> None:
    for s in sessions:
        s.close()


# --- one report on one filesystem -------------------------------------------------------------------------------

@dataclass
class Hit:
    """What one report means for one watched filesystem."""

    session: Session
    routes: list
    ranges: list[tuple[int, int]]
    owners: list = field(default_factory=list)         # Piece dicts (locate's shape)
    decisions: list = field(default_factory=list)      # Decision objects (paths: the machine's, if live)
    outcomes: list = field(default_factory=list)
    names: dict = field(default_factory=dict)          # inode -> paths
    notes: list[str] = field(default_factory=list)
    status: int = 0                                    # exit bits: 4 file data, 8 metadata, 1 unresolved
    rerun: object = None                               # () -> the decisions, the chain walked again


def route_report(sessions, parsed) -> tuple[list[tuple[Session, list]], list[dict]]:
    """[(session, routes that reach its filesystem)], and the extents no watched filesystem holds."""
    from fsdaxctl.xfs.where import inode_extent

    per: dict[int, list] = {}
    unrouted = []
    extents = list(parsed.extents)
    inode_refs = list(parsed.inodes)
    for ext in extents:
        hit = False
        for i, s in enumerate(sessions):
            if ext.space.kind == FS and ext.space.name and not s.name:
                continue
            if ext.space.kind != FS and not s.name and ext.space.name:
                continue
            try:
                route = s.stack.route(ext)
            except FsdaxError:
                continue
            if route.fs_paths():
                per.setdefault(i, []).append(route)
                hit = True
        if not hit:
            unrouted.append({"space": str(ext.space), "offset": ext.offset, "length": ext.length,
                             "origin": ext.origin, "note": ext.note})
    for ref in inode_refs:
        m = _XFS_DEV.match(ref.note)
        dev = m.group(1) if m else None
        hit = False
        for i, s in enumerate(sessions):
            if dev is None or s.name != dev:
                continue
            try:
                ext = inode_extent(s.fs, ref.ino, ref.origin, ref.note)
                per.setdefault(i, []).append(s.stack.route(ext))
                hit = True
            except FsdaxError:
                continue
        if not hit:
            unrouted.append({"space": f"inode {ref.ino} of XFS ({dev})", "origin": ref.origin, "note": ref.note})
    return [(sessions[i], routes) for i, routes in sorted(per.items())], unrouted


def resolve_hit(session: Session, routes: list, event: dict, flags: int, forced: str | None,
                label: str, shared: dict | None = None) -> Hit:
    """Owners (pieces with detail and impact) and the chain's decisions for the routes on one filesystem."""
    from fsdaxctl.engine import chain
    from fsdaxctl.pipeline import Answer, fs_paths
    from fsdaxctl.policy import impact_bits
    from fsdaxctl.xfs.detail import Describer
    from fsdaxctl.xfs.devices import owner_map

    ranges = [(p[-1].offset, p[-1].length) for _, p in fs_paths(routes)]
    hit = Hit(session, routes, ranges)
    fs = session.fs
    omap = owner_map(fs, "data")  # mounted: the running kernel's GETFSMAP; else the disk
    omap.prepare(ranges)
    describer = Describer(fs)  # mounted: names from the live tree
    pieces = []
    for off, n in ranges:
        pieces += describer.describe(omap.pieces(off, n))
    hit.notes += omap.problems + describer.problems + describer.resolver.problems
    for p in pieces:
        if p.owner == "file":
            hit.names[p.inode] = list(p.paths)
        if p.impact:
            hit.status |= impact_bits(p.impact) & 13
    hit.owners = [p.to_dict() for p in pieces]
    mapping = make_mapping(session, forced, label, hit.names, shared)
    answer = Answer(fs, session.stack, routes, [])
    hit.outcomes = chain.run(answer, omap, event, flags, mapping)
    hit.decisions = [d for oc in hit.outcomes for d in oc.decisions]
    for d in hit.decisions:
        if d.inode is not None and d.inode in hit.names:
            d.paths = list(hit.names[d.inode])
    hit.rerun = lambda: _rerun(session, answer, omap, event, flags, forced, label, hit.names)
    return hit


def make_mapping(session: Session, forced: str | None, label: str, names: dict, shared=None) -> Mapping:
    if session.live:
        return WatchMapping(session.fs, session.mount, forced, label, names, shared)
    if forced:
        return Mapping(forced, f"{label}: every mapping taken as {forced} (not mounted here)")
    return Mapping()


def _rerun(session, answer, omap, event, flags, forced, label, names):
    """The chain walked again just before acting (new /proc snapshot): what it decides now."""
    from fsdaxctl.engine import chain

    outcomes = chain.run(answer, omap, event, flags, make_mapping(session, forced, label, names))
    decisions = [d for oc in outcomes for d in oc.decisions]
    for d in decisions:
        if d.inode is not None and d.inode in names:
            d.paths = list(names[d.inode])
    return decisions


def whole_filesystem(session: Session):
    """One route covering the whole filesystem: the kernel's MF_MEM_PRE_REMOVE walk (offset 0, len ULLONG_MAX,
    clipped by xfs_dax_translate_range)."""
    from fsdaxctl.stack import Extent

    size = session.fs.geo.size
    ext = Extent(Space(FS, session.stack.fs_space.name), 0, size, "device removal",
                 f"the whole filesystem: {size} bytes")
    return [session.stack.route(ext)]


def mapping_forced(assume_dax: bool, mapping: str) -> tuple[str | None, str]:
    forced = DAX if assume_dax or mapping == "dax" else PAGE_CACHE if mapping == "page-cache" else None
    return forced, "--assume-dax" if assume_dax else f"--mapping {mapping}"
