"""Partition tables (GPT, and MBR with its chain of EBRs) as one layer of the device stack.

A media error on a whole disk (sda, pmem0, nvme0n1) counts bytes from the start of the disk; the filesystem counts
from the start of its partition. A PartitionTable is what fsdaxctl.discovery.partition read from the disk, the
way the kernel reads it; here are the partitions, their kernel names, the choice of one, and the layer, a pure
offset map. Units: the table counts logical sectors (512 or 4096 bytes); everything here is in bytes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Callable

from fsdaxctl.errors import FsdaxError, UsageError
from fsdaxctl.stack import BLOCK, Dropped, Hop, Layer, Space


@dataclass(frozen=True)
class Partition:
    """One partition as the kernel would create it. start and size are bytes of the disk."""

    number: int  # sdaN / pmem0pN: GPT entry index + 1; MBR 1-4 primary, 5... logical in EBR chain order
    start: int
    size: int
    scheme: str  # 'gpt' | 'mbr'
    type: str  # GPT partition type GUID (lower case, as lsblk PARTTYPE), or the MBR type byte '0x83'
    name: str = ""  # GPT partition name (UTF-16LE on disk); MBR partitions have none
    uuid: str | None = None  # GPT unique partition GUID (the kernel's PARTUUID)
    attributes: int = 0  # GPT attribute bits (bit 2: legacy BIOS bootable); MBR: the boot indicator (0x80)

    @property
    def end(self) -> int:
        return self.start + self.size

    def to_dict(self) -> dict:
        d = {"number": self.number, "start": self.start, "size": self.size, "scheme": self.scheme,
             "type": self.type, "name": self.name, "uuid": self.uuid}
        if self.attributes:
            d["attributes"] = self.attributes
        return d

    def summary(self, sector_size: int) -> str:
        s = (f"{self.number}: start {self.start} (sector {self.start // sector_size}), size {self.size} "
             f"({self.size // sector_size} sectors), type {self.type}")
        return s + (f", name {self.name!r}" if self.name else "")


@dataclass
class PartitionTable:
    scheme: str  # 'gpt' | 'mbr'
    sector_size: int  # the logical sector the table counts in
    size: int  # the disk, bytes
    partitions: list[Partition] = field(default_factory=list)  # by number
    reserved: list[tuple[int, int, str]] = field(default_factory=list)  # (start, size, what): the table itself
    warnings: list[str] = field(default_factory=list)
    extended: list[Partition] = field(default_factory=list)  # MBR extended partitions: containers, not filesystems
    ignored: list[tuple[Partition, str]] = field(default_factory=list)  # entries the kernel makes no partition of
    disk_id: str | None = None  # GPT disk GUID, or the MBR disk signature '0x1234abcd' (sfdisk's label-id)
    usable: tuple[int, int] | None = None  # GPT: bytes [first_usable_lba, last_usable_lba + 1)

    def get(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)

    def listing(self) -> str:
        """One line: every partition (number, start, size, type, name), for messages."""
        parts = "; ".join(p.summary(self.sector_size) for p in self.partitions) or "none"
        return f"{self.scheme.upper()} partitions: {parts}"

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "sector_size": self.sector_size, "size": self.size, "disk_id": self.disk_id,
                "partitions": [p.to_dict() for p in self.partitions],
                "extended": [p.to_dict() for p in self.extended],
                "reserved": [{"start": s, "size": n, "what": w} for s, n, w in self.reserved],
                "warnings": list(self.warnings)}


# --- naming and choosing -------------------------------------------------------------------------------------

def partition_name(disk: str, number: int) -> str:
    """The kernel's name of partition `number` of `disk` (core.c add_partition): sda -> sda1, but a disk whose
    name ends in a digit gets a 'p' between: pmem0 -> pmem0p1, nvme0n1 -> nvme0n1p1, loop0 -> loop0p1."""
    return f"{disk}p{number}" if disk[-1:].isdigit() else f"{disk}{number}"


_P_PART = re.compile(r"(.+\d)p\d+")
_PLAIN_PART = re.compile(r"(.*\D)\d+")
_LETTER_DISKS = re.compile(r"(?:sd|vd|hd|xvd)[a-z]+")  # disk names that end in letters: partitions are plain N


def disk_of(name: str, names=()) -> str:
    """The disk a kernel device name belongs to: partition_name() backwards. 'pmem0p1' -> 'pmem0', 'sdb2' ->
    'sdb'; a name ending in digits without 'p' is a whole disk (rbd0, md127, dm-3) unless the part before the
    digits is one of `names` (the other devices in the same report) or a letter-named disk (sdX, vdX, xvdX)."""
    m = _P_PART.fullmatch(name)
    if m:
        return m.group(1)
    m = _PLAIN_PART.fullmatch(name)
    if m and (m.group(1) in names or _LETTER_DISKS.fullmatch(m.group(1))):
        return m.group(1)
    return name


def choose_partition(table: PartitionTable, number: int | None,
                     looks_like_fs: Callable[[Partition], bool], what: str = "an XFS filesystem") -> Partition:
    """Partition `number`, or without one the single partition for which looks_like_fs() is true."""
    if number is not None:
        p = table.get(number)
        if p is not None:
            return p
        why = next((": it is an extended partition (a container of logical partitions)"
                    for e in table.extended if e.number == number), "")
        why = why or next((f": the kernel makes no partition of it ({reason})"
                           for q, reason in table.ignored if q.number == number), "")
        raise UsageError(f"no partition {number}{why}: {table.listing()}")
    found = []
    for p in table.partitions:
        try:
            if looks_like_fs(p):
                found.append(p)
        except FsdaxError:
            pass  # an unreadable partition holds nothing we can open
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no partition holds {what}: {table.listing()}; use --partition N")
    numbers = ", ".join(str(p.number) for p in found)
    raise UsageError(f"partitions {numbers} all hold {what}: use --partition N ({table.listing()})")


# --- the layer -----------------------------------------------------------------------------------------------

class PartitionLayer(Layer):
    """The whole disk (upper) to the chosen partition (lower). Bytes in other partitions go to their own
    spaces (which the stack reports as not under the filesystem); the table's own sectors and bytes in no
    partition are dropped with what they are."""

    kernel_call = "xfs_dax_translate_range (bt_dax_part_off)"

    def __init__(self, table: PartitionTable, partition: Partition, upper: Space, lower: Space,
                 disk: str | None = None):
        if partition not in table.partitions:
            raise UsageError(f"partition {partition.number} is not in the table: {table.listing()}")
        self.table, self.partition, self.disk = table, partition, disk
        self.upper, self.lower, self.name = upper, lower, "partition"
        self._build()

    def describe(self) -> str:
        p, ss = self.partition, self.table.sector_size
        s = (f"{self.name}: {p.scheme.upper()} partition {p.number} ({self.lower}) of {self.upper}: sectors "
             f"{p.start // ss}+{p.size // ss} of {ss} bytes = bytes {p.start}+{p.size}, type {p.type}")
        return s + (f", name {p.name!r}" if p.name else "")

    def space_of(self, p: Partition) -> Space:
        if p == self.partition:
            return self.lower
        return Space(BLOCK, partition_name(self.disk, p.number) if self.disk else f"partition {p.number}")

    def _build(self) -> None:
        """Cut the disk into segments, each covered by one set of partitions / table structures."""
        t = self.table
        items: list[tuple[int, int, str, object]] = [(p.start, p.end, "part", p) for p in t.partitions]
        items += [(s, s + n, "table", w) for s, n, w in t.reserved]
        items += [(e.start, e.end, "extended", e) for e in t.extended]
        items += [(p.start, p.end, "ignored", (p, why)) for p, why in t.ignored if p.size > 0]
        bounds = {0, t.size}
        starts: dict[int, list[int]] = {}
        ends: dict[int, list[int]] = {}
        for k, (s, e, _, _) in enumerate(items):
            s, e = max(0, s), min(e, t.size)
            if s < e:
                bounds.update((s, e))
                starts.setdefault(s, []).append(k)
                ends.setdefault(e, []).append(k)
        self._items = items
        self._starts: list[int] = []
        self._segs: list[tuple[int, int, frozenset]] = []
        active: set[int] = set()
        ordered = sorted(bounds)
        for a, b in zip(ordered, ordered[1:]):
            active.difference_update(ends.get(a, ()))
            active.update(starts.get(a, ()))
            cover = frozenset(active)
            if self._segs and self._segs[-1][2] == cover:
                self._segs[-1] = (self._segs[-1][0], b, cover)
            else:
                self._segs.append((a, b, cover))
        self._starts = [s for s, _, _ in self._segs]
        self._by_start = sorted(t.partitions, key=lambda p: p.start)

    def _gap_reason(self, a: int, b: int) -> str:
        t = self.table
        before = [p for p in self._by_start if p.end <= a]
        after = [p for p in self._by_start if p.start >= b]
        where = []
        if before:
            q = max(before, key=lambda p: p.end)
            where.append(f"after partition {q.number} (ends at byte {q.end})")
        if after:
            where.append(f"before partition {after[0].number} (starts at byte {after[0].start})")
        return f"in no partition of the {t.scheme.upper()} table" + (": " + ", ".join(where) if where else "")

    def _targets(self, a: int, b: int, cover: frozenset) -> list[tuple]:
        kinds: dict[str, list] = {}
        for k in sorted(cover):
            kinds.setdefault(self._items[k][2], []).append(self._items[k][3])
        out = [("hop", p) for p in sorted(kinds.get("part", ()), key=lambda p: p.number)]
        if "table" in kinds:
            out.append(("drop", "partition-table", "; ".join(kinds["table"]) + ": the partition table itself"))
        if not out:
            if "extended" in kinds:
                e = kinds["extended"][0]
                out.append(("drop", "unpartitioned", f"inside extended partition {e.number}, in no logical "
                            "partition"))
            elif "ignored" in kinds:
                p, why = kinds["ignored"][0]
                out.append(("drop", "unpartitioned", f"in the range of partition {p.number}, which the kernel makes "
                            f"no partition of ({why})"))
            else:
                out.append(("drop", "unpartitioned", self._gap_reason(a, b)))
        return out

    def map(self, offset: int, length: int) -> list[Hop | Dropped]:
        end = offset + length
        size = self.table.size
        pieces: list[list] = []  # [a, b, target], contiguous pieces of one target merged
        last: dict[tuple, list] = {}
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(self._segs) and self._segs[i][0] < end:
            s, e, cover = self._segs[i]
            a, b = max(s, offset), min(e, end)
            if a < b:
                for target in self._targets(s, e, cover):
                    prev = last.get(target)
                    if prev is not None and prev[1] == a:
                        prev[1] = b
                    else:
                        last[target] = piece = [a, b, target]
                        pieces.append(piece)
            i += 1
        out: list[Hop | Dropped] = []
        ss = self.table.sector_size
        for a, b, target in sorted(pieces, key=lambda x: (x[0], x[2][0] != "hop")):
            if target[0] == "hop":
                p = target[1]
                space = self.space_of(p)
                out.append(self.hop(a - p.start, b - a, f"byte {a} - partition {p.number} start {p.start} (sector "
                                    f"{p.start // ss}) = byte {a - p.start} of {space}", space=space))
            else:
                out.append(self.drop(a, b - a, target[1], target[2]))
        if end > size:
            s = max(offset, size)
            out.append(self.drop(s, end - s, "outside-device", f"past the end of the disk ({size} bytes)"))
        return out
