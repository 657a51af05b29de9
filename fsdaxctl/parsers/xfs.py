"""XFS v5 on-disk layouts (fs/xfs/libxfs/xfs_format.h), big-endian except the CRC fields.

Declarations only: no reading, no checking. Field names are the kernel's, so a reviewer can hold this file
against xfs_format.h line by line. Offsets in comments are checked by tests/test_parsers.py.
"""

from construct import Array, Bytes, Int8ub, Int16ub, Int32ub, Int32ul, Int64sb, Int64ub, Struct

from fsdaxctl.parsers import compiled, derived_struct

# --- magic numbers and CRC offsets -------------------------------------------------------------------
XFS_SB_MAGIC = 0x58465342  # "XFSB"
XFS_AGF_MAGIC = 0x58414746  # "XAGF"
XFS_AGI_MAGIC = 0x58414749  # "XAGI"
XFS_AGFL_MAGIC = 0x5841464C  # "XAFL"
XFS_ABTB_CRC_MAGIC = 0x41423342  # "AB3B" bnobt
XFS_ABTC_CRC_MAGIC = 0x41423343  # "AB3C" cntbt
XFS_IBT_CRC_MAGIC = 0x49414233  # "IAB3" inobt
XFS_FIBT_CRC_MAGIC = 0x46494233  # "FIB3" finobt
XFS_RMAP_CRC_MAGIC = 0x524D4233  # "RMB3"
XFS_REFC_CRC_MAGIC = 0x52334643  # "R3FC"
XFS_BMAP_CRC_MAGIC = 0x424D4133  # "BMA3"
XFS_DINODE_MAGIC = 0x494E  # "IN"

XFS_SB_CRC_OFF = 224
XFS_AGF_CRC_OFF = 216
XFS_AGI_CRC_OFF = 312
XFS_AGFL_CRC_OFF = 32
XFS_BTREE_SBLOCK_CRC_OFF = 52
XFS_BTREE_LBLOCK_CRC_OFF = 64
XFS_DINODE_CRC_OFF = 100

# --- superblock features -------------------------------------------------------------------------------
XFS_SB_VERSION_NUMBITS = 0x000F
XFS_SB_VERSION_5 = 5

XFS_SB_FEAT_RO_COMPAT = {0x1: "finobt", 0x2: "rmapbt", 0x4: "reflink", 0x8: "inobtcount"}
XFS_SB_FEAT_RO_COMPAT_FINOBT = 0x1
XFS_SB_FEAT_RO_COMPAT_RMAPBT = 0x2
XFS_SB_FEAT_RO_COMPAT_REFLINK = 0x4

XFS_SB_FEAT_INCOMPAT = {
    0x1: "ftype", 0x2: "sparse-inodes", 0x4: "meta-uuid", 0x8: "bigtime", 0x10: "needsrepair",
    0x20: "nrext64", 0x40: "exchange-range", 0x80: "parent", 0x100: "metadir", 0x200: "zoned",
    0x400: "zone-gaps",
}
XFS_SB_FEAT_INCOMPAT_FTYPE = 0x1
XFS_SB_FEAT_INCOMPAT_SPINODES = 0x2
XFS_SB_FEAT_INCOMPAT_META_UUID = 0x4
XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR = 0x10
XFS_SB_FEAT_INCOMPAT_NREXT64 = 0x20
XFS_SB_FEAT_INCOMPAT_PARENT = 0x80
XFS_SB_FEAT_INCOMPAT_METADIR = 0x100
XFS_SB_FEAT_INCOMPAT_ZONED = 0x200
XFS_SB_FEAT_INCOMPAT_ZONE_GAPS = 0x400
# Incompat bits this reader understands. Metadir moves the quota and realtime inodes into a metadata directory
# tree (fsdaxctl.xfs.metadir). Zoned realtime groups are read on a device of their own or inside the data
# device (sb_rtstart); with zone gaps each group starts at a power-of-two boundary (fsdaxctl.xfs.rt).
XFS_SB_FEAT_INCOMPAT_KNOWN = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | XFS_SB_FEAT_INCOMPAT_METADIR

