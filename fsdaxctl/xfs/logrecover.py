"""Log recovery in memory, read-only: answer as the kernel will after it mounts a crashed filesystem.

The kernel's mount-time recovery (fs/xfs/xfs_log_recover.c and the *_item_recover.c files), redone offline:

1. Find the head and the tail (xlog_find_head: binary search on cycle numbers, then the scans for holes left by
   out-of-order iclog writes and for a record cut short; xlog_find_tail: the last record header before the
   head, its h_tail_lsn, the unmount record; xlog_verify_head/xlog_verify_tail: CRC checks of the last
   XLOG_MAX_ICLOGS records, a torn write moves the head back to the first bad record).
2. Read every record from the tail to the head (v2 headers with extended cycle data, records split across the
   physical end, the cycle number stamped over the first word of every 512-byte block restored from
   h_cycle_data / xh_cycle_data), reassemble transactions from op headers (start, continued ops, commit).
3. Pass 1 collects cancelled buffers (XFS_BLF_CANCEL, counted: a buffer is skipped while a cancel record for
   it lies at or after it in the log; in a large log part it takes only those, and pass 1 runs in full again
   when pass 2 finds anything wrong, so that the replay fails where the kernel's would); pass 2 replays
   committed transactions in order, items reordered as xlog_recover_reorder_trans does: buffer items (dirty
   128-byte chunks; on v5 a block whose own LSN is at or after the transaction's is left alone), inode
   buffers (only di_next_unlinked), inode items (the log dinode, in the logging host's byte order:
   little-endian x86, converted to disk format, forks in every format, di_lsn set and the CRC recomputed),
   inode create items (new chunks initialised as xfs_ialloc_inode_init does).
   A replayed block is written back, for the kernel, when the recovery LSN moves on: only then does its
   verifier stamp the transaction's LSN and recompute the CRC. That order is kept here (a second item for the
   same block with the same LSN is replayed, not skipped).
4. Intents without their done items (EFI, RUI, CUI, BUI, XMI, ATTRI) are what the kernel finishes after
   replay. An unfinished EFI frees its extents: those bytes are answered `free`, exactly. rmap, bmap,
   refcount and plain exchange intents on the data device are finished on the answer itself (apply_ops: an
   owner added or taken out, an unwritten state set, sharing from the refcount btree's count plus the change,
   mappings moved between two files, touching parts of one record joined), as GETFSMAP reports them after
   the mount. The extent map a bmap or exchange intent changes may be reshaped (its bmbt blocks `unknown`),
   and a block the mount may allocate for it (or for an xattr) is the allocator's choice: the free space of
   that inode's AG carries a note. The others (xattr intents, realtime intents) change
   structures this module does not rewrite: their extents and the file ranges they name are answered
   `unknown` with the reason.

Nothing is ever written: the result is a map of replayed 512-byte blocks, served by `ReplayedDevice` in
place of the disk's. An inode item is checked and counted where it lies in the log, but written into its
cluster buffer only when the buffer's bytes are needed: by another item of the replay, or by a reader of
the replayed blocks (most inode items of a busy log are never read). What the replay cannot do becomes
`unknown` bytes (effects) or, when the log itself cannot be read (the kernel would refuse to mount), one
`LogReplayError` naming where.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import gc
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from fsdaxctl.errors import CorruptError, FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.verify import crc32c, xfs_cksum

BB = 512
XLOG_HEADER_MAGIC = 0xFEEDBABE
XLOG_HEADER_CYCLE_SIZE = 32 * 1024
XLOG_CYCLE_DATA_SIZE = XLOG_HEADER_CYCLE_SIZE // BB  # 64 words of cycle data per header block
XLOG_REC_SIZE = 328  # offsetofend(struct xlog_rec_header, h_pad0): what the CRC covers (x86-64)
XLOG_REC_SIZE_OTHER = 324  # ... as i386 kernels computed it (xlog_recover_process tries both)
XLOG_REC_EXT_SIZE = 260  # offsetofend(struct xlog_rec_ext_header, xh_cycle_data)
XLOG_MAX_ICLOGS = 8
XLOG_MAX_RECORD_BSIZE = 256 * 1024
XLOG_TOTAL_REC_SHIFT = (XLOG_MAX_ICLOGS * XLOG_MAX_RECORD_BSIZE) // BB  # 4096 BBs (log v2)
XLOG_REC_SHIFT = XLOG_MAX_RECORD_BSIZE // BB  # 512 BBs
XLOG_VERSION_OKBITS = 0x3
KEEP_LOG_BYTES = 8 << 20  # a log part up to this size is parsed once for both passes (see _both_passes)
XLOG_FMT_LINUX_LE = 1
XFS_SB_VERSION_LOGV2BIT = 0x0400

# op header flags and clients
XLOG_START_TRANS, XLOG_COMMIT_TRANS, XLOG_CONTINUE_TRANS = 0x01, 0x02, 0x04
XLOG_WAS_CONT_TRANS, XLOG_END_TRANS, XLOG_UNMOUNT_TRANS = 0x08, 0x10, 0x20
XFS_TRANSACTION, XFS_LOG = 0x69, 0xAA
XFS_TRANS_HEADER_MAGIC = 0x5452414E
XFS_TRANS_HEADER_SIZE = 16
XLOG_MAX_REGIONS_IN_ITEM = (XLOG_MAX_RECORD_BSIZE // 128) // 2 + 1  # as xfs_log_recover.h defines it

# log item types (xfs_log_format.h)
XFS_LI_EFI, XFS_LI_EFD, XFS_LI_IUNLINK = 0x1236, 0x1237, 0x1238
XFS_LI_INODE, XFS_LI_BUF, XFS_LI_DQUOT, XFS_LI_QUOTAOFF, XFS_LI_ICREATE = 0x123B, 0x123C, 0x123D, 0x123E, 0x123F
XFS_LI_RUI, XFS_LI_RUD, XFS_LI_CUI, XFS_LI_CUD, XFS_LI_BUI, XFS_LI_BUD = 0x1240, 0x1241, 0x1242, 0x1243, 0x1244, 0x1245
XFS_LI_ATTRI, XFS_LI_ATTRD, XFS_LI_XMI, XFS_LI_XMD = 0x1246, 0x1247, 0x1248, 0x1249
XFS_LI_EFI_RT, XFS_LI_EFD_RT, XFS_LI_RUI_RT, XFS_LI_RUD_RT, XFS_LI_CUI_RT, XFS_LI_CUD_RT = range(0x124A, 0x1250)
INTENTS = {XFS_LI_EFI: "extent-free", XFS_LI_RUI: "rmap-update", XFS_LI_CUI: "refcount-update",
           XFS_LI_BUI: "bmap-update", XFS_LI_XMI: "mapping-exchange", XFS_LI_ATTRI: "xattr-update",
           XFS_LI_EFI_RT: "realtime-extent-free", XFS_LI_RUI_RT: "realtime-rmap-update",
           XFS_LI_CUI_RT: "realtime-refcount-update"}
DONES = {XFS_LI_EFD: XFS_LI_EFI, XFS_LI_RUD: XFS_LI_RUI, XFS_LI_CUD: XFS_LI_CUI, XFS_LI_BUD: XFS_LI_BUI,
         XFS_LI_XMD: XFS_LI_XMI, XFS_LI_ATTRD: XFS_LI_ATTRI, XFS_LI_EFD_RT: XFS_LI_EFI_RT,
         XFS_LI_RUD_RT: XFS_LI_RUI_RT, XFS_LI_CUD_RT: XFS_LI_CUI_RT}
KNOWN_ITEMS = {XFS_LI_BUF, XFS_LI_INODE, XFS_LI_DQUOT, XFS_LI_QUOTAOFF, XFS_LI_ICREATE} | set(INTENTS) | set(DONES)
# struct xfs_map_extent me_flags (rmap and bmap intents) and xfs_phys_extent pe_flags (refcount intents)
XFS_RMAP_EXTENT_TYPE_MASK = 0xFF
XFS_RMAP_EXTENT_UNMAP, XFS_RMAP_EXTENT_UNMAP_SHARED, XFS_RMAP_EXTENT_CONVERT, XFS_RMAP_EXTENT_CONVERT_SHARED = 3, 4, 5, 6
XFS_RMAP_EXTENT_ATTR_FORK, XFS_RMAP_EXTENT_BMBT_BLOCK, XFS_RMAP_EXTENT_UNWRITTEN = 1 << 31, 1 << 30, 1 << 29
XFS_RMAP_EXTENT_MAP, XFS_RMAP_EXTENT_MAP_SHARED, XFS_RMAP_EXTENT_ALLOC, XFS_RMAP_EXTENT_FREE = 1, 2, 7, 8
RMAP_FILE_OPS = {XFS_RMAP_EXTENT_MAP: "map", XFS_RMAP_EXTENT_MAP_SHARED: "map", XFS_RMAP_EXTENT_UNMAP: "unmap",
                 XFS_RMAP_EXTENT_UNMAP_SHARED: "unmap", XFS_RMAP_EXTENT_CONVERT: "convert",
                 XFS_RMAP_EXTENT_CONVERT_SHARED: "convert"}  # rmap intent types on an inode's mapping
XFS_REFCOUNT_INCREASE, XFS_REFCOUNT_DECREASE, XFS_REFCOUNT_ALLOC_COW, XFS_REFCOUNT_FREE_COW = 1, 2, 3, 4
XFS_BMAP_EXTENT_TYPE_MASK, XFS_BMAP_MAP, XFS_BMAP_UNMAP = 0xFF, 1, 2
XFS_BMAP_EXTENT_ATTR_FORK, XFS_BMAP_EXTENT_UNWRITTEN = 1 << 31, 1 << 30
XFS_BMAP_EXTENT_REALTIME = 1 << 29  # a bmap intent's extent is on the realtime device
# struct xfs_xmi_log_format xmi_flags: a plain exchange of data-fork mappings sets at most these
XFS_EXCHMAPS_ATTR_FORK, XFS_EXCHMAPS_SET_SIZES, XFS_EXCHMAPS_INO1_WRITTEN = 1 << 0, 1 << 1, 1 << 2
XFS_EXCHMAPS_CLEAR_INO1_REFLINK, XFS_EXCHMAPS_CLEAR_INO2_REFLINK = 1 << 3, 1 << 4
XFS_EXCHMAPS_PLAIN = XFS_EXCHMAPS_SET_SIZES | XFS_EXCHMAPS_CLEAR_INO1_REFLINK | XFS_EXCHMAPS_CLEAR_INO2_REFLINK
XFS_EXCHMAPS_LOGGED_FLAGS = XFS_EXCHMAPS_PLAIN | XFS_EXCHMAPS_ATTR_FORK | XFS_EXCHMAPS_INO1_WRITTEN
# the flag bits (beside the operation in the low byte) and operations recovery accepts in an extent of each kind
RMAP_FLAGS = (XFS_RMAP_EXTENT_ATTR_FORK | XFS_RMAP_EXTENT_BMBT_BLOCK | XFS_RMAP_EXTENT_UNWRITTEN, range(1, 9))
MAP_FLAGS = {XFS_LI_BUI: (XFS_BMAP_EXTENT_ATTR_FORK | XFS_BMAP_EXTENT_UNWRITTEN | XFS_BMAP_EXTENT_REALTIME,
                          (XFS_BMAP_MAP, XFS_BMAP_UNMAP))}
# struct xfs_attri_log_format alfi_op_flags: the operations that add a name (SET, REPLACE, PPTR_SET, PPTR_REPLACE)
XFS_ATTRI_OP_FLAGS_TYPE_MASK, XFS_ATTRI_OP_SETS = 0xFF, (1, 3, 4, 6)
MAY_TAKE = "the allocator takes one at mount"  # the words of a may-allocate note
MAY_REFILL = "the mount may move a few of these blocks to the AG free list"  # the words of a may-refill note
MAY_KINDS = ("may-allocate", "may-refill")  # effects that only note free space: no owner changes
MASK64 = (1 << 64) - 1
COW_STAGING = "cow-staging"  # fsdaxctl.xfs.piece's owner name of XFS_RMAP_OWN_COW

# buffer log format
XFS_BLF_INODE_BUF, XFS_BLF_CANCEL = 0x1, 0x2
XFS_BLF_DQUOT_BUFS = 0x4 | 0x8 | 0x10
XFS_BLF_CHUNK = 128
XFS_BLFT_SHIFT, XFS_BLFT_MASK = 11, 0x1F << 11
BLF_HEAD = struct.Struct("<HHHHqI")  # blf_type, blf_size, blf_flags, blf_len, blf_blkno, blf_map_size (20 bytes)

# inode log format: 64-bit layout (56 bytes) and the packed 32-bit one (52 bytes)
ILF64 = struct.Struct("<HHIHHIQ16sqii")
ILF32 = struct.Struct("<HHIHHQ16sqii")
XFS_ILOG_CORE, XFS_ILOG_DDATA, XFS_ILOG_DEXT, XFS_ILOG_DBROOT, XFS_ILOG_DEV = 0x1, 0x2, 0x4, 0x8, 0x10
XFS_ILOG_ADATA, XFS_ILOG_AEXT, XFS_ILOG_ABROOT, XFS_ILOG_DOWNER, XFS_ILOG_AOWNER = 0x40, 0x80, 0x100, 0x200, 0x400
XFS_ILOG_DFORK = XFS_ILOG_DDATA | XFS_ILOG_DEXT | XFS_ILOG_DBROOT
XFS_ILOG_AFORK = XFS_ILOG_ADATA | XFS_ILOG_AEXT | XFS_ILOG_ABROOT
# struct xfs_log_dinode, little-endian host order, the 176-byte v3 core
LOG_DINODE = struct.Struct("<HHbbHIIIHHQQQQqQIIHBbIHHIIIQQQI12sQQ16s")
# ... the fields its checks read: di_mode, di_version, di_format, di_big_nextents, di_nblocks, di_nextents,
# di_anextents, di_forkoff, di_flags2
LOG_DINODE_CHECKED = struct.Struct("<2xHbb18xQ32xQ4xIHB37xQ")
assert LOG_DINODE.size == 176 and LOG_DINODE_CHECKED.size == 128 and ILF64.size == 56 and ILF32.size == 52
XFS_DIFLAG2_BIGTIME, XFS_DIFLAG2_NREXT64 = 1 << 3, 1 << 4
S_IFMT, S_IFREG, S_IFDIR = 0o170000, 0o100000, 0o040000
NULLAGINO = 0xFFFFFFFF
XFS_INODES_PER_CHUNK = 64
XFS_INODE_BIG_CLUSTER_SIZE = 8192

# the disk's v3 dinode core as xfs_log_dinode_to_disk writes it: timestamps already in disk order, bytes
# 96..104 (di_next_unlinked, di_crc) carried over from the disk
DISK_DINODE_V3 = struct.Struct(">HHBBHIIIHH8sQQQqQIIHBBIHHI8sQQQI12sQQ16s")
assert DISK_DINODE_V3.size == 176
DINODE_HEAD = struct.Struct(">2s2xB107xQ")  # a disk inode's di_magic, di_version, di_lsn
OP_HEADER = struct.Struct(">IIBB")  # oh_tid, oh_len, oh_clientid, oh_flags (then 2 bytes of padding)
ITEM_HEAD = struct.Struct("<HH")  # every log item format starts with its type and its number of regions
REC_HEADER = struct.Struct(">IIIIQQIII")
REC_HEADER_TAIL = struct.Struct(">I16sI")

ICREATE_HEAD = struct.Struct("<HH")
ICREATE_BODY = struct.Struct(">IIIIII")  # icl_ag, icl_agbno, icl_count, icl_isize, icl_length, icl_gen: big-endian

# block kinds whose write verifier stamps an LSN and a CRC: (lsn offset or None, crc offset)
# realtime metadata blocks of filesystems with realtime groups (fsdaxctl.xfs.rt reads them)
_RTRMAP_MAGIC, _RTREFC_MAGIC = 0x4D415052, 0x52434E54  # "MAPR", "RCNT": long-format btree blocks
_RTBITMAP_MAGIC, _RTSUMMARY_MAGIC = 0x424D505A, 0x53554D59  # "BMPZ", "SUMY": xfs_rtbuf_blkinfo header
_SHORT_BTREE = {f.XFS_ABTB_CRC_MAGIC, f.XFS_ABTC_CRC_MAGIC, f.XFS_IBT_CRC_MAGIC, f.XFS_FIBT_CRC_MAGIC,
                f.XFS_RMAP_CRC_MAGIC, f.XFS_REFC_CRC_MAGIC}
XFS_SYMLINK_MAGIC = 0x58534C4D  # "XSLM"
XFS_DIR3_FREE_MAGIC = 0x58444633
XFS_DA3_NODE_MAGIC, XFS_DIR3_LEAF1_MAGIC, XFS_DIR3_LEAFN_MAGIC, XFS_ATTR3_LEAF_MAGIC = 0x3EBE, 0x3DF1, 0x3DFF, 0x3BEE
XFS_ATTR3_RMT_MAGIC = 0x5841524D


class LogReplayError(CorruptError):
    """The log cannot be replayed (the kernel would refuse to mount): where and why."""


class _Fatal(Exception):
    pass


def _check_flags(t: int, flags: int, allowed: int, types) -> None:
    """An intent extent's flags as the kernel's recovery validates them (xfs_rui_validate_map,
    xfs_bui_validate, xfs_cui_validate_phys): a bit it does not know, or an unknown operation, fails the mount."""
    if flags & ~(allowed | 0xFF) or flags & 0xFF not in types:
        raise _Fatal(f"{INTENTS[t]} intent extent with flags {flags:#x}: the kernel refuses to mount")


def _lsn(cycle: int, block: int) -> int:
    return (cycle << 32) | block


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32}:{lsn & 0xFFFFFFFF}"


@dataclass
class Effect:
    """What finishing an intent (or an unreplayable item) does to the answer. Physical: bytes [start, end) on
    the data device; logical: (ino, fork, first file block, last file block) ranges of a file."""
    kind: str  # "free", "unknown", or an operation the mount finishes exactly (OPS)
    reason: str
    start: int = 0
    end: int = 0
    ino: int | None = None
    fork: str | None = None
    off_lo: int = 0
    off_hi: int = 0
    bmbt: bool = False  # map/unmap/convert: the owner's extent-map (bmbt) block; unknown: only the fork's bmbt blocks
    value: int = 0  # map/convert: the unwritten state (1 unwritten, 0 written); refcount: the change (+1, -1);
    # may-allocate: the inode whose extent map may take a block of these bytes' free space
    device: str = "data"  # the device the bytes (or the file's pieces) are on: "data" or "rt"
    owner: str = "file"  # map/unmap: the owner kind (a file, or CoW staging)
    only: str | None = None  # "rmapbt" or "walk": a change only that owner source takes (see effects_on)
    ino2: int | None = None  # exchange: the other file, and the first file block of its range
    off2: int = 0


@dataclass
class Replay:
    """What the log held and what replaying it did. `blocks` maps daddr -> replayed 512-byte block."""
    dirty: bool = False
    head_blk: int = 0
    tail_blk: int = 0
    head_lsn: int = 0
    tail_lsn: int = 0
    log_blocks: int = 0
    torn: str | None = None
    records: int = 0
    transactions: int = 0
    buffers: int = 0
    buffers_skipped: int = 0
    buffers_cancelled: int = 0
    inodes: int = 0
    inodes_skipped: int = 0
    icreates: int = 0
    intents: dict = field(default_factory=dict)  # kind -> [logged, finished by a done item, left to the mount]
    blocks: dict = field(default_factory=dict)
    effects: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    replayed_here: bool = False  # False: only the head and tail were looked for (--no-replay, a live log)
    skipped: str | None = None

    @property
    def replayed(self) -> bool:
        return bool(self.blocks) or bool(self.effects)

    def summary(self) -> dict:
        left = {k: v[2] for k, v in self.intents.items() if v[2]}
        return {
            "dirty": self.dirty, "head": self.head_blk, "tail": self.tail_blk,
            "head_lsn": _lsn_text(self.head_lsn), "tail_lsn": _lsn_text(self.tail_lsn),
            "records": self.records, "transactions": self.transactions,
            "buffers_replayed": self.buffers, "buffers_newer_on_disk": self.buffers_skipped,
            "buffers_cancelled": self.buffers_cancelled, "inodes_replayed": self.inodes,
            "inodes_newer_on_disk": self.inodes_skipped, "inode_chunks_created": self.icreates,
            "blocks_changed": len(self.blocks), "log_blocks": self.log_blocks,
            "log_blocks_used": (self.head_blk - self.tail_blk) % self.log_blocks if self.log_blocks else 0,
            "unfinished_intents": left,
            "intents_finished_here": sum(1 for e in self.effects if e.kind in ("free",) + OPS
                                         and e.reason.startswith("an unfinished")),
            "unknown_ranges": sum(1 for e in self.effects if e.kind == "unknown"),
            "inode_chunks_freed_at_mount": sum(1 for e in self.effects if e.reason.startswith(_CHUNK_FREED)),
            "torn_head": self.torn, "written": False,
        }

    def json(self) -> dict:
        """Fields of the JSON `filesystem.log` object."""
        out = {"dirty": self.dirty, "head": {"block": self.head_blk, "lsn": _lsn_text(self.head_lsn)},
               "tail": {"block": self.tail_blk, "lsn": _lsn_text(self.tail_lsn)}, "replayed": self.replayed_here}
        if self.skipped:
            out["replay_skipped"] = self.skipped
        if self.dirty and self.replayed_here:
            s = self.summary()
            out["replay"] = {k: v for k, v in s.items() if k not in ("dirty", "head", "tail", "head_lsn", "tail_lsn")}
            out["replay"]["notes"] = list(self.notes)
        return out

    def note(self) -> str:
        s = self.summary()
        left = sum(s["unfinished_intents"].values())
        parts = [f"{s['transactions']} transactions", f"{s['blocks_changed']} blocks (512 bytes) changed"]
        if left:
            parts.append(f"{left} unfinished intents ({', '.join(f'{n} {k}' for k, n in s['unfinished_intents'].items())})")
        if s["unknown_ranges"]:
            parts.append(f"{s['unknown_ranges']} ranges left unknown")
        return ("the log is dirty (the filesystem was not unmounted cleanly): it was replayed in memory as the "
                "kernel will at mount (" + ", ".join(parts)
                + "); nothing was written (--no-replay shows the disk as it is)")


# --- the log as a ring of basic blocks ------------------------------------------------------------------

class _Ring:
    def __init__(self, fs):
        geo = fs.geo
        if fs.internal_log is not None:
            agno, agbno, blocks = fs.internal_log
            self.dev, self.start, self.what = fs.dev, geo.ag_to_byte(agno, agbno), "log"
        elif fs.sb.sb_logstart == 0 and not fs.log_problem and getattr(fs, "logdev", None) is not None:
            # An external log (--logdev) starts at byte 0 of its own device.
            self.dev, self.start, self.what = fs.logdev, 0, "external log"
            blocks = fs.sb.sb_logblocks
        else:
            raise LogReplayError("no log to read (an external log needs --logdev)", structure="log")
        self.nbb = (blocks << geo.blocklog) // BB
        self.logv2 = bool(fs.sb.sb_versionnum & XFS_SB_VERSION_LOGV2BIT) or True  # v5 implies log v2
        self.uuid = fs.sb.sb_uuid
        self.logbsize = max(XLOG_HEADER_CYCLE_SIZE, fs.sb.sb_logsunit or 0)
        self._crcs: dict = {}  # (block, header bytes, h_len, h_crc) -> crc_ok: every pass checks every record

    def read(self, bb: int, count: int) -> bytes:
        """count BBs from bb (wrapping past the physical end)."""
        bb %= self.nbb
        if count <= 0:
            return b""
        if bb + count <= self.nbb:
            return self.dev.pread(self.start + bb * BB, count * BB, self.what)
        first = self.nbb - bb
        return self.read(bb, first) + self.read(0, count - first)

    def cycles(self, bb: int, count: int) -> list[int]:
        """The cycle number of each block: its first word, or h_cycle for a record header."""
        buf = self.read(bb, count)
        if count <= 0:
            return []
        words = array.array("I", buf)
        if sys.byteorder == "little":
            words.byteswap()
        step = BB // 4
        w0, w1 = words[0::step], words[1::step]
        return [w1[i] if w == XLOG_HEADER_MAGIC else w for i, w in enumerate(w0)]

    def cycle(self, bb: int) -> int:
        return self.cycles(bb, 1)[0]

    def is_header(self, bb: int) -> bool:
        return int.from_bytes(self.read(bb, 1)[:4], "big") == XLOG_HEADER_MAGIC

    def header(self, bb: int) -> dict:
        return _header(self.read(bb, 1))

    def hblks(self, h: dict) -> int:
        if h["version"] & 2 and h["size"] > XLOG_HEADER_CYCLE_SIZE:
            return -(-h["size"] // XLOG_HEADER_CYCLE_SIZE)
        return 1

    # --- xlog_find_head and friends ---
    def find_cycle_start(self, first: int, last: int, cycle: int) -> int:
        mid = (first + last) >> 1
        while mid != first and mid != last:
            if self.cycle(mid) == cycle:
                last = mid
            else:
                first = mid
            mid = (first + last) >> 1
        return last

    def find_verify_cycle(self, start: int, n: int, stop: int) -> int:
        step = 512
        for i in range(start, start + n, step):
            cnt = min(step, start + n - i)
            for j, c in enumerate(self.cycles(i, cnt)):
                if c == stop:
                    return i + j
        return -1

    def find_verify_log_record(self, start: int, last: int, extra: int) -> tuple[int, int]:
        """(status, last): status 0 ok, 1 hit the start of the log without a header."""
        i = last - 1
        found = None
        while i >= 0:
            if i < start:
                raise _Fatal(f"log inconsistent: no record header between log blocks {start} and {last}")
            if self.is_header(i):
                found = i
                break
            i -= 1
        if found is None:
            return 1, last
        h = self.header(found)
        if h["uuid"] != self.uuid and any(h["uuid"]):
            raise _Fatal(f"log record at log block {found} belongs to another filesystem (uuid mismatch)")
        xhdrs = -(-h["size"] // XLOG_HEADER_CYCLE_SIZE) if self.logv2 else 1
        if last - found + extra != -(-h["len"] // BB) + xhdrs:
            last = found
        return 0, last

    def find_zeroed(self) -> int | None:
        """The first never-written block when the log was never wrapped, else None."""
        first = self.cycle(0)
        if first == 0:
            return 0
        if self.cycle(self.nbb - 1) != 0:
            return None
        last = self.find_cycle_start(0, self.nbb - 1, 0)
        n = min(XLOG_TOTAL_REC_SHIFT, last)
        start = last - n
        new = self.find_verify_cycle(start, n, 0)
        if new != -1:
            last = new
        status, last = self.find_verify_log_record(start, last, 0)
        if status:
            raise _Fatal("log inconsistent: a partly zeroed log without a record header")
        return last

    def find_head(self) -> int:
        zeroed = self.find_zeroed()
        if zeroed is not None:
            return zeroed
        nbb = self.nbb
        first_half, last_half = self.cycle(0), self.cycle(nbb - 1)
        if first_half == last_half:
            head, stop = nbb, last_half - 1
        else:
            stop = last_half
            head = self.find_cycle_start(0, nbb - 1, last_half)
        n = XLOG_TOTAL_REC_SHIFT
        if head >= n:
            new = self.find_verify_cycle(head - n, n, stop)
            if new != -1:
                head = new
        else:
            start = nbb - (n - head)
            new = self.find_verify_cycle(start, n - head, stop - 1) if start < nbb else -1
            if new != -1:
                head = new
            else:
                new = self.find_verify_cycle(0, head, stop)
                if new != -1:
                    head = new
        n = XLOG_REC_SHIFT
        if head >= n:
            status, head = self.find_verify_log_record(head - n, head, 0)
            if status:
                raise _Fatal("log inconsistent: no record header before the head")
        else:
            status, new_head = self.find_verify_log_record(0, head, 0)
            if status:
                start = nbb - (n - head)
                status, new = self.find_verify_log_record(max(start, 0), nbb, head)
                if status:
                    raise _Fatal("log inconsistent: no record header before the head")
                if new != nbb:
                    head = new
            else:
                head = new_head
        return 0 if head == nbb else head

    def rseek(self, head: int, tail: int, count: int) -> tuple[int, int | None, bool]:
        """Walk back from head for `count` record headers, not past tail: (found, last block, wrapped)."""
        found, blk, wrapped = 0, None, False
        end = tail if head > tail else 0
        i = head - 1
        while i >= end:
            if self.is_header(i):
                blk = i
                found += 1
                if found == count:
                    return found, blk, wrapped
            i -= 1
        if tail >= head and found != count:
            i = self.nbb - 1
            while i >= tail:
                if self.is_header(i):
                    blk, wrapped = i, True
                    found += 1
                    if found == count:
                        break
                i -= 1
        return found, blk, wrapped

    def seek(self, head: int, tail: int, count: int) -> tuple[int, int | None]:
        """Walk forward from tail for `count` record headers, not past head."""
        found, blk = 0, None
        end = head if head > tail else self.nbb - 1
        i = tail
        while i <= end:
            if self.is_header(i):
                blk = i
                found += 1
                if found == count:
                    return found, blk
            i += 1
        if tail > head and found != count:
            for i in range(0, head):
                if self.is_header(i):
                    blk = i
                    found += 1
                    if found == count:
                        break
        return found, blk

    # --- records ---
    def records(self, head: int, tail: int):
        """(record block, header bytes, packed data bytes, header dict) from tail to head, as
        xlog_do_recovery_pass reads them. Raises _BadRecord(block, why) on an invalid header."""
        h0 = self.header(tail)
        h_size = h0["size"]
        if h0["len"] > h_size and h0["len"] <= self.logbsize and h0["num_logops"] == 1:
            h_size = self.logbsize  # mkfs's record: h_size hard-coded to 32k, length by lsunit
        self._valid(h0, tail, h_size)
        hblks = 1
        if h_size > XLOG_HEADER_CYCLE_SIZE and h0["version"] & 2:
            hblks = -(-h_size // XLOG_HEADER_CYCLE_SIZE)
        blk = tail
        nbb = self.nbb

        def one(blk):
            hdr = self.read(blk, hblks)
            h = _header(hdr[:BB])
            self._valid(h, blk, h_size)
            bblks = -(-h["len"] // BB)
            data = self.read(blk + hblks, bblks)
            return hdr, data, h, hblks + bblks

        if tail > head:
            while blk < nbb:
                hdr, data, h, n = one(blk)
                yield blk, hdr, data, h
                blk += n
            blk -= nbb
        while blk < head:
            hdr, data, h, n = one(blk)
            yield blk, hdr, data, h
            blk += n

    def _valid(self, h: dict, blk: int, bufsize: int) -> None:
        if h["magic"] != XLOG_HEADER_MAGIC:
            raise _BadRecord(blk, "no record header magic")
        if not h["version"] or h["version"] & ~XLOG_VERSION_OKBITS:
            raise _BadRecord(blk, f"unknown log record version {h['version']}")
        if h["len"] <= 0 or h["len"] > bufsize:
            raise _BadRecord(blk, f"record length {h['len']} out of range (1..{bufsize})")

    def crc_ok(self, blk: int, hdr: bytes, data: bytes, h: dict) -> bool | None:
        """True or False; None for a zero CRC. Computed once per record (the log is only read)."""
        expected = h["crc"]
        if expected == 0:
            return None  # mkfs writes a zero CRC: valid for the CRC pass, suspect in the replay pass
        key = (blk % self.nbb, len(hdr), h["len"], expected)
        ok = self._crcs.get(key)
        if ok is None:
            body = memoryview(data)[:h["len"]]
            ok = self._crcs[key] = (expected == self.cksum(hdr, body, h, XLOG_REC_SIZE)
                                    or expected == self.cksum(hdr, body, h, XLOG_REC_SIZE_OTHER))
        return ok

    @staticmethod
    def cksum(hdr: bytes, data, h: dict, hdrsize: int) -> int:
        crc = crc32c(hdr[:32])
        crc = crc32c(b"\0\0\0\0", crc)
        crc = crc32c(hdr[36:hdrsize], crc)
        xheads = -(-h["len"] // XLOG_HEADER_CYCLE_SIZE)
        for i in range(1, xheads):
            crc = crc32c(hdr[i * BB:i * BB + XLOG_REC_EXT_SIZE], crc)
        return crc32c(data, crc)

    def crc_pass(self, head: int, tail: int) -> int | None:
        """The block of the first record that fails its header check or CRC, or None."""
        rblk = tail
        try:
            for blk, hdr, data, h in self.records(head, tail):
                rblk = blk
                if self.crc_ok(blk, hdr, data, h) is False:
                    return blk % self.nbb
        except _BadRecord as e:
            return e.blk % self.nbb
        except FsdaxError:
            return rblk % self.nbb
        return None

    def find_tail(self) -> dict:
        head = self.find_head()
        if head == 0 and self.cycle(0) == 0:
            return {"head": 0, "tail": 0, "clean": True, "empty": True}
        found, rblk, wrapped = self.rseek(head, head, 1)
        if not found:
            raise _Fatal("no log record header found before the head")
        rh = self.header(rblk)
        tail = rh["tail_lsn"] & 0xFFFFFFFF
        clean = self.unmount_at(head, rblk, rh)
        if clean:
            tail = head
        torn = None
        if not clean:
            orig = head
            head, tail, rblk, rh, torn = self.verify_head(head, tail, rblk, rh)
            if head != orig:
                clean = self.unmount_at(head, rblk, rh)
                if clean:
                    tail = head
        last_cycle = rh["cycle"] + (1 if wrapped and head == 0 else 0)
        return {"head": head, "tail": tail, "clean": clean, "empty": False, "rhead_blk": rblk, "rhead": rh,
                "torn": torn, "head_lsn": _lsn(last_cycle, head), "tail_lsn": rh["tail_lsn"]}

    def unmount_at(self, head: int, rblk: int, rh: dict) -> bool:
        hblks = self.hblks(rh)
        after = (rblk + hblks + -(-rh["len"] // BB)) % self.nbb
        if head == after and rh["num_logops"] == 1:
            op = self.read((rblk + hblks) % self.nbb, 1)
            return bool(op[9] & XLOG_UNMOUNT_TRANS)
        return False

    def verify_head(self, head, tail, rblk, rh):
        found, tmp_blk, _ = self.rseek(head, tail, XLOG_MAX_ICLOGS)
        torn = None
        if found:
            bad = self.crc_pass(head, tmp_blk)
            if bad is not None:
                torn = (f"torn write (CRC failure) at log block {bad}: the head moves back from {head} to {bad}, "
                        "as the kernel does")
                found, rblk, _ = self.rseek(bad, tail, 1)
                if not found:
                    raise _Fatal(f"torn write at log block {bad} and no good record before it")
                rh = self.header(rblk)
                head = bad
                tail = rh["tail_lsn"] & 0xFFFFFFFF
                if head == tail:
                    return head, tail, rblk, rh, torn
        tail = self.verify_tail(head, tail, rh["size"])
        return head, tail, rblk, rh, torn

    def verify_tail(self, head: int, tail: int, hsize: int) -> int:
        found, tmp = self.seek(head, tail, 1)
        if found:
            tail = tmp
        if head == tail:
            return tail
        bad = self.crc_pass(head, tail)
        while bad is not None:
            dist = tail_distance = (bad - head) if head < bad else bad + (self.nbb - head)
            if tail_distance > (XLOG_MAX_ICLOGS * hsize) // BB or dist < 0:
                raise _Fatal(f"log record at log block {bad} is corrupt (bad CRC or header) and too far from the "
                             "head to be a torn write: the kernel refuses to mount")
            found, tmp = self.seek(head, bad, 2)
            if found < 2:
                raise _Fatal(f"log record at log block {bad} is corrupt and no record follows it")
            tail = tmp
            bad = self.crc_pass(head, tail)
        return tail


def _header(buf: bytes) -> dict:
    """struct xlog_rec_header from its first 512-byte block."""
    (magic, cycle, version, h_len, lsn, tail_lsn, crc, prev, nops) = REC_HEADER.unpack_from(buf)
    crc = int.from_bytes(buf[32:36], "little")
    fmt, uuid, h_size = REC_HEADER_TAIL.unpack_from(buf, 300)
    return {"magic": magic, "cycle": cycle, "version": version, "len": h_len, "lsn": lsn, "tail_lsn": tail_lsn,
            "crc": crc, "num_logops": nops, "fmt": fmt, "uuid": uuid, "size": h_size, "raw": buf}


class _BadRecord(Exception):
    def __init__(self, blk, why):
        super().__init__(why)
        self.blk, self.why = blk, why


def unpack(hdr: bytes, data: bytes, h_len: int) -> bytearray:
    """Put back the first word of every 512-byte block of the record (xlog_unpack_data): the words saved in
    h_cycle_data (and xh_cycle_data of the extended headers), assigned with one strided copy."""
    dp = bytearray(data)
    n = -(-h_len // BB)
    if n <= 0:
        return dp
    words = [hdr[44:44 + 4 * min(n, XLOG_CYCLE_DATA_SIZE)]]
    for i in range(XLOG_CYCLE_DATA_SIZE, n, XLOG_CYCLE_DATA_SIZE):
        j, cnt = i // XLOG_CYCLE_DATA_SIZE, min(XLOG_CYCLE_DATA_SIZE, n - i)
        w = hdr[j * BB + 4:j * BB + 4 + 4 * cnt]
        if len(w) != 4 * cnt:
            raise _Fatal("record longer than its extended headers describe")
        words.append(w)
    if len(dp) != n * BB:  # a short read: as the block-by-block copy did
        w = b"".join(words)
        for i in range(n):
            dp[i * BB:i * BB + 4] = w[4 * i:4 * i + 4]
        return dp
    memoryview(dp).cast("I")[::BB // 4] = memoryview(b"".join(words)).cast("I")
    return dp


# --- transactions ---------------------------------------------------------------------------------------

class _Item:
    """One log item: its regions (memoryviews into the unpacked record, or bytearrays where an op continued
    them), the number of regions its format announced, and its type (from the first region)."""
    __slots__ = ("regions", "total", "type")

    def __init__(self, typ=None, total=0, regions=None):
        self.regions: list = [] if regions is None else regions
        self.total = total
        self.type = typ


class _Trans:
    __slots__ = ("tid", "lsn", "header", "items")

    def __init__(self, tid, lsn):
        self.tid, self.lsn, self.header, self.items = tid, lsn, b"", []


def _transactions(ring: _Ring, head: int, tail: int, on_commit, where, ops=None):
    """Reassemble transactions from tail to head; call on_commit(trans, first_commit_of_new_lsn) for each
    committed one, in log order (xlog_recover_process_data / xlog_recovery_process_trans). `ops` walks the op
    headers of each record: _ops, or _ops_pass1 for what pass 1 needs only."""
    ops = ops or _ops
    live: dict[int, _Trans] = {}
    recovery_lsn = [0]
    records = 0
    for blk, hdr, data, h in ring.records(head, tail):
        records += 1
        rblk = blk % ring.nbb
        where["record"] = rblk
        ok = ring.crc_ok(blk, hdr, data, h)
        if not ok:  # on v5 a zero CRC is as fatal as a wrong one in the replay passes
            raise _Fatal(f"log record at log block {rblk} has a bad CRC")
        if h["fmt"] != XLOG_FMT_LINUX_LE:
            raise _Fatal(f"log record at log block {rblk} was written in format {h['fmt']} "
                         "(not little-endian Linux): cannot recover here")
        if h["uuid"] != ring.uuid:
            raise _Fatal(f"log record at log block {rblk} belongs to another filesystem (uuid)")
        dp = memoryview(unpack(hdr, data, h["len"]))
        ops(dp, h["len"], h["num_logops"], h["lsn"], live, recovery_lsn, on_commit, rblk)
    return records


def _ops(dp, end: int, nops: int, lsn: int, live: dict, recovery_lsn: list, on_commit, blk: int) -> None:
    """The op headers of one record. The common ops (a region of an item under way, the format region that
    starts the next item; no flags) are added here, inline: there is one per region in the log; the others go
    through _process."""
    item_head, live_get = ITEM_HEAD.unpack_from, live.get
    for tid, oplen, flags, pos in _op_headers(dp, end, nops, blk):
        trans = live_get(tid)
        if trans is None:
            if flags & XLOG_START_TRANS:
                live[tid] = _Trans(tid, lsn)
        elif not flags and oplen and trans.items:  # _add_region, inline
            item = trans.items[-1]
            regions = item.regions
            total = item.total
            if total and total != len(regions):
                regions.append(dp[pos:pos + oplen])
            else:  # the format region of an item: the item under way is complete (or was never started)
                if oplen < 4:
                    raise _Fatal(f"log item format cut short in log record at log block {blk}")
                typ, size = item_head(dp, pos)
                if size == 0 or size > XLOG_MAX_REGIONS_IN_ITEM:
                    raise _Fatal(f"bad number of regions ({size}) in a log item in log record at log block {blk}")
                if total:
                    trans.items.append(_Item(typ, size, [dp[pos:pos + oplen]]))
                else:
                    item.total, item.type = size, typ
                    regions.append(dp[pos:pos + oplen])
        else:
            new_lsn = recovery_lsn[0] != trans.lsn and flags & XLOG_COMMIT_TRANS
            if new_lsn:
                recovery_lsn[0] = trans.lsn
            _process(trans, dp[pos:pos + oplen], flags, live, on_commit, bool(new_lsn), blk)


def _op_headers(dp, end: int, nops: int, blk: int):
    """(oh_tid, oh_len, oh_flags, where its data starts) of each op of a record, checked."""
    pos = 0
    op_header = OP_HEADER.unpack_from
    while pos < end and nops:
        if pos + 12 > end:
            raise _Fatal(f"op header cut short in log record at log block {blk}")
        tid, oplen, client, flags = op_header(dp, pos)
        pos += 12
        if client != XFS_TRANSACTION and client != XFS_LOG:
            raise _Fatal(f"bad op header client {client:#x} in log record at log block {blk}")
        if pos + oplen > end:
            raise _Fatal(f"op of {oplen} bytes runs past its log record at log block {blk}")
        yield tid, oplen, flags, pos
        pos += oplen
        nops -= 1


def _ops_pass1(dp, end: int, nops: int, lsn: int, live: dict, recovery_lsn: list, on_commit, blk: int) -> None:
    """_ops as pass 1 of a large log needs it: the same reassembly, keeping of each item only its type, the
    regions its format announced and a buffer item's format (the cancelled buffers). A live transaction is
    [its header, its items as [type, regions, format or None], the regions its last item still expects]. It
    checks only what the walk needs: the full pass 1 runs when anything fails later (_large_passes).
    on_commit(items, None) for each committed transaction."""
    live_get = live.get
    for tid, oplen, flags, pos in _op_headers(dp, end, nops, blk):
        trans = live_get(tid)
        if trans is None:
            if flags & XLOG_START_TRANS:
                live[tid] = [b"", [], 0]
        elif not flags and oplen and trans[1]:  # as in _ops, most ops: a region, or an item's format
            if trans[2]:
                trans[2] -= 1
            else:
                _format_pass1(trans, dp[pos:pos + oplen], blk)
        else:
            _process_pass1(trans, tid, dp[pos:pos + oplen], flags, live, on_commit, blk)


def _process_pass1(trans: list, tid: int, dp, flags: int, live: dict, on_commit, blk: int) -> None:
    """_process, _add and _add_cont for _ops_pass1."""
    flags &= ~XLOG_END_TRANS
    if flags & XLOG_WAS_CONT_TRANS:
        flags &= ~XLOG_CONTINUE_TRANS
    items = trans[1]
    if flags in (0, XLOG_CONTINUE_TRANS):
        if not dp:
            return
        if not items and not trans[0]:  # the transaction header
            trans[0] = bytes(dp)
            if len(dp) == XFS_TRANS_HEADER_SIZE:
                items.append([None, 0, None])
        elif not items:
            raise _Fatal(f"transaction without a complete header in log record at log block {blk}")
        elif trans[2]:
            trans[2] -= 1
        else:
            _format_pass1(trans, dp, blk)
    elif flags == XLOG_WAS_CONT_TRANS:
        if not items:
            trans[0] += bytes(dp)
            items.append([None, 0, None])
        elif items[-1][2] is not None and trans[2] == items[-1][1] - 1:  # a buffer item's format, continued
            items[-1][2] = bytes(items[-1][2]) + bytes(dp)
    elif flags == XLOG_COMMIT_TRANS:
        del live[tid]
        on_commit(items, None)
    elif flags == XLOG_UNMOUNT_TRANS:
        del live[tid]
    else:
        raise _Fatal(f"bad op header flags {flags:#x} in log record at log block {blk}")


def _format_pass1(trans: list, dp, blk: int) -> None:
    """The format region that starts an item (into the empty item a header left, or a new one)."""
    if len(dp) < 4:
        raise _Fatal(f"log item format cut short in log record at log block {blk}")
    typ, size = ITEM_HEAD.unpack_from(dp)
    item = [typ, size, dp if typ == XFS_LI_BUF else None]
    if trans[1][-1][1]:
        trans[1].append(item)
    else:
        trans[1][-1] = item
    trans[2] = size - 1


def _process(trans, dp, flags, live, on_commit, new_lsn, blk):
    flags &= ~XLOG_END_TRANS
    if flags & XLOG_WAS_CONT_TRANS:
        flags &= ~XLOG_CONTINUE_TRANS
    if flags in (0, XLOG_CONTINUE_TRANS):
        _add(trans, dp, blk)
    elif flags == XLOG_WAS_CONT_TRANS:
        _add_cont(trans, dp, blk)
    elif flags == XLOG_COMMIT_TRANS:
        del live[trans.tid]
        on_commit(trans, new_lsn)
    elif flags == XLOG_UNMOUNT_TRANS:
        del live[trans.tid]
    else:
        raise _Fatal(f"bad op header flags {flags:#x} in log record at log block {blk}")


def _add(trans, dp, blk):
    if not dp:
        return
    if not trans.items and len(trans.header) < XFS_TRANS_HEADER_SIZE and not trans.header:
        if len(dp) < 4 or struct.unpack_from("<I", dp)[0] != XFS_TRANS_HEADER_MAGIC:
            raise _Fatal(f"bad transaction header magic in log record at log block {blk}")
        if len(dp) > XFS_TRANS_HEADER_SIZE:
            raise _Fatal(f"bad transaction header length in log record at log block {blk}")
        trans.header = bytes(dp)
        if len(dp) == XFS_TRANS_HEADER_SIZE:
            trans.items.append(_Item())
        return
    if not trans.items:
        raise _Fatal(f"transaction without a complete header in log record at log block {blk}")
    _add_region(trans.items, dp, blk)


def _add_region(items: list, dp, blk: int) -> None:
    """A region (non-empty) of the transaction's last item, or the format of a new item."""
    item = items[-1]
    if item.total and item.total == len(item.regions):
        item = _Item()
        items.append(item)
    if not item.total:
        if len(dp) < 4:
            raise _Fatal(f"log item format cut short in log record at log block {blk}")
        typ, size = ITEM_HEAD.unpack_from(dp)
        if size == 0 or size > XLOG_MAX_REGIONS_IN_ITEM:
            raise _Fatal(f"bad number of regions ({size}) in a log item in log record at log block {blk}")
        item.total, item.type = size, typ
    if item.total <= len(item.regions):
        raise _Fatal(f"log item region count overflow in log record at log block {blk}")
    item.regions.append(dp)


