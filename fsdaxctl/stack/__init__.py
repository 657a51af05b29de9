"""The device stack between a media error and the filesystem: every layer a pure offset map.

An error report counts bytes from somewhere: a system physical address, the start of an nd region, a raw
namespace, a block device (whole disk, partition, dm or md device) or the filesystem's own device (a daddr).
Each of those is a Space. A Layer maps bytes of one space (its `upper`, nearer the hardware) into the next
(its `lower`, nearer the filesystem), the way the kernel's notify_failure travels: pmem -> partition or dm ->
filesystem. Bytes a layer cannot pass on (an info block, a partition table, a healthy mirror) come back as a
Dropped with the reason, which is an answer in its own right, not an error.

Layers know only offsets and their own parameters: no I/O here (docs/architecture.md: only the inputs stage touches
input files, only the filesystem stage reads the device; fsdaxctl.discovery reads what the layers are built
from). Every step records the arithmetic for `--explain`. Each layer names its kernel function (`kernel_call`).

This module: the spaces, extents, hops, the Layer base and the Shift layer, routing (Stack, Route). The layers:
stack.partition, stack.pmem (a namespace), stack.nd (phys -> region -> namespace), stack.dm, stack.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from fsdaxctl.errors import UsageError
from fsdaxctl.units import MAX_BYTES

__all__ = ["PHYS", "REGION", "NAMESPACE", "BLOCK", "FS", "FS_RT", "FS_LOG", "DEVICE_KINDS", "Space", "Extent", "Hop", "Dropped", "Layer", "Shift",
           "MAX_DEPTH", "Route", "Stack"]

# Space kinds, from the hardware down.
PHYS = "phys"            # system physical address (pfn << PAGE_SHIFT)
REGION = "region"        # from the start of an nd region (regionN/resource)
NAMESPACE = "namespace"  # from the start of a raw namespace: the pfn info block is at 4 KiB
BLOCK = "block"          # a block device by its kernel name (pmem0, sda, sda1, dm-0, md0); None = the target
FS = "fs"                # the filesystem's data device: what XFS daddrs count from
FS_RT = "fs-rt"          # the filesystem's realtime device (a realtime file's data): no stack leads there
FS_LOG = "fs-log"        # the filesystem's external log device: no stack leads there either
DEVICE_KINDS = {FS_RT: "rt", FS_LOG: "log"}  # bytes given on one of the filesystem's other devices


@dataclass(frozen=True, slots=True)
class Space:
    kind: str
    name: str | None = None

    def __str__(self) -> str:
        if self.kind == PHYS:
            return "physical address space"
        if self.kind == FS:
            return f"filesystem device {self.name}" if self.name else "filesystem device"
        if self.kind in DEVICE_KINDS:
            return f"filesystem {DEVICE_KINDS[self.kind]} device"
        if self.name is None:
            return "the target" if self.kind == BLOCK else f"the target's {self.kind}"
        return self.name


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range in one space, and where it came from ('bad.txt line 3', '--pfn')."""

    space: Space
    offset: int
    length: int
    origin: str
    note: str = ""  # the source's own units for the trace: 'sector 2048, 8 sectors'
    source: str = field(default="", compare=False)  # the input it came from ('bad.txt'), when a numbered line of one
    line: int = field(default=0, compare=False)  # that line's number (input order: results follow it)
    rank: int = field(default=0, compare=False)  # its place among all the inputs, once they are put in order

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Hop:
    """One step of the arithmetic: the bytes are now at [offset, offset + length) of `space`."""

    layer: str
    space: Space
    offset: int
    length: int
    arithmetic: str
    recoverable: str = ""  # why these bytes still have a good copy (a raid1 mirror), if they do

    def to_dict(self) -> dict:
        d = {"layer": self.layer, "space": str(self.space), "offset": self.offset, "length": self.length,
             "arithmetic": self.arithmetic}
        if self.recoverable:
            d["recoverable"] = self.recoverable
        return d


