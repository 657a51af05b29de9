"""`--file PATH` on a mounted filesystem: the machine's path (or one from the filesystem root), mapped by the
running kernel's FIEMAP, so the answer is where the file's bytes are now."""

from __future__ import annotations

import os

from fsdaxctl.errors import UsageError
from fsdaxctl.live.fsmap import FIEMAP_EXTENT_UNKNOWN, FIEMAP_EXTENT_UNWRITTEN, fiemap
from fsdaxctl.stack import FS, Extent, Space

FS_SPACE = Space(FS)


def machine_path(mount_point: str, path: str) -> str:
    """PATH as given if it is a file on this mount (the machine's path), else PATH from the filesystem root."""
    dev = os.stat(mount_point).st_dev
    for cand in (path, os.path.join(mount_point, path.lstrip("/"))):
        try:
            if os.path.isabs(cand) and os.lstat(cand).st_dev == dev:
                return cand
        except OSError:
            continue
    raise UsageError(f"--file {path}: no such file on the filesystem mounted at {mount_point} (as a path of this "
                     "machine or from the filesystem's root)")


def file_extents(mount_point: str, path: str, file_offset: int, length: int) -> tuple[list[Extent], list[str]]:
    """Device bytes of PATH's bytes [file_offset, file_offset + length), one extent per mapping, and notes for
    holes and delayed allocations (no device bytes yet: nothing there to damage)."""
    real = machine_path(mount_point, path)
    end = file_offset + length
    out, notes, pos = [], [], file_offset
    for e in fiemap(real):
        lo, hi = e.logical, e.logical + e.length
        if hi <= pos or lo >= end:
            continue
        if lo > pos:
            notes.append(f"{real} bytes {pos}..{lo - 1} are a hole: no device bytes")
        a, b = max(pos, lo), min(end, hi)
        if e.flags & FIEMAP_EXTENT_UNKNOWN:
            notes.append(f"{real} bytes {a}..{b - 1} are not on disk yet (delayed allocation): no device bytes")
        else:
            byte = e.physical + (a - lo)
            state = " unwritten" if e.flags & FIEMAP_EXTENT_UNWRITTEN else ""
            out.append(Extent(FS_SPACE, byte, b - a, f"--file {real}",
                              f"the kernel's FIEMAP: file bytes {a}..{b - 1}{state} at byte {byte}"))
        pos = b
    if pos < end:
        notes.append(f"{real} bytes {pos}..{end - 1} are a hole or past the last extent: no device bytes")
    return out, notes