XFS_SB_FEAT_COMPAT = {}

# --- superblock (struct xfs_dsb) -----------------------------------------------------------------------
xfs_dsb = Struct(
    "sb_magicnum" / Int32ub,  # 0
    "sb_blocksize" / Int32ub,  # 4
    "sb_dblocks" / Int64ub,  # 8
    "sb_rblocks" / Int64ub,  # 16
    "sb_rextents" / Int64ub,  # 24
    "sb_uuid" / Bytes(16),  # 32
    "sb_logstart" / Int64ub,  # 48, fsblock; 0 = external log
    "sb_rootino" / Int64ub,  # 56
    "sb_rbmino" / Int64ub,  # 64
    "sb_rsumino" / Int64ub,  # 72
    "sb_rextsize" / Int32ub,  # 80
    "sb_agblocks" / Int32ub,  # 84
    "sb_agcount" / Int32ub,  # 88
    "sb_rbmblocks" / Int32ub,  # 92
    "sb_logblocks" / Int32ub,  # 96
    "sb_versionnum" / Int16ub,  # 100
    "sb_sectsize" / Int16ub,  # 102
    "sb_inodesize" / Int16ub,  # 104
    "sb_inopblock" / Int16ub,  # 106
    "sb_fname" / Bytes(12),  # 108
    "sb_blocklog" / Int8ub,  # 120
    "sb_sectlog" / Int8ub,
    "sb_inodelog" / Int8ub,
    "sb_inopblog" / Int8ub,
    "sb_agblklog" / Int8ub,
    "sb_rextslog" / Int8ub,
    "sb_inprogress" / Int8ub,
    "sb_imax_pct" / Int8ub,  # 127
    "sb_icount" / Int64ub,  # 128
    "sb_ifree" / Int64ub,  # 136
    "sb_fdblocks" / Int64ub,  # 144
    "sb_frextents" / Int64ub,  # 152
    "sb_uquotino" / Int64ub,  # 160
    "sb_gquotino" / Int64ub,  # 168
    "sb_qflags" / Int16ub,  # 176
    "sb_flags" / Int8ub,  # 178
    "sb_shared_vn" / Int8ub,  # 179
    "sb_inoalignmt" / Int32ub,  # 180
    "sb_unit" / Int32ub,  # 184
    "sb_width" / Int32ub,  # 188
    "sb_dirblklog" / Int8ub,  # 192
    "sb_logsectlog" / Int8ub,  # 193
    "sb_logsectsize" / Int16ub,  # 194
    "sb_logsunit" / Int32ub,  # 196
    "sb_features2" / Int32ub,  # 200
    "sb_bad_features2" / Int32ub,  # 204
    "sb_features_compat" / Int32ub,  # 208
    "sb_features_ro_compat" / Int32ub,  # 212
    "sb_features_incompat" / Int32ub,  # 216
    "sb_features_log_incompat" / Int32ub,  # 220
    "sb_crc" / Int32ul,  # 224, little-endian like every XFS CRC
    "sb_spino_align" / Int32ub,  # 228
    "sb_pquotino" / Int64ub,  # 232
    "sb_lsn" / Int64ub,  # 240
    "sb_meta_uuid" / Bytes(16),  # 248
    "sb_metadirino" / Int64ub,  # 264 (METADIR only)
    "sb_rgcount" / Int32ub,  # 272 (METADIR: realtime groups)
    "sb_rgextents" / Int32ub,  # 276: realtime extents per group
    "sb_rgblklog" / Int8ub,  # 280: log2 of the group size rounded up (rtblock = rgno << rgblklog | rgbno)
    "sb_pad" / Bytes(7),  # 281
    "sb_rtstart" / Int64ub,  # 288 (ZONED: where an internal realtime section starts on the data device)
    "sb_rtreserved" / Int64ub,  # 296 (ZONED)
)

