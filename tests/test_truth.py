"""Wrong answers that real workloads found, and the rule that keeps them out: nothing in use is ever `free`.

- A cntbt is ordered by (blockcount, startblock): a multi-level one was rejected as "keys out of order" and
  its leaves silently reported free. Each btree now checks its own order (the kernel's recs/keys_inorder).
- Whatever cannot be read (a btree node, an inode, a bmbt block, the AGFL, the AGI, the bnobt) makes the bytes
  it would have described `unknown` with a reason and exit bit 1, never `free`: a gap between owner records
  is free only where the bnobt lists it as free too. Each damage below is a real CRC error made by xfs_db on a
  copy of an image the kernel described; the kernel's map of the undamaged image is the truth.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsdaxctl.xfs import btree
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap
from fsdaxctl.xfs.walk import verify_rmap
from tests import images
from tests import kernel as K
from tests.conftest import need_kernel
from tests.oracle import KernelMap, overlaps, ours

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x1, 0x2


def _punch_every(path, period: int, hole: int, blocks: int, bs: int) -> None:
    """Write `blocks` blocks, then punch `hole` blocks out of every `period`: many small free extents."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"\xa5" * (blocks * bs))
        os.fsync(fd)
        for i in range(blocks // period):
            rc = libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, ctypes.c_long(i * period * bs),
                                ctypes.c_long(hole * bs))
            assert rc == 0, os.strerror(ctypes.get_errno())
        os.fsync(fd)
    finally:
        os.close(fd)


def _build_cntbt_image(path, rmapbt: bool) -> dict:
    """The issue's recipe: 1 KiB blocks, a 900-block file with 300 two-block holes and a 600-block file with
    300 one-block holes: AG 0's free-space btrees get two levels, and the cntbt's keys do not ascend by start."""
    images.mkfs(path, 512 << 20, ["-b", "size=1024", "-m", f"rmapbt={int(rmapbt)},reflink=0"])
    with images.loop_mount(path) as mnt:
        _punch_every(os.path.join(mnt, "a"), 3, 2, 900, 1024)
        _punch_every(os.path.join(mnt, "b"), 2, 1, 600, 1024)
        os.sync()
    with images.loop_mount(path, readonly=True) as mnt:
        return {"fsmap": [r.to_dict() for r in K.getfsmap(mnt)]}


@pytest.fixture(scope="module")
def cntbt_images(tmp_path_factory):
    need_kernel()
    out = {}
    for rmapbt in (False, True):
        path = str(tmp_path_factory.mktemp("cntbt") / f"cnt-rmap{int(rmapbt)}.img")
        out[rmapbt] = (path, _build_cntbt_image(path, rmapbt))
    return out


def _cnt_levels(path) -> int:
    with XfsFilesystem.open(path) as fs:
        return fs.agf(0).agf_cnt_level


@pytest.mark.kernel
def test_multilevel_cntbt_is_read_not_dropped(cntbt_images):
    path, rec = cntbt_images[False]
    assert _cnt_levels(path) >= 2, "the recipe no longer makes a two-level cntbt"
    with XfsFilesystem.open(path) as fs:
        km = KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)
        omap = OwnerMap(fs, source="walk")
        pieces = omap.pieces(0, fs.geo.size)
        assert omap.problems == []
        # The kernel (bnobt) and the walk agree on free space to the byte: no cntbt leaf is "free".
        assert [x for x in ours(pieces) if x[2] == "free"] == [x for x in km.pieces(0, fs.geo.size) if x[2] == "free"]
        agf = fs.agf(0)
        cnt = btree.tree_blocks(fs, btree.CNTBT, 0, agf.agf_cnt_root, agf.agf_cnt_level)
        assert any(level == 0 for level in cnt.values())
        for agbno in cnt:
            byte = fs.geo.ag_to_byte(0, agbno)
            assert [p.owner for p in omap.pieces(byte, fs.geo.blocksize)] == ["per-ag-metadata"]


