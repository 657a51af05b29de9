"""inputs -> device stack -> filesystem bytes: the mechanics under fsdaxctl.session.

open_target() opens what a Spec names read-only and finds the filesystem on it (probe; a dirty log replayed,
a mounted one answered live); route() builds the stack for the Inputs (already-parsed sources and
filesystem-relative places) and routes every input extent down to filesystem bytes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from fsdaxctl.errors import FsdaxError, UsageError
from fsdaxctl.inputs import Parsed
from fsdaxctl.ranges import Range
from fsdaxctl.stack import (BLOCK, DEVICE_KINDS, FS, FS_LOG, FS_RT, NAMESPACE, PHYS, REGION, Extent, Hop, Route, Space,
                            Stack)

TARGET = "target"  # space kind of --offset/--ranges: bytes on TARGET, whatever TARGET turns out to be



@dataclass(frozen=True)
class Spec:
    """What to open: TARGET, what lies between the machine's devices and it, and how to read it. Prints as TARGET."""
    target: str
    partition: int | None = None
    device: str | None = None          # what the machine calls TARGET (pmem0, sdb); None: infer or leave unnamed
    sysfs_root: str | None = None
    dm_tables: tuple[str, ...] = ()    # 'NAME=FILE' or FILE (`dmsetup table` with names)
    md: tuple[str, ...] = ()           # specs, or 'sysfs:md0'
    replay: bool = True                # a dirty internal log is replayed in memory (--no-replay: the disk as it is)
    live: bool = True                  # a mounted TARGET is answered by its kernel (--offline: the disk under it)
    fs_relative: bool = False          # paths from the filesystem root, not the machine's (--fs-relative)
    logdev: str | None = None          # --logdev [NAME=]FILE (NAME: what the machine calls it, e.g. pmem1)
    rtdev: str | None = None           # --rtdev [NAME=]FILE

    def __str__(self) -> str:
        return self.target


@dataclass
class Inputs:
    """Where the damage is: parsed sources (extents, inode reports, notes) and filesystem-relative places."""
    parsed: Parsed = field(default_factory=Parsed)
    fs_queries: list = field(default_factory=list)      # callables fs -> (extents, notes)
    stream: object = None  # ranges.Range on TARGET (or the filesystem device a line names), read as consumed


@dataclass
class Answer:
    fs: object
    stack: Stack
    routes: list[Route]
    warnings: list[str]
    plain: bool = False  # only bytes on a TARGET that is the filesystem itself: nothing to explain
    target_space: Space | None = None  # what TARGET turned out to be: more of its bytes route from here
    device_extents: list = field(default_factory=list)  # bytes on the rt or log device (--file, ranges): no stack

    @property
    def direct(self) -> bool:
        """TARGET is the filesystem itself: no layer lies between, its bytes are the filesystem's."""
        return not self.stack.layers


def named_device(arg: str) -> tuple[str | None, str]:
    """(NAME, FILE) of a device argument 'NAME=FILE' (NAME a kernel device name: pmem1, sdb2, dm-3), or
    (None, arg)."""
    import re

    m = re.fullmatch(r"([A-Za-z0-9][\w.:-]*)=(.+)", arg)
    if not m or os.path.exists(arg):  # a file whose name holds '=' is that file
        return None, arg
    return m.group(1), m.group(2)


def routed_device_extents(routes: list[Route]) -> list[Extent]:
    """Bytes that reached the filesystem's realtime or log device through the stack (a badblocks list or a
    kernel log line about that device), as extents on it, each in its input's place."""
    out = []
    for route in routes:
        e = route.extent
        for path in route.device_paths():
            last = path[-1]
            note = "; ".join(h.arithmetic for h in path if isinstance(h, Hop) and h.arithmetic)
            out.append(Extent(last.space, last.offset, last.length, e.origin, note, e.source, e.line, e.rank))
    return out