# --- AG headers: one sector each at sectors 1, 2, 3 of every AG ----------------------------------------
xfs_agf = Struct(
    "agf_magicnum" / Int32ub,  # 0
    "agf_versionnum" / Int32ub,  # 4
    "agf_seqno" / Int32ub,  # 8
    "agf_length" / Int32ub,  # 12
    "agf_bno_root" / Int32ub,  # 16
    "agf_cnt_root" / Int32ub,  # 20
    "agf_rmap_root" / Int32ub,  # 24
    "agf_bno_level" / Int32ub,  # 28
    "agf_cnt_level" / Int32ub,  # 32
    "agf_rmap_level" / Int32ub,  # 36
    "agf_flfirst" / Int32ub,  # 40
    "agf_fllast" / Int32ub,  # 44
    "agf_flcount" / Int32ub,  # 48
    "agf_freeblks" / Int32ub,  # 52
    "agf_longest" / Int32ub,  # 56
    "agf_btreeblks" / Int32ub,  # 60
    "agf_uuid" / Bytes(16),  # 64
    "agf_rmap_blocks" / Int32ub,  # 80
    "agf_refcount_blocks" / Int32ub,  # 84
    "agf_refcount_root" / Int32ub,  # 88
    "agf_refcount_level" / Int32ub,  # 92
    "agf_spare64" / Bytes(14 * 8),  # 96
    "agf_lsn" / Int64ub,  # 208
    "agf_crc" / Int32ul,  # 216
    "agf_spare2" / Int32ub,  # 220
)

XFS_AGI_UNLINKED_BUCKETS = 64
xfs_agi = Struct(
    "agi_magicnum" / Int32ub,  # 0
    "agi_versionnum" / Int32ub,  # 4
    "agi_seqno" / Int32ub,  # 8
    "agi_length" / Int32ub,  # 12
    "agi_count" / Int32ub,  # 16
    "agi_root" / Int32ub,  # 20
    "agi_level" / Int32ub,  # 24
    "agi_freecount" / Int32ub,  # 28
    "agi_newino" / Int32ub,  # 32
    "agi_dirino" / Int32ub,  # 36
    "agi_unlinked" / Array(XFS_AGI_UNLINKED_BUCKETS, Int32ub),  # 40
    "agi_uuid" / Bytes(16),  # 296
    "agi_crc" / Int32ul,  # 312
    "agi_pad32" / Int32ub,  # 316
    "agi_lsn" / Int64ub,  # 320
    "agi_free_root" / Int32ub,  # 328
    "agi_free_level" / Int32ub,  # 332
    "agi_iblocks" / Int32ub,  # 336
    "agi_fblocks" / Int32ub,  # 340
)

# The AGFL header; its be32 agbno array (agfl_bno) follows at byte 36 and fills the sector.
xfs_agfl = Struct(
    "agfl_magicnum" / Int32ub,  # 0
    "agfl_seqno" / Int32ub,  # 4
    "agfl_uuid" / Bytes(16),  # 8
    "agfl_lsn" / Int64ub,  # 24
    "agfl_crc" / Int32ul,  # 32
)
XFS_AGFL_BNO_OFF = 36

# --- btree block headers (struct xfs_btree_block) -------------------------------------------------------
xfs_btree_sblock = Struct(  # short form: AG btrees, pointers are agbnos
    "bb_magic" / Int32ub,  # 0
    "bb_level" / Int16ub,  # 4, 0 = leaf
    "bb_numrecs" / Int16ub,  # 6
    "bb_leftsib" / Int32ub,  # 8
    "bb_rightsib" / Int32ub,  # 12
    "bb_blkno" / Int64ub,  # 16, daddr of this block
    "bb_lsn" / Int64ub,  # 24
    "bb_uuid" / Bytes(16),  # 32
    "bb_owner" / Int32ub,  # 48, agno
    "bb_crc" / Int32ul,  # 52
)
XFS_BTREE_SBLOCK_CRC_LEN = 56