@pytest.mark.kernel
def test_multilevel_cntbt_with_rmapbt(cntbt_images, tmp_path):
    path, rec = cntbt_images[True]
    assert _cnt_levels(path) >= 2
    with XfsFilesystem.open(path) as fs:
        assert verify_rmap(fs) == []  # no false alarm on a healthy filesystem
        km = KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)
        assert ours(OwnerMap(fs).pieces(0, fs.geo.size)) == km.pieces(0, fs.geo.size)
        agf = fs.agf(0)
        leaf = next(b for b, lvl in btree.tree_blocks(fs, btree.CNTBT, 0, agf.agf_cnt_root,
                                                       agf.agf_cnt_level).items() if lvl == 0)
        byte = fs.geo.ag_to_byte(0, leaf)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--offset", str(byte), "--length",
                           "1024", "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 8, proc.stderr
    (piece,) = json.loads(proc.stdout)["results"][0]["owners"]
    assert piece["owner"] == "per-ag-metadata"
    assert piece["detail"]["blocks"] == [{"agbno": leaf, "structure": "cntbt", "level": 0}]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", path, "--verify-rmap", "--format", "csv"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "rmapbt check" not in proc.stderr, proc.stderr


# --- damage: one real CRC error per structure that decides ownership ------------------------------------

# (name, image, xfs_db commands that select the damaged structure, field to fuzz with a stale CRC)
DAMAGE = [
    ("cntbt-node", "cnt", ["agf 0", "addr cntroot"], "lsn"),
    ("bnobt-node", "cnt", ["agf 0", "addr bnoroot"], "lsn"),
    ("inobt-root-walk", "4k-norefl-normap", ["agi 1", "addr root"], "lsn"),
    ("agi-walk", "4k-norefl-normap", ["agi 2"], "lsn"),
    ("agfl-walk", "4k-norefl-normap", ["agfl 0"], "lsn"),
    ("bmbt-walk", "4k-norefl-normap", ["inode {bmbt}", "addr u3.bmbt.ptrs[1]"], "lsn"),
    ("inode-walk", "4k-norefl-normap", ["inode {bmbt}"], "core.gen"),
    ("bnobt-rmap", "4k-reflink", ["agf 1", "addr bnoroot"], "lsn"),
    ("rmapbt-rmap", "4k-reflink", ["agf 1", "addr rmaproot"], "lsn"),
    ("refcountbt-rmap", "4k-reflink", ["agf 0", "addr refcntroot"], "lsn"),
]


def _damaged_copy(src, dst, select: list[str], field: str) -> None:
    shutil.copy(src, dst)
    cmds = [c for s in select for c in ("-c", s)]
    subprocess.run(["xfs_db", "-x", *cmds, "-c", f"fuzz -c {field} random", dst], check=True, capture_output=True)
    probe = subprocess.run(["xfs_db", "-r", *cmds, "-c", "print", dst], capture_output=True, text=True)
    assert "(bad)" in probe.stdout + probe.stderr or "CRC error" in probe.stdout + probe.stderr, \
        f"the damage did not take: {probe.stdout[-500:]}"


@pytest.mark.kernel
@pytest.mark.parametrize("name,image,select,field", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_unreadable_structures_are_unknown_never_free(built, cntbt_images, tmp_path, name, image, select, field):
    if image == "cnt":
        path, rec = cntbt_images[False]
    else:
        path, rec = built(image)
    select = [s.format(bmbt=rec.get("bmbt_inode")) for s in select]
    bad = str(tmp_path / "bad.img")
    _damaged_copy(path, bad, select, field)
    with XfsFilesystem.open(path) as fs:
        clean = OwnerMap(fs).pieces(0, fs.geo.size)
    with XfsFilesystem.open(bad) as fs:
        omap = OwnerMap(fs)
        damaged = omap.pieces(0, fs.geo.size)
        assert omap.problems, "the damage was not reported"
    used = [(p.offset, p.offset + p.length) for p in clean if p.owner not in ("free", "unknown")]
    free = [(p.offset, p.offset + p.length) for p in damaged if p.owner == "free"]
    wrong = overlaps(used, free)
    assert wrong == [], f"{name}: bytes in use on the undamaged image answered free: {wrong[:5]}"
    if "refcountbt" not in name:  # a damaged refcountbt leaves owners known and `shared` unknown (None)
        assert any(p.owner == "unknown" for p in damaged)
    else:
        assert any(p.shared is None for p in damaged if p.owner == "file" and p.fork == "data" and not p.extent_map)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", bad, "--format", "csv"],
                          capture_output=True, text=True)
    assert proc.returncode & 1 and "Traceback" not in proc.stderr, proc.stderr


# --- btree order: the kernel's recs_inorder / keys_inorder per tree --------------------------------------

def _leaf(tree, items):
    return btree.Node(0, items, [])


