"""Every XFS unit conversion, in one place.

Units (xfs_format.h, xfs_fs.h):
  byte     offset on the data device
  daddr    byte >> 9, always 512-byte units whatever the sector size (BBSHIFT: fsdaxctl.units.SECTOR)
  linear   byte >> blocklog: block number counted straight through the device
  agno/agbno   linear = agno * agblocks + agbno (division: agblocks need not be a power of two)
  fsblock  segmented: agno << agblklog | agbno (bmbt, sb_logstart). Never multiply it by the block size.
  ino      agno << (agblklog + inopblog) | agbno << inopblog | slot
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdaxctl.units import SECTOR_SHIFT

BBSHIFT = SECTOR_SHIFT  # XFS's basic block is the kernel's 512-byte sector


@dataclass(frozen=True)
class Geometry:
    blocksize: int
    blocklog: int
    sectsize: int
    agblocks: int
    agblklog: int
    agcount: int
    dblocks: int
    inodesize: int
    inopblog: int
    dirblklog: int = 0
    internal_rt: tuple[int, int] | None = None  # [start, end) bytes of a zoned realtime section on this device

    @classmethod
    def from_sb(cls, sb) -> "Geometry":
        return cls(
            blocksize=sb.sb_blocksize, blocklog=sb.sb_blocklog, sectsize=sb.sb_sectsize,
            agblocks=sb.sb_agblocks, agblklog=sb.sb_agblklog, agcount=sb.sb_agcount, dblocks=sb.sb_dblocks,
            inodesize=sb.sb_inodesize, inopblog=sb.sb_inopblog, dirblklog=sb.sb_dirblklog,
            internal_rt=((sb.sb_rtstart << sb.sb_blocklog, (sb.sb_rtstart + sb.sb_rblocks) << sb.sb_blocklog)
                         if getattr(sb, "sb_rtstart", 0) else None),
        )

    def beyond(self, start: int, end: int) -> list:
        """The pieces of bytes [start, end) past the data section: `outside-filesystem` (an internal realtime
        section's bytes are answered before they get here, by fsdaxctl.xfs.devices.DataDeviceMap)."""
        from fsdaxctl.xfs.piece import OUTSIDE, Piece

        return [Piece(start, end - start, OUTSIDE)] if end > start else []

    # --- sizes ---
    @property
    def size(self) -> int:
        """Bytes the filesystem covers on its data device."""
        return self.dblocks << self.blocklog

    def ag_length(self, agno: int) -> int:
        """Blocks in AG agno: the last AG may be short."""
        if agno == self.agcount - 1:
            return self.dblocks - agno * self.agblocks
        return self.agblocks

    # --- bytes, daddrs, linear blocks ---
    @staticmethod
    def byte_to_daddr(b: int) -> int:
        return b >> BBSHIFT

    @staticmethod
    def daddr_to_byte(d: int) -> int:
        return d << BBSHIFT

    def byte_to_lin(self, b: int) -> int:
        return b >> self.blocklog

    def lin_to_ag(self, lin: int) -> tuple[int, int]:
        return divmod(lin, self.agblocks)

    def ag_to_byte(self, agno: int, agbno: int) -> int:
        return (agno * self.agblocks + agbno) << self.blocklog

    def ag_to_daddr(self, agno: int, agbno: int) -> int:
        return ((agno * self.agblocks + agbno) << self.blocklog) >> BBSHIFT

    def byte_to_ag(self, b: int) -> tuple[int, int]:
        return divmod(b >> self.blocklog, self.agblocks)

    def agnos_touched(self, ranges) -> set[int]:
        """The AGs that (offset, length) byte ranges reach inside the filesystem."""
        out: set[int] = set()
        for off, length in ranges:
            if off < self.size:
                first, _ = self.byte_to_ag(off)
                last, _ = self.byte_to_ag(min(off + length, self.size) - 1)
                out.update(range(first, last + 1))
        return out

    # --- segmented fsblocks ---
    def fsb_to_ag(self, fsb: int) -> tuple[int, int]:
        return fsb >> self.agblklog, fsb & ((1 << self.agblklog) - 1)

    def ag_to_fsb(self, agno: int, agbno: int) -> int:
        return (agno << self.agblklog) | agbno

    def fsb_to_byte(self, fsb: int) -> int:
        agno, agbno = self.fsb_to_ag(fsb)
        return self.ag_to_byte(agno, agbno)

    def fsb_to_daddr(self, fsb: int) -> int:
        return self.fsb_to_byte(fsb) >> BBSHIFT

    def fsb_is_valid(self, fsb: int) -> bool:
        agno, agbno = self.fsb_to_ag(fsb)
        return agno < self.agcount and agbno < self.ag_length(agno)

    # --- AG header sectors: sb, agf, agi, agfl at sectors 0..3 of every AG ---
    def ag_header_byte(self, agno: int, sector: int) -> int:
        return self.ag_to_byte(agno, 0) + sector * self.sectsize

    # --- inode numbers ---
    def ino_to_ag(self, ino: int) -> tuple[int, int, int]:
        """(agno, agbno, slot): where the on-disk inode lives."""
        agino_bits = self.agblklog + self.inopblog
        agno = ino >> agino_bits
        agino = ino & ((1 << agino_bits) - 1)
        return agno, agino >> self.inopblog, agino & ((1 << self.inopblog) - 1)

    def ag_to_ino(self, agno: int, agbno: int, slot: int = 0) -> int:
        return (agno << (self.agblklog + self.inopblog)) | (agbno << self.inopblog) | slot

    def ino_to_byte(self, ino: int) -> int:
        agno, agbno, slot = self.ino_to_ag(ino)
        return self.ag_to_byte(agno, agbno) + (slot << (self.blocklog - self.inopblog))