def route_more(spec: Spec, answer: Answer, layout, extents: list[Extent]) -> list[Route]:
    """More extents on TARGET through the stack already built for `answer` (a streamed ranges list, a window at
    a time); what they cannot reach is said in answer.warnings."""
    return _route(spec, answer.fs, layout, answer.stack, answer.target_space, extents, answer.warnings)


def target_extent(offset: int, length: int, where: str, source: str = "", line: int = 0, rank: int = 0) -> Extent:
    return Extent(Space(TARGET), offset, length, where, f"bytes {offset}+{length} of TARGET", source, line, rank)


_DEVICE_SPACES = {"rt": Space(FS_RT), "log": Space(FS_LOG)}


def range_extent(r: Range, rank: int = 0) -> Extent:
    """A ranges file's line as an extent: bytes on TARGET, or on the realtime or log device the line names (no
    stack lies between those and the filesystem)."""
    if r.device in _DEVICE_SPACES:
        return Extent(_DEVICE_SPACES[r.device], r.offset, r.length, r.where,
                      f"bytes {r.offset}+{r.length} of the {r.device} device", r.source, r.line, rank)
    return target_extent(r.offset, r.length, r.where, r.source, r.line, rank)


def _wants_sysfs(extents) -> bool:
    return any(e.space.kind in (PHYS, REGION) or (e.space.kind == NAMESPACE and e.space.name) for e in extents)


def _bind_name(spec: Spec, extents, known: set[str], layout) -> tuple[str | None, list[str]]:
    """TARGET's kernel name: --device, a block device's own name, or the one device the inputs name."""
    if spec.device:
        return spec.device, []
    real = os.path.realpath(spec.target)
    if real.startswith("/dev/") and os.path.exists(real):
        import stat

        if stat.S_ISBLK(os.stat(real).st_mode):
            return os.path.basename(real), []
    # Block devices, and the filesystem devices of XFS messages ("XFS (sdb2): ..."), name what TARGET is.
    names = {e.space.name for e in extents if e.space.kind in (BLOCK, FS) and e.space.name} - known
    if not names:
        return None, []
    if layout.partition is not None:
        from fsdaxctl.stack.partition import disk_of

        bases = {disk_of(n, names) for n in names}
    else:
        bases = names
    if len(bases) == 1:
        name = bases.pop()
        return name, [f"taking TARGET to be {name}, the only device the input names (--device NAME to say "
                      "otherwise)"]
    raise UsageError(f"the input names several devices ({', '.join(sorted(names))}): which one is TARGET? "
                     "give --device NAME")


def _in_input_order(extents: list[Extent]) -> list[Extent]:
    """Inode reports become extents after the byte ranges: put every extent back where its line was (its
    `source` and `line`), sources in the order they came, so results follow the input (README: input order)."""
    first_seen: dict[str, int] = {}
    keys = []
    for i, e in enumerate(extents):
        src = e.source or e.origin
        first_seen.setdefault(src, len(first_seen))
        keys.append((first_seen[src], e.line or i, i))
    return [extents[k[2]] for k in sorted(keys)]


def _disk_for_partition_name(name: str, layout, warnings: list[str]) -> str:
    """--device sdb1 on a whole-disk TARGET whose XFS is partition 1: TARGET is sdb (else the name is wrong)."""
    from fsdaxctl.stack.partition import disk_of

    disk = disk_of(name, {name})
    if disk == name:
        return name
    number = int(name[len(disk):].lstrip("p"))
    if number != layout.partition.number:
        raise UsageError(f"--device {name}: TARGET holds a partition table and its XFS is partition "
                         f"{layout.partition.number}, not {number}: give the whole disk's name (--device {disk}) or "
                         f"--partition {number}")
    warnings.append(f"{name} is partition {number} of TARGET's partition table: taking TARGET to be {disk}")
    return disk