def _kernel_in_order(tree, a, b) -> bool:
    """xfs_*_recs_inorder(a, b), written from the kernel's definitions."""
    if tree is btree.CNTBT:
        return (a[1], a[0]) < (b[1], b[0])
    if tree is btree.RMAPBT:
        ka = (a[0], a[2] % (1 << 64), a[3] & ~(1 << 61))
        kb = (b[0], b[2] % (1 << 64), b[3] & ~(1 << 61))
        return ka <= kb
    if tree is btree.INOBT:
        return a[0] + 64 <= b[0]
    return a[0] + a[1] <= b[0]  # bnobt, refcountbt (the CoW bit makes its own domain sort last)


_REC = {
    btree.BNOBT: st.tuples(st.integers(0, 5000), st.integers(1, 40)),
    btree.CNTBT: st.tuples(st.integers(0, 5000), st.integers(1, 40)),
    btree.REFCOUNTBT: st.tuples(st.integers(0, 5000) | st.integers(0, 5000).map(lambda x: x | 1 << 31),
                                st.integers(1, 40), st.integers(1, 5)),
    btree.INOBT: st.tuples(st.integers(0, 4000).map(lambda x: x * 64), st.just(0), st.just(64), st.just(0),
                           st.integers(0, 2 ** 64 - 1)),
    btree.RMAPBT: st.tuples(st.integers(0, 300), st.integers(1, 40), st.sampled_from([-3, -7, 131, 132, 2 ** 40]),
                            st.integers(0, 50) | st.integers(0, 50).map(lambda x: x | 1 << 61)),
}


@pytest.mark.parametrize("tree", list(_REC), ids=lambda t: t.name)
@given(data=st.data())
def test_leaf_order_is_the_kernels(tree, data):
    recs = data.draw(st.lists(_REC[tree], min_size=2, max_size=12))
    bad = btree._out_of_order(tree, list(zip(*recs)), True)
    kernel = all(_kernel_in_order(tree, a, b) for a, b in zip(recs, recs[1:]))
    assert (bad is None) == kernel, (recs, bad)


def test_cntbt_node_keys_sort_by_size_then_start():
    keys = [(71, 1), (1266, 1), (1388, 1), (73, 2), (253, 2), (610, 2)]  # a real two-level cntbt root
    assert btree._out_of_order(btree.CNTBT, list(zip(*keys)), False) is None
    assert btree._out_of_order(btree.BNOBT, list(zip(*keys)), False) is not None
    swapped = keys[:2] + [keys[3], keys[2]] + keys[4:]
    assert btree._out_of_order(btree.CNTBT, list(zip(*swapped)), False) == "entries 3 and 4"


# --- shared: exact per piece; per record (the kernel's flag) for the engine -------------------------------

@pytest.mark.kernel
@pytest.mark.parametrize("name", ["1k-reflink", "4k-reflink"])
def test_shared_pieces_join_into_the_kernels_records(built, name):
    """Pieces are cut where sharing changes; joined again (as_records, what the engine walks) they are the
    kernel's GETFSMAP records clipped to the query, with the kernel's own per-record SHARED flag."""
    import random

    from fsdaxctl.xfs.owners import as_records

    path, rec = built(name)
    recs = [K.FsmapRec(**r) for r in rec["fsmap"]]
    data = [r for r in recs if KernelMap.is_data(r)]
    rng = random.Random(name)
    with XfsFilesystem.open(path) as fs:
        bs = fs.geo.blocksize
        km = KernelMap(recs, bs, fs.geo.size)
        partly = [r for r in data if r.flags & K.FMR_OF_SHARED and not all(
            km.mapped[b] >= 2 for b in range(r.physical // bs, (r.physical + r.length) // bs))]
        omap = OwnerMap(fs)
        split_seen = 0
        for r in rng.sample(partly, min(20, len(partly))) + rng.sample(data, 20):
            lo = r.physical - rng.randrange(0, 3) * fs.geo.blocksize
            hi = r.physical + r.length + rng.randrange(0, 3) * fs.geo.blocksize
            pieces = omap.pieces(max(0, lo), hi - max(0, lo))
            mine = [p for p in pieces if p.owner == "file" and p.inode == r.owner and p.fork == "data"
                    and not p.extent_map and r.physical <= p.offset < r.physical + r.length
                    and p.file_offset - r.offset == p.offset - r.physical]  # not the same inode's other mapping
            split_seen += len(mine) > 1
            assert all(p.shared in (True, False) for p in mine)
            joined = as_records(mine)
            assert [(p.offset, p.length, p.file_offset, bool(p.shared)) for p in joined] == \
                [(r.physical, r.length, r.offset, bool(r.flags & K.FMR_OF_SHARED))], (r, mine)
    assert split_seen, "no record was partly shared: the image lost its partial reflinks"


# --- realtime files: never take rt block numbers for data-device blocks -----------------------------------

@pytest.mark.kernel
def test_realtime_file_is_refused_not_misread(tmp_path):
    """A realtime file's extents count rt-device blocks. This kernel cannot mount a filesystem with a realtime
    device, so the flag is set by xfs_db on a file written by the kernel: `--file` must refuse (not name data-device
    bytes), and the blocks its extents used to point at are no longer the file's (unknown, not free)."""
    need_kernel()
    img = str(tmp_path / "rt.img")
    images.mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "rmapbt=0,reflink=0"])
    with images.loop_mount(img) as mnt:
        images.write_file(os.path.join(mnt, "rtfile"), b"\x5a" * 65536, fsync=True)
        ino = os.stat(os.path.join(mnt, "rtfile")).st_ino
        (ext,) = K.fiemap(os.path.join(mnt, "rtfile"))
    subprocess.run(["xfs_db", "-x", "-c", f"inode {ino}", "-c", "write core.realtime 1", img], check=True,
                   capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", img, "--file", "/rtfile", "--file-offset",
                           "0", "--length", "4096"], capture_output=True, text=True)
    assert proc.returncode == 1 and "realtime file" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    with XfsFilesystem.open(img) as fs:
        pieces = OwnerMap(fs).pieces(ext.physical, ext.length)
    assert [p.owner for p in pieces] == ["unknown"], pieces


