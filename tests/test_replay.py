"""Log replay against the kernel's own recovery (issue 11).

Crash images are made the way fstests does (tests/crash.py): a random workload on a loop mount, shut down while
it runs (log flushed or not), unmounted; a copy is mounted so the kernel recovers it and its GETFSMAP, FIEMAP and
paths are recorded. fsdaxctl then reads the crashed image (log replayed in memory) and must give the kernel's
answer piece for piece (tests/replay_oracle.py says which differences are by design: CoW staging and unlinked
inodes the kernel frees at mount, and bytes named `unknown` because an intent left in the log changes them).
Without rmapbt the kernel's GETFSMAP says only free/unknown: there free space must equal the kernel's and every
file piece must be the kernel's FIEMAP, as in tests/test_walk.py.

CI: a few seeds (root, loop devices). FSDAXCTL_SLOW=1: many seeds on every config. Without root: the committed
crashed images in tests/data/crash (tests/make_crash_fixtures.py) and the log fuzzing.

    python tests/test_replay.py CONFIG[,CONFIG..]|all SEEDS [--ops N]   # the campaign by hand: one line per image
"""

from __future__ import annotations

import json
import lzma
import os
import random
import shutil
import subprocess
import sys
import tempfile

import pytest

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fsdaxctl.xfs import logrecover as L  # noqa: E402
from fsdaxctl.xfs.fs import XfsFilesystem  # noqa: E402
from fsdaxctl.xfs.owners import OwnerMap  # noqa: E402

SLOW = os.environ.get("FSDAXCTL_SLOW") == "1"
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "crash")
from tests.test_walk import _blocks  # noqa: E402 - FIEMAP extents as blocks, as the walk's test reads them

# (config, seed, mode): CI keeps to a handful (about 1 s each to build, a few to compare)
CI_CASES = [("4k-reflink", 1, "flush"), ("4k-reflink", 2, "noflush"), ("1k-reflink", 3, "flush"),
            ("4k-norefl-normap", 4, "flush"), ("4k-smalllog", 5, "flush"), ("64k-block", 6, "flush"),
            ("4k-4ksect", 7, "noflush"), ("4k-reflink-normap", 8, "flush")]