def _alias_fs_names(extents: list[Extent], fs_name: str, warnings: list[str]) -> list[Extent]:
    """TARGET's name was inferred, so an XFS message naming one other device ('XFS (dm-3)' where the dm table
    calls it vg-lv) is taken to be about this filesystem, and said so."""
    names = {e.space.name for e in extents if e.space.kind == FS and e.space.name and e.space.name != fs_name}
    if len(names) != 1:
        return extents
    other = names.pop()
    warnings.append(f"taking XFS ({other}) to be TARGET's filesystem ({fs_name}): --device NAME to say otherwise")
    return [dataclasses.replace(e, space=Space(FS, fs_name)) if e.space.kind == FS and e.space.name == other
            else e for e in extents]


def _dm_md_layers(spec: Spec, notes: list[str], sysfs) -> tuple[list, dict, set[str]]:
    layers, arrays = [], {}
    if not spec.dm_tables and not spec.md:
        return layers, arrays, set()
    from fsdaxctl.discovery.md import read_md_sysfs
    from fsdaxctl.stack.dm import dm_layers, parse_table
    from fsdaxctl.stack.md import md_layers, parse_md_spec
    for table in spec.dm_tables:
        name, sep, path = table.partition("=")
        if not sep:
            name, path = None, table
        from fsdaxctl.inputs.load import read_source

        shown, data = read_source(path)
        tables = parse_table(data.decode("utf-8", "replace").splitlines(), shown, name)
        rename = sysfs.name_of_devt if sysfs is not None else (lambda d: d)

        def named(d, rename=rename):
            if ":" not in d:
                return d
            try:
                return rename(d) or d
            except FsdaxError:
                return d
        layers += dm_layers(tables, named)
        unresolved = sorted({layer.upper.name for layer in layers if ":" in (layer.upper.name or "")})
        if unresolved:
            notes.append(f"the dm table names {', '.join(unresolved)} by number; without that machine's sysfs "
                              "(--sysfs-root) they cannot be matched to names in the input (sdb, ...): write the "
                              "table with device names (/dev/sdb) or give --sysfs-root")
    for text in spec.md:
        if text.startswith("sysfs:"):
            md = read_md_sysfs(spec.sysfs_root or "/sys", text[6:])
        else:
            md = parse_md_spec(text)
        if md.name in arrays:
            raise UsageError(f"--md: {md.name} is given twice")
        arrays[md.name] = md
        layers += md_layers(md)
    lowers = {layer.lower.name for layer in layers}
    return layers, arrays, lowers


def open_target(spec: Spec):
    """(XfsFilesystem, Layout): the filesystem on spec.target, wherever it starts, with every warning that makes
    its answers doubtful (a table repaired from its backup, a mount, a dirty log) in fs.warnings."""
    from fsdaxctl.device import mount_warnings
    from fsdaxctl.discovery.probe import filesystem_window, probe
    from fsdaxctl.xfs.fs import XfsFilesystem
    from fsdaxctl.xfs.log import log_warnings

    live, dev = _open_device(spec)
    try:
        layout = probe(dev, spec.partition)
        fs = XfsFilesystem(filesystem_window(dev, layout))
    except BaseException:
        dev.close()
        raise
    fs.warnings[:0] = layout.warnings
    fs.live = live
    if live is None:
        fs.warnings += mount_warnings(fs.dev)
    else:
        state = "read-only" if live.read_only else "read-write"
        fs.warnings.append(f"{spec.target} is mounted {state} at {live.mount_point}: its running kernel answers "
                           "(--offline reads the disk instead)")
    extra = _attach_devices(fs, spec)
    fs = _replayed(fs, spec.replay, log_warnings)
    for name, value in extra.items():  # a replayed filesystem is a new object on the same devices
        setattr(fs, name, value)
    return fs, layout


