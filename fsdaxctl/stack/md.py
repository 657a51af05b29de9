"""md RAID arrays (linear, raid0, raid1) as offset maps from member devices to the array.

Layouts as drivers/md does them: every member's data starts at its data offset (`dev-X/offset`, sectors);
raid0 puts chunk c of the array on member c % n at chunk c // n (one strip zone: members of equal size;
raid0.c create_strip_zones makes more zones for unequal members, which is refused rather than guessed);
linear concatenates members in slot order, each rounded down to whole chunks (md-linear.c); raid1 keeps the
same bytes on every member, so a bad sector on one is recoverable from the others unless all are bad there.

An array comes from sysfs (fsdaxctl.discovery.md reads /sys/block/mdX/md/) or from a spec on the command
line: `md0 raid0 chunk=512k sdb1@1m sdc1@1m`, each member `NAME[@DATA_OFFSET][+SIZE]` in slot order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from fsdaxctl.errors import UnsupportedError, UsageError
from fsdaxctl.stack import BLOCK, Dropped, Hop, Layer, Route, Space
from fsdaxctl.units import SECTOR, parse_size

LEVELS = ("linear", "raid0", "raid1")


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    slot: int
    data_offset: int  # bytes
    size: int | None  # bytes of data on this member (None: unknown, fine for raid0/raid1)


@dataclass(frozen=True)
class MdArray:
    name: str
    level: str
    chunk: int  # bytes; 0 for raid1
    members: tuple[Member, ...]

    def describe(self) -> str:
        ms = ", ".join(f"{m.name} (slot {m.slot}, data at byte {m.data_offset})" for m in self.members)
        chunk = f", chunk {self.chunk} bytes" if self.chunk else ""
        return f"md {self.name}: {self.level}{chunk} over {ms}"


def parse_md_spec(text: str) -> MdArray:
    """`md0 raid0 chunk=512k sdb1@1m sdc1@1m` (members in slot order)."""
    where = f"--md {text!r}"
    tokens = text.split()
    if len(tokens) < 3:
        raise UsageError(f"{where}: expected 'NAME LEVEL [chunk=SIZE] MEMBER[@OFFSET][+SIZE]...'")
    name, level, rest = tokens[0], tokens[1], tokens[2:]
    chunk = 0
    members = []
    for tok in rest:
        if tok.startswith("chunk="):
            chunk = parse_size(tok[6:], f"{where}: chunk")
            continue
        size = None
        if "+" in tok:
            tok, size_text = tok.split("+", 1)
            size = parse_size(size_text, f"{where}: size of {tok}")
        member, _, off = tok.partition("@")
        if not member or "/" in member:
            raise UsageError(f"{where}: a member needs a device name, found {tok!r}")
        members.append(Member(member, len(members), parse_size(off, f"{where}: data offset of {member}")
                              if off else 0, size))
    return checked(MdArray(name, level, chunk, tuple(members)), where)


def checked(md: MdArray, where: str) -> MdArray:
    """`md` if this module can map it, else the UsageError or UnsupportedError saying why (`where`: its source)."""
    if md.level not in LEVELS:
        raise UnsupportedError(f"{where}: md level {md.level!r} is not followed (linear, raid0 and raid1 are)")
    if not md.members:
        raise UsageError(f"{where}: no active members")
    if md.level in ("raid0",) and (md.chunk <= 0 or md.chunk % SECTOR):
        raise UsageError(f"{where}: raid0 needs chunk=SIZE, a multiple of 512 bytes")
    if md.chunk % SECTOR:
        raise UsageError(f"{where}: chunk {md.chunk} is not a multiple of 512 bytes")
    if len({m.name for m in md.members}) != len(md.members):
        raise UsageError(f"{where}: a member is listed twice")
    if any(m.name == md.name for m in md.members):
        raise UsageError(f"{where}: {md.name} cannot be a member of itself")
    small = [m.name for m in md.members if m.size is not None and md.chunk and m.size < md.chunk]
    if small:
        raise UsageError(f"{where}: {', '.join(small)} smaller than one chunk: holds no array data")
    if md.level == "raid0":
        sizes = {m.size // md.chunk * md.chunk for m in md.members if m.size is not None}
        if len(sizes) > 1:
            raise UnsupportedError(f"{where}: raid0 over members of unequal size has several strip zones "
                                   "(raid0.c create_strip_zones): not followed")
    if md.level == "linear" and any(m.size is None for m in md.members[:-1]):
        raise UsageError(f"{where}: linear needs every member's size but the last (MEMBER+SIZE)")
    return md


class MdLayer(Layer):
    """One member's bytes -> the array's bytes."""

    kernel_call = "md map"

    def __init__(self, md: MdArray, member: Member):
        self.md, self.member = md, member
        self.upper, self.lower = Space(BLOCK, member.name), Space(BLOCK, md.name)
        self.name = f"md {md.name} ({md.level})"

    def describe(self) -> str:
        return self.md.describe() if self.member.slot == 0 else f"{self.name}: member {self.member.name}"

    def map(self, offset, length):
        m, md = self.member, self.md
        out: list[Hop | Dropped] = []
        end = offset + length
        if offset < m.data_offset:
            out.append(self.drop(offset, min(end, m.data_offset) - offset, "md-metadata",
                                 f"before the data offset of {m.name} ({m.data_offset} bytes): md superblock, "
                                 "bitmap or reserved space"))
            offset = m.data_offset
        data_end = m.data_offset + m.size if m.size is not None else None
        if md.level == "linear" and md.chunk and m.size is not None:
            data_end = m.data_offset + m.size // md.chunk * md.chunk
        if data_end is not None and end > data_end:
            if offset < data_end:
                out += self._map(offset, data_end)
            s = max(offset, data_end)
            out.append(self.drop(s, end - s, "unmapped", f"past the data {m.name} contributes to {md.name}"))
            return out
        if offset < end:
            out += self._map(offset, end)
        return out

    def _map(self, a, b):
        m, md = self.member, self.md
        rel = a - m.data_offset
        if md.level == "raid1":
            others = ", ".join(x.name for x in md.members if x is not m) or "no other member"
            return [self.hop(rel, b - a, f"byte {a} - data offset {m.data_offset} = byte {rel} of {md.name}",
                             recoverable=f"raid1: {others} hold(s) a copy of these bytes")]
        if md.level == "linear":
            before = 0
            for x in md.members[:m.slot]:
                before += x.size // md.chunk * md.chunk if md.chunk else x.size
            return [self.hop(before + rel, b - a, f"byte {a} - data offset {m.data_offset} + {before} bytes of the "
                                                  f"members before it = byte {before + rel} of {md.name}")]
        # raid0, one zone: member chunk k holds array chunk k * n + slot (raid0.c map_sector).
        n, chunk = len(md.members), md.chunk
        out = []
        pos = a
        while pos < b:
            r = pos - m.data_offset
            k, within = divmod(r, chunk)
            take = min(b - pos, chunk - within)
            off = (k * n + m.slot) * chunk + within
            out.append(self.hop(off, take, f"byte {pos} - data offset {m.data_offset} = {r}: member chunk {k} + "
                                           f"{within}; array chunk {k} * {n} + slot {m.slot} = {k * n + m.slot}, "
                                           f"byte {off} of {md.name}"))
            pos += take
        return out


def md_layers(md: MdArray) -> list[Layer]:
    return [MdLayer(md, m) for m in md.members]


def settle_mirrors(routes: list[Route], arrays: dict[str, MdArray]) -> list[str]:
    """raid1 bytes bad on every member have no good copy: clear `recoverable` on those paths.

    Conservative: a piece counts as lost when every other member has bad bytes overlapping it. Returns at most
    20 lines naming such pieces (what the admin must restore), then how many more."""
    bad, hits = _mirror_hits(routes, arrays)
    overlaps = _overlap_test(bad)
    lost = []
    for path, i in hits:
        h = path[i]
        lo, hi = h.offset, h.offset + h.length
        members = arrays[h.space.name].members
        if all(overlaps((h.space.name, m.name), lo, hi) for m in members):
            path[i] = Hop(h.layer, h.space, h.offset, h.length, h.arithmetic + " (bad on every mirror)", "")
            common = [(lo, hi)]  # the bytes bad on every member: what no mirror can give back
            for m in members:
                theirs = _bad_within(bad, (h.space.name, m.name), lo, hi)
                common = [(max(a, c), min(b, d)) for a, b in common for c, d in theirs if max(a, c) < min(b, d)]
            lost += [(h.space.name, a, b) for a, b in common]
    lost = sorted(set(lost))
    lines = [f"{a} bytes {lo}..{hi - 1}: bad on every raid1 member, no good copy" for a, lo, hi in lost[:20]]
    if len(lost) > 20:
        lines.append(f"... and {len(lost) - 20} more ranges bad on every raid1 member")
    return lines


def _mirror_hits(routes: list[Route], arrays: dict[str, MdArray]):
    """({(array, member): array byte ranges bad there}, [(path, index of its recoverable raid1 hop)])."""
    bad: dict[tuple[str, str], list[tuple[int, int]]] = {}
    hits = []
    for route in routes:
        for path in route.paths:
            for i, h in enumerate(path):
                if isinstance(h, Hop) and h.recoverable and h.space.name in arrays:
                    member = path[i - 1].space.name
                    bad.setdefault((h.space.name, member), []).append((h.offset, h.offset + h.length))
                    hits.append((path, i))
    return bad, hits


def _overlap_test(bad: dict[tuple[str, str], list[tuple[int, int]]]):
    """overlaps(key, lo, hi): does member `key` have bad bytes in [lo, hi)? Sorts each member's ranges."""
    index = {}
    for key, ranges in bad.items():  # sorted starts and a running maximum of ends: one bisect per question
        ranges.sort()
        ends, top = [], 0
        for _, b in ranges:
            top = max(top, b)
            ends.append(top)
        index[key] = ([a for a, _ in ranges], ends)

    def overlaps(key, lo, hi) -> bool:
        if key not in index:
            return False
        starts, ends = index[key]
        k = bisect.bisect_left(starts, hi)  # ranges starting before hi
        return k > 0 and ends[k - 1] > lo
    return overlaps


def _bad_within(bad, key, lo, hi) -> list[tuple[int, int]]:
    """Member `key`'s bad array bytes clipped to [lo, hi), merged."""
    out = []
    for a, b in sorted(bad.get(key, ())):
        a, b = max(a, lo), min(b, hi)
        if a < b:
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
    return out