@dataclass(frozen=True, slots=True)
class Dropped:
    """Bytes that never reach the filesystem, and why. `offset`/`length` are in `space`."""

    layer: str
    space: Space
    offset: int
    length: int
    kind: str    # namespace-metadata, struct-page-reserve, alignment-padding, not-pmem, unallocated-region-space,
    #              partition-table, unpartitioned, md-metadata, unmapped, elsewhere, not-in-stack, cycle
    reason: str

    def to_dict(self) -> dict:
        return {"layer": self.layer, "space": str(self.space), "offset": self.offset, "length": self.length,
                "dropped": self.kind, "reason": self.reason}


class Layer(ABC):
    """One offset map from `upper` to `lower`. Subclasses set the three attributes and implement map(), and name
    the kernel function that does their step of the memory-failure chain (`kernel_call`, for the engine's call
    path; empty: the layer's own name stands for it)."""

    upper: Space
    lower: Space  # where the bytes that matter go; hop(space=...) may send others elsewhere
    name: str
    kernel_call: str = ""

    @abstractmethod
    def map(self, offset: int, length: int) -> list[Hop | Dropped]:
        """Where bytes [offset, offset + length) of `upper` go: hops on, or dropped with the reason."""

    def describe(self) -> str:
        """One line for --explain's header: what this layer is and its parameters."""
        return self.name

    # Helpers every layer uses so that all traces read alike.
    def hop(self, offset: int, length: int, arithmetic: str, recoverable: str = "", space: Space | None = None) -> Hop:
        """Bytes passed on: to `lower`, or to another space this layer also feeds (a region's other namespace,
        a disk's other partition), where routing then says whether that space is under the filesystem."""
        return Hop(self.name, space or self.lower, offset, length, arithmetic, recoverable)

    def drop(self, offset: int, length: int, kind: str, reason: str) -> Dropped:
        return Dropped(self.name, self.upper, offset, length, kind, reason)


class Shift(Layer):
    """The common layer: [start, start + size) of upper is [0, size) of lower (partition, namespace data
    area, dm-linear segment, pmem region -> namespace). Bytes outside are dropped with `outside_kind`."""

    kernel_call = "holder offset"

    def __init__(self, upper: Space, lower: Space, name: str, start: int, size: int, *,
                 start_text: str = "", before: tuple[str, str] = ("unmapped", ""),
                 after: tuple[str, str] = ("unmapped", "")):
        self.upper, self.lower, self.name = upper, lower, name
        self.start, self.size = start, size
        self.start_text = start_text or f"{start}"
        self.before, self.after = before, after

    def describe(self) -> str:
        return f"{self.name}: bytes {self.start}..{self.start + self.size - 1} of {self.upper} are {self.lower}"

    def map(self, offset, length):
        out: list[Hop | Dropped] = []
        end = offset + length
        lo, hi = self.start, self.start + self.size
        if offset < lo:
            out.append(self.drop(offset, min(end, lo) - offset, self.before[0],
                                 self.before[1] or f"before the start of {self.lower} (byte {lo} of {self.upper})"))
        a, b = max(offset, lo), min(end, hi)
        if a < b:
            out.append(self.hop(a - lo, b - a, f"byte {a} - {self.start_text} = byte {a - lo} of {self.lower}"))
        if end > hi:
            s = max(offset, hi)
            out.append(self.drop(s, end - s, self.after[0],
                                 self.after[1] or f"past the end of {self.lower} (byte {hi} of {self.upper})"))
        return out


MAX_DEPTH = 16  # a stack deeper than this is a cycle in what the user gave us