def _open_device(spec: Spec):
    """(LiveTarget or None, Device) for TARGET. A mount point (or any directory of a mounted XFS) opens the
    block device under it; a mounted TARGET is read with O_DIRECT (the block device's page cache is stale
    under XFS) and, unless --offline, answered by the running kernel (fsdaxctl.live)."""
    from fsdaxctl.device import Device, mount_points
    from fsdaxctl.live.target import find_live_target  # not the whole live package: most targets are not mounted

    path = spec.target
    if os.path.isdir(path):
        live = find_live_target(path)
        dev = Device(live.device, direct=True)
    else:
        dev = Device(path)
        mounted = mount_points(dev)
        if not mounted:
            return None, dev
        try:
            live = find_live_target(path, mounted)
        except BaseException:
            dev.close()
            raise
        dev.use_direct()
    if live is None or not spec.live:  # --offline: the disk under the mount
        return None, dev
    return dataclasses.replace(live, fs_relative=spec.fs_relative), dev


def _attach_devices(fs, spec: Spec) -> dict:
    """The filesystem's log and realtime devices beside TARGET (fsdaxctl.xfs.devices): the attributes set."""
    from fsdaxctl.xfs.devices import attach

    try:
        attach(fs, spec.logdev and named_device(spec.logdev)[1], spec.rtdev and named_device(spec.rtdev)[1])
    except BaseException:
        fs.close()
        raise
    return {k: getattr(fs, k) for k in ("logdev", "rtdev", "extra_devices") if hasattr(fs, k)}


def file_extents(fs, path: str, file_offset: int, length: int):
    """--file: a mounted filesystem's file mapped by its kernel (FIEMAP, the machine's path); otherwise from the
    metadata on disk (path from the filesystem root)."""
    live = getattr(fs, "live", None)
    if live is not None:
        from fsdaxctl.live.files import file_extents as live_file_extents

        return live_file_extents(live.mount_point, path, file_offset, length)
    from fsdaxctl.xfs.where import file_extents as disk_file_extents

    return disk_file_extents(fs, path, file_offset, length)


def _replayed(fs, replay: bool, log_warnings):
    """A dirty log replayed in memory (fsdaxctl.xfs.logrecover): the filesystem as the kernel will see it after
    mounting, with one note saying so (an external log too, from --logdev). Not for a target mounted read-write
    (its log is live), an external log not given, or --no-replay: then the disk as it is, with the dirty-log
    warning."""
    from fsdaxctl.device import log_device_mounts, mount_points
    from fsdaxctl.xfs.logrecover import LogReplayError, open_replayed

    if getattr(fs, "live", None) is not None:  # the running kernel answers: its log is its own business
        from fsdaxctl.xfs.logrecover import log_state

        fs.replay = log_state(fs, "mounted: the running kernel answers") if fs.internal_log else None
        return fs
    logdev = getattr(fs, "logdev", None)
    if fs.internal_log is None and logdev is None:  # an external log not given
        fs.warnings += log_warnings(fs)
        return fs
    live = any(not ro for _, ro in mount_points(fs.dev))
    in_use = log_device_mounts(logdev) if logdev is not None and not live else []
    if in_use:  # the log of a filesystem mounted now
        live = True
        logdev.use_direct()
        fs.warnings.append(f"the log device is in use at {', '.join(in_use)}: its log is live, not replayed")
    if not replay or live:
        from fsdaxctl.xfs.logrecover import log_state

        fs.warnings += log_warnings(fs)
        fs.replay = log_state(fs, "mounted read-write: the log is live" if live else "--no-replay")
        return fs
    from fsdaxctl.errors import DeviceError

    try:
        new, rep = open_replayed(fs)
    except LogReplayError as e:
        raise LogReplayError(f"{e.message} (--no-replay answers from the disk as it is)", **e.facts) from None
    except DeviceError as e:  # the log's bytes cannot be read (a truncated image or log device, an I/O error)
        if fs.internal_log is None:  # the --logdev given is not the whole log: not answered from the disk unasked
            raise LogReplayError(f"cannot read the log on the log device to replay it: {e} (--no-replay answers "
                                 "from the disk as it is)", structure="log") from None
        fs.warnings += [f"cannot read the log to replay it: {e}: answers come from the disk as it is, and lack "
                        "whatever the log holds"] + log_warnings(fs)  # a truncated image: go on, saying so
        return fs
    if rep.dirty:
        new.warnings += [rep.note()] + rep.notes
    else:
        new.warnings += log_warnings(new) + rep.notes
    return new


