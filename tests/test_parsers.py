"""construct declarations: offsets as documented, derived structs agree, parses agree with xfs_db."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsdaxctl.parsers import derived_struct, field_names
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.inode import read_inode, unpack_bmbt_recs
from tests import xfsdb


def offsets(decl):
    out, pos = {}, 0
    for sub in decl.subcons:
        out[sub.name] = pos
        pos += sub.sizeof()
    return out


# Offsets from the kernel's xfs_format.h, checked against real images.
REFERENCE_OFFSETS = {
    f.xfs_dsb: {"sb_blocksize": 4, "sb_dblocks": 8, "sb_uuid": 32, "sb_logstart": 48, "sb_rootino": 56,
                "sb_agblocks": 84, "sb_agcount": 88, "sb_logblocks": 96, "sb_versionnum": 100, "sb_sectsize": 102,
                "sb_inodesize": 104, "sb_fname": 108, "sb_blocklog": 120, "sb_agblklog": 124, "sb_icount": 128,
                "sb_dirblklog": 192, "sb_features2": 200, "sb_features_compat": 208,
                "sb_features_ro_compat": 212, "sb_features_incompat": 216, "sb_features_log_incompat": 220,
                "sb_crc": 224, "sb_spino_align": 228, "sb_pquotino": 232, "sb_lsn": 240, "sb_meta_uuid": 248,
                "sb_metadirino": 264},
    f.xfs_agf: {"agf_seqno": 8, "agf_length": 12, "agf_bno_root": 16, "agf_cnt_root": 20, "agf_rmap_root": 24,
                "agf_bno_level": 28, "agf_rmap_level": 36, "agf_flfirst": 40, "agf_fllast": 44, "agf_flcount": 48,
                "agf_freeblks": 52, "agf_longest": 56, "agf_btreeblks": 60, "agf_uuid": 64, "agf_rmap_blocks": 80,
                "agf_refcount_blocks": 84, "agf_refcount_root": 88, "agf_refcount_level": 92, "agf_lsn": 208,
                "agf_crc": 216},
    f.xfs_agi: {"agi_seqno": 8, "agi_length": 12, "agi_count": 16, "agi_root": 20, "agi_level": 24,
                "agi_freecount": 28, "agi_newino": 32, "agi_dirino": 36, "agi_unlinked": 40, "agi_uuid": 296,
                "agi_crc": 312, "agi_lsn": 320, "agi_free_root": 328, "agi_free_level": 332},
    f.xfs_agfl: {"agfl_crc": 32},
    f.xfs_btree_sblock: {"bb_level": 4, "bb_numrecs": 6, "bb_leftsib": 8, "bb_rightsib": 12, "bb_blkno": 16,
                         "bb_lsn": 24, "bb_uuid": 32, "bb_owner": 48, "bb_crc": 52},
    f.xfs_btree_lblock: {"bb_leftsib": 8, "bb_rightsib": 16, "bb_blkno": 24, "bb_lsn": 32, "bb_uuid": 40,
                         "bb_owner": 56, "bb_crc": 64},
    f.xfs_dinode_core: {"di_mode": 2, "di_version": 4, "di_format": 5, "di_onlink": 6, "di_nlink": 16,
                        "di_big_nextents": 24, "di_size": 56, "di_nblocks": 64, "di_nextents": 76,
                        "di_anextents": 80, "di_forkoff": 82, "di_aformat": 83, "di_flags": 90, "di_gen": 92,
                        "di_next_unlinked": 96, "di_crc": 100, "di_changecount": 104, "di_lsn": 112,
                        "di_flags2": 120, "di_cowextsize": 128, "di_crtime": 144, "di_ino": 152, "di_uuid": 160},
    f.xlog_rec_header: {"h_cycle": 4, "h_lsn": 16, "h_crc": 32, "h_num_logops": 40, "h_cycle_data": 44,
                        "h_fmt": 300, "h_fs_uuid": 304, "h_size": 320},
}

SIZES = {f.xfs_btree_sblock: f.XFS_BTREE_SBLOCK_CRC_LEN, f.xfs_btree_lblock: f.XFS_BTREE_LBLOCK_CRC_LEN,
         f.xfs_dinode_core: f.XFS_DINODE_CORE_SIZE, f.xfs_rmap_rec: 24, f.xfs_rmap_key: 20,
         f.xfs_refcount_rec: 12, f.xfs_inobt_rec: 16, f.xfs_bmbt_rec: 16, f.xfs_alloc_rec: 8,
         f.xfs_agi: 344, f.xfs_agf: 224, f.xfs_dsb: 304}  # xfs_dsb: up to sb_rtreserved (6.15: rt groups, zoned)


@pytest.mark.parametrize("decl", list(REFERENCE_OFFSETS), ids=lambda d: field_names(d)[0])
def test_offsets_match_reference(decl):
    got = offsets(decl)
    for name, off in REFERENCE_OFFSETS[decl].items():
        assert got[name] == off, name


@pytest.mark.parametrize("decl", list(SIZES), ids=lambda d: field_names(d)[0])
def test_sizes(decl):
    assert decl.sizeof() == SIZES[decl]


DERIVED = [(f.xfs_rmap_rec, f.RMAP_REC), (f.xfs_rmap_key, f.RMAP_KEY), (f.xfs_refcount_rec, f.REFCOUNT_REC),
           (f.xfs_alloc_rec, f.ALLOC_REC), (f.xfs_inobt_rec, f.INOBT_REC), (f.xfs_bmbt_rec, f.BMBT_REC),
           (f.xfs_bmbt_key, f.BMBT_KEY), (f.xfs_refcount_key, f.REFCOUNT_KEY), (f.xfs_inobt_key, f.INOBT_KEY)]


@pytest.mark.parametrize("decl,derived", DERIVED, ids=lambda x: getattr(x, "format", None) or "")
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_derived_struct_agrees_with_construct(decl, derived, data):
    n = data.draw(st.integers(1, 8))
    raw = data.draw(st.binary(min_size=n * derived.size, max_size=n * derived.size))
    fast = list(derived.iter_unpack(raw))
    names = field_names(decl)
    for i, tup in enumerate(fast):
        slow = decl.parse(raw[i * derived.size:(i + 1) * derived.size])
        assert tup == tuple(slow[k] for k in names)


def test_derived_struct_refuses_mixed_layouts():
    with pytest.raises(TypeError):
        derived_struct(f.xfs_btree_sblock)  # the CRC field is little-endian, the rest big-endian
    with pytest.raises(TypeError):
        derived_struct(f.xfs_agi)  # an Array


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=56, max_size=56))
def test_derived_block_header_agrees_with_construct(raw):
    names = field_names(f.xfs_btree_sblock, until="bb_crc")
    slow = f.xfs_btree_sblock.parse(raw)
    assert f.BTREE_SBLOCK_HDR.unpack_from(raw) == tuple(slow[k] for k in names)


@settings(max_examples=300)
@given(unwritten=st.booleans(), startoff=st.integers(0, (1 << 54) - 1),
       startblock=st.integers(0, (1 << 52) - 1), count=st.integers(1, (1 << 21) - 1))
def test_bmbt_rec_unpack_roundtrip(unwritten, startoff, startblock, count):
    # Pack as xfs_bmbt_disk_set_all does (xfs_bmap_btree.c), bit by bit.
    l0 = (int(unwritten) << 63) | (startoff << 9) | (startblock >> 43)
    l1 = ((startblock & ((1 << 43) - 1)) << 21) | count
    (e,) = unpack_bmbt_recs(struct.pack(">QQ", l0, l1))
    assert (e.unwritten, e.startoff, e.startblock, e.blockcount) == (unwritten, startoff, startblock, count)


# --- against xfs_db on real images ------------------------------------------------------------------------

def _compare(ours, theirs: dict, prefix: str, aliases=None):
    aliases = aliases or {}
    compared = 0
    for name in field_names(ours._decl):
        key = aliases.get(name, name.removeprefix(prefix))
        if key not in theirs:
            key = key.replace("_", "")
        if key not in theirs:
            continue
        want = xfsdb.as_int(theirs[key])
        if want is None:
            continue
        got = getattr(ours, name)
        if name.endswith("_crc"):
            # xfs_db shows the CRC's raw bytes as a big-endian number; on disk it is little-endian (__le32).
            got = int.from_bytes(got.to_bytes(4, "little"), "big")
        if want == "null":
            assert got in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, (1 << 64) - 1), name
        else:
            assert got == want, (name, got, want)
        compared += 1
    return compared


class _P:
    def __init__(self, decl, parsed):
        self._decl = decl
        self.__dict__.update({k: getattr(parsed, k) for k in field_names(decl)})


def test_superblock_agf_agi_match_xfs_db(mkfs_image):
    img = mkfs_image
    with XfsFilesystem.open(img) as fs:
        n = _compare(_P(f.xfs_dsb, fs.sb), xfsdb.fields(img, "sb 0", "p"), "sb_",
                     {"sb_features_ro_compat": "features_ro_compat", "sb_features_incompat": "features_incompat"})
        assert n >= 40
        for agno in range(fs.geo.agcount):
            hdr = fs.ag(agno)
            n = _compare(_P(f.xfs_agf, hdr.agf), xfsdb.fields(img, f"agf {agno}", "p"), "agf_",
                         {"agf_refcount_root": "refcntroot", "agf_refcount_level": "refcntlevel",
                          "agf_refcount_blocks": "refcntblocks"})
            assert n >= 20
            n = _compare(_P(f.xfs_agi, hdr.agi), xfsdb.fields(img, f"agi {agno}", "p"), "agi_",
                         {"agi_iblocks": "ino_blocks", "agi_fblocks": "fino_blocks"})
            assert n >= 14
            agfl_db = xfsdb.run(img, f"agfl {agno}", "p bno")
            listed = [int(x.split(":")[1]) for x in agfl_db.split() if ":" in x and x.split(":")[1].isdigit()]
            assert fs.agfl(agno) == [b for b in listed if b != 0xFFFFFFFF][:len(fs.agfl(agno))]


def test_root_inode_matches_xfs_db(mkfs_image):
    img = mkfs_image
    with XfsFilesystem.open(img) as fs:
        ino = fs.sb.sb_rootino
        inode = read_inode(fs, ino)
        theirs = {k.removeprefix("core.").removeprefix("v3."): v
                  for k, v in xfsdb.fields(img, f"inode {ino}", "p").items()}
        n = _compare(_P(f.xfs_dinode_core, inode.core), theirs, "di_",
                     {"di_anextents": "naextents", "di_nlink": "nlinkv2", "di_ino": "inumber",
                      "di_changecount": "change_count"})
        assert n >= 15


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=176, max_size=176))
def test_fast_dinode_core_agrees_with_construct(raw):
    from fsdaxctl.xfs.inode import parse_core

    slow = f.xfs_dinode_core.parse(raw)
    fast = parse_core(raw)
    assert tuple(fast) == tuple(slow[k] for k in field_names(f.xfs_dinode_core))
