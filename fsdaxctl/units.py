"""Byte sizes as people write them, and as tables show them. The one place for size suffixes.

The suffixes are xfsprogs' `cvtnum` (libfrog/convert.c), which admins already type into `xfs_io`: one letter,
either case, after a decimal or 0x-hex number: `b` one filesystem block, `s` a 512-byte sector, `k m g t p e`
binary multiples; no suffix is bytes. Two differences, both documented in README.md "Conventions": `s` is always
512 bytes (the kernel's sector, the unit of every badblocks list; xfs_io uses the filesystem's sector size), and
`KiB`, `kb`, ... are accepted too. A leading 0 is not octal (cvtnum's strtoll would read 010 as 8).

Filesystem units (daddr, fsblock, agbno, inode numbers) live in fsdaxctl.xfs.geometry.

The two hardware-ish units, defined here once and imported everywhere else:

- `SECTOR` (512, `SECTOR_SHIFT` 9): the kernel's sector_t unit, whatever the device's logical sector size. Every
  badblocks list counts in it, block-layer capacities count in it, and it is XFS's basic block (BBSIZE): a daddr
  is a byte offset >> 9 (fsdaxctl.xfs.geometry converts; BBSHIFT is SECTOR_SHIFT).
- `PAGE_SIZE` (`PAGE_SHIFT`): the running kernel's PAGE_SIZE, from sysconf(_SC_PAGE_SIZE): 4 KiB on x86-64, 4, 16
  or 64 KiB on arm64. It is the unit of everything the kernel counts in pages: a pfn (pfn << PAGE_SHIFT is the
  physical address), pgoff/pgcnt of a file range (mf_dax_kill_procs), vm_pgoff in /proc/PID/maps, a sysfs
  attribute's one-page buffer (badblocks), statm's page counts, the page size nd_pfn_validate() assumes for a
  pfn info block older than minor 4. A log or an image from another machine is read with this machine's page
  size: the tool runs where the damage is reported.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from fsdaxctl.errors import UsageError

SECTOR_SHIFT = 9
SECTOR = 1 << SECTOR_SHIFT  # the kernel's sector (and XFS daddr) unit, whatever the device's sector size

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # the running kernel's PAGE_SIZE (see above)
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

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