def route(spec: Spec, fs, layout, inputs: Inputs) -> Answer:
    """Build the stack for these inputs on the open filesystem (its notes: what was found and assumed, for
    --explain) and route every input extent to filesystem bytes."""
    warnings: list[str] = []
    extents = _in_input_order(_all_extents(spec, inputs, fs, layout, warnings))
    extents = [dataclasses.replace(e, rank=i) for i, e in enumerate(extents)]
    rt = [e for e in extents if e.space.kind in DEVICE_KINDS]
    extents = [e for e in extents if e.space.kind not in DEVICE_KINDS]
    stack, target_space, extents, arrays = _build_stack(spec, fs, layout, extents, warnings)
    routes = _route(spec, fs, layout, stack, target_space, extents, warnings)
    if arrays:
        from fsdaxctl.stack.md import settle_mirrors

        warnings += settle_mirrors(routes, arrays)
    answer = Answer(fs, stack, routes, warnings, False, target_space, rt)
    answer.plain = answer.direct and all(e.space.kind == TARGET for e in extents) and not rt
    return answer


def _all_extents(spec: Spec, inputs: Inputs, fs, layout, warnings: list[str]) -> list[Extent]:
    """The parsed inputs' extents, and those of filesystem places (--daddr, --file, inodes in kernel logs)."""
    from fsdaxctl.xfs.where import inode_extent

    dev = fs.dev
    extents = list(inputs.parsed.extents)
    fs_limit = max(getattr(dev, "base", dev).size - layout.fs_start, fs.geo.size)  # TARGET's end, from the fs
    for query in inputs.fs_queries:
        exts, qnotes = query(fs)
        for ext in exts:
            if ext.space.kind in DEVICE_KINDS:
                continue  # on another of the filesystem's devices: checked against it by its owner map
            if ext.offset + ext.length > fs_limit:
                raise UsageError(f"{ext.origin}: bytes {ext.offset}..{ext.offset + ext.length - 1} of the "
                                 f"filesystem run past the end of {spec.target} ({fs_limit} bytes from the "
                                 "filesystem's start)")
        extents += exts
        warnings += qnotes  # holes and the like: the user asked about those bytes
    for ref in inputs.parsed.inodes:
        try:
            extents.append(inode_extent(fs, ref.ino, ref.origin, ref.note, source=ref.source, line=ref.line))
        except UsageError as e:
            warnings.append(f"skipped: {e}")
    return extents


def _target_name(spec: Spec, dev, extents, extra, array_names, layout, warnings, others: dict[str, str],
                 unnamed: list[str]) -> tuple[str | None, bool]:
    """What the machine calls TARGET (pmem0, sdb), and whether that was inferred rather than given. `others`:
    the named rt and log devices; `unnamed`: the filesystem's other devices whose names are not known."""
    known = {layer.upper.name for layer in extra} | array_names | set(others)
    tops = array_names - {layer.upper.name for layer in extra}  # dm/md devices nothing else is built on
    name, inferred = spec.device, False
    if not name and not dev.is_block_device and len(tops) == 1:
        name, inferred = tops.pop(), True
        warnings.append(f"taking TARGET to be {name}, the device the given dm/md layout builds (--device NAME to "
                        "say otherwise)")
    if not name:
        name, bind_notes = _bind_name(spec, extents, known, layout)
        inferred = bool(bind_notes)
        if inferred and unnamed:  # the reports may be about that other device: not a guess to make
            raise UsageError(f"the input names {name}, and this filesystem also has {' and '.join(unnamed)} whose "
                             f"name is not known: which is {name}? give --device NAME for TARGET (and "
                             "--rtdev/--logdev NAME=FILE)")
        warnings += bind_notes
    if name and layout.partition is not None:
        name = _disk_for_partition_name(name, layout, warnings)
    for other, kind in others.items():
        if other == name:
            raise UsageError(f"{other} is TARGET's name, and --{DEVICE_KINDS[kind]}dev names that device too: "
                             "the filesystem's devices are different devices")
    return name, inferred