def check_image(img: str, rec: dict) -> dict:
    """Compare fsdaxctl on the crashed image with the kernel's record; returns the figures, raises on a
    disagreement."""
    from tests.kernel import FsmapRec, owner_name
    from tests.oracle import KernelMap, ours
    from tests.replay_oracle import compare

    with XfsFilesystem.open(img) as fs0:
        fs, rep = L.open_replayed(fs0)
        assert rep.dirty, "the crash left a clean log"
        unlinked = L.unlinked_inodes(fs)
        km = KernelMap([FsmapRec(**r) for r in rec["fsmap"]], fs.geo.blocksize, fs.geo.size)
        out = {"transactions": rep.transactions, "blocks": len(rep.blocks),
               "intents_left": sum(v[2] for v in rep.intents.values()), "unlinked": len(unlinked)}
        # AGs where the mount's own work (finishing intents) reshapes the AG btrees
        busy = {fs.geo.byte_to_ag(e.start)[0] for e in rep.effects if e.ino is None and e.start < fs.geo.size}
        if fs.has_rmapbt:
            omap = OwnerMap(fs)
            growing = {e.value for e in rep.effects if e.kind == "may-allocate"}
            st = compare(fs, omap, km, unlinked, busy_ags=busy, growing=growing)
            assert not [w for w in omap.problems if "without an owner" in w], (img, omap.problems.lines(5))
            assert not st["ours_only"] and not st["kernel_only"], (img, st["ours_only"][:20], st["kernel_only"][:20])
            out.update({k: v for k, v in st.items() if k not in ("ours_only", "kernel_only")})
            return out
        # no rmapbt: the walk's file pieces against FIEMAP, free space against the kernel's
        assert {owner_name(r) for r in km.recs} <= {"free", "unknown"}
        bs = fs.geo.blocksize
        omap = OwnerMap(fs)
        pieces = omap.pieces(0, fs.geo.size)
        got = {"data": {}, "attr": {}}
        unknown = [(p.offset, p.offset + p.length) for p in pieces if p.owner == "unknown" and p.detail
                   and "intent" in str(p.detail)]
        for p in pieces:
            if p.owner == "file" and not p.extent_map and p.inode not in unlinked:
                got[p.fork].setdefault(str(p.inode), set()).update(
                    (p.file_offset // bs + i, p.offset + i * bs, p.unwritten) for i in range(p.length // bs))
        n = 0
        for key, fork in (("fiemap", "data"), ("fiemap_xattr", "attr")):
            for ino, extents in rec[key].items():
                want = _blocks(extents, bs)
                have = got[fork].get(ino, set())
                if unknown:  # blocks an unfinished intent changes are not compared
                    want = {b for b in want if not any(s <= b[1] < e for s, e in unknown)}
                    have = {b for b in have if not any(s <= b[1] < e for s, e in unknown)}
                assert have == want, (img, fork, ino, sorted(have ^ want)[:10])
                n += len(want)
        from tests.replay_oracle import AG_BTREES, _join_free, _minus
        # CoW staging and unlinked inodes' blocks are freed by the mount (unless another file still maps them)
        live = [(p.offset, p.offset + p.length) for p in pieces if p.owner == "file" and p.inode not in unlinked]
        gone = [p for p in pieces if (p.owner == "cow-staging" or (p.owner == "file" and p.inode in unlinked))
                and not any(s < p.offset + p.length and e > p.offset for s, e in live)]
        freed = [(p.offset, p.length, "free", None, None, None, False, False, False) for p in gone]
        kfree = [x for x in km.pieces(0, fs.geo.size) if x[2] == "free"]
        # and in an AG where the mount does that work, its own transactions shrink the AG's btrees (as in
        # replay_oracle.compare): our btree blocks there that the kernel then calls free count as freed
        busy |= {p.agno for p in gone}
        freed += [(p.offset, p.length, "free", None, None, None, False, False, False) for p in pieces
                  if p.owner in AG_BTREES and p.agno in busy
                  and any(k[0] <= p.offset and p.offset + p.length <= k[0] + k[1] for k in kfree)]
        ofree = sorted(set([x for x in ours(pieces) if x[2] == "free"] + freed))
        holes = sorted(unknown)
        of = _join_free(_minus(_join_free(ofree), holes))
        kf = _join_free(_minus(_join_free(kfree), holes))
        # There too the mount refills the AG free list (xfs_alloc_fix_freelist) before it frees: a few of our
        # free blocks the kernel then calls used (its unknown owner without an rmapbt), in no file's FIEMAP, are
        # the AGFL's (the rmapbt oracle counts them as per-AG metadata). Counted, at most an AGFL's worth.
        kf, out["agfl_blocks"] = _agfl_refill(fs, of, kf, busy, rec)
        assert of == kf, (img, sorted(set(of) - set(kf))[:10], sorted(set(kf) - set(of))[:10])
        out.update(pieces=n, free=len(kf))
        return out


def _agfl_refill(fs, of: list, kf: list, busy: set, rec: dict) -> tuple[list, int]:
    """(the kernel's free space with the blocks its mount moved from free space to a busy AG's free list given
    back, how many blocks that is): ours free, the kernel's used, in no file's FIEMAP, in an AG where the mount
    does work, at most XFS_AGFL_SIZE blocks an AG."""
    from fsdaxctl.ranges import merge_spans
    from tests.replay_oracle import _join_free, _minus

    geo = fs.geo
    mapped = merge_spans((e["physical"], e["physical"] + e["length"]) for key in ("fiemap", "fiemap_xattr")
                         for exts in rec[key].values() for e in exts)
    theirs = merge_spans((p[0], p[0] + p[1]) for p in kf)
    taken = _minus(_minus(sorted(of), theirs), mapped)
    taken = [p for p in taken if geo.byte_to_ag(p[0])[0] in busy]
    agfl_size = (geo.sectsize - 36) // 4  # XFS_AGFL_SIZE on a v5 filesystem: the sector less its header
    per_ag: dict[int, int] = {}
    for p in taken:
        a = geo.byte_to_ag(p[0])[0]
        per_ag[a] = per_ag.get(a, 0) + p[1] // geo.blocksize
    if not taken or max(per_ag.values()) > agfl_size:
        return kf, 0
    return _join_free(sorted(kf + taken)), sum(per_ag.values())



def run_case(config: str, seed: int, mode: str, ops: int, tmp: str) -> dict:
    from tests.crash import build_crash

    img = os.path.join(tmp, f"{config}-{seed}-{mode}.img")
    rec = build_crash(img, config, seed, ops=ops, mode=mode)
    for _ in range(3):  # shut down before the workload logged anything: nothing to replay, so crash it later
        with XfsFilesystem.open(img) as fs:
            if not L.find_log_ends(fs)["clean"]:
                break
        rec = build_crash(img, config, seed, ops=ops, mode=mode, delay=rec["crash"]["delay"] * 2 + 1)
    keep = os.environ.get("FSDAXCTL_KEEP_CRASH")  # a directory: failing images and records are kept there
    ok = False
    try:
        out = {"config": config, "seed": seed, "mode": mode, **check_image(img, rec)}
        ok = True
        return out
    finally:
        for p in (img, img + ".kernel.json"):
            if os.path.exists(p):
                if keep and not ok:
                    shutil.move(p, os.path.join(keep, os.path.basename(p)))
                else:
                    os.unlink(p)


# --- with root: against the kernel ----------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.parametrize("config,seed,mode", CI_CASES)
def test_replay_matches_kernel_recovery(config, seed, mode, tmp_path):
    from tests.conftest import need_kernel

    need_kernel()
    run_case(config, seed, mode, 400, str(tmp_path))


@pytest.mark.kernel
@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="the replay campaign (every crash config x 20 seeds) runs with FSDAXCTL_SLOW=1")
@pytest.mark.parametrize("seed", range(100, 120))
@pytest.mark.parametrize("config", ["4k-reflink", "1k-reflink", "4k-4ksect", "64k-block", "4k-rmap-noreflink",
                                    "4k-norefl-normap", "4k-reflink-normap", "4k-smalllog"])
def test_replay_campaign(config, seed, tmp_path):
    from tests.conftest import need_kernel

    need_kernel()
    run_case(config, seed, "flush" if seed % 2 else "noflush", 1500, str(tmp_path))


@pytest.mark.kernel
def test_headline_example(tmp_path):
    """The issue's example: 50 files written, sync, shutdown -f: the kernel sees 50 files, so must we."""
    from tests import images
    from tests.conftest import need_kernel

    need_kernel()
    img = str(tmp_path / "d.img")
    images.mkfs(img, 512 << 20, ["-m", "rmapbt=1,reflink=1"])
    with images.loop_mount(img) as mnt:
        for i in range(50):
            with open(os.path.join(mnt, f"f{i}"), "wb") as fh:
                fh.write(os.urandom(256 << 10))
        os.sync()
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)
    out = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", img, "--format", "jsonl"],
                         capture_output=True, text=True)
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    inodes = {p["inode"] for p in recs if p.get("owner") == "file" and not p.get("extent_map")}
    assert out.stderr.count("replayed in memory") == 1
    assert len(inodes) == 51  # the 50 files and the root directory's block, as the kernel says
    raw = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", img, "--no-replay", "--format", "jsonl"],
                         capture_output=True, text=True).stdout
    recs = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert not [p for p in recs if p.get("owner") == "file" and not p.get("extent_map")]  # the disk as it is