xfs_btree_lblock = Struct(  # long form: bmbt, pointers are segmented fsblocks
    "bb_magic" / Int32ub,  # 0
    "bb_level" / Int16ub,  # 4
    "bb_numrecs" / Int16ub,  # 6
    "bb_leftsib" / Int64ub,  # 8
    "bb_rightsib" / Int64ub,  # 16
    "bb_blkno" / Int64ub,  # 24
    "bb_lsn" / Int64ub,  # 32
    "bb_uuid" / Bytes(16),  # 40
    "bb_owner" / Int64ub,  # 56, inode number
    "bb_crc" / Int32ul,  # 64
    "bb_pad" / Int32ub,  # 68
)
XFS_BTREE_LBLOCK_CRC_LEN = 72

# The root of an inode's bmbt, stored in the fork (struct xfs_bmdr_block).
xfs_bmdr_block = Struct("bb_level" / Int16ub, "bb_numrecs" / Int16ub)

NULLAGBLOCK = 0xFFFFFFFF
NULLAGINO = 0xFFFFFFFF
NULLFSBLOCK = 0xFFFFFFFFFFFFFFFF

# --- btree records and keys ---------------------------------------------------------------------------
xfs_alloc_rec = Struct("ar_startblock" / Int32ub, "ar_blockcount" / Int32ub)  # bnobt, cntbt
xfs_alloc_key = xfs_alloc_rec

xfs_rmap_rec = Struct(
    "rm_startblock" / Int32ub,
    "rm_blockcount" / Int32ub,
    "rm_owner" / Int64sb,  # special owners are small negative numbers
    "rm_offset" / Int64ub,  # flags in the top bits, file block offset below
)
xfs_rmap_key = Struct(  # low and high keys of a node entry are each one of these, packed (20 bytes)
    "rm_startblock" / Int32ub,
    "rm_owner" / Int64sb,
    "rm_offset" / Int64ub,
)
XFS_RMAP_OFF_ATTR_FORK = 1 << 63
XFS_RMAP_OFF_BMBT_BLOCK = 1 << 62
XFS_RMAP_OFF_UNWRITTEN = 1 << 61
XFS_RMAP_OFF_MASK = (1 << 54) - 1

XFS_RMAP_OWN_NULL = -1
XFS_RMAP_OWN_UNKNOWN = -2
XFS_RMAP_OWN_FS = -3
XFS_RMAP_OWN_LOG = -4
XFS_RMAP_OWN_AG = -5
XFS_RMAP_OWN_INOBT = -6
XFS_RMAP_OWN_INODES = -7
XFS_RMAP_OWN_REFC = -8
XFS_RMAP_OWN_COW = -9

xfs_refcount_rec = Struct("rc_startblock" / Int32ub, "rc_blockcount" / Int32ub, "rc_refcount" / Int32ub)
xfs_refcount_key = Struct("rc_startblock" / Int32ub)
XFS_REFC_COWFLAG = 1 << 31  # startblock bit 31: the CoW staging domain

xfs_inobt_rec = Struct(  # sparse-inode layout; without SPINODES holemask/count read as freecount's high half
    "ir_startino" / Int32ub,
    "ir_holemask" / Int16ub,
    "ir_count" / Int8ub,
    "ir_freecount" / Int8ub,
    "ir_free" / Int64ub,
)
xfs_inobt_key = Struct("ir_startino" / Int32ub)

xfs_bmbt_rec = Struct("l0" / Int64ub, "l1" / Int64ub)  # packed: see fsdaxctl.xfs.inode.unpack_bmbt_recs
xfs_bmbt_key = Struct("br_startoff" / Int64ub)
xfs_bmbt_ptr = Struct("ptr" / Int64ub)
xfs_sbtree_ptr = Struct("ptr" / Int32ub)

