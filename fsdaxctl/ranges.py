"""Query ranges from the command line or a ranges file (`OFFSET LENGTH` a line, `#` comments)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.errors import UsageError
from fsdaxctl.units import MAX_BYTES, parse_size

DEVICE_NAMES = ("data", "log", "rt")  # the filesystem's devices a ranges file's line may name


@dataclass(frozen=True, slots=True)
class Range:
    offset: int
    length: int
    where: str = "--offset/--length"  # for messages: the option or "FILE line N"
    source: str = field(default="", compare=False)  # FILE and N of a ranges file's line (input order)
    line: int = field(default=0, compare=False)
    device: str = ""  # a ranges file's line may name the filesystem device its bytes are on: data, log, rt

    @property
    def end(self) -> int:
        return self.offset + self.length


def make_range(offset: int, length: int, where: str, source: str = "", line: int = 0) -> Range:
    if length <= 0:
        raise UsageError(f"{where}: the length must be positive, not {length}")
    if offset < 0:
        raise UsageError(f"{where}: the offset must not be negative")
    if offset + length > MAX_BYTES:
        raise UsageError(f"{where}: the range ends past 2^63 - 1 bytes")
    return Range(offset, length, where, source, line)


def parse_ranges(lines, name: str, block=None) -> list[Range]:
    """Parse a ranges file. Every problem is a UsageError naming the file and line; nothing is guessed.
    `block`: the filesystem block size for the `b` suffix (see units.parse_size)."""
    return list(iter_ranges(lines, name, block))


def iter_ranges(lines, name: str, block=None):
    """The ranges of a ranges file one at a time, as it is read (a million-line list streams in bounded
    memory); the first bad line raises its UsageError when it is reached, an empty file at its end."""
    seen = False
    for n, raw in enumerate(lines, 1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{name} line {n}: not text") from None
        fields = raw.split()
        # 'OFFSET LENGTH' in bytes: isdecimal() is parse_size's \d, so only its own limit is left to check
        if len(fields) == 2 and fields[0].isdecimal() and fields[1].isdecimal():
            offset, length = int(fields[0]), int(fields[1])
            if offset <= MAX_BYTES and length <= MAX_BYTES:  # else the full parse says which is too big
                seen = True
                yield make_range(offset, length, f"{name} line {n}", name, n)
                continue
        r = _parse_line(raw, name, n, block)
        if r is not None:
            seen = True
            yield r
    if not seen:
        raise UsageError(f"{name}: no ranges in it")


def _parse_line(raw: str, name: str, n: int, block) -> Range | None:
    """One line of a ranges file in full (units, a device name, a comment), or None when it holds none."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    fields = line.split()
    where = f"{name} line {n}"
    device = fields.pop(0) if len(fields) == 3 and fields[0] in DEVICE_NAMES else ""
    if len(fields) != 2:
        raise UsageError(f"{where}: expected 'OFFSET LENGTH' (or 'DEVICE OFFSET LENGTH', DEVICE data, log or "
                         f"rt), found {len(fields) + bool(device)} field(s): {line[:60]!r}")
    r = make_range(parse_size(fields[0], f"{where}: offset", block),
                   parse_size(fields[1], f"{where}: length", block), where, name, n)
    return Range(r.offset, r.length, r.where, r.source, r.line, device)


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """(offset, length) pairs sorted, with overlapping and touching ones joined: the same damage listed twice,
    or in pieces, is one range."""
    out: list[tuple[int, int]] = []
    for o, n in sorted(ranges):
        if out and o <= out[-1][0] + out[-1][1]:
            po, pn = out[-1]
            out[-1] = (po, max(pn, o + n - po))
        else:
            out.append((o, n))
    return out


def merge_spans(spans) -> list[tuple[int, int]]:
    """(start, end) pairs sorted, with overlapping and touching ones joined."""
    return [(o, o + n) for o, n in merge_ranges((s, e - s) for s, e in spans)]