def _build_stack(spec: Spec, fs, layout, extents, warnings):
    """(Stack, TARGET's space, extents with inferred names aliased, md arrays) for this TARGET and inputs."""
    from fsdaxctl.discovery.probe import layers_for

    dev = fs.dev
    sysfs = None
    if spec.sysfs_root or _wants_sysfs(extents) or dev.is_block_device:
        from fsdaxctl.discovery.sysfs import Sysfs

        sysfs = Sysfs(spec.sysfs_root or "/sys")
    extra, arrays, array_names = _dm_md_layers(spec, warnings, sysfs)
    others = _other_devices(spec, fs)
    from fsdaxctl.xfs.devices import LOG, RT, has_own

    unnamed = [what for kind, device, what in ((FS_RT, RT, "a realtime device"), (FS_LOG, LOG, "a log device"))
               if kind not in others.values() and has_own(fs, device)]
    name, inferred = _target_name(spec, dev, extents, extra, array_names, layout, warnings, others, unnamed)
    layers, target_space, fs_space = layers_for(layout, name)
    if inferred and fs_space.name:
        extents = _alias_fs_names(extents, fs_space.name, warnings)
    notes: list[str] = list(layout.notes)
    if sysfs is not None and name and (_wants_sysfs(extents) or dev.is_block_device or spec.sysfs_root):
        try:
            chain, chain_notes = sysfs.layers_to_block(name)
        except FsdaxError as e:
            if _wants_sysfs(extents):
                raise
            chain, chain_notes = [], [f"sysfs: {e}"]
        covered = {layer.upper for layer in layers}
        layers = [layer for layer in chain if layer.upper not in covered] + layers
        notes += chain_notes
        layers += _other_chains(sysfs, others, {layer.upper for layer in layers}, notes)
    elif _wants_sysfs(extents):
        if spec.sysfs_root and not name:
            raise UsageError("which device in that sysfs is TARGET? give --device NAME (pmem0, ...)")
        raise UsageError("physical addresses and nd regions need the machine's nd layout: give --sysfs-root DIR "
                         "(a copy of that machine's /sys) and --device NAME (TARGET's name there)")
    ends = {Space(BLOCK, n): Space(kind) for n, kind in others.items()}
    return Stack(layers + extra, fs_space, notes, ends), target_space, extents, arrays


def _other_devices(spec: Spec, fs) -> dict[str, str]:
    """{kernel name: FS_RT or FS_LOG} of the filesystem's realtime and log devices, as --rtdev/--logdev NAME=
    said or as a block device is called, so that damage reports naming them reach them through the stack."""
    out: dict[str, str] = {}
    for kind, arg, dev in ((FS_RT, spec.rtdev, getattr(fs, "rtdev", None)),
                           (FS_LOG, spec.logdev, getattr(fs, "logdev", None))):
        name = named_device(arg)[0] if arg else None
        if not name and dev is not None and dev.is_block_device:
            name = os.path.basename(os.path.realpath(dev.path))
        if name in out:
            raise UsageError(f"--rtdev and --logdev both name {name}: the filesystem's devices are different devices")
        if name:
            out[name] = kind
    return out


def _other_chains(sysfs, others: dict[str, str], covered: set, notes: list[str]) -> list:
    """Layers from physical addresses down to the realtime and log devices (pmem namespaces of their own),
    those already in the stack (the nd bus, a shared region) kept once."""
    out = []
    for name in others:
        try:
            chain, chain_notes = sysfs.layers_to_block(name)
        except FsdaxError as e:
            notes.append(f"sysfs: {name}: {e}")
            continue
        out += [layer for layer in chain if layer.upper not in covered]
        covered |= {layer.upper for layer in chain}
        notes += chain_notes
    return out


