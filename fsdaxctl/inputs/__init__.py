"""Inputs: the error reports people actually have, turned into byte extents in a named space.

One module per source format; each is a pure function of the text or bytes it is given (the command opens the
files), returning a Parsed. Forensic input is damaged by definition: a line that cannot be used is counted in
`skipped` with its line number and why, never fatal; only a source with nothing usable in it is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.stack import Extent


@dataclass(frozen=True, slots=True)
class InodeRef:
    """An inode named by a report (an XFS inode verifier error, --inode): the filesystem stage finds its bytes."""

    ino: int
    origin: str
    note: str = ""


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
