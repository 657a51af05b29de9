"""Directory contents: every format (shortform, block, leaf, node, btree-mapped), names as bytes on disk.

Only the data blocks below XFS_DIR2_LEAF_OFFSET hold names; the leaf/node/free blocks above it are hash
indexes, never read here. A directory block is blocksize << dirblklog bytes and may span fs blocks that are
not contiguous on disk: each is mapped through the fork's extents.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import NamedTuple

from fsdaxctl.errors import CorruptError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.inode import BmbtIrec, Inode, bmap
from fsdaxctl.xfs.verify import check_crc, check_field, check_magic

S_IFMT, S_IFDIR = 0o170000, 0o040000


class DirEntry(NamedTuple):  # a tuple: a directory walk makes millions
    name: bytes
    ino: int
    ftype: int | None  # None without the FTYPE feature
    pos: int  # byte offset of the entry in the directory's logical space (data blocks), or -1 (shortform)


def is_dir(inode: Inode) -> bool:
    return inode.core.di_mode & S_IFMT == S_IFDIR


def read_dir(fs, inode: Inode) -> tuple[int | None, list[DirEntry]]:
    """(parent inode, entries other than '.' and '..') of a directory inode."""
    fmt, lit = inode.fork("data")
    if fmt == f.XFS_DINODE_FMT_LOCAL:
        return _shortform(fs, inode, lit)
    if fmt not in (f.XFS_DINODE_FMT_EXTENTS, f.XFS_DINODE_FMT_BTREE):
        raise CorruptError("directory data fork has an impossible format", structure=f"inode {inode.ino}",
                           found=fmt)
    parent, entries = None, []
    for block in DirBlocks(fs, inode).data_blocks():
        p, es = parse_data_block(fs, inode, block)
        parent = parent if p is None else p
        entries += es
    return parent, entries


def _shortform(fs, inode: Inode, lit: bytes) -> tuple[int, list[DirEntry]]:
    where = f"shortform directory in inode {inode.ino}"
    if len(lit) < 6:
        raise CorruptError("shortform directory header truncated", structure=where)
    hdr = f.XFS_DIR2_SF_HDR.parse(lit)
    isize = 8 if hdr.i8count else 4
    ftype = fs.has_ftype
    parent = int.from_bytes(lit[2:2 + isize], "big")
    pos = 2 + isize
    out = []
    for _ in range(hdr.count):
        if pos + 3 > len(lit):
            raise CorruptError("shortform directory entry past the fork", structure=where, found=f"byte {pos}")
        namelen = lit[pos]
        name = lit[pos + 3:pos + 3 + namelen]
        pos += 3 + namelen
        ft = None
        if ftype:
            ft = lit[pos] if pos < len(lit) else None
            pos += 1
        if namelen == 0 or len(name) != namelen or pos + isize > len(lit):
            raise CorruptError("shortform directory entry past the fork", structure=where, found=f"byte {pos}")
        out.append(DirEntry(name, int.from_bytes(lit[pos:pos + isize], "big"), ft, -1))
        pos += isize
    return parent, out


@dataclass(frozen=True, slots=True)
class DirBlock:
    dablk: int  # directory block number (in fs blocks, as the kernel's xfs_dablk_t)
    data: bytes
    daddr: int


class DirBlocks:
    """The directory blocks of one directory, mapped through its data fork."""

    def __init__(self, fs, inode: Inode):
        self.fs, self.inode = fs, inode
        self.extents: list[BmbtIrec] = bmap(fs, inode, "data")
        self._starts = [e.startoff for e in self.extents]
        self.fsbs_per_dirblk = 1 << fs.geo.dirblklog
        self.leaf_fsb = f.XFS_DIR2_LEAF_OFFSET >> fs.geo.blocklog

    def map_fsb(self, fileblock: int) -> int | None:
        """The fsblock holding file block `fileblock`, or None for a hole."""
        i = bisect.bisect_right(self._starts, fileblock) - 1
        if i < 0:
            return None
        e = self.extents[i]
        if fileblock >= e.startoff + e.blockcount:
            return None
        return e.startblock + (fileblock - e.startoff)

    def read(self, dablk: int) -> DirBlock | None:
        geo = self.fs.geo
        parts, first_daddr = [], None
        for k in range(self.fsbs_per_dirblk):
            fsb = self.map_fsb(dablk + k)
            if fsb is None:
                return None
            if not geo.fsb_is_valid(fsb):
                raise CorruptError("directory block outside the filesystem", structure=f"directory {self.inode.ino}",
                                   found=f"fsblock {fsb}")
            if first_daddr is None:
                first_daddr = geo.fsb_to_daddr(fsb)
            parts.append(self.fs.dev.pread(geo.fsb_to_byte(fsb), geo.blocksize, f"directory {self.inode.ino}"))
        return DirBlock(dablk, b"".join(parts), first_daddr)

    def data_blocks(self):
        """Every directory data block (below the hash index), in file order."""
        step = self.fsbs_per_dirblk
        seen = set()
        for e in self.extents:
            first = e.startoff - e.startoff % step
            for dablk in range(first, min(e.startoff + e.blockcount, self.leaf_fsb), step):
                if dablk in seen:
                    continue
                seen.add(dablk)
                block = self.read(dablk)
                if block is not None:
                    yield block


def verify_data_block(inode: Inode, block: DirBlock) -> int:
    """Check an XDB3/XDD3 block's magic, CRC, self-address and owner; return its magic."""
    buf = block.data
    where = f"directory block {block.dablk} of inode {inode.ino}"
    (magic,) = f.DIR3_BLK_MAGIC.unpack_from(buf)
    blkno, _lsn, _uuid, owner = f.DIR3_BLK_REST.unpack_from(buf, 8)
    if magic != f.XFS_DIR3_DATA_MAGIC:
        check_magic(magic, f.XFS_DIR3_BLOCK_MAGIC, where, block.daddr)
    check_crc(buf, f.XFS_DIR3_DATA_CRC_OFF, where, block.daddr)
    check_field(blkno == block.daddr, "blkno", where, block.daddr, block.daddr, blkno)
    check_field(owner == inode.ino, "owner", where, block.daddr, inode.ino, owner)
    return magic