# Derived, for iter_unpack in hot loops. tests/test_parsers.py proves they agree with construct.
ALLOC_REC = derived_struct(xfs_alloc_rec)
RMAP_REC = derived_struct(xfs_rmap_rec)
RMAP_KEY = derived_struct(xfs_rmap_key)
REFCOUNT_REC = derived_struct(xfs_refcount_rec)
INOBT_REC = derived_struct(xfs_inobt_rec)
BMBT_REC = derived_struct(xfs_bmbt_rec)
ALLOC_KEY = derived_struct(xfs_alloc_key)
REFCOUNT_KEY = derived_struct(xfs_refcount_key)
INOBT_KEY = derived_struct(xfs_inobt_key)
BMBT_KEY = derived_struct(xfs_bmbt_key)
SBTREE_PTR = derived_struct(xfs_sbtree_ptr)
BMBT_PTR = derived_struct(xfs_bmbt_ptr)

# --- inodes (struct xfs_dinode, v3 core) --------------------------------------------------------------
xfs_dinode_core = Struct(
    "di_magic" / Int16ub,  # 0
    "di_mode" / Int16ub,  # 2
    "di_version" / Int8ub,  # 4
    "di_format" / Int8ub,  # 5
    "di_onlink" / Int16ub,  # 6 (di_metatype on METADIR inodes)
    "di_uid" / Int32ub,  # 8
    "di_gid" / Int32ub,  # 12
    "di_nlink" / Int32ub,  # 16
    "di_projid_lo" / Int16ub,  # 20
    "di_projid_hi" / Int16ub,  # 22
    "di_big_nextents" / Int64ub,  # 24 (NREXT64 inodes; else di_pad and di_flushiter)
    "di_atime" / Int64ub,  # 32
    "di_mtime" / Int64ub,  # 40
    "di_ctime" / Int64ub,  # 48
    "di_size" / Int64ub,  # 56
    "di_nblocks" / Int64ub,  # 64
    "di_extsize" / Int32ub,  # 72
    "di_nextents" / Int32ub,  # 76 (di_big_anextents on NREXT64 inodes)
    "di_anextents" / Int16ub,  # 80
    "di_forkoff" / Int8ub,  # 82, attr fork offset in 8-byte units
    "di_aformat" / Int8ub,  # 83
    "di_dmevmask" / Int32ub,  # 84
    "di_dmstate" / Int16ub,  # 88
    "di_flags" / Int16ub,  # 90
    "di_gen" / Int32ub,  # 92
    "di_next_unlinked" / Int32ub,  # 96
    "di_crc" / Int32ul,  # 100
    "di_changecount" / Int64ub,  # 104
    "di_lsn" / Int64ub,  # 112
    "di_flags2" / Int64ub,  # 120
    "di_cowextsize" / Int32ub,  # 128
    "di_pad2" / Bytes(12),  # 132
    "di_crtime" / Int64ub,  # 144
    "di_ino" / Int64ub,  # 152
    "di_uuid" / Bytes(16),  # 160
)
XFS_DINODE_CORE_SIZE = 176
# The core is big-endian but for di_crc: derived structs read the fields before and after it (a walk reads
# every inode; construct's parse would cost more than the rest of it).
DINODE_CORE_HEAD = derived_struct(xfs_dinode_core, until="di_crc")
DINODE_CORE_TAIL = derived_struct(xfs_dinode_core, start="di_changecount")
XFS_DIFLAG_REALTIME = 0x1  # di_flags: data fork extents are on the realtime device

XFS_DINODE_FMT_DEV = 0
XFS_DINODE_FMT_LOCAL = 1
XFS_DINODE_FMT_EXTENTS = 2
XFS_DINODE_FMT_BTREE = 3
XFS_DINODE_FMT_UUID = 4
XFS_DINODE_FMT_META_BTREE = 5

