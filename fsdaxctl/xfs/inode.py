"""On-disk inodes and their block maps (data and attr forks: extent lists and bmbt)."""

from __future__ import annotations

import functools
import struct
from collections import namedtuple
from dataclasses import dataclass
from typing import NamedTuple

from fsdaxctl.errors import CorruptError
from fsdaxctl.parsers import field_names
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.verify import check_crc, check_field, check_magic

XFS_INODES_PER_CHUNK = 64
XFS_INODES_PER_HOLEMASK_BIT = 4  # a sparse chunk's holemask has 16 bits for its 64 inodes
IN_USE, FREE, SPARSE_HOLE = "in use", "free", "sparse hole (no inode allocated)"
BMBT_STARTOFF_MASK = (1 << 54) - 1
BMBT_BLOCKCOUNT_MASK = (1 << 21) - 1
XFS_BMAP_MAXLEVELS = 9

# struct xfs_dinode's core as a plain tuple with the kernel's field names (xfs_dinode_core in parsers/xfs.py).
DinodeCore = namedtuple("DinodeCore", field_names(f.xfs_dinode_core))
_LE32 = struct.Struct("<I")


def parse_core(raw: bytes) -> DinodeCore:
    return DinodeCore._make(f.DINODE_CORE_HEAD.unpack_from(raw, 0) + _LE32.unpack_from(raw, f.XFS_DINODE_CRC_OFF)
                            + f.DINODE_CORE_TAIL.unpack_from(raw, f.XFS_DINODE_CRC_OFF + 4))


class BmbtIrec(NamedTuple):
    """One mapping of a fork (the kernel's struct xfs_bmbt_irec): file block startoff -> fsblock startblock
    (segmented), blockcount blocks."""
    startoff: int
    startblock: int
    blockcount: int
    unwritten: bool


def unpack_bmbt_recs(raw: bytes) -> list[BmbtIrec]:
    """Packed 128-bit bmbt records (xfs_bmbt_disk_get_all): flag 1, startoff 54, startblock 52, count 21.
    The one place that knows this layout; one comprehension per fork or block (a walk decodes millions)."""
    new = tuple.__new__
    return [new(BmbtIrec, ((l0 >> 9) & BMBT_STARTOFF_MASK, ((l0 & 0x1FF) << 43) | (l1 >> 21),
                           l1 & BMBT_BLOCKCOUNT_MASK, l0 >> 63 == 1)) for l0, l1 in f.BMBT_REC.iter_unpack(raw)]


