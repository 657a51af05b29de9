"""Bad-block lists: the kernel's sysfs `badblocks` files and e2fsprogs `badblocks -o` output.

Also the line helpers the other text parsers share (numbered, decoded lines; the "nothing usable" rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import Parsed
from fsdaxctl.stack import BLOCK, REGION, Extent, Space
from fsdaxctl.units import MAX_BYTES, PAGE_SIZE, SECTOR

_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as os.fsdecode/surrogateescape keeps them
_DECIMAL = re.compile(r"\d{1,40}")  # longer is no sector number (2^64 has 20 digits), and int() would refuse it


def numbered_lines(lines: Iterable[str | bytes], name: str, parsed: Parsed, *,
                   strict_text: bool = True) -> Iterator[tuple[int, str, bool]]:
    """(line number from 1, text without its line end, whether the line ended in a newline).

    Bytes are decoded as UTF-8; a line that is not UTF-8 (or, for str input, carries surrogate escapes of such
    bytes) is counted in `skipped` and not yielded when `strict_text`, else yielded escaped (a kernel log may
    hold any bytes in an unrelated message)."""
    if isinstance(lines, (str, bytes, bytearray)):  # a whole text, not its lines
        lines = lines.splitlines(keepends=True)
    for n, line in enumerate(lines, 1):
        if isinstance(line, (bytes, bytearray, memoryview)):
            try:
                line = bytes(line).decode("utf-8")
            except UnicodeDecodeError:
                if strict_text:
                    parsed.skipped.append((f"{name} line {n}", "not UTF-8 text"))
                    continue
                line = bytes(line).decode("utf-8", "surrogateescape")
        elif strict_text and _SURROGATE.search(line):
            parsed.skipped.append((f"{name} line {n}", "not UTF-8 text"))
            continue
        ended = line.endswith("\n")
        yield n, line.rstrip("\r\n"), ended


def finish(parsed: Parsed, name: str, understood: int) -> Parsed:
    """The one fatal case: a source with something in it, none of which could be used."""
    if not parsed.extents and not parsed.inodes and not understood and parsed.skipped:
        where, why = parsed.skipped[0]
        n = len(parsed.skipped)
        raise UsageError(f"{name}: no usable entries ({n} line{'s' if n != 1 else ''} skipped; "
                         f"first: {where}: {why})")
    return parsed


def byte_range(start: int, count: int, unit: int) -> tuple[int, int] | str:
    """(offset, length) in bytes of `count` units from unit `start`, or why not."""
    if count == 0:
        return "zero length"
    offset, length = start * unit, count * unit
    if offset + length > MAX_BYTES:
        return f"past the largest device offset (2^63 - 1 bytes): {start} + {count} units of {unit} bytes"
    return offset, length


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _bad_number(text: str) -> str:
    """Why `text` is not a decimal number, in the words a person checking the file would use."""
    if text.startswith("-") and _DECIMAL.fullmatch(text[1:]):
        return f"negative: {text}"
    if text[:2].lower() == "0x":
        return f"hex {text[:40]!r}: the kernel and badblocks print decimal"
    if text.isdigit():
        return f"number too large: {text[:20]}... ({len(text)} digits)"
    return f"not a decimal number: {text[:40]!r}"


# --- sysfs -------------------------------------------------------------------------------------------------------

# badblocks_show() writes into one page (PAGE_SIZE); sysfs returns at most PAGE_SIZE - 1 bytes of it.

# .../block/<disk>/badblocks (/sys/block, /sys/class/block, the devices tree), .../<regionN>/badblocks under
# /sys/bus/nd/devices or an ndbus directory (the nfit_test platform paths). Matched on trailing components so a
# copied tree (/evidence/sys/block/pmem0/badblocks) works too.
_SYSFS_BLOCK = re.compile(r"(?:^|/)block/(?P<disk>[^/]+)/badblocks/*$")
_SYSFS_REGION = re.compile(r"(?:^|/)(?:devices|ndbus\d+)/(?P<region>region\d+)/badblocks/*$")


def space_for_sysfs_path(path: str) -> Space | None:
    """The space a sysfs badblocks file counts from, from its path; None for any other path.

    /sys/block/pmem0/badblocks -> the block device pmem0 (for fsdax, from the start of the data area);
    /sys/bus/nd/devices/region0/badblocks -> the nd region region0 (from regionN/resource)."""
    m = _SYSFS_BLOCK.search(path)
    if m:
        return Space(BLOCK, m["disk"])
    m = _SYSFS_REGION.search(path)
    if m:
        return Space(REGION, m["region"])
    return None


def parse_sysfs_badblocks(lines: Iterable[str | bytes], name: str, space: Space) -> Parsed:
    """A sysfs `badblocks` file: "%llu %u\\n" per entry, first 512-byte sector and count (block/badblocks.c
    badblocks_show). An empty file, or the single "\\n" of a disk without a list (block/genhd.c
    disk_badblocks_show), means no bad blocks."""
    out = Parsed()
    good = 0
    total = 0  # bytes as sysfs returned them, counting a newline after every line
    last: tuple[int, str, bool] | None = None
    for n, text, ended in numbered_lines(lines, name, out):
        total += len(text.encode("utf-8", "surrogateescape")) + 1
        last = (n, text, ended)
        body = text.split("#", 1)[0]  # not in the kernel's output, but hand-kept copies carry notes
        fields = body.split()
        where = f"{name} line {n}"
        if not fields:
            continue
        if len(fields) != 2:
            why = (f"truncated: one field {fields[0]!r}, expected 'sector count'" if len(fields) == 1
                   else f"{len(fields)} fields, expected 2 (sector count)")
            out.skipped.append((where, why))
            continue
        bad = next((f for f in fields if not _DECIMAL.fullmatch(f)), None)
        if bad is not None:
            out.skipped.append((where, _bad_number(bad)))
            continue
        sector, count = int(fields[0]), int(fields[1])
        r = byte_range(sector, count, SECTOR)
        if isinstance(r, str):
            out.skipped.append((where, r))
            continue
        good += 1
        out.extents.append(Extent(space, r[0], r[1], where, f"sector {sector}, {_plural(count, 'sector')}",
                                  name, n))
    # A list longer than a page is cut at PAGE_SIZE - 1 bytes, mid-entry and without a newline: the last
    # entry may be a fragment, and entries after it are not shown at all.
    if last is not None and total == PAGE_SIZE and not last[2]:
        n = last[0]
        where = f"{name} line {n}"
        if out.extents and out.extents[-1].origin == where:
            out.extents.pop()
            good -= 1
        out.skipped = [s for s in out.skipped if s[0] != where]
        out.skipped.append((where, f"cut off at the sysfs page size ({PAGE_SIZE - 1} bytes): this entry may be "
                                   "partial and later entries are missing; ndctl list --media-errors shows all"))
    return finish(out, name, good)


# --- e2fsprogs badblocks ----------------------------------------------------------------------------------------

def parse_e2fs_badblocks(lines: Iterable[str | bytes], name: str, block_size: int, space: Space) -> Parsed:
    """Output of e2fsprogs `badblocks [-b SIZE] -o FILE` (or its stdout): one block number a line, "%lu\\n",
    in units of the -b block size (default 1024), never a range (misc/badblocks.c bb_output). No output
    means no bad blocks. One extent per line; nothing is merged."""
    if not isinstance(block_size, int) or block_size < 512 or block_size & (block_size - 1):
        raise UsageError(f"block size for {name}: {block_size!r} is not a power of two of at least 512 "
                         "(give the -b size badblocks was run with; its default is 1024)")
    out = Parsed()
    good = 0
    for n, text, _ in numbered_lines(lines, name, out):
        fields = text.split("#", 1)[0].split()
        where = f"{name} line {n}"
        if not fields:
            continue
        if len(fields) != 1:
            out.skipped.append((where, f"{len(fields)} fields, expected one block number"))
            continue
        if not _DECIMAL.fullmatch(fields[0]):
            out.skipped.append((where, _bad_number(fields[0])))
            continue
        block = int(fields[0])
        r = byte_range(block, 1, block_size)
        if isinstance(r, str):
            out.skipped.append((where, r))
            continue
        good += 1
        out.extents.append(Extent(space, r[0], r[1], where, f"block {block} of {block_size} bytes", name, n))
    return finish(out, name, good)