XFS_DIFLAG2_DAX = 1 << 0
XFS_DIFLAG2_REFLINK = 1 << 1
XFS_DIFLAG2_NREXT64 = 1 << 4
XFS_DIFLAG2_METADATA = 1 << 5  # a metadata inode of the metadir tree (METADIR)

# The short-form block header's fields before bb_crc (the CRC is checked on the raw buffer).
BTREE_SBLOCK_HDR = derived_struct(xfs_btree_sblock, until="bb_crc")

# Compiled forms for one-off structures (headers, superblock).
XFS_DSB = compiled(xfs_dsb)
XFS_AGF = compiled(xfs_agf)
XFS_AGI = compiled(xfs_agi)
XFS_AGFL = compiled(xfs_agfl)
XFS_BTREE_SBLOCK = compiled(xfs_btree_sblock)
XFS_BTREE_LBLOCK = compiled(xfs_btree_lblock)
XFS_BMDR_BLOCK = compiled(xfs_bmdr_block)
XFS_DINODE_CORE = compiled(xfs_dinode_core)

# --- log record header (struct xlog_rec_header, xfs_log_format.h) ---------------------------------------
XLOG_HEADER_MAGIC_NUM = 0xFEEDBABE
XLOG_UNMOUNT_TRANS = 0x20  # xlog_op_header.oh_flags (xfs_log_format.h): the record of a clean unmount
XLOG_HEADER_CYCLE_SIZE = 32 * 1024
xlog_rec_header = Struct(
    "h_magicno" / Int32ub,  # 0
    "h_cycle" / Int32ub,  # 4
    "h_version" / Int32ub,  # 8
    "h_len" / Int32ub,  # 12
    "h_lsn" / Int64ub,  # 16
    "h_tail_lsn" / Int64ub,  # 24
    "h_crc" / Int32ul,  # 32
    "h_prev_block" / Int32ub,  # 36
    "h_num_logops" / Int32ub,  # 40
    "h_cycle_data" / Bytes(64 * 4),  # 44
    "h_fmt" / Int32ub,  # 300
    "h_fs_uuid" / Bytes(16),  # 304
    "h_size" / Int32ub,  # 320
)
XLOG_REC_HEADER = compiled(xlog_rec_header)
XLOG_OP_HEADER_FLAGS_OFF = 9  # oh_tid be32, oh_len be32, oh_clientid u8, oh_flags u8

# --- directories (xfs_da_format.h) ----------------------------------------------------------------------
XFS_DIR3_BLOCK_MAGIC = 0x58444233  # "XDB3": single-block directory
XFS_DIR3_DATA_MAGIC = 0x58444433  # "XDD3": data block of a leaf/node directory
XFS_DIR3_DATA_CRC_OFF = 4
XFS_DIR2_DATA_FREE_TAG = 0xFFFF
XFS_DIR2_LEAF_OFFSET = 32 << 30  # byte offset in the directory's file space where the hash index starts
XFS_DIR3_FT_NAMES = {0: "unknown", 1: "file", 2: "dir", 3: "chardev", 4: "blockdev", 5: "fifo", 6: "socket",
                     7: "symlink", 8: "whiteout"}
XFS_DIR3_FT_DIR = 2

# Shortform directory header: the parent is 8 bytes when any inode number needs 8 (i8count > 0).
xfs_dir2_sf_hdr = Struct("count" / Int8ub, "i8count" / Int8ub)
XFS_DIR2_SF_HDR = compiled(xfs_dir2_sf_hdr)