def chunk_slot_states(fs, rec) -> list[str]:
    """The state of each of the 64 inodes of the chunk an inobt record describes: a sparse hole (no inode on
    disk), free, or in use, from the record's holemask (SPINODES) and free mask."""
    _, holemask, _, _, free = rec
    if not fs.has_sparse_inodes:
        holemask = 0  # without SPINODES those bits belong to a 32-bit freecount
    return [SPARSE_HOLE if holemask >> (i // XFS_INODES_PER_HOLEMASK_BIT) & 1 else FREE if free >> i & 1 else IN_USE
            for i in range(XFS_INODES_PER_CHUNK)]


@dataclass
class Inode:
    ino: int
    core: object
    raw: bytes

    @property
    def nextents(self) -> int:
        if self.core.di_flags2 & f.XFS_DIFLAG2_NREXT64:
            return self.core.di_big_nextents
        return self.core.di_nextents

    @property
    def anextents(self) -> int:
        if self.core.di_flags2 & f.XFS_DIFLAG2_NREXT64:
            return self.core.di_nextents  # di_big_anextents shares the slot
        return self.core.di_anextents

    def fork(self, which: str) -> tuple[int, bytes]:
        """(format, bytes of the fork literal area)."""
        c = self.core
        start = f.XFS_DINODE_CORE_SIZE
        if which == "data":
            end = start + c.di_forkoff * 8 if c.di_forkoff else len(self.raw)
            return c.di_format, self.raw[start:end]
        if not c.di_forkoff:
            return None, b""
        return c.di_aformat, self.raw[start + c.di_forkoff * 8:]


def read_inode(fs, ino: int) -> Inode:
    geo = fs.geo
    agno, agbno, slot = geo.ino_to_ag(ino)
    if agno >= geo.agcount or agbno >= geo.ag_length(agno) or ino == 0:
        raise CorruptError("inode number outside the filesystem", structure="inode", ino=ino)
    byte = geo.ino_to_byte(ino)
    raw = fs.dev.pread(byte, geo.inodesize, f"inode {ino}")
    return parse_inode(fs, ino, raw, byte >> 9)


def parse_inode(fs, ino: int, raw: bytes, daddr: int) -> Inode:
    """Verify and parse the inode `ino` from its on-disk bytes (daddr: where they were read, for messages)."""
    geo = fs.geo
    where = f"inode {ino}"
    core = parse_core(raw)
    check_magic(core.di_magic, f.XFS_DINODE_MAGIC, where, daddr, width=4)
    check_crc(raw, f.XFS_DINODE_CRC_OFF, where, daddr)
    check_field(core.di_ino == ino, "di_ino", where, daddr, ino, core.di_ino)
    if core.di_forkoff * 8 > geo.inodesize - f.XFS_DINODE_CORE_SIZE:
        raise CorruptError("attr fork offset past the inode", structure=where, daddr=daddr,
                           found=core.di_forkoff)
    return Inode(ino, core, raw)


def bmap(fs, inode: Inode, which: str = "data", blocks: list | None = None) -> list[BmbtIrec]:
    """Every extent of a fork, in file order, reading the bmbt when the fork is in btree format.
    `blocks`, when given, receives the fsblock of every bmbt block read."""
    fmt, lit = inode.fork(which)
    if fmt == f.XFS_DINODE_FMT_EXTENTS:
        n = inode.nextents if which == "data" else inode.anextents
        if n * 16 > len(lit):
            raise CorruptError(f"{which} fork extent count larger than the fork", structure=f"inode {inode.ino}",
                               found=n)
        return unpack_bmbt_recs(lit[:n * 16])
    if fmt == f.XFS_DINODE_FMT_BTREE:
        return _bmbt_walk(fs, inode, lit, which, blocks)
    return []  # local, device, or no attr fork: no blocks


@dataclass(frozen=True)
class LongBtree:
    """A btree of long-format blocks rooted in an inode's fork: the bmbt, and the realtime groups' rmap and
    refcount btrees rooted in their metadata inodes. Keys and records have fixed sizes; `decode` turns a run of
    records into tuples."""
    name: str
    magic: int
    rec_size: int
    key_size: int  # a node entry's key: both low and high keys in an overlapping tree
    decode: object
    leaf_root: bool = False  # may the root in the inode hold records itself (level 0)?
    overlapping: bool = False  # node keys are (low key, high key) pairs: the rt rmap btree
    start: str = "Q"  # struct code of a key's first field, the start (big-endian): br_startoff, rm_startblock


BMBT = LongBtree("bmbt", f.XFS_BMAP_CRC_MAGIC, 16, 8, lambda raw: unpack_bmbt_recs(raw))


def _bmbt_walk(fs, inode: Inode, lit: bytes, which: str, blocks: list | None) -> list[BmbtIrec]:
    return long_btree_records(fs, inode, lit, BMBT, f"{which} fork", blocks)


def long_btree_records(fs, inode: Inode, lit: bytes, tree: LongBtree, which: str, blocks: list | None = None,
                       span: tuple[int, int] | None = None):
    """Every record of the btree rooted in fork bytes `lit` of `inode`, in key order. Each block is verified
    (magic, CRC, self-address, owner, level); `blocks`, when given, receives the fsblock of every block read.
    With `span` (lo, hi): only the records meeting keys lo..hi, and only the blocks whose keys say they can hold
    one are read (a range query: records must begin with their start and length, as rmap and refcount
    records do)."""
    where = f"{tree.name} root of inode {inode.ino} ({which})"
    if len(lit) < 4 + min(tree.key_size + 8, tree.rec_size):
        raise CorruptError(f"fork too small for a {tree.name} root", structure=where, found=f"{len(lit)} bytes")
    root = f.XFS_BMDR_BLOCK.parse(lit)
    if root.bb_level == 0 and tree.leaf_root:
        if 4 + root.bb_numrecs * tree.rec_size > len(lit):
            raise CorruptError(f"bad {tree.name} root", structure=where, found=f"numrecs {root.bb_numrecs}")
        return _meeting(tree.decode(lit[4:4 + root.bb_numrecs * tree.rec_size]), span)
    maxrecs = (len(lit) - 4) // (tree.key_size + 8)
    if not (1 <= root.bb_level < XFS_BMAP_MAXLEVELS) or root.bb_numrecs > maxrecs:
        raise CorruptError(f"bad {tree.name} root", structure=where,
                           found=f"level {root.bb_level} numrecs {root.bb_numrecs}")
    ptr_off = 4 + tree.key_size * maxrecs
    out: list = []
    for p in _children(tree, lit[4:ptr_off], lit[ptr_off:], root.bb_numrecs, span):
        _long_block(fs, inode, tree, p, root.bb_level - 1, out, which, blocks, span)
    return out


def _long_block(fs, inode, tree: LongBtree, fsb, level, out, which, blocks, span=None):
    geo = fs.geo
    where = f"{tree.name} block of inode {inode.ino} ({which})"
    if not geo.fsb_is_valid(fsb):
        raise CorruptError(f"{tree.name} pointer outside the filesystem", structure=where, found=f"fsblock {fsb}")
    daddr = geo.fsb_to_daddr(fsb)
    if blocks is not None:
        blocks.append(fsb)
    buf = fs.dev.pread(geo.fsb_to_byte(fsb), geo.blocksize, where)
    hdr = f.XFS_BTREE_LBLOCK.parse(buf)
    check_magic(hdr.bb_magic, tree.magic, where, daddr)
    check_crc(buf, f.XFS_BTREE_LBLOCK_CRC_OFF, where, daddr)
    check_field(hdr.bb_blkno == daddr, "bb_blkno", where, daddr, daddr, hdr.bb_blkno)
    check_field(hdr.bb_owner == inode.ino, "bb_owner", where, daddr, inode.ino, hdr.bb_owner)
    check_field(hdr.bb_level == level, "bb_level", where, daddr, level, hdr.bb_level)
    hl = f.XFS_BTREE_LBLOCK_CRC_LEN
    n = hdr.bb_numrecs
    if level == 0:
        if n > (geo.blocksize - hl) // tree.rec_size:
            raise CorruptError("bad record count", structure=where, daddr=daddr, found=n)
        out.extend(_meeting(tree.decode(buf[hl:hl + tree.rec_size * n]), span))
        return
    maxrecs = (geo.blocksize - hl) // (tree.key_size + 8)
    if n > maxrecs or n == 0:
        raise CorruptError("bad record count", structure=where, daddr=daddr, found=n)
    ptr_off = hl + tree.key_size * maxrecs
    for p in _children(tree, buf[hl:ptr_off], buf[ptr_off:], n, span):
        _long_block(fs, inode, tree, p, level - 1, out, which, blocks, span)


def _children(tree: LongBtree, keys: bytes, ptrs: bytes, n: int, span) -> list[int]:
    """The child pointers of a node (its `n` keys and pointers) to descend into: all, or those meeting `span`."""
    ptrs = [p for (p,) in f.BMBT_PTR.iter_unpack(ptrs[:8 * n])]
    if span is None:
        return ptrs
    starts = list(_key_starts(tree.key_size, tree.start, tree.overlapping).iter_unpack(keys[:tree.key_size * n]))
    lows = [k[0] for k in starts]
    if any(a > b for a, b in zip(lows, lows[1:])) or any(k[0] > k[-1] for k in starts):
        # the pruning trusts the keys: keys out of order would hide children (xfs_btree_check_node's rule)
        raise CorruptError(f"{tree.name} node keys out of order", structure=f"{tree.name} node",
                           found=", ".join(str(k) for k in starts[:8]))
    return [ptrs[i] for i in children_meeting(starts, *span)]


@functools.lru_cache(maxsize=None)
def _key_starts(key_size: int, start: str, overlapping: bool) -> struct.Struct:
    """A node key's start field, or its low and high keys' (an overlapping key is the two back to back)."""
    half = key_size // 2 if overlapping else key_size
    one = f"{start}{half - struct.calcsize('>' + start)}x"
    return struct.Struct(">" + one * (2 if overlapping else 1))


def children_meeting(keys: list[tuple], lo: int, hi: int) -> list[int]:
    """Indices of a node's children that can hold records meeting keys [lo, hi] (xfs_btree_query_range).
    Overlapping trees, keys (low, high): child i's records span low_i..high_i. Others, keys (low,): child i holds
    the records starting in [low_i, low_i+1), and as records do not overlap, they also end before low_i+1."""
    if keys and len(keys[0]) == 2:
        return [i for i, (low, high) in enumerate(keys) if low <= hi and high >= lo]
    n = len(keys)
    return [i for i in range(n) if keys[i][0] <= hi and (i + 1 == n or keys[i + 1][0] > lo)]


def _meeting(recs: list, span) -> list:
    """The records (start, length, ...) meeting keys span = (lo, hi), or all when span is None."""
    if span is None:
        return recs
    lo, hi = span
    return [r for r in recs if r[0] <= hi and r[0] + r[1] > lo]
