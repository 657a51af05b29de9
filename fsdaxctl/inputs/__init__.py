"""Inputs: the error reports people actually have, turned into byte extents in a named space.

One module per source format; each is a pure function of the text or bytes it is given (the command opens the
files), returning a Parsed. Forensic input is damaged by definition: a line that cannot be used is counted in
`skipped` with its line number and why, never fatal; only a source with nothing usable in it is an error.

This module: Parsed (what a source gave), InodeRef, pfn_extent and phys_extent. The formats: inputs.badblocks,
inputs.ndctl, inputs.ddrescue, inputs.kmsg; inputs.load picks the parser for a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.errors import UsageError
from fsdaxctl.stack import PHYS, Extent, Space
from fsdaxctl.units import PAGE_SHIFT  # a pfn counts the running kernel's pages

__all__ = ["InodeRef", "Parsed", "pfn_extent", "phys_extent"]


@dataclass(frozen=True, slots=True)
class InodeRef:
    """An inode named by a report (an XFS inode verifier error, --inode): the filesystem stage finds its bytes."""

    ino: int
    origin: str
    note: str = ""
    source: str = field(default="", compare=False)  # as Extent's: the input and line it came from
    line: int = field(default=0, compare=False)


@dataclass
class Parsed:
    extents: list[Extent] = field(default_factory=list)
    inodes: list[InodeRef] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why): 'dmesg.txt line 7', 'not hex'
    ignored: int = 0  # lines that are not error reports at all (kernel logs are mostly other things)
    notes: list[str] = field(default_factory=list)  # said once to the user (an empty list, ...)

    def extend(self, other: "Parsed") -> "Parsed":
        self.extents += other.extents
        self.inodes += other.inodes
        self.skipped += other.skipped
        self.ignored += other.ignored
        self.notes += other.notes
        return self


def pfn_extent(pfn: int, origin: str) -> Extent:
    """The page a page frame number names ('Memory failure: 0x...', --pfn)."""
    if pfn >= 1 << (64 - PAGE_SHIFT):
        raise UsageError(f"{origin} {pfn:#x}: not a page frame number (past 2^{64 - PAGE_SHIFT})")
    addr = pfn << PAGE_SHIFT
    return Extent(Space(PHYS), addr, 1 << PAGE_SHIFT, origin, f"pfn {pfn:#x} << {PAGE_SHIFT} = physical address "
                                                              f"{addr:#x}")


def phys_extent(addr: int, origin: str, length: int | None = None) -> Extent:
    """A physical address: its whole page (what memory_failure poisons), or `length` bytes from it."""
    if length is not None:
        return Extent(Space(PHYS), addr, length, origin, f"physical address {addr:#x}")
    page = addr >> PAGE_SHIFT << PAGE_SHIFT
    return Extent(Space(PHYS), page, 1 << PAGE_SHIFT, origin,
                  f"physical address {addr:#x}: its page {page:#x} (pfn {addr >> PAGE_SHIFT:#x})")