# --- without root: committed crash images -----------------------------------------------------------------

def _fixtures():
    if not os.path.isdir(DATA):
        return []
    return sorted(n[:-len(".img.xz")] for n in os.listdir(DATA) if n.endswith(".img.xz"))


def _unpack(name, tmp):
    img = os.path.join(tmp, name + ".img")
    with lzma.open(os.path.join(DATA, name + ".img.xz")) as src, open(img, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with lzma.open(os.path.join(DATA, name + ".kernel.json.xz"), "rt") as fh:
        rec = json.load(fh)
    return img, rec


@pytest.mark.parametrize("name", _fixtures())
def test_committed_crash_image(name, tmp_path):
    img, rec = _unpack(name, str(tmp_path))
    check_image(img, rec)
    # every intent but the xattr ones is finished exactly: what is unknown is an xattr intent's attr fork, or the
    # blocks of an extent map the mount reshapes
    with XfsFilesystem.open(img) as fs0:
        fs, _ = L.open_replayed(fs0)
        why = {p.detail.get("reason", "") for p in OwnerMap(fs).pieces(0, fs.geo.size) if p.owner == "unknown"}
    assert all("xattr-update" in w or "fork extent map, whose blocks" in w for w in why), why
    # the CLI says what it did, once, and JSON says the log was dirty and replayed
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", img, "--format", "json"],
                          capture_output=True, text=True)
    log = json.loads(proc.stdout)["filesystem"]["log"]
    assert log["dirty"] and log["replayed"] and log["replay"]["written"] is False
    assert proc.stderr.count("replayed in memory") == 1
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", img, "--no-replay", "--format", "json"],
                          capture_output=True, text=True)
    log = json.loads(proc.stdout)["filesystem"]["log"]
    assert log["dirty"] and not log["replayed"] and log["replay_skipped"] == "--no-replay"
    assert "the log is dirty" in proc.stderr


def test_clean_log_is_left_alone(mkfs_image):
    with XfsFilesystem.open(mkfs_image) as fs:
        rep = L.replay(fs)
        assert not rep.dirty and not rep.blocks
        fs2, rep2 = L.open_replayed(fs)
        assert fs2 is fs


# --- the replay's own parts against naive versions -------------------------------------------------------

