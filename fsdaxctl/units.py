"""Byte sizes as people write them, and as tables show them. The one place for size suffixes.

The suffixes are xfsprogs' `cvtnum` (libfrog/convert.c), which admins already type into `xfs_io`: one letter,
either case, after a decimal or 0x-hex number: `b` one filesystem block, `s` a 512-byte sector, `k m g t p e`
binary multiples; no suffix is bytes. Two differences, both documented in README.md "Conventions": `s` is always
512 bytes (the kernel's sector, the unit of every badblocks list; xfs_io uses the filesystem's sector size), and
`KiB`, `kb`, ... are accepted too. A leading 0 is not octal (cvtnum's strtoll would read 010 as 8).

Filesystem units (daddr, fsblock, agbno, inode numbers) live in fsdaxctl.xfs.geometry.
"""

from __future__ import annotations

import re
from functools import lru_cache

from fsdaxctl.errors import UsageError

SECTOR = 512  # the kernel's sector (and XFS daddr) unit, whatever the device's sector size

_MULT = {
    "": 1, "s": SECTOR,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    "p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
    "e": 1 << 60, "eb": 1 << 60, "eib": 1 << 60,
}
BLOCK_SUFFIX = "b"  # cvtnum's 'b': one filesystem block, known only once the filesystem is open
# Binary multiples on purpose: media errors are reported in sectors and pages, never in SI units.
_SIZE_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+)\s*([a-zA-Z]*)\s*")

MAX_BYTES = (1 << 63) - 1  # offsets are signed 64-bit (loff_t) everywhere in the kernel


def parse_size(text: str, what: str = "size", block=None) -> int:
    """'4k' -> 4096, '512s' -> 262144, '0x1000' -> 4096, '8b' -> 8 filesystem blocks. Raises UsageError naming
    `what`. `block` is the filesystem block size (an int, or a callable that finds it, asked only when the
    suffix is `b`); None where no filesystem is known."""
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise UsageError(f"{what}: not a size: {text!r} (bytes, or with a suffix: 8b, 512s, 4k, 1m, 2g)")
    digits, suffix = m.groups()
    if suffix.lower() == BLOCK_SUFFIX:
        if block is None:
            raise UsageError(f"{what}: {text!r}: 'b' means filesystem blocks, and there is no filesystem here "
                             "(give bytes, or s for 512-byte sectors)")
        mult = block() if callable(block) else block
    else:
        mult = _MULT.get(suffix.lower())
    if mult is None:
        raise UsageError(f"{what}: unknown unit {suffix!r} in {text!r} (use b, s, k, m, g, t, p, e or KiB, MiB, ...)")
    value = int(digits, 16 if digits[:2].lower() == "0x" else 10) * mult
    if value > MAX_BYTES:
        raise UsageError(f"{what}: {text!r} is beyond the largest device offset (2^63 - 1 bytes)")
    return value


@lru_cache(maxsize=4096)  # a dump prints the same few extent lengths millions of times
def human(n: int) -> str:
    """4096 -> '4 KiB', 1536 -> '1.5 KiB', 100 -> '100 B'. Exact when it can be."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        n /= 1024
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