@dataclass
class Route:
    """Everything that became of one input extent: each path ends on the filesystem or in a Dropped."""

    extent: Extent
    paths: list[list] = field(default_factory=list)

    def fs_paths(self) -> list[list]:
        """The paths that reached the filesystem (their last hop: bytes on its device)."""
        return [p for p in self.paths if isinstance(p[-1], Hop) and p[-1].space.kind == FS and p[-1].length > 0]

    def device_paths(self) -> list[list]:
        """The paths that reached the filesystem's realtime or log device (last hop: bytes on that device)."""
        return [p for p in self.paths if isinstance(p[-1], Hop) and p[-1].space.kind in DEVICE_KINDS
                and p[-1].length > 0]

    def dropped_paths(self) -> list[list]:
        """The paths that ended before the filesystem (their last step: the Dropped, with why)."""
        return [p for p in self.paths if isinstance(p[-1], Dropped)]

    def fs_ranges(self) -> list[Hop]:
        return [p[-1] for p in self.fs_paths()]

    def dropped(self) -> list[Dropped]:
        return [p[-1] for p in self.dropped_paths()]

    def recoverable(self, path) -> str:
        return next((h.recoverable for h in path if isinstance(h, Hop) and h.recoverable), "")


class Stack:
    """The layers under one filesystem, indexed by the space they map from."""

    def __init__(self, layers: list[Layer], fs_space: Space, notes: list[str] | None = None,
                 others: dict[Space, Space] | None = None):
        self.layers = list(layers)
        self.others = dict(others or {})  # a block device holding the filesystem's rt or log device -> that space
        self.by_upper: dict[Space, Layer] = {}
        for layer in self.layers:
            if layer.upper in self.by_upper:
                raise UsageError(f"two layers map from {layer.upper}: {self.by_upper[layer.upper].name} and "
                                 f"{layer.name}")
            self.by_upper[layer.upper] = layer
        self.fs_space = fs_space
        self.notes = list(notes or ())  # assumptions made while building the stack, for --explain

    def describe(self) -> list[str]:
        return self.notes + [layer.describe() for layer in self.layers]

    def route(self, ext: Extent) -> Route:
        if ext.length <= 0 or ext.offset < 0 or ext.offset + ext.length > MAX_BYTES:
            raise UsageError(f"{ext.origin}: not a byte range: offset {ext.offset}, length {ext.length}")
        start = Hop("input", ext.space, ext.offset, ext.length, ext.note or f"bytes {ext.offset}+{ext.length}")
        if ext.space.kind == FS:
            if ext.space.name and self.fs_space.name and ext.space.name != self.fs_space.name:
                return Route(ext, [[start, Dropped("filesystem", ext.space, ext.offset, ext.length, "not-in-stack",
                                                   f"names filesystem device {ext.space.name}, but the target's "
                                                   f"filesystem is on {self.fs_space.name}")]])
            start = Hop("input", Space(FS, self.fs_space.name), ext.offset, ext.length, start.arithmetic)
        route = Route(ext)
        pending = [[start]]
        while pending:
            path = pending.pop()
            last = path[-1]
            if last.space.kind == FS or last.space.kind in DEVICE_KINDS:
                route.paths.append(path)
                continue
            if last.space == self.fs_space:
                route.paths.append(path + [Hop("filesystem", Space(FS, self.fs_space.name), last.offset,
                                               last.length, f"{self.fs_space} holds the filesystem")])
                continue
            if last.space in self.others:
                other = self.others[last.space]
                route.paths.append(path + [Hop("filesystem", other, last.offset, last.length,
                                               f"{last.space} holds the {other}")])
                continue
            if any(isinstance(h, Hop) and h.space == last.space for h in path[:-1]):
                route.paths.append(path + [Dropped("stack", last.space, last.offset, last.length, "cycle",
                                                   f"{last.space} is reached twice: the layers given form a "
                                                   "cycle")])
                continue
            layer = self.by_upper.get(last.space)
            if layer is None or len(path) > MAX_DEPTH:
                # Reached through a layer (another partition of the same disk, another namespace of the region):
                # an answer about those bytes. Named by the input itself: a device this stack does not know.
                kind = "elsewhere" if len(path) > 1 else "not-in-stack"
                route.paths.append(path + [Dropped("stack", last.space, last.offset, last.length, kind,
                                                   f"{last.space} is not under the target's filesystem")])
                continue
            for step in layer.map(last.offset, last.length):
                (route.paths if isinstance(step, Dropped) else pending).append(path + [step])
        route.paths.sort(key=lambda p: (p[-1].space.kind != FS, p[-1].offset))
        return route