def _route(spec: Spec, fs, layout, stack, target_space, extents, warnings) -> list[Route]:
    """Every extent through the stack; TARGET's own bytes must lie within TARGET."""
    limit = _target_limit(fs, layout)
    routes, past = [], []
    for ext in extents:
        if ext.space.kind == TARGET:
            _check_within(ext.offset, ext.length, ext.origin, limit, spec)
            ext = Extent(target_space, ext.offset, ext.length, ext.origin, ext.note, ext.source, ext.line, ext.rank)
        elif ext.space == target_space and ext.offset >= limit:
            past.append(ext.origin)  # a list about another (bigger) device, or the wrong list
            continue
        routes.append(stack.route(ext))
    if past:
        warnings.append(f"{len(past)} input range(s) start past the end of {spec.target} ({limit} bytes), e.g. "
                        f"{past[0]}: is it a list of another device? skipped")
    return routes


def plain_ranges(spec: Spec, answer: Answer, layout, ranges: list[Range]) -> list[Range] | None:
    """A streamed window of ranges as they are on a TARGET that is the filesystem itself (`Answer.direct`: each
    reaches it unchanged; checked as `route_more` checks them, without a route each); None when some range
    needs the stack (a line naming the realtime or log device). A stream's answer is then `plain` too: its
    results carry no input."""
    if not answer.direct or any(r.device for r in ranges):
        return None
    limit = _target_limit(answer.fs, layout)
    for r in ranges:
        _check_within(r.offset, r.length, r.where, limit, spec)
    return ranges


def _target_limit(fs, layout) -> int:
    base = getattr(fs.dev, "base", fs.dev)
    return max(base.size, layout.fs_start + fs.geo.size)  # a truncated image still has its filesystem's bytes


def _check_within(offset: int, length: int, origin: str, limit: int, spec: Spec) -> None:
    if offset >= limit:
        raise UsageError(f"{origin}: offset {offset} is past the end of {spec.target} ({limit} bytes)")
    if offset + length > limit:  # a range that only ends past the end is just as wrong
        raise UsageError(f"{origin}: bytes {offset}..{offset + length - 1} run past the end of {spec.target} "
                         f"({limit} bytes)")


def dropped_inputs(routes: list[Route], explain: bool) -> tuple[list[dict], int, list[str]]:
    """Inputs (or parts) that never reached the filesystem: (their JSON, exit bits, warnings). The partition
    table, the pmem info block and md superblocks are metadata (8); inputs about devices outside the stack were
    never looked at (1)."""
    from fsdaxctl.policy import drop_bits

    dropped, bits = [], 0
    for route, path in dropped_paths(routes):
        d = path[-1].to_dict()
        e = route.extent
        d["input"] = {"origin": e.origin, "space": str(e.space), "offset": e.offset, "length": e.length}
        if explain:
            d["trace"] = [h.to_dict() for h in path]
        dropped.append(d)
        bits |= drop_bits(path[-1].kind)
    skipped = [d for d in dropped if d["dropped"] in ("not-in-stack", "elsewhere", "cycle")]
    warnings = [f"{d['input']['origin']}: {d['reason']}: skipped" for d in skipped[:20]]
    if len(skipped) > 20:
        warnings.append(f"... and {len(skipped) - 20} more inputs about other devices skipped")
    return dropped, bits, warnings


def fs_paths(routes: list[Route]):
    """(route, path) for every path that reached the filesystem, in input order."""
    return ((route, path) for route in routes for path in route.fs_paths())


def dropped_paths(routes: list[Route]):
    """(route, path) for every path that ended before the filesystem, in input order."""
    return ((route, path) for route in routes for path in route.dropped_paths())