def _add_cont(trans, dp, blk):
    if not trans.items:
        if len(dp) > XFS_TRANS_HEADER_SIZE:
            raise _Fatal(f"bad transaction header length in log record at log block {blk}")
        trans.header = trans.header + bytes(dp)
        trans.items.append(_Item())
        return
    item = trans.items[-1]
    if not item.regions:
        raise _Fatal(f"continued op without a region in log record at log block {blk}")
    item.regions[-1] = bytearray(item.regions[-1]) + dp


# --- replay ---------------------------------------------------------------------------------------------

class _Overlay:
    """The replayed blocks being built. A buffer is read and written many times over (an inode cluster once per
    inode item): the last write of each buffer is kept whole, by (daddr, 512-byte blocks), and cut into
    `blocks` (daddr -> 512 bytes) only when a buffer of another shape overlaps it, and at the end. Kept
    buffers never overlap, and a block is either in a kept buffer or in `blocks`: the content of a block is its
    keeper's, else blocks', else the disk's.

    Inode items wait (`pending`: kept buffer -> inode offset -> its items, in log order) until something reads
    their buffer (`read`), cuts it, or asks for its blocks: an item changes only its own inode's bytes, so
    another inode item of the buffer reads its own inode as it is (`peek`), and `apply_pending` runs the
    waiting ones in order when the buffer's bytes are needed."""

    def __init__(self, dev, blocks: dict, apply_pending=None):
        self.dev, self.blocks = dev, blocks
        self.bufs: dict[tuple[int, int], bytearray] = {}
        self.keeper: dict[int, tuple[int, int]] = {}  # daddr of each block of a kept buffer -> its key
        self.readable: set = set()  # kept buffers the disk was read at (a read always reads the disk once)
        self.pending: dict[tuple[int, int], dict[int, list]] = {}
        self.apply_pending = apply_pending

    def read(self, daddr: int, nbb: int, what: str) -> bytearray:
        """The buffer as replayed so far. A kept buffer is returned itself, not a copy: a caller changes it only
        to write it back (or on its way to a fatal error, which drops the whole replay)."""
        buf = self.peek(daddr, nbb, what)
        self.settle(daddr, buf)
        return buf

    def settle(self, daddr: int, buf, off: int | None = None) -> None:
        """Apply the inode items waiting for the kept buffer buf, if any (only the inode at `off`'s if given)."""
        key = (daddr, len(buf) // BB)
        slots = self.pending.get(key)
        if not slots:
            return
        if off is None:
            del self.pending[key]
            self.apply_pending(buf, slots)
        elif off in slots:
            self.apply_pending(buf, {off: slots.pop(off)})

    def peek(self, daddr: int, nbb: int, what: str) -> bytearray:
        """read, but the inode items waiting for this buffer stay waiting (their inodes' bytes are not current)."""
        key = (daddr, nbb)
        kept = self.bufs.get(key)
        if kept is not None:
            if key not in self.readable:  # written without a read (a new inode chunk): fail where a read fails
                self.dev.pread(daddr * BB, nbb * BB, what)
                self.readable.add(key)
            return kept
        self._cut(daddr, nbb)
        buf = bytearray(self.dev.pread(daddr * BB, nbb * BB, what))
        self.readable.add(key)
        blocks = self.blocks
        for i in range(nbb):
            b = blocks.get(daddr + i)
            if b is not None:
                buf[i * BB:(i + 1) * BB] = b
        return buf

    def write(self, daddr: int, buf) -> None:
        nbb = len(buf) // BB
        if not nbb:
            return
        key = (daddr, nbb)
        if key not in self.bufs:
            self._cut(daddr, nbb)
            for i in range(nbb):
                self.keeper[daddr + i] = key
                self.blocks.pop(daddr + i, None)
        elif key in self.pending and self.bufs[key] is not buf:  # a new buffer over it (an inode create)
            del self.pending[key]
        self.bufs[key] = buf if len(buf) == nbb * BB else buf[:nbb * BB]

    def wait(self, daddr: int, buf, off: int, item: tuple) -> None:
        """Keep buf (as read by peek) and let an inode item wait for it, for the inode at `off`. An item that
        wrote only the inode's core (item[1]) is dropped when another comes: that one rewrites the whole core."""
        key = (daddr, len(buf) // BB)
        if self.bufs.get(key) is not buf:
            self.write(daddr, buf)
        slots = self.pending.get(key)
        if slots is None:
            self.pending[key] = {off: [item]}
            return
        items = slots.get(off)
        if items is None:
            slots[off] = [item]
        elif items[-1][1]:
            items[-1] = item
        else:
            items.append(item)

    def _cut(self, daddr: int, nbb: int) -> None:
        """Cut the kept buffers overlapping [daddr, daddr + nbb) into blocks."""
        keeper = self.keeper
        for i in range(daddr, daddr + nbb):
            key = keeper.get(i)
            if key is not None:
                self._release(key)

    def _release(self, key) -> None:
        daddr, nbb = key
        buf = self.bufs.pop(key)
        if key in self.pending:
            self.apply_pending(buf, self.pending.pop(key))
        blocks, keeper = self.blocks, self.keeper
        for i in range(nbb):
            blocks[daddr + i] = bytes(buf[i * BB:(i + 1) * BB])
            del keeper[daddr + i]

    def finish(self) -> None:
        for key in list(self.bufs):
            self._release(key)


class _Blocks(Mapping):
    """The replayed 512-byte blocks by daddr (what `Replay.blocks` holds after a replay): a buffer the overlay
    still keeps whole is cut into blocks, its waiting inode items applied, the first time one of its blocks is
    asked for, so that a reader pays only for the blocks it reads."""

    def __init__(self, overlay: _Overlay):
        self._overlay = overlay

    def __getitem__(self, daddr: int) -> bytes:
        key = self._overlay.keeper.get(daddr)
        if key is not None:
            self._overlay._release(key)
        return self._overlay.blocks[daddr]

    def __contains__(self, daddr) -> bool:
        return daddr in self._overlay.keeper or daddr in self._overlay.blocks

    def __iter__(self):
        return iter(list(self._overlay.blocks) + list(self._overlay.keeper))

    def __len__(self) -> int:
        return len(self._overlay.blocks) + len(self._overlay.keeper)


class _Replayer:
    def __init__(self, fs, ring: _Ring, out: Replay):
        self.fs, self.ring, self.out = fs, ring, out
        self.rtgroups = bool(fs.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_METADIR and fs.sb.sb_rgcount)
        geo = fs.geo
        self.geo = geo
        self.dev = fs.dev
        self.fs_bbs = geo.size // BB
        self.overlay = _Overlay(fs.dev, out.blocks, self.apply_pending)
        self.cancel: dict[tuple[int, int], int] = {}
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}  # (daddr, nbb) -> (blft, lsn) to stamp
        self.intents: dict[tuple[int, int], tuple] = {}  # (type, id) -> (lsn, seq, item regions)
        self.seq = 0
        sb = fs.sb
        self.has_meta_uuid = bool(sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_META_UUID)
        self.meta_uuid = fs.meta_uuid
        self.sb_uuid = sb.sb_uuid
        # inode geometry (xfs_ino_geometry): chunk and cluster sizes
        self.inopblock = geo.blocksize // geo.inodesize
        ialloc_inos = max(XFS_INODES_PER_CHUNK, self.inopblock)
        self.ialloc_blks = ialloc_inos // self.inopblock
        spinodes = bool(sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_SPINODES)
        self.ialloc_min_blks = sb.sb_spino_align if spinodes and sb.sb_spino_align else self.ialloc_blks
        raw = XFS_INODE_BIG_CLUSTER_SIZE
        new = raw * (geo.inodesize // 256)
        if sb.sb_inoalignmt >= (new >> geo.blocklog):
            raw = new
        self.blocks_per_cluster = 1 if geo.blocksize >= raw else raw >> geo.blocklog

    # block I/O through the overlay being built
    def read(self, daddr: int, nbb: int, what: str) -> bytearray:
        if daddr < 0 or nbb <= 0 or daddr + nbb > self.fs_bbs:
            raise _Fatal(f"{what}: blocks {daddr:#x}+{nbb} (512-byte) lie outside the filesystem")
        return self.overlay.read(daddr, nbb, what)

    def peek(self, daddr: int, nbb: int, what: str) -> bytearray:
        """read, leaving the inode items that wait for the buffer waiting (see _Overlay)."""
        if daddr < 0 or nbb <= 0 or daddr + nbb > self.fs_bbs:
            raise _Fatal(f"{what}: blocks {daddr:#x}+{nbb} (512-byte) lie outside the filesystem")
        return self.overlay.peek(daddr, nbb, what)

    def write(self, daddr: int, buf: bytes) -> None:
        self.overlay.write(daddr, buf)

    # pass 1
    def pass1(self, trans, new_lsn):
        for item in trans.items:
            self._check_item(item)
            if item.type == XFS_LI_BUF:
                typ, size, flags, blen, blkno, map_size = self._blf(item)
                if flags & XFS_BLF_CANCEL:
                    self.cancel[(blkno, blen)] = self.cancel.get((blkno, blen), 0) + 1

    def pass1_cancels(self, items, _):
        """pass1 of a transaction walked by _ops_pass1 (its items as [type, regions, format of a buffer item]):
        only the cancelled buffers (the checks are pass 2's, see _large_passes)."""
        for typ, _, r0 in items:
            if typ == XFS_LI_BUF and r0 is not None and len(r0) >= 20:
                flags, blen, blkno = BLF_HEAD.unpack_from(r0)[2:5]
                if flags & XFS_BLF_CANCEL:
                    self.cancel[(blkno, blen)] = self.cancel.get((blkno, blen), 0) + 1

    def _check_item(self, item):
        if not item.regions:
            raise _Fatal("a committed log item has no regions")
        if len(item.regions[0]) < 4:
            raise _Fatal("log item format cut short")
        if item.type not in KNOWN_ITEMS:
            raise _Fatal(f"unknown log item type {item.type:#x}")

    def _blf(self, item):
        r0 = item.regions[0]
        if len(r0) < 20:
            raise _Fatal(f"bad buffer log item size ({len(r0)})")
        typ, size, flags, blen, blkno, map_size = BLF_HEAD.unpack_from(r0)
        if len(r0) < 20 + 4 * map_size:
            raise _Fatal(f"bad buffer log item size ({len(r0)} for a {map_size}-word map)")
        return typ, size, flags, blen, blkno, map_size

    # pass 2
    def pass2(self, trans, new_lsn):
        if new_lsn:
            self.flush()
        self.out.transactions += 1
        bufs, items, ibufs, cancels = [], [], [], []
        for item in trans.items:
            self._check_item(item)
            t = item.type
            if t == XFS_LI_BUF:
                blf = self._blf(item)
                (cancels if blf[2] & XFS_BLF_CANCEL else ibufs if blf[2] & XFS_BLF_INODE_BUF else bufs).append(
                    (item, blf))
            elif t == XFS_LI_ICREATE:
                bufs.append((item, None))
            else:
                items.append(item)
        lsn = trans.lsn
        for item, blf in bufs:
            if blf is None:
                self.icreate(item)
            else:
                self.buf(item, blf, lsn)
        for item in items:
            t = item.type
            if t == XFS_LI_INODE:
                self.inode(item, lsn)
            elif t in INTENTS:
                self.intent(item, lsn)
            elif t in DONES:
                self.done(item)
            elif t == XFS_LI_DQUOT:
                self.dquot(item)
            # XFS_LI_QUOTAOFF: only matters to dquot buffers, which are not replayed without quota options
        # list_move (head insertion) reverses cancels and inode buffers; the order does not change the result
        for item, blf in ibufs[::-1] + cancels[::-1]:
            self.buf(item, blf, lsn)

    def flush(self):
        """The kernel writes the queued buffers when the recovery LSN moves on: stamp LSN and CRC now."""
        for (daddr, nbb), (blft, lsn) in self.pending.items():
            buf = self.read(daddr, nbb, "replayed block")
            if stamp(buf, blft, lsn, self.geo.blocksize, self.rtgroups):
                self.write(daddr, buf)
        self.pending.clear()

    def buf(self, item, blf: tuple, lsn):
        """xlog_recover_buf_commit_pass2 of a buffer item whose format (_blf) is blf."""
        typ, size, flags, blen, blkno, map_size = blf
        key = (blkno, blen)
        if flags & XFS_BLF_CANCEL:
            n = self.cancel.get(key, 0)
            if n <= 1:
                self.cancel.pop(key, None)
            else:
                self.cancel[key] = n - 1
            self.out.buffers_cancelled += 1
            return
        if key in self.cancel:
            self.out.buffers_cancelled += 1
            return
        if flags & XFS_BLF_INODE_BUF:  # only di_next_unlinked: the inode items waiting for the buffer may wait on
            buf = self.peek(blkno, blen, f"buffer at daddr {blkno:#x} in the log")
            self.overlay.settle(blkno, buf, 0)  # ... but buf_lsn reads the first inode
            if buf[:2] != b"IN":  # ... or, if that holds none, anything
                self.overlay.settle(blkno, buf)
        else:
            buf = self.read(blkno, blen, f"buffer at daddr {blkno:#x} in the log")
        blsn = self.buf_lsn(buf)
        if blsn and blsn != -1 and blsn >= lsn:
            self.out.buffers_skipped += 1
            return
        dmap = item.regions[0][20:20 + 4 * map_size]
        runs = _runs(dmap, map_size)
        if flags & XFS_BLF_INODE_BUF:
            self.inode_buffer(item, buf, runs, blkno)
        elif flags & XFS_BLF_DQUOT_BUFS:
            self.out.notes.append(f"a dquot buffer at daddr {blkno:#x} was not replayed (quota is applied only "
                                  "when mounting with quota options)")
            return
        else:
            i = 1
            for bit, nbits in runs:
                if i >= len(item.regions):
                    raise _Fatal(f"buffer item for daddr {blkno:#x} has fewer regions than its dirty map")
                reg = item.regions[i]
                if len(reg) < nbits * XFS_BLF_CHUNK:
                    nbits = len(reg) // XFS_BLF_CHUNK
                off = bit * XFS_BLF_CHUNK
                if off + nbits * XFS_BLF_CHUNK > len(buf):
                    raise _Fatal(f"buffer item for daddr {blkno:#x} logs bytes past its {len(buf)}-byte buffer")
                buf[off:off + nbits * XFS_BLF_CHUNK] = reg[:nbits * XFS_BLF_CHUNK]
                i += 1
            blft = (flags & XFS_BLFT_MASK) >> XFS_BLFT_SHIFT
            if verifier_for(buf, blft, self.rtgroups):
                self.pending[key] = (blft, lsn)
        self.write(blkno, buf)
        self.out.buffers += 1

    def buf_lsn(self, blk: bytes) -> int:
        """xlog_recover_get_buf_lsn: the block's own LSN by its magic, -1 when it has none or is foreign."""
        m32 = int.from_bytes(blk[:4], "big")
        lsn = uuid = None
        if m32 in (f.XFS_ABTB_CRC_MAGIC, f.XFS_ABTC_CRC_MAGIC, 0x41425442, 0x41425443, f.XFS_RMAP_CRC_MAGIC,
                   f.XFS_REFC_CRC_MAGIC, f.XFS_IBT_CRC_MAGIC, 0x49414254):
            lsn, uuid = blk[24:32], blk[32:48]
        elif m32 in (f.XFS_BMAP_CRC_MAGIC, 0x424D4150, _RTRMAP_MAGIC, _RTREFC_MAGIC):  # long-format blocks
            lsn, uuid = blk[32:40], blk[40:56]
        elif m32 in (_RTBITMAP_MAGIC, _RTSUMMARY_MAGIC):  # rt bitmap and summary blocks with rtgroups
            lsn, uuid = blk[24:32], blk[32:48]
        elif m32 == f.XFS_AGF_MAGIC:
            lsn, uuid = blk[208:216], blk[64:80]
        elif m32 == f.XFS_AGFL_MAGIC:
            lsn, uuid = blk[24:32], blk[8:24]
        elif m32 == f.XFS_AGI_MAGIC:
            lsn, uuid = blk[320:328], blk[296:312]
        elif m32 == XFS_SYMLINK_MAGIC:
            lsn, uuid = blk[48:56], blk[16:32]
        elif m32 in (f.XFS_DIR3_BLOCK_MAGIC, f.XFS_DIR3_DATA_MAGIC, XFS_DIR3_FREE_MAGIC):
            lsn, uuid = blk[16:24], blk[24:40]
        elif m32 == XFS_ATTR3_RMT_MAGIC:
            return -1
        elif m32 == f.XFS_SB_MAGIC:
            lsn, uuid = blk[240:248], (blk[248:264] if self.has_meta_uuid else blk[32:48])
        if lsn is not None:
            return int.from_bytes(lsn, "big") if uuid == self.meta_uuid else -1
        mda = int.from_bytes(blk[8:10], "big")
        if mda in (XFS_DIR3_LEAF1_MAGIC, XFS_DIR3_LEAFN_MAGIC, XFS_DA3_NODE_MAGIC):
            return int.from_bytes(blk[24:32], "big") if blk[32:48] == self.sb_uuid else -1
        return -1

    def inode_buffer(self, item, buf, runs, blkno):
        """xlog_recover_do_inode_buffer: only the di_next_unlinked fields, and those inodes' CRCs."""
        isize = self.geo.inodesize
        slots = self.overlay.pending.get((blkno, len(buf) // BB))
        idx, reg_off, reg_bytes, k = 0, 0, 0, 0
        for i in range(len(buf) // isize):
            nu = i * isize + 96
            while nu >= reg_off + reg_bytes:
                if k >= len(runs):
                    return
                bit, nbits = runs[k]
                k += 1
                reg_off, reg_bytes = bit * XFS_BLF_CHUNK, nbits * XFS_BLF_CHUNK
                idx += 1
            if nu < reg_off:
                continue
            if idx >= len(item.regions) or nu - reg_off + 4 > len(item.regions[idx]):
                raise _Fatal(f"inode buffer item for daddr {blkno:#x} is shorter than its dirty map")
            val = item.regions[idx][nu - reg_off:nu - reg_off + 4]
            if val == b"\0\0\0\0":
                raise _Fatal(f"inode buffer item for daddr {blkno:#x} replays a zero di_next_unlinked")
            waiting = slots.get(i * isize) if slots else None
            if waiting:  # after the inode items waiting there, keeping their lsn as the inode's
                waiting.append((waiting[-1][0], False, None, 0, 0, 0, b"", bytes(val)))
            else:
                buf[nu:nu + 4] = val
                _inode_crc(buf, i * isize, isize)

    def inode(self, item, lsn):
        """xlog_recover_inode_commit_pass2: the logged core and forks over the inode in its cluster buffer. What
        decides whether and how the item is replayed (and every check that can fail) is done here; writing it
        waits in the overlay (_Overlay.wait) when it can fail no more."""
        ino, size, fields, u, blkno, ilen, boff = _inode_format(item.regions[0])
        if (blkno, ilen) in self.cancel:
            return
        isize = self.geo.inodesize
        buf, waiting = self._cluster(ino, blkno, ilen, boff, isize)
        # the inode's magic, version and LSN; a waiting item leaves a v3 inode stamped with its transaction's
        magic, dversion, dlsn = (b"IN", 3, waiting[-1][0]) if waiting else DINODE_HEAD.unpack_from(buf, boff)
        if magic != b"IN":
            raise _Fatal(f"inode {ino}: the log replays it over a block that holds no inode (daddr {blkno:#x})")
        if len(item.regions) < 2:
            raise _Fatal(f"inode {ino} log item without its core")
        ld = item.regions[1]
        if len(ld) < 2 or ld[0] != 0x4E or ld[1] != 0x49:
            raise _Fatal(f"inode {ino} log item: bad log dinode magic")
        if len(ld) > LOG_DINODE.size:
            raise _Fatal(f"inode {ino} log item: log dinode of {len(ld)} bytes")
        ld = bytes(ld) if len(ld) == LOG_DINODE.size else bytes(ld) + bytes(LOG_DINODE.size - len(ld))
        if dversion >= 3:
            if dlsn and dlsn != 0xFFFFFFFFFFFFFFFF and dlsn > lsn:
                self.out.inodes_skipped += 1
                if fields & (XFS_ILOG_DOWNER | XFS_ILOG_AOWNER):
                    self._owner_change(ino)
                return
        mode, version, _ = _check_log_dinode(ld, ino, isize)
        if version == 3 and boff % isize == 0 and (size <= 2 or self._forks_fit(item, fields, isize)):
            forks = (None, None, bytes(item.regions[2])) if size > 2 else ()
            self.overlay.wait(blkno, buf, boff, (lsn, size <= 2 and not fields & XFS_ILOG_DEV, ld, ino, fields,
                                                 size, u, forks))
        else:
            self.overlay.settle(blkno, buf)
            with memoryview(buf) as mv:
                _replay_inode(mv[boff:boff + isize], lsn, ld, ino, fields, size, u, item.regions, isize)
            _inode_crc(buf, boff, isize)
            self.write(blkno, buf)
        if fields & (XFS_ILOG_DOWNER | XFS_ILOG_AOWNER) and mode:
            self._owner_change(ino)
        self.out.inodes += 1

    def _cluster(self, ino: int, blkno: int, ilen: int, boff: int, isize: int) -> tuple:
        """(the inode cluster buffer as replayed, the items waiting for the inode at boff or None). Only an
        inode at a multiple of the inode size may have items waiting: no other inode overlaps it; a buffer read
        for one elsewhere is settled first."""
        key = (blkno, ilen)
        overlay = self.overlay
        buf = overlay.bufs.get(key)
        if buf is None or key not in overlay.readable or boff % isize:
            what = f"inode {ino} cluster in the log"
            buf = self.peek(blkno, ilen, what) if boff % isize == 0 else self.read(blkno, ilen, what)
        if boff < 0 or boff + isize > len(buf):
            raise _Fatal(f"inode {ino} log item places it outside its cluster buffer")
        slots = overlay.pending.get(key)
        return buf, (slots.get(boff) if slots else None)

    @staticmethod
    def _forks_fit(item, fields: int, isize: int) -> bool:
        """Whether the forks of this inode item are sure to be written without an error: a data fork of
        extents or local data that fits, no attr fork (the others are written at once, where they can fail)."""
        df = fields & XFS_ILOG_DFORK
        return (len(item.regions) >= 3 and not fields & XFS_ILOG_AFORK and df != XFS_ILOG_DBROOT
                and (df not in (XFS_ILOG_DDATA, XFS_ILOG_DEXT) or len(item.regions[2]) <= isize - 176))

    def apply_pending(self, buf, slots: dict) -> None:
        """The inode items waiting for buf, each inode's in log order, then its CRC (the last item's)."""
        isize = self.geo.inodesize
        with memoryview(buf) as mv:
            for off, items in slots.items():
                dip = mv[off:off + isize]
                for lsn, _, ld, ino, fields, size, u, regions in items:
                    if ld is None:  # an inode buffer item's di_next_unlinked
                        dip[96:100] = regions
                    else:
                        _replay_inode(dip, lsn, ld, ino, fields, size, u, regions, isize)
                dip.release()
                _inode_crc(buf, off, isize)

    def _owner_change(self, ino):
        self.out.effects.append(Effect("unknown", f"the log changes the owner of inode {ino}'s bmbt blocks "
                                                  "(an extent swap): not replayed here", ino=ino, fork="data",
                                       off_lo=0, off_hi=1 << 62))
        self.out.effects.append(Effect("unknown", f"the log changes the owner of inode {ino}'s bmbt blocks "
                                                  "(an extent swap): not replayed here", ino=ino, fork="attr",
                                       off_lo=0, off_hi=1 << 62))

    def icreate(self, item):
        r0 = item.regions[0]
        if len(r0) < 28:
            raise _Fatal("inode create log item cut short")
        typ, size = ICREATE_HEAD.unpack_from(r0)
        agno, agbno, count, isize, length, gen = ICREATE_BODY.unpack_from(r0, 4)
        geo = self.geo
        if size != 1 or agno >= geo.agcount or not agbno or agbno >= geo.agblocks or isize != geo.inodesize \
                or not count or not length or length >= geo.agblocks \
                or length not in (self.ialloc_blks, self.ialloc_min_blks) \
                or (count >> geo.inopblog) != length:
            raise _Fatal(f"bad inode create log item (AG {agno} agbno {agbno} length {length} count {count})")
        bpc = self.blocks_per_cluster
        nbufs = length // bpc
        bb_per_cluster = (bpc << geo.blocklog) // BB
        cancelled = sum(1 for i in range(nbufs)
                        if (geo.ag_to_daddr(agno, agbno + i * bpc), bb_per_cluster) in self.cancel)
        if cancelled:
            return
        ino = geo.ag_to_ino(agno, agbno, 0)
        per_cluster = (bpc << geo.blocklog) // isize
        for j in range(nbufs):
            daddr = geo.ag_to_daddr(agno, agbno + j * bpc)
            if daddr + bb_per_cluster > self.fs_bbs:
                raise _Fatal(f"inode create log item: AG {agno} agbno {agbno} lies outside the filesystem")
            buf = bytearray(bb_per_cluster * BB)
            for i in range(per_cluster):
                o = i * isize
                struct.pack_into(">HHB", buf, o, 0x494E, 0, 3)
                struct.pack_into(">II", buf, o + 92, gen, NULLAGINO)
                struct.pack_into(">Q", buf, o + 152, ino)
                buf[o + 160:o + 176] = self.meta_uuid
                ino += 1
                _inode_crc(buf, o, isize)
            self.write(daddr, buf)
        self.out.icreates += 1

    def dquot(self, item):
        r0 = item.regions[0]
        if len(r0) >= 24:
            blkno, qlen = struct.unpack_from("<qi", r0, 8)
            self.out.notes.append(f"a dquot log item for daddr {blkno:#x} was not replayed (quota is applied "
                                  "only when mounting with quota options)")

    def intent(self, item, lsn):
        r0 = bytes(item.regions[0])
        t = item.type
        if len(r0) < 16:
            raise _Fatal(f"{INTENTS[t]} intent log item cut short")
        iid = struct.unpack_from("<Q", r0, 8)[0]
        self.seq += 1
        self.intents[(t, iid)] = (lsn, self.seq, [bytes(r) for r in item.regions])
        self.out.intents.setdefault(INTENTS[t], [0, 0, 0])[0] += 1

    def done(self, item):
        r0 = bytes(item.regions[0])
        t = DONES[item.type]
        if len(r0) < 16:
            raise _Fatal("done log item cut short")
        iid = struct.unpack_from("<Q", r0, 8)[0]
        if self.intents.pop((t, iid), None) is not None:
            self.out.intents[INTENTS[t]][1] += 1

    # after pass 2: what the mount will finish
    def finish(self):
        self.flush()
        self.out.blocks = _Blocks(self.overlay)
        finishers = {XFS_LI_EFI: self._finish_efi, XFS_LI_EFI_RT: self._finish_efi, XFS_LI_RUI: self._finish_map,
                     XFS_LI_RUI_RT: self._finish_map, XFS_LI_BUI: self._finish_map, XFS_LI_CUI: self._finish_cui,
                     XFS_LI_CUI_RT: self._finish_cui, XFS_LI_XMI: self._finish_xmi, XFS_LI_ATTRI: self._finish_attri}
        for (t, iid), (lsn, seq, regions) in sorted(self.intents.items(), key=lambda kv: (kv[1][0], kv[1][1])):
            kind = INTENTS[t]
            self.out.intents[kind][2] += 1
            why = f"an unfinished {kind} intent in the log (id {iid:#x}, lsn {_lsn_text(lsn)}) changes this at mount"
            finishers[t](t, why, regions[0], struct.unpack_from("<I", regions[0], 4)[0])
        self._note_free_list_refills()
        growing = sorted({e.value for e in self.out.effects if e.kind == "may-allocate"})
        if growing:
            self.out.notes.append(
                f"finishing the log's intents may allocate blocks for the extent maps or xattrs of inode"
                f"{'s' if len(growing) > 1 else ''} {', '.join(map(str, growing))}: most likely in their own AGs, "
                "whose free space says so, but in any AG when those are full; which blocks cannot be known here")

    def _finish_efi(self, t, why, r0, n):
        if len(r0) == 16 + 16 * n:
            exts = [struct.unpack_from("<QI", r0, 16 + 16 * i) for i in range(n)]
        elif len(r0) == 16 + 12 * n:
            exts = [struct.unpack_from("<QI", r0, 16 + 12 * i) for i in range(n)]
        else:
            raise _Fatal(f"extent-free intent of {len(r0)} bytes for {n} extents")
        for start, length in exts:
            if t == XFS_LI_EFI:
                self._phys("free", why + ": the kernel frees these blocks", start, length)
            else:  # realtime extents: freed with their rt rmap changes, not finished here
                self._rt_phys(why, start, length)

    def _finish_map(self, t, why, r0, n):
        """rmap and bmap intents: struct xfs_map_extent (owner, start block, file offset, length, flags)."""
        if len(r0) != 16 + 32 * n or (t == XFS_LI_BUI and n != 1):  # XFS_BUI_MAX_FAST_EXTENTS
            raise _Fatal(f"{INTENTS[t]} intent of {len(r0)} bytes for {n} extents")
        for i in range(n):
            owner, start, off, length, flags = struct.unpack_from("<QQQII", r0, 16 + 32 * i)
            _check_flags(t, flags, *(MAP_FLAGS[t] if t in MAP_FLAGS else RMAP_FLAGS))
            if t == XFS_LI_RUI and self._rmap_op(why, owner, start, off, length, flags):
                continue
            if t == XFS_LI_BUI and self._bmap_op(why, owner, start, off, length, flags):
                continue
            if t == XFS_LI_RUI_RT or (t == XFS_LI_BUI and flags & XFS_BMAP_EXTENT_REALTIME):
                self._rt_phys(why, start, length)
            else:
                self._phys("unknown", why, start, length)
            if t == XFS_LI_BUI or (owner < (1 << 63) and owner):
                fork = "attr" if flags & (1 << 31) else "data"
                self.out.effects.append(Effect("unknown", why, ino=owner, fork=fork, off_lo=off,
                                               off_hi=off + length - 1,
                                               device="rt" if t == XFS_LI_RUI_RT else "data"))

    def _finish_cui(self, t, why, r0, n):
        """refcount intents: struct xfs_phys_extent (start block, length, flags)."""
        if len(r0) != 16 + 16 * n:
            raise _Fatal(f"{INTENTS[t]} intent of {len(r0)} bytes for {n} extents")
        for i in range(n):
            start, length, flags = struct.unpack_from("<QII", r0, 16 + 16 * i)
            _check_flags(t, flags, 0, range(XFS_REFCOUNT_INCREASE, XFS_REFCOUNT_FREE_COW + 1))
            if t == XFS_LI_CUI_RT:
                self._rt_phys(why, start, length)
            elif flags in (XFS_REFCOUNT_INCREASE, XFS_REFCOUNT_DECREASE):
                self._phys("refcount", why, start, length, value=1 if flags == XFS_REFCOUNT_INCREASE else -1)
            elif flags in (XFS_REFCOUNT_ALLOC_COW, XFS_REFCOUNT_FREE_COW):
                # the CoW domain of the refcount btree: only the metadata walk takes CoW staging from it (the
                # rmapbt's OWN_COW records change with the rmap intent logged alongside)
                self._phys("map" if flags == XFS_REFCOUNT_ALLOC_COW else "unmap", why, start, length,
                           owner=COW_STAGING, only="walk")
            else:
                self._phys("unknown", why, start, length)

    def _finish_xmi(self, t, why, r0, n):
        """A mapping exchange (struct xfs_xmi_log_format): the mount exchanges what is left of the two ranges."""
        if len(r0) != 88 or struct.unpack_from("<I", r0, 4)[0]:  # the size, and __pad
            raise _Fatal(f"mapping-exchange intent of {len(r0)} bytes, or with bits set in its padding")
        ino1, ino2, _, _, off1, off2, count, xflags = struct.unpack_from("<QQIIQQQQ", r0, 16)
        if xflags & ~XFS_EXCHMAPS_LOGGED_FLAGS:
            raise _Fatal(f"mapping-exchange intent with unknown flags {xflags:#x}: the kernel refuses to mount")
        if not count:
            return
        if not xflags & ~(XFS_EXCHMAPS_PLAIN | XFS_EXCHMAPS_INO1_WRITTEN):  # data forks: mappings move across
            # written only: where file 1 is written, known once the replayed filesystem can be read (written_only)
            kind = "exchange-written" if xflags & XFS_EXCHMAPS_INO1_WRITTEN else "exchange"
            self.out.effects.append(Effect(kind, why, ino=ino1, fork="data", off_lo=off1, off_hi=off1 + count - 1,
                                           ino2=ino2, off2=off2))
            self._reshaped(why, ((ino1, "data"), (ino2, "data")))
            return
        fork = "attr" if xflags & XFS_EXCHMAPS_ATTR_FORK else "data"
        for ino, off in ((ino1, off1), (ino2, off2)):
            self.out.effects.append(Effect("unknown", why, ino=ino, fork=fork, off_lo=off, off_hi=off + count - 1))

    def _finish_attri(self, t, why, r0, n):
        """An xattr change (struct xfs_attri_log_format): its attr fork's blocks are unknown (where the entry
        goes, and whether the fork changes shape, is the xattr code's choice), and one that sets a name may
        take new attr blocks, which the allocator picks at mount."""
        if len(r0) != 40:  # sizeof(struct xfs_attri_log_format)
            raise _Fatal(f"xattr intent of {len(r0)} bytes")
        ino, op = struct.unpack_from("<QI", r0, 16)
        self.out.effects.append(Effect("unknown", why, ino=ino, fork="attr", off_lo=0, off_hi=1 << 62))
        if op & XFS_ATTRI_OP_FLAGS_TYPE_MASK in XFS_ATTRI_OP_SETS:
            self._note_new_map_blocks(why, (ino,), "extended attributes")

    def _reshaped(self, why, forks):
        """The mount adds mappings to these (inode, fork)s' extent maps or takes them out: a btree-format map
        may split, merge or go back into the inode (xfs_bmap_btree_to_extents), so its blocks are unknown, and
        a new block may be allocated."""
        for ino, fork in forks:
            self.out.effects.append(Effect("unknown", f"{why}: it changes inode {ino}'s {fork} fork extent map, "
                                           "whose blocks the mount may free, split or join", ino=ino, fork=fork,
                                           off_lo=0, off_hi=1 << 62, bmbt=True))
        self._note_new_map_blocks(why, sorted({ino for ino, _ in forks}))

    def _note_free_list_refills(self) -> None:
        """Before the mount frees or maps an intent's extents it refills the AG's free list from the AG's free
        space (xfs_alloc_fix_freelist, for the btree blocks the change may need), or gives surplus free-list
        blocks back. Which free blocks it takes is the allocator's choice at that moment: the free space of
        every AG whose bytes the intents change says so (such blocks are then per-AG metadata)."""
        geo = self.geo
        agnos = sorted({geo.byte_to_ag(e.start)[0] for e in self.out.effects if e.device == "data"
                        and e.kind not in MAY_KINDS and e.end > e.start and e.start < geo.size})
        for agno in agnos:
            self.out.effects.append(Effect(
                "may-refill", f"AG {agno}: the intents the mount finishes there first refill its free list "
                f"(xfs_alloc_fix_freelist): {MAY_REFILL}; which ones cannot be known here", *_ag_bytes(geo, agno)))
        if agnos:
            self.out.notes.append(
                f"finishing the log's intents first refills the free list of AG{'s' if len(agnos) > 1 else ''} "
                f"{', '.join(map(str, agnos))}: a few of {'their' if len(agnos) > 1 else 'its'} free blocks may "
                "become free-list blocks (per-AG metadata) at mount, as their free space says; which ones cannot "
                "be known here")

    def _note_new_map_blocks(self, why, inodes, what="extent map"):
        """Adding mappings may give an inode's extent map (bmbt) a new block, and setting an xattr its attr
        fork one: the allocator picks it at mount (near the inode, as xfs_bmap_extents_to_btree and
        xfs_bmbt_alloc_block ask), so no offline answer can say which free block that will be. The free space
        of the inode's AG then says it may be taken."""
        geo = self.geo
        for ino in inodes:
            agno = geo.ino_to_ag(ino)[0]
            if agno < geo.agcount:
                self.out.effects.append(Effect(
                    "may-allocate", f"{why}: if inode {ino}'s {what} need{'s' if what == 'extent map' else ''} a "
                    f"new block for it, {MAY_TAKE}, most likely from this AG's free space; which one cannot be "
                    "known here", *_ag_bytes(geo, agno), value=ino))

    def _rmap_op(self, why, owner, fsb, off, length, flags) -> bool:
        """An rmap intent's extent the mount finishes as an exact change of the answer (xfs_rmap_finish_one):
        an inode's mapping added (MAP) or taken out (UNMAP: its bytes are free unless another owner keeps
        them), its unwritten state set (CONVERT, to the state the intent names), or a CoW staging extent's
        owner added or taken out (ALLOC, FREE). False: not one of those."""
        typ = flags & XFS_RMAP_EXTENT_TYPE_MASK
        if typ in (XFS_RMAP_EXTENT_ALLOC, XFS_RMAP_EXTENT_FREE) and owner == (f.XFS_RMAP_OWN_COW & MASK64):
            self._phys("map" if typ == XFS_RMAP_EXTENT_ALLOC else "unmap", why, fsb, length, owner=COW_STAGING,
                       only="rmapbt")
            return True
        if owner >= (1 << 63) or typ not in RMAP_FILE_OPS:
            return False
        self._phys(RMAP_FILE_OPS[typ], why, fsb, length, ino=owner,
                   fork="attr" if flags & XFS_RMAP_EXTENT_ATTR_FORK else "data", off_lo=off,
                   off_hi=off + length - 1, bmbt=bool(flags & XFS_RMAP_EXTENT_BMBT_BLOCK),
                   value=int(bool(flags & XFS_RMAP_EXTENT_UNWRITTEN)), only="rmapbt")
        return True

    def _bmap_op(self, why, ino, fsb, off, length, flags) -> bool:
        """A bmap intent's extent on the data device (xfs_bmap_finish_one): MAP adds the mapping to the file
        (with the rmap change it makes); UNMAP takes it out without freeing it (XFS_BMAPI_REMAP: the refcount
        or extent-free intent logged alongside does that)."""
        typ = flags & XFS_BMAP_EXTENT_TYPE_MASK
        if flags & XFS_BMAP_EXTENT_REALTIME or typ not in (XFS_BMAP_MAP, XFS_BMAP_UNMAP) or ino >= (1 << 63):
            return False
        self._phys("map" if typ == XFS_BMAP_MAP else "unmap", why, fsb, length, ino=ino,
                   fork="attr" if flags & XFS_BMAP_EXTENT_ATTR_FORK else "data", off_lo=off,
                   off_hi=off + length - 1, value=int(bool(flags & XFS_BMAP_EXTENT_UNWRITTEN)))
        self._reshaped(why, ((ino, "attr" if flags & XFS_BMAP_EXTENT_ATTR_FORK else "data"),))
        return True

    def _rt_phys(self, why, rtb, length):
        """Realtime blocks [rtb, rtb + length) an intent changes: unknown on the realtime device."""
        from fsdaxctl.xfs.rt import rt_device_end, rtb_to_byte

        sb = self.fs.sb
        start = rtb_to_byte(sb, rtb) if sb.sb_rblocks else None
        if start is None or not length or start + (length << self.geo.blocklog) > rt_device_end(sb):
            raise _Fatal(f"an intent names realtime blocks outside the realtime device (rtblock {rtb}+{length})")
        self.out.effects.append(Effect("unknown", why, start, start + (length << self.geo.blocklog), device="rt"))

    def _phys(self, kind, why, fsb, length, **kw):
        geo = self.geo
        agno, agbno = geo.fsb_to_ag(fsb)
        if not length or agno >= geo.agcount or agbno + length > geo.ag_length(agno):
            raise _Fatal(f"an intent names blocks outside the filesystem (fsblock {fsb}+{length})")
        start = geo.ag_to_byte(agno, agbno)
        self.out.effects.append(Effect(kind, why, start, start + (length << geo.blocklog), **kw))


def _runs(dmap: bytes, map_size: int) -> list[tuple[int, int]]:
    """(first bit, count) of every run of set bits in the dirty map (xfs_next_bit / xfs_contig_bits)."""
    bits = int.from_bytes(dmap, "little") if dmap else 0
    # the map is an array of native (little-endian) 32-bit words, bit n of word w is chunk 32*w + n: a
    # little-endian integer of the whole array has exactly that bit numbering
    total = 32 * map_size
    bits &= (1 << total) - 1
    runs, bit = [], 0
    while True:
        low = bits >> bit
        if not low:
            return runs
        bit += (low & -low).bit_length() - 1  # the next set bit
        low = bits >> bit
        ones = (~low & (low + 1)).bit_length() - 1  # how many set bits from there
        runs.append((bit, ones))
        bit += ones


def _inode_format(r0) -> tuple:
    """struct xfs_inode_log_format (64-bit or packed 32-bit layout): (ino, size, fields, ilf_u, blkno, len,
    boffset)."""
    if len(r0) == ILF64.size:
        (_, size, fields, asize, dsize, _, ino, u, blkno, ilen, boff) = ILF64.unpack_from(r0)
    elif len(r0) == ILF32.size:
        (_, size, fields, asize, dsize, ino, u, blkno, ilen, boff) = ILF32.unpack_from(r0)
    else:
        raise _Fatal(f"inode log item format of {len(r0)} bytes")
    return ino, size, fields, u, blkno, ilen, boff


def _check_log_dinode(ld: bytes, ino: int, isize: int) -> tuple:
    """xlog_recover_inode_commit_pass2's checks of the log dinode; its (di_mode, di_version, di_forkoff)."""
    mode, version, fmt, bignext, nblocks, nextents, anextents, forkoff, flags2 = LOG_DINODE_CHECKED.unpack_from(ld)
    if mode & S_IFMT == S_IFREG and fmt not in (f.XFS_DINODE_FMT_EXTENTS, f.XFS_DINODE_FMT_BTREE,
                                                  f.XFS_DINODE_FMT_META_BTREE):
        raise _Fatal(f"inode {ino}: the log gives a regular file data fork format {fmt}")
    if mode & S_IFMT == S_IFDIR and fmt not in (f.XFS_DINODE_FMT_EXTENTS, f.XFS_DINODE_FMT_BTREE,
                                                  f.XFS_DINODE_FMT_LOCAL):
        raise _Fatal(f"inode {ino}: the log gives a directory data fork format {fmt}")
    big = bool(version >= 3 and flags2 & XFS_DIFLAG2_NREXT64)
    if big:
        nex, anex = bignext, nextents
    else:
        if version == 3 and bignext != 0:
            raise _Fatal(f"inode {ino}: log dinode padding is not zero")
        nex, anex = nextents, anextents
    if nex + anex > nblocks:
        raise _Fatal(f"inode {ino}: log dinode extent counts exceed its block count")
    if forkoff > isize:
        raise _Fatal(f"inode {ino}: log dinode fork offset {forkoff} too large")
    return mode, version, forkoff


def _ts(val: int, bigtime) -> int:
    """A log timestamp (host order) as the disk's 64-bit big-endian value: bigtime as is; otherwise the
    (seconds, nanoseconds) pair, each 32-bit word big-endian."""
    return val if bigtime else ((val & 0xFFFFFFFF) << 32) | (val >> 32)


def _log_dinode_to_disk(v: tuple, dip, ino: int, isize: int, lsn: int) -> None:
    """xfs_log_dinode_to_disk: everything but di_next_unlinked and di_crc (v3: di_lsn is the transaction's).
    The log dinode has passed _check_log_dinode."""
    (magic, mode, version, fmt, metatype, uid, gid, nlink, projlo, projhi, bignext, atime, mtime, ctime,
     isz, nblocks, extsize, nextents, anextents, forkoff, aformat, dmevmask, dmstate, flags, gen,
     next_unlinked, crc, changecount, _dlsn, flags2, cowextsize, pad2, crtime, d_ino, uuid) = v
    bigtime = version >= 3 and flags2 & XFS_DIFLAG2_BIGTIME
    big = version >= 3 and flags2 & XFS_DIFLAG2_NREXT64  # 64-bit extent counters
    if version == 3:
        DISK_DINODE_V3.pack_into(  # di_metatype where v1 had di_onlink: a metadata inode's role (metadir)
            dip, 0, magic, mode, 3, fmt & 0xFF, metatype, uid, gid, nlink, projlo, projhi,
            bignext.to_bytes(8, "big") if big else b"", _ts(atime, bigtime), _ts(mtime, bigtime),
            _ts(ctime, bigtime), isz, nblocks, extsize, nextents, anextents, forkoff, aformat & 0xFF, dmevmask,
            dmstate, flags, gen, bytes(dip[96:104]), changecount, lsn, flags2, cowextsize, b"",
            _ts(crtime, bigtime), d_ino, uuid)
        return
    # v1/v2 inodes: only the fields they have (di_flushiter at 24 stays as it is on disk)
    struct.pack_into(">HHBBHIIIHH", dip, 0, magic, mode, version & 0xFF, fmt & 0xFF, 0, uid, gid, nlink,
                     projlo, projhi)
    struct.pack_into(">QQQ", dip, 32, _ts(atime, bigtime), _ts(mtime, bigtime), _ts(ctime, bigtime))
    struct.pack_into(">qQI", dip, 56, isz, nblocks, extsize)
    struct.pack_into(">BBIHHI", dip, 82, forkoff, aformat & 0xFF, dmevmask, dmstate, flags, gen)
    if big:
        struct.pack_into(">Q", dip, 24, bignext)
    struct.pack_into(">IH", dip, 76, nextents, anextents & 0xFFFF)


def _replay_inode(dip, lsn: int, ld: bytes, ino: int, fields: int, size: int, u: bytes, regions, isize: int):
    """An inode item's log dinode and forks over the dinode (its CRC is the caller's)."""
    v = LOG_DINODE.unpack(ld)
    _log_dinode_to_disk(v, dip, ino, isize, lsn)
    _inode_forks(regions, dip, ino, fields, size, u, v[19], isize)


def _inode_forks(regions, dip, ino: int, fields: int, size: int, u: bytes, forkoff: int, isize: int) -> None:
    """The logged device number, data fork and attr fork (xlog_recover_inode_commit_pass2's second half)."""
    core = 176
    litino = isize - core
    dsize_fork = (forkoff << 3) if forkoff else litino
    if fields & XFS_ILOG_DEV:
        struct.pack_into(">I", dip, core, int.from_bytes(u[:4], "little"))
    if size <= 2:
        return
    if len(regions) < 3:
        raise _Fatal(f"inode {ino} log item is missing its fork data")
    df = fields & XFS_ILOG_DFORK
    _logged_fork(regions[2], dip, core, litino, dsize_fork, df, (XFS_ILOG_DDATA, XFS_ILOG_DEXT),
                 XFS_ILOG_DBROOT, ino, "data fork larger than the inode")
    if not fields & XFS_ILOG_AFORK:
        return
    ai = 3 if fields & XFS_ILOG_DFORK else 2
    if len(regions) <= ai:
        raise _Fatal(f"inode {ino} log item is missing its attr fork data")
    af = fields & XFS_ILOG_AFORK
    if af not in (XFS_ILOG_ADATA, XFS_ILOG_AEXT, XFS_ILOG_ABROOT):
        raise _Fatal(f"inode {ino}: invalid attr fork flags {fields:#x}")
    asz = litino - (forkoff << 3)
    _logged_fork(regions[ai], dip, core + (forkoff << 3), asz, asz, af, (XFS_ILOG_ADATA, XFS_ILOG_AEXT),
                 XFS_ILOG_ABROOT, ino, "attr fork larger than its space")


def _logged_fork(src, dip, off: int, space: int, root_size: int, flag: int, copied, broot: int, ino: int,
                 too_big: str) -> None:
    """One logged fork into the dinode at `off`: local data and extent lists as logged (at most `space` bytes),
    a bmbt root converted back to its on-disk (bmdr) form of `root_size` bytes; no flag, nothing logged."""
    if flag in copied:
        if len(src) > space:
            raise _Fatal(f"inode {ino}: logged {too_big}")
        dip[off:off + len(src)] = src
    elif flag == broot:
        _root_to_disk(bytes(src), dip, off, root_size, ino, broot == XFS_ILOG_DBROOT)


def _inode_crc(buf, off: int, isize: int) -> None:
    if buf[off + 4] >= 3:
        with memoryview(buf) as mv:
            crc = xfs_cksum(mv[off:off + isize], f.XFS_DINODE_CRC_OFF)
        struct.pack_into("<I", buf, off + f.XFS_DINODE_CRC_OFF, crc)


# A metadata inode's btree root (XFS_DINODE_FMT_META_BTREE) by its di_metatype: (key bytes, record bytes).
XFS_METAFILE_RTRMAP, XFS_METAFILE_RTREFCOUNT = 7, 8
META_ROOTS = {XFS_METAFILE_RTRMAP: (40, 24), XFS_METAFILE_RTREFCOUNT: (4, 12)}  # rmap keys: low and high


def _root_to_disk(src: bytes, dip, off: int, dsize: int, ino: int, data_fork: bool) -> None:
    """xlog_recover_inode_dbroot: the in-core root block as logged (a long-format block) -> the inode's on-disk
    root: a bmbt root (xfs_bmbt_to_bmdr), or in a metadata inode's data fork the rt rmap or refcount btree's
    (xfs_rtrmapbt_to_disk, xfs_rtrefcountbt_to_disk), whose root may be a leaf holding records."""
    key, rec = 8, None
    if data_fork and dip[5] == f.XFS_DINODE_FMT_META_BTREE:
        metatype = int.from_bytes(dip[6:8], "big")
        if metatype not in META_ROOTS:
            raise _Fatal(f"inode {ino}: logged btree root of a metadata inode of unknown type {metatype}")
        key, rec = META_ROOTS[metatype]
    if len(src) < 72:
        raise _Fatal(f"inode {ino}: logged btree root cut short")
    level, numrecs = struct.unpack_from(">HH", src, 4)
    if level == 0 and rec is not None:  # records in the inode itself
        if 72 + rec * numrecs > len(src) or 4 + rec * numrecs > dsize:
            raise _Fatal(f"inode {ino}: logged btree root holds {numrecs} records, more than fit")
        struct.pack_into(">HH", dip, off, level, numrecs)
        dip[off + 4:off + 4 + rec * numrecs] = src[72:72 + rec * numrecs]
        return
    rmax = (len(src) - 72) // (key + 8)
    dmax = (dsize - 4) // (key + 8)
    if level == 0 or numrecs > rmax or numrecs > dmax or dsize < 4:
        raise _Fatal(f"inode {ino}: logged btree root holds {numrecs} records at level {level}, which do not fit")
    struct.pack_into(">HH", dip, off, level, numrecs)
    dip[off + 4:off + 4 + key * numrecs] = src[72:72 + key * numrecs]
    ptrs = src[72 + key * rmax:72 + key * rmax + 8 * numrecs]
    dip[off + 4 + key * dmax:off + 4 + key * dmax + 8 * numrecs] = ptrs


def verifier_for(buf, blft: int, rtgroups: bool) -> tuple | None:
    """(lsn offset or None, crc offset, per-block?) of the write verifier the kernel attaches to a replayed
    buffer of this type (xlog_recover_validate_buf_type: only when the magic matches the type; rt bitmap and
    summary blocks have a header, and so a stamp, only with realtime groups)."""
    m32 = int.from_bytes(buf[:4], "big")
    mda = int.from_bytes(buf[8:10], "big")
    if blft == 4:
        if m32 in _SHORT_BTREE:
            return (24, 52, False)
        if m32 in (f.XFS_BMAP_CRC_MAGIC, _RTRMAP_MAGIC, _RTREFC_MAGIC):  # long-format btree blocks
            return (32, 64, False)
    elif blft == 5 and m32 == f.XFS_AGF_MAGIC:
        return (208, 216, False)
    elif blft == 6 and m32 == f.XFS_AGFL_MAGIC:
        return (24, 32, False)
    elif blft == 7 and m32 == f.XFS_AGI_MAGIC:
        return (320, 312, False)
    elif blft == 9 and m32 == XFS_SYMLINK_MAGIC:
        return (48, 12, False)
    elif blft in (10, 11, 12) and m32 == {10: f.XFS_DIR3_BLOCK_MAGIC, 11: f.XFS_DIR3_DATA_MAGIC,
                                          12: XFS_DIR3_FREE_MAGIC}[blft]:
        return (16, 4, False)
    elif blft in (13, 14, 15, 16) and mda == {13: XFS_DIR3_LEAF1_MAGIC, 14: XFS_DIR3_LEAFN_MAGIC,
                                              15: XFS_DA3_NODE_MAGIC, 16: XFS_ATTR3_LEAF_MAGIC}[blft]:
        return (24, 12, False)
    elif blft == 17 and m32 == XFS_ATTR3_RMT_MAGIC:
        return (None, 12, True)
    elif blft == 18 and m32 == f.XFS_SB_MAGIC:
        return (240, 224, False)
    elif rtgroups and blft in (19, 20) and m32 == {19: _RTBITMAP_MAGIC, 20: _RTSUMMARY_MAGIC}[blft]:
        return (24, 4, False)
    return None


def stamp(buf: bytearray, blft: int, lsn: int, blocksize: int, rtgroups: bool) -> bool:
    v = verifier_for(buf, blft, rtgroups)
    if v is None:
        return False
    lsn_off, crc_off, per_block = v
    if lsn_off is not None:
        struct.pack_into(">Q", buf, lsn_off, lsn)
    if per_block:
        for o in range(0, len(buf), blocksize):
            blk = bytes(buf[o:o + blocksize])
            if int.from_bytes(blk[:4], "big") == XFS_ATTR3_RMT_MAGIC:
                struct.pack_into("<I", buf, o + crc_off, xfs_cksum(blk, crc_off))
    else:
        with memoryview(buf) as mv:  # no copy of the buffer
            crc = xfs_cksum(mv, crc_off)
        struct.pack_into("<I", buf, crc_off, crc)
    return True


# --- entry points ---------------------------------------------------------------------------------------

def find_log_ends(fs) -> dict:
    """Head, tail and cleanliness of the internal log, as xlog_find_tail finds them."""
    ring = _Ring(fs)
    try:
        return ring.find_tail()
    except _Fatal as e:
        raise LogReplayError(f"the log cannot be read: {e}", structure="log") from None
    except (struct.error, IndexError, ValueError) as e:
        raise LogReplayError(f"the log cannot be read: malformed record ({e})", structure="log") from None


def log_state(fs, skipped: str) -> Replay | None:
    """Head, tail and dirtiness only (nothing replayed), or None when the log cannot be read."""
    try:
        ends = find_log_ends(fs)
    except FsdaxError:
        return None
    return Replay(dirty=not ends["clean"] and ends["head"] != ends["tail"], head_blk=ends["head"],
                  tail_blk=ends["tail"], head_lsn=ends.get("head_lsn", 0), tail_lsn=ends.get("tail_lsn", 0),
                  skipped=skipped)


def _both_passes(r: _Replayer, ring: _Ring, head: int, tail: int, where: dict) -> None:
    """Pass 1 then pass 2 over the log from tail to head. A log part of at most KEEP_LOG_BYTES is parsed once:
    pass 1 keeps its committed transactions (views into the records read) and pass 2 replays them in the same
    order; a larger one is read and parsed again, as the kernel does, so memory stays under that bound."""
    if (head - tail) % ring.nbb * BB > KEEP_LOG_BYTES:
        _large_passes(r, ring, head, tail, where)
        return
    committed: list = []

    def pass1(trans, new_lsn):
        r.pass1(trans, new_lsn)
        committed.append((trans, new_lsn, where["record"]))

    r.out.records = _transactions(ring, head, tail, pass1, where)
    for i, (trans, new_lsn, rec) in enumerate(committed):
        committed[i] = None  # its records can go once it is replayed
        where["record"] = rec
        r.pass2(trans, new_lsn)
    r.finish()


def _large_passes(r: _Replayer, ring: _Ring, head: int, tail: int, where: dict) -> None:
    """Both passes over a large log part: pass 1 by _ops_pass1, which takes from each transaction only the
    cancelled buffers and checks nothing. Pass 2 checks every committed item as pass 1 does, so a replay
    that goes through is the kernel's; when anything fails, pass 1 is run again in full, as the kernel does,
    so that the replay fails (or not) where and as the kernel's would."""
    out = r.out
    before = dict(out.__dict__, intents={}, blocks={}, effects=[], notes=list(out.notes))
    try:
        out.records = _transactions(ring, head, tail, r.pass1_cancels, where, _ops_pass1)
        _transactions(ring, head, tail, r.pass2, where)
        r.finish()
        return
    except Exception:  # noqa: BLE001 - whatever it was, the full passes below meet it again, or do not
        out.__dict__.update(before)
    r = _Replayer(r.fs, ring, out)
    out.records = _transactions(ring, head, tail, r.pass1, where)
    _transactions(ring, head, tail, r.pass2, where)
    r.finish()


@contextlib.contextmanager
def _no_cycle_collection():
    """The passes make a few hundred thousand objects (items, regions, waiting inode items) and hardly a
    reference cycle: the cyclic garbage collector would only walk them over and over (a tenth of a large
    replay). It runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay(fs) -> Replay:
    """Replay the internal log of `fs` in memory. A clean log gives Replay(dirty=False) and no blocks."""
    ring = _Ring(fs)
    out = Replay(log_blocks=ring.nbb)
    where: dict = {}
    try:
        ends = ring.find_tail()
        out.head_blk, out.tail_blk = ends["head"], ends["tail"]
        out.head_lsn, out.tail_lsn = ends.get("head_lsn", 0), ends.get("tail_lsn", 0)
        out.torn = ends.get("torn")
        if ends.get("empty"):  # mkfs writes a record: a log of zeros was never this filesystem's log
            out.notes.append(f"the {ring.what} holds no log record at all (all zeros): is it this filesystem's "
                             "log? (the kernel mounts such a log as empty)")
        if ends["clean"] or ends["head"] == ends["tail"]:
            return out
        out.dirty = True
        out.replayed_here = True
        with _no_cycle_collection():
            _both_passes(_Replayer(fs, ring, out), ring, ends["head"], ends["tail"], where)
    except _Fatal as e:
        raise LogReplayError(f"the log cannot be replayed: {e}", structure="log") from None
    except _BadRecord as e:
        raise LogReplayError(f"the log cannot be replayed: log record at log block {e.blk % ring.nbb}: {e.why}",
                             structure="log") from None
    except (struct.error, IndexError, ValueError, OverflowError) as e:
        rec = where.get("record")
        raise LogReplayError("the log cannot be replayed: malformed log item"
                             + (f" in log record at log block {rec}" if rec is not None else "") + f" ({e})",
                             structure="log") from None
    if out.torn:
        out.notes.append(out.torn)
    return out


class ReplayedDevice:
    """The target's bytes with the replayed blocks patched in: what the disk will hold after the kernel's
    recovery. Everything but pread is the wrapped device's."""

    def __init__(self, dev, blocks: dict):
        self._dev = dev
        self._blocks = blocks
        self._keys = sorted(blocks)

    def __getattr__(self, name):
        return getattr(self._dev, name)

    @property
    def base(self):
        return getattr(self._dev, "base", self._dev)

    def pread(self, offset: int, length: int, what: str = "data") -> bytes:
        buf = self._dev.pread(offset, length, what)
        keys = self._keys
        first = offset // BB
        last = (offset + length - 1) // BB
        i = bisect.bisect_left(keys, first)
        if i == len(keys) or keys[i] > last:
            return buf
        out = bytearray(buf)
        while i < len(keys) and keys[i] <= last:
            d = keys[i]
            blk = self._blocks[d]
            lo, hi = max(offset, d * BB), min(offset + length, (d + 1) * BB)
            out[lo - offset:hi - offset] = blk[lo - d * BB:hi - d * BB]
            i += 1
        return bytes(out)

    def close(self) -> None:
        self._dev.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_replayed(fs):
    """(filesystem as the kernel will see it after recovery, Replay). For a clean log: (fs, Replay) unchanged.
    The new filesystem shares fs's device; fs.warnings are carried over."""
    from fsdaxctl.xfs.fs import XfsFilesystem

    rep = replay(fs)
    if not rep.dirty:
        fs.replay = rep
        return fs, rep
    new = XfsFilesystem(ReplayedDevice(fs.dev, rep.blocks))
    new.warnings[:0] = [w for w in fs.warnings if w not in new.warnings]
    new.replay = rep
    rep.effects = [x for e in rep.effects for x in (written_only(new, e) if e.kind == "exchange-written" else [e])]
    rep.effects += chunks_freed_at_mount(new, unlinked_inodes(new))
    return new, rep


def written_only(fs, e: Effect) -> list[Effect]:
    """An exchange of the mappings where file 1 is written (XFS_EXCHMAPS_INO1_WRITTEN: xfs_exchmaps_find_mappings
    skips file 1's holes and unwritten extents, leaving both files as they are there) as plain exchanges of
    those runs, from file 1's extent map after replay. Unreadable: both files' ranges unknown."""
    from fsdaxctl.xfs.inode import bmap, read_inode

    unknown = [Effect("unknown", e.reason, ino=ino, fork="data", off_lo=off, off_hi=off + e.off_hi - e.off_lo)
               for ino, off in ((e.ino, e.off_lo), (e.ino2, e.off2))]
    try:
        inode = read_inode(fs, e.ino)
        extents = bmap(fs, inode, "data")
    except FsdaxError:
        return unknown
    if inode.core.di_flags & f.XFS_DIFLAG_REALTIME and fs.sb.sb_rextsize > 1:
        return unknown  # allocation units of several blocks: what is skipped depends on whole rt extents
    out = []
    for x in extents:
        a, b = max(x.startoff, e.off_lo), min(x.startoff + x.blockcount - 1, e.off_hi)
        if a <= b and not x.unwritten:
            out.append(Effect("exchange", e.reason, ino=e.ino, fork="data", off_lo=a, off_hi=b, ino2=e.ino2,
                              off2=e.off2 + a - e.off_lo))
    return out


_CHUNK_FREED = "every inode of this chunk is free or on the AGI unlinked list"


def chunks_freed_at_mount(fs, unlinked: set[int]) -> list[Effect]:
    """The inode chunks the mount frees: recovery frees every inode on the AGI unlinked lists
    (xlog_recover_process_iunlinks), and xfs_difree_inobt frees a chunk whose inodes are then all free, unless
    a block holds more than one chunk's inodes (or the filesystem is mounted with ikeep, which cannot be seen
    offline). The freed bytes: the chunk's inodes that exist on disk (a sparse chunk's holes were never
    allocated)."""
    from fsdaxctl.xfs import btree
    from fsdaxctl.xfs.inode import SPARSE_HOLE, XFS_INODES_PER_CHUNK, chunk_slot_states

    geo = fs.geo
    if geo.blocksize // geo.inodesize > XFS_INODES_PER_CHUNK:
        return []
    by_chunk: dict[tuple, int] = {}
    for ino in sorted(unlinked):
        agno, agbno, slot = geo.ino_to_ag(ino)
        agino = (agbno << geo.inopblog) | slot
        try:
            rec = btree.Ag(fs, agno).inobt.lookup_le(agino)
        except FsdaxError:
            continue  # the inobt cannot be read there: the pieces say so themselves
        if rec is not None and rec[0] <= agino < rec[0] + XFS_INODES_PER_CHUNK:
            key = (agno, tuple(rec))
            by_chunk[key] = by_chunk.get(key, 0) | 1 << (agino - rec[0])
    out = []
    for (agno, rec), bits in by_chunk.items():
        states = chunk_slot_states(fs, rec)
        if (rec[4] | bits) != (1 << XFS_INODES_PER_CHUNK) - 1:
            continue
        mask = (1 << geo.inopblog) - 1
        first = geo.ino_to_byte(geo.ag_to_ino(agno, rec[0] >> geo.inopblog, rec[0] & mask))
        for s, t in _runs_of(states, SPARSE_HOLE):
            out.append(Effect("free", f"{_CHUNK_FREED}: the mount frees the chunk (xfs_difree_inobt)",
                              first + s * geo.inodesize, first + t * geo.inodesize))
    return out


def _runs_of(states: list[str], skip: str) -> list[tuple[int, int]]:
    """[first, end) slot runs whose state is not `skip`."""
    out, start = [], None
    for i, st in enumerate(states + [skip]):
        if st != skip and start is None:
            start = i
        elif st == skip and start is not None:
            out.append((start, i))
            start = None
    return out


def unlinked_inodes(fs) -> set[int]:
    """Inodes on the AGI unlinked lists (deleted while still open): the kernel frees them at mount
    (xlog_recover_process_iunlinks). Unreadable lists are skipped."""
    geo = fs.geo
    out: set[int] = set()
    for agno in range(fs.readable_agcount):
        try:
            agi = fs.agi(agno)
        except FsdaxError:
            continue
        for head in agi.agi_unlinked:
            agino, seen = head, 0
            while agino != NULLAGINO and seen < 1 << 20:
                agbno, slot = agino >> geo.inopblog, agino & ((1 << geo.inopblog) - 1)
                ino = geo.ag_to_ino(agno, agbno, slot)
                if ino in out or agbno >= geo.ag_length(agno):
                    break
                out.add(ino)
                try:
                    raw = fs.dev.pread(geo.ino_to_byte(ino), geo.inodesize, f"inode {ino}")
                except FsdaxError:
                    break
                agino = int.from_bytes(raw[96:100], "big")
                seen += 1
    return out


# --- the answers: what finishing the intents does to pieces ----------------------------------------------

OPS = ("unmap", "convert", "refcount", "map", "exchange")  # effects the answer takes exactly, in log order


def op_spans(effects: list) -> list[tuple[int, int]]:
    """Device bytes the exact operations touch: the pieces over them must be seen together (all owners).
    An exchange names file ranges, not bytes: it relabels each piece on its own."""
    return [(e.start, e.end) for e in effects if e.kind in OPS and e.kind != "exchange"]


def effects_on(effects: list, device: str, source: str = "rmapbt") -> list:
    """The effects about one device's bytes, and those naming only a file's range (its pieces may be on any
    device), that an owner source takes. The metadata walk ("walk") reads extent maps and the refcount
    btree's CoW domain: the rmap intents' changes are already in what it reads, the CoW-domain ones not.
    "bnobt" (used space unknown, as GETFSMAP without an rmapbt) knows no owners to add, move or count: those
    bytes stay unknown."""
    out = [e for e in effects if (e.device == device or (e.ino is not None and e.end <= e.start))
           and e.only in (None, "walk" if source == "walk" else "rmapbt")]
    if source == "bnobt":
        out = [e for e in out if e.kind not in ("map", "exchange", "refcount")]
    return out


class EffectIndex:
    """A replay's effects, found per batch of pieces in log order: those whose bytes the batch's span meets,
    and those naming a file range of an inode the batch holds. A dump's thousands of batches then each look
    at the few effects that concern them."""

    def __init__(self, effects: list):
        self.effects = effects
        spans = sorted((e.start, i) for i, e in enumerate(effects) if e.end > e.start)
        self.starts, self.order = [s for s, _ in spans], [i for _, i in spans]
        self.longest = max((effects[i].end - s for s, i in spans), default=0)
        self.by_ino: dict[int, list[int]] = {}
        for i, e in enumerate(effects):
            if e.end <= e.start and e.ino is not None:
                for ino in {e.ino, e.ino2} - {None}:
                    self.by_ino.setdefault(ino, []).append(i)

    def for_batch(self, pieces: list) -> list:
        if not pieces:
            return []
        lo, hi = pieces[0].offset, max(p.offset + p.length for p in pieces)
        a, b = bisect.bisect_left(self.starts, lo - self.longest), bisect.bisect_left(self.starts, hi)
        found = {i for i in self.order[a:b] if self.effects[i].end > lo}
        # inodes whose pieces are here or may come here (a mapping added, an exchange's other file), until none
        # is new
        inos, todo = set(), {p.inode for p in pieces} | {self.effects[i].ino for i in found}
        while todo:
            inos |= todo
            new = {i for ino in todo & self.by_ino.keys() for i in self.by_ino[ino]} - found
            found |= new
            todo = {x for i in new for x in (self.effects[i].ino, self.effects[i].ino2)} - inos
        return [self.effects[i] for i in sorted(found)]


def overlay_pieces(pieces: list, effects, geo, refcounts=None) -> list:
    """Pieces (sorted, one query's, with every owner of the bytes an operation touches) with the intents'
    effects (a list, or an EffectIndex) applied: the operations the mount finishes exactly (apply_ops); bytes
    an unfinished EFI frees are `free`; bytes and file ranges other intents change are `unknown` with the
    reason. Unknown wins over free. Free space where the mount may allocate says so."""
    if isinstance(effects, EffectIndex):
        effects = effects.for_batch(pieces)
    if not effects or not pieces:
        return pieces
    pieces = apply_ops(pieces, [e for e in effects if e.kind in OPS], geo, refcounts)
    rest = [e for e in effects if e.kind not in OPS and e.kind not in MAY_KINDS]
    if rest:
        pieces = _physical_effects(pieces, rest, geo)
    mays = [e for e in effects if e.kind in MAY_KINDS]  # on every free piece, those the intents free too
    return _join_free(_may_be_taken(pieces, mays)) if mays else pieces


def _physical_effects(pieces: list, effects: list, geo) -> list:
    """The bytes unfinished intents free or make unknown, and the file ranges they change (unknown), over
    one query's pieces."""
    from fsdaxctl.xfs.piece import FREE, UNKNOWN, Piece

    lo = min(p.offset for p in pieces)
    hi = max(p.offset + p.length for p in pieces)
    # physical intervals touched, clipped to the pieces' span
    spans: list[tuple[int, int, str, str]] = []
    for e in effects:
        if e.ino is None and e.start < hi and e.end > lo:
            spans.append((max(e.start, lo), min(e.end, hi), e.kind, e.reason))
    bs = geo.blocksize
    for p in pieces:  # file ranges named by bmap/exchange/attr intents: those pieces' bytes
        if p.inode is None or p.owner != "file":
            continue
        for e in effects:
            if e.ino != p.inode or e.fork != p.fork:
                continue
            if p.file_offset is None:  # bmbt block of that fork: the mapping changes, so may its shape
                if e.off_hi - e.off_lo >= (1 << 61):
                    spans.append((p.offset, p.offset + p.length, "unknown", e.reason))
                continue
            if e.bmbt:  # the fork's extent-map blocks only
                continue
            fb_lo, fb_hi = p.file_offset // bs, (p.file_offset + p.length - 1) // bs
            a, b = max(fb_lo, e.off_lo), min(fb_hi, e.off_hi)
            if a <= b:
                s = p.offset + max(0, a * bs - p.file_offset)
                t = p.offset + min(p.length, (b + 1) * bs - p.file_offset)
                spans.append((s, t, "unknown", e.reason))
    if not spans:
        return pieces
    # merge: unknown first, free only where not unknown
    unknown = _merge([(s, t, r) for s, t, k, r in spans if k == "unknown"])
    free = _subtract(_merge([(s, t, r) for s, t, k, r in spans if k == "free"]), unknown)
    cover = sorted(unknown + free)
    out = []
    for p in pieces:
        for s, t in _subtract([(p.offset, p.offset + p.length, None)], cover, keep_reason=False):
            out.append(_clip_piece(p, s, t))
    for kind, runs in ((UNKNOWN, unknown), (FREE, free)):
        out += [_made(kind, s, t - s, r, geo, pieces[0].device) for s, t, r in runs]
    out.sort(key=Piece.sort_key)
    return _join_free(out)


def _may_be_taken(pieces: list, grows: list) -> list:
    """Free pieces where the mount may allocate an extent-map block or refill a free list: free still, with
    the note that says so."""
    if not grows:
        return pieces
    out = []
    for p in pieces:
        why = [e.reason for e in grows if p.owner == "free" and e.start < p.offset + p.length and e.end > p.offset]
        if why:
            had = (p.detail or {}).get("note")
            p = p._replace(detail={**(p.detail or {}), "note": "; ".join(([had] if had else []) + why)})
        out.append(p)
    return out


def apply_ops(pieces: list, ops: list, geo, refcounts) -> list:
    """The rmap, bmap, refcount and exchange changes the mount finishes, in log order, on one query's pieces: a
    mapping added takes the place of free space (and of used space no owner claimed yet); an unmapped owner's
    bytes lose that owner (free when no owner is left: the kernel's GETFSMAP reports a gap in the rmapbt as
    free space); a converted extent takes the intent's unwritten state; a refcount change makes its blocks'
    owners shared (2 or more) or not, and a count going to 0 frees them; an exchange moves each file's mappings
    to the other file. Then pieces the rmapbt would hold as one record are joined, as xfs_rmap_map merges
    them. `refcounts(start, end)`: the (start, end, count) runs of the refcount btree before the mount (count
    1 where it has no record)."""
    qlo, qhi = min(p.offset for p in pieces), max(p.offset + p.length for p in pieces)
    counted: list[tuple[int, int, int]] = []  # refcount changes made so far: the next one starts from them
    for e in ops:
        if e.kind == "exchange":
            pieces, moved = _exchange(pieces, e, geo)
            pieces = _join(pieces, moved)
            continue
        lo, hi = e.start, e.end
        if hi <= qlo or lo >= qhi or not any(p.offset < hi and p.offset + p.length > lo for p in pieces):
            continue
        a, b = max(lo, qlo), min(hi, qhi)
        if e.kind == "refcount":
            runs = refcounts(a, b) if refcounts else [(a, b, None)]
            pieces = _refcount(pieces, e, _counted(runs, counted), geo)
            counted.append((lo, hi, e.value))
        elif e.kind == "map":
            pieces = _map(pieces, e, a, b, geo, refcounts, counted)
        else:
            pieces = _unmap_or_convert(pieces, e, geo)
        pieces = _join(pieces, [(a, b)])
    return pieces


def _unmap_or_convert(pieces: list, e, geo) -> list:
    out, taken = [], []
    for p in pieces:
        a, b = max(p.offset, e.start), min(p.offset + p.length, e.end)
        if a >= b or not _owned_by(p, e, a, geo):
            out.append(p)
            continue
        out += _outside(p, a, b)
        if e.kind == "convert":
            out.append(_clip_piece(p, a, b)._replace(unwritten=bool(e.value)))
        else:
            taken.append((a, b, None))
    out += _freed_where_unowned(out, _merge(taken), e.reason, geo, pieces[0].device)
    return sorted(out, key=lambda p: p.sort_key())


def _map(pieces: list, e, a: int, b: int, geo, refcounts, counted) -> list:
    """The mapping `e` names, added over bytes [a, b): it takes the place of free space and of used space no
    owner claims (allocated on disk, its rmap record still in the log); other owners keep theirs. A file's
    data is shared where the refcount (with the changes made so far) is 2 or more."""
    from fsdaxctl.xfs.piece import FILE, FREE, Piece, unclaimed

    out = []
    for p in pieces:
        s, t = max(p.offset, a), min(p.offset + p.length, b)
        if s < t and (p.owner == FREE or unclaimed(p)):
            out += _outside(p, s, t)
        else:
            out.append(p)
    agno = _agno_at(a, geo, pieces[0].device)
    if e.owner != FILE:
        new = Piece(a, b - a, e.owner, agno, device=pieces[0].device)
    else:
        new = Piece(a, b - a, FILE, agno, e.ino, e.fork, None if e.bmbt else (e.off_lo << geo.blocklog) + a - e.start,
                    e.bmbt, bool(e.value), device=pieces[0].device)
    if new.owner == FILE and new.fork == "data" and not new.extent_map and refcounts:
        out += [_clip_piece(new, s, t)._replace(shared=None if c is None else c >= 2)
                for s, t, c in _counted(refcounts(a, b), counted)]
    else:
        out.append(new)
    return sorted(out, key=Piece.sort_key)


def _exchange(pieces: list, e, geo) -> tuple[list, list]:
    """Each file's data mappings in its range move to the other file, at the same place in the other's range
    (holes too: the other file's mapping moves into them). The two files may be one (ranges that do not
    overlap). Returns the pieces and the bytes relabelled."""
    from fsdaxctl.xfs.piece import FILE, Piece

    bs, n = geo.blocksize, e.off_hi - e.off_lo + 1
    ways = ((e.ino, e.off_lo, e.ino2, e.off2), (e.ino2, e.off2, e.ino, e.off_lo))  # (from, first block, to, first)
    out, moved = [], []
    for p in pieces:
        if p.owner != FILE or p.fork != e.fork or p.extent_map or p.inode not in (e.ino, e.ino2):
            out.append(p)
            continue
        cuts = []  # (file bytes [fa, fb) of p in one range, the file it moves to, its offset there)
        for ino, src, other, dst in ways:
            fa, fb = max(p.file_offset, src * bs), min(p.file_offset + p.length, (src + n) * bs)
            if p.inode == ino and fa < fb:
                cuts.append((fa, fb, other, fa - src * bs + dst * bs))
        cur = p.file_offset
        for fa, fb, other, to in sorted(cuts) + [(p.file_offset + p.length, None, None, None)]:
            if fa > cur:
                out.append(_clip_piece(p, p.offset + cur - p.file_offset, p.offset + fa - p.file_offset))
            if fb is not None:
                s, t = p.offset + fa - p.file_offset, p.offset + fb - p.file_offset
                out.append(_clip_piece(p, s, t)._replace(inode=other, file_offset=to))
                moved.append((s, t))
                cur = fb
    return sorted(out, key=Piece.sort_key), moved


def _join(pieces: list, spans: list) -> list:
    """Pieces (sorted) with touching parts of one rmapbt record joined where they meet inside `spans`
    ([start, end], edges included): the same owner, flags and sharing, and for file data contiguous file
    offsets (xfs_rmap_map and xfs_rmap_convert merge such records; GETFSMAP then reports one)."""
    if not spans:
        return pieces
    out: list = []
    # (owner key, end byte, the file offset that would follow) -> index in out of the piece ending there: a
    # file that maps the same blocks twice (a reflink within the file) has two pieces ending at one byte
    ends: dict = {}
    for p in pieces:
        k = (p.owner, p.inode, p.fork, p.extent_map, p.unwritten, p.shared, p.device, p.agno)
        j = ends.get((k, p.offset, p.file_offset))
        q = out[j] if j is not None else None
        if q is not None and q.detail == p.detail and any(s <= p.offset <= t for s, t in spans):
            out[j] = q._replace(length=q.length + p.length)
            del ends[(k, p.offset, p.file_offset)]
            ends[(k, p.offset + p.length, _next_offset(p))] = j
            continue
        out.append(p)
        ends[(k, p.offset + p.length, _next_offset(p))] = len(out) - 1
    return out


def _ag_bytes(geo, agno: int) -> tuple[int, int]:
    """[start, end) of an AG's bytes on the data device (the last AG may be short)."""
    start = geo.ag_to_byte(agno, 0)
    return start, start + (geo.ag_length(agno) << geo.blocklog)


def _next_offset(p) -> int | None:
    """The file offset a piece joined after p must start at (None: no file offset, metadata)."""
    return None if p.file_offset is None else p.file_offset + p.length


def _counted(runs, counted) -> list[tuple[int, int, int | None]]:
    """Refcount runs (start, end, count on disk) with the changes already made to them added, cut where one
    begins or ends."""
    out = []
    for s, t, c in runs:
        cuts = sorted({s, t} | {x for a, b, _ in counted for x in (a, b) if s < x < t})
        for x, y in zip(cuts, cuts[1:]):
            out.append((x, y, None if c is None else c + sum(d for a, b, d in counted if a <= x and y <= b)))
    return out


def _owned_by(p, e, at: int, geo) -> bool:
    """Is piece p, at byte `at`, the mapping the operation names (its inode, fork, file offset or bmbt block)?"""
    if p.owner != e.owner:
        return False
    if e.owner != "file":  # CoW staging: no inode, no file offset
        return True
    if p.inode != e.ino or p.fork != e.fork or p.extent_map != e.bmbt:
        return False
    if e.bmbt:
        return True
    return p.file_offset + (at - p.offset) == (e.off_lo << geo.blocklog) + (at - e.start)


def _refcount(pieces: list, e, runs, geo) -> list:
    """A refcount change over runs (start, end, count before; None: unreadable) inside the query: file owners
    shared from 2 up, not below; a count that falls to 0 frees the blocks (nothing else owns them then)."""
    from fsdaxctl.xfs.piece import UNKNOWN, Piece, unclaimed

    for s, t, count in runs:
        new = None if count is None else count + e.value
        if new is not None and new < 0:  # a log that contradicts the tree: the mount would find it corrupt
            new = None
        out = []
        for p in pieces:
            a, b = max(p.offset, s), min(p.offset + p.length, t)
            if a >= b or p.owner != "file" or p.extent_map or p.fork != "data":
                out.append(p)
                continue
            out += _outside(p, a, b)
            if new is None:  # the refcount btree could not be read: sharing after the mount is not known
                out.append(Piece(a, b - a, UNKNOWN, p.agno, detail={"reason": e.reason}))
            elif new > 0:
                out.append(_clip_piece(p, a, b)._replace(shared=new >= 2))
        if new == 0:  # freed: in place of the free space and unclaimed used space there (not what is unknown)
            out = [q for p in out for q in ([p] if p.owner != "free" and not unclaimed(p) else _outside(p, s, t))]
            out += _freed_where_unowned(out, [(s, t, None)], e.reason, geo, pieces[0].device)
        pieces = sorted(out, key=lambda p: p.sort_key())
    return pieces


def _outside(p, s: int, t: int) -> list:
    """The parts of piece p outside bytes [s, t)."""
    return [_clip_piece(p, x, y) for x, y in ((p.offset, min(s, p.offset + p.length)),
                                              (max(t, p.offset), p.offset + p.length)) if x < y]


def _freed_where_unowned(pieces: list, spans: list, reason: str, geo, device) -> list:
    """Free pieces for the bytes of `spans` ((start, end, _), merged) that no piece other than free space
    covers: what an operation frees and nothing else (unknown included) still holds."""
    left = _merge([(p.offset, p.offset + p.length, None) for p in pieces if p.owner != "free"])
    return [_made("free", s, t - s, reason, geo, device) for s, t in _subtract(spans, left, keep_reason=False)]


def _agno_at(s: int, geo, device):
    """The AG of byte s of a device (the realtime device's bytes, and those past the data device, have none)."""
    return geo.byte_to_ag(s)[0] if s < geo.size and device != "rt" else None


def _made(kind: str, s: int, n: int, reason: str, geo, device):
    """A piece the replay's effects make (free: a note; unknown: the reason), on the device of the pieces it
    joins."""
    from fsdaxctl.xfs.piece import FREE, Piece

    return Piece(s, n, kind, _agno_at(s, geo, device), detail={"note" if kind == FREE else "reason": reason},
                 device=device)


def _merge(iv):
    iv = sorted(iv)
    out = []
    for s, t, r in iv:
        if out and s <= out[-1][1]:
            ps, pt, pr = out[-1]
            out[-1] = (ps, max(pt, t), pr)
        else:
            out.append((s, t, r))
    return out


def _subtract(iv, cover, keep_reason=True):
    out = []
    for s, t, r in iv:
        cur = s
        for cs, ct, *_ in cover:
            if ct <= cur or cs >= t:
                continue
            if cs > cur:
                out.append((cur, cs, r) if keep_reason else (cur, cs))
            cur = max(cur, ct)
        if cur < t:
            out.append((cur, t, r) if keep_reason else (cur, t))
    return out


def _clip_piece(p, s, t):
    if s == p.offset and t == p.offset + p.length:
        return p
    fo = p.file_offset + (s - p.offset) if p.file_offset is not None else None
    return p._replace(offset=s, length=t - s, file_offset=fo)


def _join_free(pieces):
    out = []
    for p in pieces:
        if out and p.owner == "free" and out[-1].owner == "free" and out[-1].offset + out[-1].length == p.offset \
                and out[-1].agno == p.agno and out[-1].detail == p.detail:  # a note stays on its own bytes
            q = out[-1]
            out[-1] = q._replace(length=q.length + p.length)
        else:
            out.append(p)
    return out