def parse_data_block(fs, inode: Inode, block: DirBlock, *, verified: int | None = None
                     ) -> tuple[int | None, list[DirEntry]]:
    """(parent from '..' if this block has it, entries) of one XDB3/XDD3 block, verified (unless the caller
    already did: `verified` is then the magic it found)."""
    new = tuple.__new__
    base = block.dablk << fs.geo.blocklog
    parent, out = None, []
    for pos, ino, name, ft in _chain(fs, inode, block, verified):
        if name == b"..":
            parent = ino
        elif name != b".":
            out.append(new(DirEntry, (name, ino, ft, base + pos)))
    return parent, out


def wanted_entries(fs, inode: Inode, block: DirBlock, wanted: set[int], *, verified: int | None = None
                   ) -> list[DirEntry]:
    """The entries of one data block that name an inode in `wanted`, found without decoding the others: a
    block whose 8-byte-aligned words hold none of those inode numbers (every entry starts on one) is not
    walked at all; otherwise the entry chain is followed as `parse_data_block` does, with the same checks,
    so a number in free space or in a name is never taken for an entry."""
    buf = block.data
    magic, end = _data_area(fs, inode, block, verified)
    first = f.XFS_DIR3_DATA_HDR_SIZE
    words = struct.unpack_from(f">{(end - first) // 8}Q", buf, first)
    if wanted.isdisjoint(words):
        return []
    base = block.dablk << fs.geo.blocklog
    return [DirEntry(name, ino, ft, base + pos) for pos, ino, name, ft in _chain(fs, inode, block, magic, wanted)
            if name != b"." and name != b".."]


def _data_area(fs, inode: Inode, block: DirBlock, verified: int | None) -> tuple[int, int]:
    """(magic, end of the entries) of a data block: a single-block directory's tail and leaf entries end it."""
    buf = block.data
    magic = verify_data_block(inode, block) if verified is None else verified
    end = len(buf)
    if magic == f.XFS_DIR3_BLOCK_MAGIC:
        count, _ = f.DIR2_BLOCK_TAIL.unpack_from(buf, end - 8)
        end -= 8 + count * f.XFS_DIR2_LEAF_ENTRY_SIZE
        if end < f.XFS_DIR3_DATA_HDR_SIZE:
            raise CorruptError("block directory leaf count too large", structure=f"directory block {block.dablk} "
                               f"of inode {inode.ino}", daddr=block.daddr, found=count)
    return magic, end


def _chain(fs, inode: Inode, block: DirBlock, verified: int | None, wanted: set[int] | None = None):
    """(byte in the block, inode, name, file type) of each entry of a data block, in order, the unused regions
    stepped over by their lengths; with `wanted`, only the entries naming those inodes (the others are stepped
    over without being decoded). Every length is checked as xfs_dir3_data_check does."""
    buf = block.data
    where = f"directory block {block.dablk} of inode {inode.ino}"
    _, end = _data_area(fs, inode, block, verified)
    ftype = 1 if fs.has_ftype else 0
    pos = f.XFS_DIR3_DATA_HDR_SIZE
    while pos < end:
        if pos + 4 > end:
            raise CorruptError("directory entry past the end of the block", structure=where, daddr=block.daddr,
                               found=f"byte {pos}")
        tag, length = f.DIR2_DATA_UNUSED_HEAD.unpack_from(buf, pos)
        if tag == f.XFS_DIR2_DATA_FREE_TAG:
            if length < 8 or length % 8 or pos + length > end:
                raise CorruptError("bad unused entry length", structure=where, daddr=block.daddr,
                                   found=f"{length} at byte {pos}")
            pos += length
            continue
        ino, namelen = f.DIR2_DATA_ENTRY_HEAD.unpack_from(buf, pos)
        size = (8 + 1 + namelen + ftype + 2 + 7) & ~7
        if namelen == 0 or pos + size > end:
            raise CorruptError("directory entry past the end of the block", structure=where, daddr=block.daddr,
                               found=f"namelen {namelen} at byte {pos}")
        if wanted is None or ino in wanted:
            yield pos, ino, buf[pos + 9:pos + 9 + namelen], buf[pos + 9 + namelen] if ftype else None
        pos += size