@pytest.mark.kernel
def test_an_extent_grown_over_hundreds_of_owners_settles_at_once(built, tmp_path):
    """Found by the fuzz campaign (a 120 s hang): a bmbt record whose length grew over hundreds of other pieces
    made the conflict settling quadratic per piece. Now one pass per piece, and the warnings stay short."""
    path, rec = built("4k-norefl-normap")
    bad = str(tmp_path / "bad.img")
    _damaged_copy(path, bad, [f"inode {rec['bmbt_inode']}", "addr u3.bmbt.ptrs[1]"], "recs[1].blockcount")
    subprocess.run(["xfs_db", "-x", "-c", f"inode {rec['bmbt_inode']}", "-c", "addr u3.bmbt.ptrs[1]",
                    "-c", "write -d recs[1].blockcount 2000", bad], check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", bad, "--format", "jsonl"],
                          capture_output=True, text=True, timeout=120)
    pieces = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    conflicts = [p for p in pieces if p.get("detail", {}).get("conflict")]
    assert len(conflicts) > 50 and proc.returncode & 1
    assert len(proc.stderr.splitlines()) <= 30, proc.stderr[-2000:]


def test_answer_check_turns_every_impossible_map_into_unknown():
    """The one invariant check: a gap, a piece out of order or outside the query, an owner claiming the same
    bytes twice each come out `unknown` with an internal error; two files sharing a block do not."""
    from fsdaxctl.xfs.piece import AnswerCheck, Piece

    notes = []
    check = AnswerCheck(0, 100, notes.append)
    a = Piece(0, 10, "file", 0, 131, "data", 0, shared=True)
    b = Piece(0, 10, "file", 0, 132, "data", 0, shared=True)  # a sharer: fine
    twice = Piece(5, 10, "file", 0, 131, "data", 5)  # inode 131 again at the same file offsets
    other_offset = Piece(5, 10, "file", 0, 131, "data", 4096)  # the same file at another offset: fine
    gap_then = Piece(30, 10, "per-ag-metadata", 0)  # bytes 15..29 covered by nobody
    backwards = Piece(20, 5, "inodes", 0)
    outside = Piece(95, 10, "free", 0)
    out = check.batch([a, b, twice, other_offset, gap_then, backwards, outside]) + check.finish()
    bugs = [p for p in out if p.owner == "unknown" and "internal error" in (p.detail or {}).get("error", "")]
    assert [(p.offset, p.length) for p in bugs] == [(5, 10), (15, 15), (20, 5), (40, 55)]
    assert [p for p in out if p.inode == 132] == [b] and other_offset in out
    assert out[-1] == Piece(95, 5, "free", 0)  # clipped to the query, and said
    assert len(notes) == 5 and all("internal error" in n for n in notes)
    assert [p.owner for p in AnswerCheck(0, 20, notes.append).batch([Piece(0, 20, "free")])] == ["free"]
