"""Owners without a reverse-mapping btree: the metadata walk against the kernel.

On rmapbt filesystems the walk (forced) must reproduce the kernel's GETFSMAP exactly, metadata included; on
filesystems without rmapbt its file pieces must be the kernel's FIEMAP of every file (data and attr forks)
and its free space the kernel's. --verify-rmap must find no disagreement on a healthy rmapbt and exactly the
damage on a damaged one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap
from fsdaxctl.xfs.walk import verify_rmap
from tests import images
from tests.oracle import KernelMap, ours

pytestmark = pytest.mark.kernel

RMAP = sorted(n for n, c in images.IMAGE_CONFIGS.items() if c["rmapbt"])
NO_RMAP = sorted(n for n, c in images.IMAGE_CONFIGS.items() if not c["rmapbt"])
FIEMAP_EXTENT_UNWRITTEN = 0x800


@pytest.mark.parametrize("name", RMAP)
def test_walk_reproduces_getfsmap(built, name):
    path, rec = built(name)
    with XfsFilesystem.open(path) as fs:
        km = KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)
        omap = OwnerMap(fs, source="walk")
        assert ours(omap.pieces(0, fs.dev.size)) == km.pieces(0, fs.dev.size)
        assert omap.problems == []


def _blocks(extents, bs):
    """(logical block, physical byte of that block, unwritten) for FIEMAP extents."""
    out = set()
    for e in extents:
        for i in range(e["length"] // bs):
            out.add((e["logical"] // bs + i, e["physical"] + i * bs, bool(e["flags"] & FIEMAP_EXTENT_UNWRITTEN)))
    return out


@pytest.mark.parametrize("name", NO_RMAP)
def test_no_rmapbt_file_pieces_match_fiemap(built, name):
    path, rec = built(name)
    with XfsFilesystem.open(path) as fs:
        bs = fs.geo.blocksize
        omap = OwnerMap(fs)
        assert omap.source == "walk"
        pieces = omap.pieces(0, fs.dev.size)
        assert omap.problems == []
        km = KernelMap(rec["fsmap"], bs, fs.geo.size)
    got = {"data": {}, "attr": {}}
    for p in pieces:
        if p.owner == "file" and not p.extent_map:
            got[p.fork].setdefault(str(p.inode), set()).update(
                (p.file_offset // bs + i, p.offset + i * bs, p.unwritten) for i in range(p.length // bs))
    assert set(got["data"]) >= {ino for ino, extents in rec["fiemap"].items() if extents}
    for ino, extents in rec["fiemap"].items():
        assert got["data"].get(ino, set()) == _blocks(extents, bs), ino
    for ino, extents in rec["fiemap_xattr"].items():
        # FIEMAP_FLAG_XATTR reports attr-fork extents with their fork offsets as logical addresses
        assert got["attr"].get(ino, set()) == _blocks(extents, bs), ino
    # Free space: what the walk leaves unowned is exactly what the kernel (bnobt) calls free.
    free = [x for x in ours(pieces) if x[2] == "free"]
    assert free == [x for x in km.pieces(0, fs.geo.size) if x[2] == "free"]


def test_verify_rmap_healthy_and_damaged(built, tmp_path):
    path, _ = built("4k-reflink")
    with XfsFilesystem.open(path) as fs:
        assert verify_rmap(fs) == []
    bad = str(tmp_path / "bad.img")
    shutil.copy(path, bad)
    # Change the owner of one file record in AG 1's rmapbt, keeping the CRC valid (xfs_db -x recomputes it).
    with XfsFilesystem.open(bad) as fs:
        from fsdaxctl.xfs import btree
        agf = fs.agf(1)
        leaves = [b for b, lvl in btree.tree_blocks(fs, btree.RMAPBT, 1, agf.agf_rmap_root,
                                                     agf.agf_rmap_level).items() if lvl == 0]
        leaf = btree.read_node(fs, btree.RMAPBT, 1, leaves[0], 0)
        idx = next(i for i, r in enumerate(leaf.items) if r[2] >= 0 and r[3] >> 61 == 0)
        start, count, owner, _ = leaf.items[idx]
        fsb = fs.geo.ag_to_fsb(1, leaves[0])
    subprocess.run(["xfs_db", "-x", "-c", f"fsblock {fsb}", "-c", "type rmapbt",
                    "-c", f"write recs[{idx + 1}].owner {owner + 1}", bad], check=True, capture_output=True)
    with XfsFilesystem.open(bad) as fs:
        problems = verify_rmap(fs)
    assert problems == [
        f"AG 1: the rmapbt says agbno {start}+{count} maps inode {owner + 1} data block "
        f"{leaf.items[idx][3]}, the metadata does not",
        f"AG 1: the metadata says agbno {start}+{count} maps inode {owner} data block "
        f"{leaf.items[idx][3]}, the rmapbt does not",
    ]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", bad, "--verify-rmap", "--format", "csv"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "rmapbt check: AG 1: the rmapbt says" in proc.stderr


def test_walk_ignores_and_reports_an_empty_extent(built, tmp_path):
    """An extent of length 0 (a damaged inode, CRC valid) is reported and ignored, never a 0-byte piece.
    Found by tests/test_fuzz.py in CI."""
    path, rec = built("4k-norefl-normap")
    ino = next(int(i) for i, e in rec["fiemap"].items() if len(e) == 1)
    bad = str(tmp_path / "bad.img")
    shutil.copy(path, bad)
    subprocess.run(["xfs_db", "-x", "-c", f"inode {ino}", "-c", "write u3.bmx[0].blockcount 0", bad],
                   check=True, capture_output=True)
    with XfsFilesystem.open(bad) as fs:
        omap = OwnerMap(fs)
        pieces = omap.pieces(0, fs.dev.size)
    assert all(p.length > 0 for p in pieces)
    assert not any(p.inode == ino for p in pieces)
    assert any(f"inode {ino}: extent" in p and "empty" in p for p in omap.problems), omap.problems