xfs_dir3_blk_hdr = Struct(
    "magic" / Int32ub,  # 0
    "crc" / Int32ul,  # 4
    "blkno" / Int64ub,  # 8, daddr of the directory block's first fs block
    "lsn" / Int64ub,  # 16
    "uuid" / Bytes(16),  # 24
    "owner" / Int64ub,  # 40, the directory's inode number
)
xfs_dir3_data_hdr = Struct(
    "hdr" / xfs_dir3_blk_hdr,
    "best_free" / Array(3, Struct("offset" / Int16ub, "length" / Int16ub)),  # 48
    "pad" / Int32ub,  # 60
)
XFS_DIR3_DATA_HDR = compiled(xfs_dir3_data_hdr)
DIR3_BLK_MAGIC = derived_struct(xfs_dir3_blk_hdr, until="crc")  # the hot path of a directory walk:
DIR3_BLK_REST = derived_struct(xfs_dir3_blk_hdr, start="blkno")  # magic at 0, blkno..owner from byte 8
XFS_DIR3_DATA_HDR_SIZE = 64

# The fixed part of a data entry (xfs_dir2_data_entry); the name, an ftype byte (FTYPE), padding to 8 and a
# be16 tag follow.  An unused span (xfs_dir2_data_unused) starts with freetag 0xffff and its be16 length.
xfs_dir2_data_entry_head = Struct("inumber" / Int64ub, "namelen" / Int8ub)
DIR2_DATA_ENTRY_HEAD = derived_struct(xfs_dir2_data_entry_head)
xfs_dir2_data_unused_head = Struct("freetag" / Int16ub, "length" / Int16ub)
DIR2_DATA_UNUSED_HEAD = derived_struct(xfs_dir2_data_unused_head)
xfs_dir2_block_tail = Struct("count" / Int32ub, "stale" / Int32ub)  # the last 8 bytes of an XDB3 block
DIR2_BLOCK_TAIL = derived_struct(xfs_dir2_block_tail)
XFS_DIR2_LEAF_ENTRY_SIZE = 8  # hashval be32, address be32

# --- da (directory/attr index) blocks and xattrs (xfs_da_format.h) --------------------------------------
xfs_da3_blkinfo = Struct(
    "forw" / Int32ub, "back" / Int32ub, "magic" / Int16ub, "pad" / Int16ub,  # 0..12
    "crc" / Int32ul,  # 12
    "blkno" / Int64ub, "lsn" / Int64ub, "uuid" / Bytes(16), "owner" / Int64ub,  # 16, 24, 32, 48
)
XFS_DA3_BLKINFO = compiled(xfs_da3_blkinfo)
XFS_DA3_NODE_MAGIC = 0x3EBE  # directory or attr btree node
XFS_DIR3_LEAF1_MAGIC = 0x3DF1
XFS_DIR3_LEAFN_MAGIC = 0x3DFF
XFS_ATTR3_LEAF_MAGIC = 0x3BEE
XFS_DIR3_FREE_MAGIC = 0x58444633  # "XDF3"
XFS_ATTR3_RMT_MAGIC = 0x5841524D  # "XARM": a remote attribute value block
xfs_attr3_leaf_hdr_tail = Struct("count" / Int16ub, "usedbytes" / Int16ub, "firstused" / Int16ub)  # at 56
XFS_ATTR3_LEAF_HDR_SIZE = 80
xfs_attr_leaf_entry = Struct("hashval" / Int32ub, "nameidx" / Int16ub, "flags" / Int8ub, "pad2" / Int8ub)
ATTR_LEAF_ENTRY = derived_struct(xfs_attr_leaf_entry)
XFS_ATTR_LOCAL, XFS_ATTR_ROOT, XFS_ATTR_SECURE, XFS_ATTR_PARENT = 0x01, 0x02, 0x04, 0x08
XFS_ATTR_INCOMPLETE = 0x80
# A parent pointer's value (struct xfs_parent_rec): the parent directory and its generation; the xattr's name
# is the directory entry's name.
xfs_parent_rec = Struct("p_ino" / Int64ub, "p_gen" / Int32ub)
XFS_PARENT_REC = derived_struct(xfs_parent_rec)