def test_dirty_map_runs():
    rng = random.Random(3)
    for _ in range(3000):
        words = rng.randint(0, 12)
        dmap = bytes(rng.choice([0, 0, 255, rng.randrange(256)]) for _ in range(4 * words))
        bits = [(dmap[i // 8] >> (i % 8)) & 1 for i in range(32 * words)]
        want, i = [], 0
        while i < len(bits):
            if bits[i]:
                j = i
                while j < len(bits) and bits[j]:
                    j += 1
                want.append((i, j - i))
                i = j
            else:
                i += 1
        assert L._runs(dmap, words) == want


B = 4096  # the block size of the one-AG geometry the operation tests use


def _geo():
    from fsdaxctl.xfs.geometry import Geometry

    return Geometry(blocksize=B, blocklog=12, sectsize=512, agblocks=1024, agblklog=10, agcount=1, dblocks=1024,
                    inodesize=512, inopblog=3)


def _file(off: int, n: int, ino: int, fo: int):
    """n blocks of inode ino's data from block off, at file block fo."""
    from fsdaxctl.xfs.piece import Piece

    return Piece(off * B, n * B, "file", 0, ino, "data", fo * B, False, False, False)


def test_exact_operations_on_pieces():
    """What the mount's finishing of rmap and refcount intents does to an answer, piece by piece (the crash
    fixtures show unmap, convert and decrease against the kernel; here every rule): an unmapped owner's bytes
    are free unless another owner keeps them; a mapping at another file offset is not the one named; convert
    sets the named state; a refcount going 1 -> 2 makes owners shared, 2 -> 1 not, 1 -> 0 frees; an
    unreadable refcount btree leaves sharing unknown, never guessed."""

    geo = _geo()

    def op(kind, start, n, ino=None, off=0, value=0):
        return L.Effect(kind, "an unfinished intent", start * B, (start + n) * B, ino=ino, fork="data",
                        off_lo=off, off_hi=off + n - 1, value=value)

    two = [_file(10, 4, 7, 100), _file(10, 4, 8, 0)]
    got = L.apply_ops(two, [op("unmap", 11, 2, 7, 101)], geo, None)
    assert [(p.offset // B, p.length // B, p.owner, p.inode) for p in got] == [
        (10, 1, "file", 7), (10, 4, "file", 8), (13, 1, "file", 7)]  # inode 8 keeps blocks 11-12: not free
    got = L.apply_ops([_file(10, 4, 7, 100)], [op("unmap", 11, 2, 7, 101)], geo, None)
    assert [(p.offset // B, p.owner) for p in got] == [(10, "file"), (11, "free"), (13, "file")]
    assert L.apply_ops([_file(10, 4, 7, 100)], [op("unmap", 11, 2, 7, 5)], geo, None) == [_file(10, 4, 7, 100)]
    got = L.apply_ops([_file(10, 4, 7, 100)._replace(unwritten=True)], [op("convert", 10, 1, 7, 100)], geo, None)
    assert [(p.offset // B, p.unwritten) for p in got] == [(10, False), (11, True)]

    def counts(runs):
        return lambda s, e: [(max(s, a * B), min(e, b * B), c) for a, b, c in runs if a * B < e and b * B > s]

    # 1 -> 2 next to blocks already shared: each record is shared whole, one piece (as a fresh read gives)
    got = L.apply_ops(two, [op("refcount", 10, 4, value=1)], geo, counts([(10, 12, 1), (12, 14, 2)]))
    assert {(p.offset // B, p.length // B, p.inode, p.shared) for p in got} == {(10, 4, 7, True), (10, 4, 8, True)}
    got = L.apply_ops(two, [op("refcount", 10, 4, value=-1)], geo, counts([(10, 14, 2)]))
    assert all(p.owner == "file" and not p.shared for p in got) and len(got) == 2
    got = L.apply_ops([_file(10, 4, 7, 100)], [op("refcount", 10, 4, value=-1)], geo, counts([(10, 14, 1)]))
    assert [(p.offset // B, p.length // B, p.owner) for p in got] == [(10, 4, "free")]
    got = L.apply_ops([_file(10, 4, 7, 100)], [op("refcount", 10, 4, value=-1)], geo, None)
    assert [(p.owner, p.detail) for p in got] == [("unknown", {"reason": "an unfinished intent"})]
    # two decreases of the same blocks: the second starts where the first left them (2 -> 1 -> 0: freed)
    got = L.apply_ops(two, [op("refcount", 10, 4, value=-1), op("refcount", 11, 2, value=-1)], geo,
                      counts([(10, 14, 2)]))
    assert [(p.offset // B, p.length // B, p.owner, p.shared) for p in got] == [
        (10, 1, "file", False), (10, 1, "file", False), (11, 2, "free", False), (13, 1, "file", False),
        (13, 1, "file", False)]


def test_mappings_added_at_mount():
    """rmap MAP/ALLOC and bmap MAP intents add their owner: in place of free space and of used space no owner
    claims yet, next to the owners that stay; joined with the owner's touching record (xfs_rmap_map merges it,
    so GETFSMAP reports one); shared where the refcount is 2 or more. A CoW staging extent's ALLOC and FREE
    add and take out that owner; the refcount btree's CoW-domain changes are for the metadata walk only."""
    from fsdaxctl.xfs.piece import UNCLAIMED_YET, Piece

    geo = _geo()

    def free(off, n, **kw):
        return Piece(off * B, n * B, "free", 0, **kw)

    def op(kind, start, n, ino=None, off=0, value=0, owner="file"):
        return L.Effect(kind, "an unfinished intent", start * B, (start + n) * B, ino=ino, fork="data",
                        off_lo=off, off_hi=off + n - 1, value=value, owner=owner)

    def shape(pieces):
        return [(p.offset // B, p.length // B, p.owner, p.inode, p.file_offset // B if p.file_offset is not None
                 else None, p.unwritten, p.shared) for p in pieces]

    got = L.apply_ops([free(10, 4)], [op("map", 11, 2, 7, 101, value=1)], geo, None)
    assert shape(got) == [(10, 1, "free", None, None, False, False), (11, 2, "file", 7, 101, True, False),
                          (13, 1, "free", None, None, False, False)]
    yet = Piece(10 * B, 4 * B, "unknown", 0, detail=UNCLAIMED_YET)
    got = L.apply_ops([_file(8, 2, 7, 98), yet], [op("map", 10, 4, 7, 100)], geo, None)
    assert shape(got) == [(8, 6, "file", 7, 98, False, False)]  # one record, as the kernel merges them
    got = L.apply_ops([_file(8, 2, 7, 98), yet], [op("map", 10, 4, 7, 200)], geo, None)
    assert shape(got) == [(8, 2, "file", 7, 98, False, False), (10, 4, "file", 7, 200, False, False)]

    def counts(runs):
        return lambda s, e: [(max(s, a * B), min(e, b * B), c) for a, b, c in runs if a * B < e and b * B > s]

    # a reflink's second owner: shared where the (already increased) refcount says 2
    got = L.apply_ops([_file(10, 4, 8, 0)._replace(shared=True)], [op("map", 10, 4, 7, 100)], geo,
                      counts([(10, 14, 2)]))
    assert shape(got) == [(10, 4, "file", 7, 100, False, True), (10, 4, "file", 8, 0, False, True)]
    # increase and map both left to the mount, in log order
    got = L.apply_ops([_file(10, 4, 8, 0)], [op("refcount", 10, 4, value=1), op("map", 10, 4, 7, 100)], geo,
                      counts([(10, 14, 1)]))
    assert shape(got) == [(10, 4, "file", 7, 100, False, True), (10, 4, "file", 8, 0, False, True)]
    cow = L.apply_ops([free(10, 4)], [op("map", 10, 2, owner="cow-staging")], geo, None)
    assert shape(cow) == [(10, 2, "cow-staging", None, None, False, False), (12, 2, "free", None, None, False, False)]
    got = L.apply_ops(cow, [op("unmap", 10, 1, owner="cow-staging")], geo, None)
    assert [(p.offset // B, p.length // B, p.owner) for p in got] == [(10, 1, "free"), (11, 1, "cow-staging"),
                                                                       (12, 2, "free")]
    # which owner source takes which change: the walk reads extent maps (an rmap intent's change is already
    # there) and the refcount btree's CoW domain; a data-device mapping never lands on the realtime device
    walk = L.Effect("map", "x", 0, B, owner="cow-staging", only="walk")
    rmap = L.Effect("map", "x", 0, B, ino=7, fork="data", only="rmapbt")
    bmap = L.Effect("map", "x", 0, B, ino=7, fork="data")
    xchg = L.Effect("exchange", "x", ino=7, fork="data", off_lo=0, off_hi=3, ino2=8, off2=10)
    assert L.effects_on([walk, rmap, bmap], "data") == [rmap, bmap]
    assert L.effects_on([walk, rmap, bmap], "data", "walk") == [walk, bmap]
    assert L.effects_on([walk, rmap, bmap, xchg], "data", "bnobt") == []  # no owners to add or move
    assert L.effects_on([walk, rmap, bmap, xchg], "rt") == [xchg]
    # an exchange of two ranges of one file: each range's blocks move to the other's offsets
    got = L.apply_ops([_file(10, 1, 7, 0), _file(20, 1, 7, 5)], [L.Effect("exchange", "x", ino=7, fork="data",
                                                                       off_lo=0, off_hi=0, ino2=7, off2=5)], geo, None)
    assert shape(got) == [(10, 1, "file", 7, 5, False, False), (20, 1, "file", 7, 0, False, False)]
    got = L.apply_ops([_file(10, 8, 7, 0)], [L.Effect("exchange", "x", ino=7, fork="data", off_lo=1, off_hi=2,
                                                     ino2=7, off2=5)], geo, None)
    assert shape(got) == [(10, 1, "file", 7, 0, False, False), (11, 2, "file", 7, 5, False, False),
                          (13, 2, "file", 7, 3, False, False), (15, 2, "file", 7, 1, False, False),
                          (17, 1, "file", 7, 7, False, False)]


def test_overlay_is_a_block_map():
    """_Overlay keeps whole buffers and cuts them into 512-byte blocks only where shapes overlap: every read
    must give what a plain block map gives, and the blocks at the end must be the plain map's."""
    rng = random.Random(4)
    disk = bytes(rng.randrange(256) for _ in range(64 * 512))

    class Dev:
        def pread(self, off, n, what):
            return disk[off:off + n]

    for _ in range(40):
        blocks, plain = {}, {}
        ov = L._Overlay(Dev(), blocks)
        for _ in range(60):
            daddr, nbb = rng.randrange(56), rng.choice([1, 1, 2, 4, 8])
            want = bytearray(b"".join(plain.get(daddr + i, disk[(daddr + i) * 512:(daddr + i + 1) * 512])
                                      for i in range(nbb)))
            if rng.random() < 0.8:
                buf = ov.read(daddr, nbb, "x")
                assert buf == want
            else:  # a buffer written without a read (an inode create)
                buf = bytearray(nbb * 512)
            if rng.random() < 0.7:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
                ov.write(daddr, buf)
                for i in range(nbb):
                    plain[daddr + i] = bytes(buf[i * 512:(i + 1) * 512])
        ov.finish()
        assert blocks == plain


def test_overlay_with_waiting_items_is_a_block_map():
    """Items waiting in the overlay for an inode (here: 256 bytes to write at its offset) must give, wherever
    the buffer is read, cut by a buffer of another shape, replaced, or its blocks asked for at the end, what
    writing them at once gives."""
    rng = random.Random(6)
    disk = bytes(rng.randrange(256) for _ in range(64 * 512))

    class Dev:
        def pread(self, off, n, what):
            return disk[off:off + n]

    def apply_pending(buf, slots):
        for off, items in slots.items():
            for item in items:
                buf[off:off + 256] = item[2]

    def plain_read(plain, daddr, nbb):
        return bytearray(b"".join(plain.get(daddr + i, disk[(daddr + i) * 512:(daddr + i + 1) * 512])
                                  for i in range(nbb)))

    for _ in range(40):
        plain = {}
        ov = L._Overlay(Dev(), {}, apply_pending)
        for _ in range(80):
            daddr, nbb = rng.randrange(56), rng.choice([1, 2, 2, 4, 8])
            want = plain_read(plain, daddr, nbb)
            op = rng.random()
            if op < 0.5:  # an inode item waits: its inode is read by peek as it stands
                buf = ov.peek(daddr, nbb, "x")
                off = rng.randrange(nbb * 2) * 256
                slots = ov.pending.get((daddr, nbb), {})
                if off not in slots:
                    assert buf[off:off + 256] == want[off:off + 256]
                data = bytes(rng.randrange(256) for _ in range(256))
                ov.wait(daddr, buf, off, (0, rng.random() < 0.5, data))
                want[off:off + 256] = data
            elif op < 0.85:  # a read, changed and written back
                buf = ov.read(daddr, nbb, "x")
                assert buf == want
                if rng.random() < 0.7:
                    buf[rng.randrange(len(buf))] = rng.randrange(256)
                    want[:] = buf
                    ov.write(daddr, buf)
                else:
                    continue
            else:  # a new buffer written without a read (an inode create)
                want = bytearray(bytes(rng.randrange(256) for _ in range(nbb * 512)))
                ov.write(daddr, bytearray(want))
            for i in range(nbb):
                plain[daddr + i] = bytes(want[i * 512:(i + 1) * 512])
        blocks = L._Blocks(ov)
        assert len(blocks) == len(plain) and set(blocks) == set(plain)
        assert {d: blocks[d] for d in rng.sample(sorted(plain), len(plain))} == plain


def test_log_dinode_checked_fields():
    """The compact view the inode item checks read is the same fields of struct xfs_log_dinode."""
    rng = random.Random(5)
    for _ in range(500):
        ld = bytes(rng.randrange(256) for _ in range(L.LOG_DINODE.size))
        v = L.LOG_DINODE.unpack(ld)
        assert L.LOG_DINODE_CHECKED.unpack_from(ld) == tuple(v[i] for i in (1, 2, 3, 10, 15, 17, 18, 19, 29))


def _outcome(img: str) -> tuple:
    """Everything a replay answers: its error, or its summary, notes, effects and every replayed block."""
    import hashlib

    try:
        with XfsFilesystem.open(img) as fs0:
            _, rep = L.open_replayed(fs0)
            digest = hashlib.sha256()
            for daddr in sorted(rep.blocks):
                digest.update(daddr.to_bytes(8, "little") + rep.blocks[daddr])
            return rep.summary(), list(rep.notes), [repr(e) for e in rep.effects], len(rep.blocks), digest.digest()
    except L.LogReplayError as e:
        return ("error", str(e))


def _damage_items(img: str, work: str, rng) -> None:
    """A copy of img with a few bytes of its log's op headers and item formats changed, and the CRCs of those
    records made right again, so that the replay parses the damage."""
    import struct

    shutil.copyfile(img, work)
    with XfsFilesystem.open(work) as fs:
        ring = L._Ring(fs)
        ends = ring.find_tail()
        recs = [(blk % ring.nbb, len(hdr) // 512, h) for blk, hdr, _, h in ring.records(ends["head"], ends["tail"])]
        with open(work, "r+b") as fh:
            for blk, hblks, h in rng.sample(recs, min(len(recs), rng.choice([1, 2]))):
                off = rng.randrange(min(h["len"], 2048))
                if off % 512 < 4:  # the first word of a block is its cycle number
                    continue
                at = ring.start + (blk + hblks + off // 512) % ring.nbb * 512 + off % 512
                fh.seek(at)
                byte = fh.read(1)[0]
                fh.seek(at)
                fh.write(bytes([byte ^ (1 << rng.randrange(8))]))
                fh.flush()
                hdr = ring.read(blk, hblks)
                data = ring.read(blk + hblks, -(-h["len"] // 512))
                fh.seek(ring.start + blk * 512 + 32)
                fh.write(struct.pack("<I", ring.cksum(hdr, memoryview(data)[:h["len"]], h, L.XLOG_REC_SIZE)))
                fh.flush()


def test_large_log_passes_answer_as_the_small_ones(tmp_path, monkeypatch):
    """A log part over KEEP_LOG_BYTES takes from pass 1 only the cancelled buffers (_ops_pass1) and runs the
    full pass 1 again when anything fails: on every committed crash image, and on copies whose op headers and
    item formats are damaged, its answer (or its error) is the one-parse replay's."""
    rng = random.Random(8)
    for name in _fixtures():
        img, _ = _unpack(name, str(tmp_path))
        for i in range(4):
            work = img if i == 0 else str(tmp_path / "damaged.img")
            if i:
                _damage_items(img, work, rng)
            monkeypatch.setattr(L, "KEEP_LOG_BYTES", 8 << 20)
            small = _outcome(work)
            monkeypatch.setattr(L, "KEEP_LOG_BYTES", 0)
            assert _outcome(work) == small, (name, i)


def test_committed_crash_images_hold_every_exact_operation(tmp_path):
    """Each operation the replay finishes exactly is checked against the kernel's recovery by some committed
    crash image (test_committed_crash_image): these images left those intents unfinished in their logs."""
    seen = set()
    for name in _fixtures():
        img, _ = _unpack(name, str(tmp_path))
        with XfsFilesystem.open(img) as fs0:
            _, rep = L.open_replayed(fs0)
        seen |= {(e.kind, e.owner) for e in rep.effects}
        os.unlink(img)
    assert seen >= {("free", "file"), ("unmap", "file"), ("convert", "file"), ("refcount", "file"),
                    ("map", "file"), ("exchange", "file"), ("map", "cow-staging"), ("unmap", "cow-staging"),
                    ("may-allocate", "file")}, seen


def _layout(draw, st):
    """Pieces over 64 blocks: runs that are free, unknown (unreadable), unclaimed, or owned by one or two files
    (a file's data, at a file offset of its own)."""
    from fsdaxctl.xfs.piece import UNCLAIMED_YET, Piece

    pieces, at = [], 0
    while at < 64:
        n = draw(st.integers(1, 64 - at))
        kind = draw(st.sampled_from(["free", "unknown", "unclaimed", "file", "file2"]))
        if kind in ("free", "unknown", "unclaimed"):
            detail = {"unknown": {"error": "damaged"}, "unclaimed": UNCLAIMED_YET}.get(kind)
            pieces.append(Piece(at * B, n * B, "free" if kind == "free" else "unknown", 0, detail=detail))
        else:
            for ino in (7, 8)[:1 + (kind == "file2")]:
                pieces.append(Piece(at * B, n * B, "file", 0, ino, "data", draw(st.integers(0, 99)) * B, False,
                                    draw(st.booleans()), kind == "file2"))
        at += n
    return sorted(pieces, key=Piece.sort_key)


def test_free_space_says_where_the_mount_refills_a_free_list(tmp_path):
    """Before the mount finishes an intent in an AG it refills that AG's free list from the AG's free space
    (a fresh campaign saw it take 4 free blocks): every free piece of those AGs says so, no other does, and
    the replay's notes name the AGs."""
    img, _ = _unpack("1k-reflink-unmap-noflush", str(tmp_path))
    with XfsFilesystem.open(img) as fs0:
        fs, rep = L.open_replayed(fs0)
        geo = fs.geo
        busy = {geo.byte_to_ag(e.start)[0] for e in rep.effects
                if e.kind not in L.MAY_KINDS and e.device == "data" and e.end > e.start and e.start < geo.size}
        assert busy
        free = [p for p in OwnerMap(fs).pieces(0, geo.size) if p.owner == "free"]
    noted = {p.agno for p in free if L.MAY_REFILL in (p.detail or {}).get("note", "")}
    assert noted == busy and noted == {p.agno for p in free if p.agno in busy}
    assert all(L.MAY_REFILL in p.detail["note"] for p in free if p.agno in busy)
    assert any("refills the free list of AG" in n for n in rep.notes)


def test_a_mapping_added_next_to_a_batch_joins_its_neighbour():
    """The batches a dump streams (a leaf each) are put together where an operation's bytes meet or touch them:
    a mapping added right after a leaf's last piece of the same file joins it, as the kernel merges the rmap
    records (a CI crash image once showed the two pieces apart)."""
    from fsdaxctl.xfs.owners import _together
    from fsdaxctl.xfs.piece import UNCLAIMED_YET, Piece

    geo = _geo()
    left = [Piece(0, 10 * B, "file", 0, 7, "data", 0, False, False, False)]
    gap = [Piece(10 * B, B, "unknown", 0, detail=UNCLAIMED_YET)]
    right = [Piece(11 * B, 5 * B, "free", 0)]
    op = L.Effect("map", "an unfinished bmap intent", 10 * B, 11 * B, ino=7, fork="data", off_lo=10, off_hi=10)
    got = [L.overlay_pieces(b, [op], geo) for b in _together(iter([left, gap, right]), L.op_spans([op]))]
    assert [[(p.offset // B, p.length // B, p.owner) for p in b] for b in got] == [[(0, 11, "file"), (11, 5, "free")]]


def test_a_mapping_joins_the_mapping_it_continues_when_a_file_maps_the_blocks_twice():
    """A file that maps the same blocks at two file offsets (a reflink within the file) has two pieces ending
    at one byte: a mapping added right after them joins the one whose file offsets it continues, as
    xfs_rmap_map merges (a fresh campaign's 4k-reflink seed 1141 showed the two parts apart)."""
    from fsdaxctl.xfs.piece import Piece

    geo = _geo()
    pieces = [Piece(0, 3 * B, "file", 0, 7, "data", 100 * B, False, False, True),
              Piece(0, 3 * B, "file", 0, 7, "data", 200 * B, False, False, True),
              Piece(3 * B, 5 * B, "free", 0)]
    op = L.Effect("map", "an unfinished rmap intent", 3 * B, 8 * B, ino=7, fork="data", off_lo=103, off_hi=107)
    got = L.overlay_pieces(pieces, [op], geo, lambda a, b: [(a, b, 2)])  # the new blocks are shared too
    assert [(p.offset // B, p.length // B, p.file_offset // B) for p in got if p.owner == "file"] == [
        (0, 8, 100), (0, 3, 200)]


def test_operations_keep_every_byte_answered():
    """Whatever operations the mount finishes, on whatever pieces: every byte of the query keeps an answer,
    pieces stay sorted and non-empty, no byte is free and owned at once, and bytes that could not be read
    stay `unknown` (an operation never makes them free). The EffectIndex gives the same answer as the list."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fsdaxctl.ranges import merge_spans
    from fsdaxctl.xfs.piece import Piece

    geo = _geo()
    kinds = st.sampled_from(["map", "unmap", "convert", "refcount", "exchange"])

    @st.composite
    def op(draw):
        kind, a = draw(kinds), draw(st.integers(0, 63))
        n = draw(st.integers(1, 64 - a))
        ino, off = draw(st.sampled_from([7, 8, 9])), draw(st.integers(0, 99))
        a, z = (0, 0) if kind == "exchange" else (a * B, (a + n) * B)  # an exchange names file ranges only
        return L.Effect(kind, "an unfinished intent", a, z, ino=ino, fork="data", off_lo=off,
                        off_hi=off + n - 1, value=draw(st.sampled_from([0, 1, -1])), ino2=7 if ino != 7 else 8,
                        off2=draw(st.integers(0, 99)), owner=draw(st.sampled_from(["file", "file", "cow-staging"])))

    @settings(max_examples=int(os.environ.get("FSDAXCTL_EXAMPLES", 300)), deadline=None)
    @given(data=st.data(), ops=st.lists(op(), min_size=1, max_size=4), count=st.integers(1, 3))
    def run(data, ops, count):
        pieces = _layout(data.draw, st)
        out = L.apply_ops(pieces, ops, geo, lambda s, e: [(s, e, count)])
        # the index a dump uses finds exactly the effects that change these pieces
        assert L.overlay_pieces(pieces, L.EffectIndex(ops), geo, lambda s, e: [(s, e, count)]) == \
            L.overlay_pieces(pieces, ops, geo, lambda s, e: [(s, e, count)])
        assert all(p.length > 0 for p in out) and out == sorted(out, key=Piece.sort_key)
        assert merge_spans((p.offset, p.offset + p.length) for p in out) == [(0, 64 * B)]
        free = merge_spans((p.offset, p.offset + p.length) for p in out if p.owner == "free")
        held = merge_spans((p.offset, p.offset + p.length) for p in out if p.owner != "free")
        assert not [(s, e) for s, e in free for x, y in held if s < y and x < e]
        bad = [(p.offset, p.offset + p.length) for p in pieces if p.detail == {"error": "damaged"}]
        assert all(any(q.offset <= s and e <= q.offset + q.length and q.owner == "unknown" for q in out)
                   for s, e in bad)

    run()


def test_bnobt_source_takes_no_owner_from_the_intents(tmp_path):
    """`--source bnobt` answers used space `unknown` as the kernel's GETFSMAP does without an rmapbt: the
    mappings unfinished intents add or move stay out of it, and no byte is both unknown and something else."""
    img, _ = _unpack("1k-exchange-bmap-flush", str(tmp_path))
    with XfsFilesystem.open(img) as fs0:
        fs, rep = L.open_replayed(fs0)
        assert {e.kind for e in rep.effects} >= {"map", "exchange"}
        pieces = OwnerMap(fs, source="bnobt").pieces(0, fs.geo.size)
    assert {p.owner for p in pieces} == {"free", "unknown"}
    assert all(a.offset + a.length <= b.offset for a, b in zip(pieces, pieces[1:]))


# --- fuzzing the log: one clear line or unknown pieces, never a traceback ---------------------------------

def _fuzz_base(tmp):
    names = _fixtures()
    assert names, "no committed crash images in tests/data/crash (tests/make_crash_fixtures.py makes them)"
    return _unpack(names[0], tmp)


def _log_span(img):
    with XfsFilesystem.open(img) as fs:
        ends = L.find_log_ends(fs)
        agno, agbno, blocks = fs.internal_log
        start = fs.geo.ag_to_byte(agno, agbno)
        return start, ends


def _flip_and_check(img, work, flips):
    shutil.copyfile(img, work)
    with open(work, "r+b") as fh:
        for off, bit in flips:
            fh.seek(off)
            b = fh.read(1)
            fh.seek(off)
            fh.write(bytes([b[0] ^ (1 << bit)]))
    try:
        with XfsFilesystem.open(work) as fs0:
            fs, rep = L.open_replayed(fs0)
            omap = OwnerMap(fs)
            pieces = omap.pieces(0, fs.geo.size)
            assert sum(p.length for p in pieces) >= fs.geo.size
    except L.LogReplayError as e:
        assert "\n" not in str(e) and "log" in str(e)
    except Exception as e:  # other structures may be damaged by a flip too: a one-line FsdaxError is fine
        from fsdaxctl.errors import FsdaxError

        assert isinstance(e, FsdaxError), repr(e)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", work], capture_output=True, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr


def test_fuzz_record_headers_and_ops(tmp_path):
    """Bit flips in the last record headers (torn-write territory), in op headers and in item formats."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    img, _ = _fuzz_base(str(tmp_path))
    start, ends = _log_span(img)
    head, tail = ends["head"], ends["tail"]
    nbb = (head - tail) % (1 << 30) or 1
    work = str(tmp_path / "fuzz.img")

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, max(0, nbb - 1)), st.integers(0, 511), st.integers(0, 7)),
                    min_size=1, max_size=4))
    def run(flips):
        _flip_and_check(img, work, [(start + ((tail + b) * 512) + o, bit) for b, o, bit in flips])

    run()


def test_fuzz_header_fields(tmp_path):
    """Every field of the head's record header, flipped one bit at a time (seeded)."""
    img, _ = _fuzz_base(str(tmp_path))
    start, ends = _log_span(img)
    rng = random.Random(11)
    work = str(tmp_path / "fuzz.img")
    hdr = start + ends["rhead_blk"] * 512
    for off in list(range(0, 44, 4)) + [300, 304, 320]:
        _flip_and_check(img, work, [(hdr + off + rng.randrange(4), rng.randrange(8))])


# --- by hand --------------------------------------------------------------------------------------------

def main(argv):
    import argparse
    import time

    from tests.crash import CRASH_CONFIGS

    ap = argparse.ArgumentParser()
    ap.add_argument("configs")
    ap.add_argument("seeds", help="N or A-B")
    ap.add_argument("--ops", type=int, default=1500)
    a = ap.parse_args(argv)
    configs = list(CRASH_CONFIGS) if a.configs == "all" else a.configs.split(",")
    lo, _, hi = a.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-replay-") as tmp:
        for config in configs:
            for seed in seeds:
                mode = "flush" if seed % 2 else "noflush"
                t0 = time.monotonic()
                try:
                    r = run_case(config, seed, mode, a.ops, tmp)
                    print(json.dumps({**r, "s": round(time.monotonic() - t0, 1)}), flush=True)
                except AssertionError as e:
                    bad += 1
                    print(json.dumps({"config": config, "seed": seed, "mode": mode,
                                      "DISAGREE": str(e)[:2000]}), flush=True)
                except Exception as e:  # noqa: BLE001
                    bad += 1
                    print(json.dumps({"config": config, "seed": seed, "mode": mode,
                                      "ERROR": f"{type(e).__name__}: {e}"[:2000]}), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


@pytest.mark.kernel
def test_inode_chunk_of_unlinked_inodes_is_freed_as_at_mount(tmp_path):
    """An inode chunk whose only inode in use is unlinked but still open at the crash: the kernel's recovery
    frees that inode and then the whole chunk (xfs_difree_inobt). The crashed image's answer for those bytes is
    `free` with the reason, as the kernel's GETFSMAP says after mounting a copy."""
    import shutil

    from tests import images
    from tests import kernel as K
    from tests.conftest import need_kernel

    need_kernel()
    img, copy = str(tmp_path / "d.img"), str(tmp_path / "copy.img")
    images.mkfs(img, 256 << 20, ["-m", "rmapbt=1,reflink=1", "-i", "size=512"])
    with images.loop_mount(img) as mnt:
        paths = []
        for i in range(200):
            paths.append(os.path.join(mnt, f"f{i}"))
            open(paths[-1], "wb").close()
        inos = [os.stat(p).st_ino for p in paths]
        chunk = [p for p, ino in zip(paths, inos) if ino // 64 == inos[-1] // 64]  # the last file's chunk
        assert len(chunk) > 1
        for p in chunk[1:]:
            os.unlink(p)
        keep = os.open(chunk[0], os.O_RDWR)
        os.write(keep, b"x" * 8192)
        os.unlink(chunk[0])
        os.sync()
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)
        os.close(keep)
    shutil.copyfile(img, copy)
    with images.loop_mount(copy) as mnt:  # the kernel recovers the copy
        kernel = [r for r in K.getfsmap(mnt) if r.device and K.owner_name(r) == "inodes"]
    ino = inos[paths.index(chunk[0])]
    with XfsFilesystem.open(img) as fs0:
        fs, rep = L.open_replayed(fs0)
        start = fs.geo.ino_to_byte(ino // 64 * 64)
        length = 64 * fs.geo.inodesize
        pieces = OwnerMap(fs).pieces(start, length)
        assert ino in L.unlinked_inodes(fs)
        assert rep.summary()["inode_chunks_freed_at_mount"] == 1
    assert [(p.owner, p.offset, p.length) for p in pieces] == [("free", start, length)], pieces
    assert "xfs_difree_inobt" in pieces[0].detail["note"]
    assert not [r for r in kernel if r.physical < start + length and r.physical + r.length > start]
