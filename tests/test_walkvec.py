"""The vectorised metadata walk (fsdaxctl.xfs.walkvec) against the per-record walk it replaces.

The per-record code (MetadataWalk.run_exact) is the reference: tests/test_walk.py and tests/stress.py hold the
walk's answers against the kernel (GETFSMAP, FIEMAP), and here the numpy walk must give the very same records
and the very same problems, in the same order:
  - on every image tests/images.py builds, whole AGs and windows (the records a query keeps);
  - on the no-rmapbt images with random damage in inode chunks and bmbt blocks (hypothesis): bytes of the core
    fields, the forks, the bmbt headers and records, with or without a valid CRC afterwards.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fsdaxctl.device import Device
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.inode import XFS_INODES_PER_CHUNK, chunk_slot_states, IN_USE
from fsdaxctl.xfs.verify import xfs_cksum
from fsdaxctl.xfs.walk import MetadataWalk, windows_of
from tests import images

pytestmark = pytest.mark.kernel

ALL = sorted(images.IMAGE_CONFIGS)
NO_RMAP = sorted(n for n, c in images.IMAGE_CONFIGS.items() if not c["rmapbt"])


def _walk(fs, exact, agnos=None, windows=None):
    w = MetadataWalk(fs, agnos, windows=windows, exact=exact)
    return w.run(), w.problems, w.covered


def _overlapping(recs, lo, hi):
    return [r for r in recs if r[0] <= hi and r[0] + r[1] > lo]


def _check_windows(fs, whole, rng, n=6):
    """Windowed walks keep every merged record that meets the windows, exactly as the whole-AG walk has it."""
    geo = fs.geo
    for _ in range(n):
        ranges = [(rng.randrange(0, geo.size), rng.choice((512, 4096, 1 << 20, 64 << 20)))
                  for _ in range(rng.randint(1, 3))]
        win = windows_of(geo, ranges)
        recs, problems, covered = _walk(fs, False, set(win), win)
        for agno, ws in win.items():
            if agno not in recs:
                continue
            for lo, hi in ws:
                assert _overlapping(recs[agno], lo, hi) == _overlapping(whole[agno], lo, hi), (agno, lo, hi)
                cov = covered[agno]
                assert cov is None or any(a <= lo and hi <= b for a, b in cov)


@pytest.mark.parametrize("name", ALL)
def test_vectorised_walk_is_the_per_record_walk(built, name):
    path, _ = built(name)
    with XfsFilesystem.open(path) as fs:
        exact, exact_problems, _ = _walk(fs, True)
        vec, vec_problems, covered = _walk(fs, False)
        assert vec == exact
        assert vec_problems == exact_problems
        assert all(c is None for c in covered.values())
        _check_windows(fs, exact, random.Random(name))


def test_windows_with_a_tiny_margin_walk_again_whole(built, monkeypatch):
    """When a merged record reaches the kept margin, the AG is walked again whole: still the same answer."""
    from fsdaxctl.xfs import walkvec

    monkeypatch.setattr(walkvec, "MARGIN", 1)
    path, _ = built("4k-norefl-normap")
    with XfsFilesystem.open(path) as fs:
        exact, _, _ = _walk(fs, True)
        rng = random.Random(7)
        whole = 0
        for _ in range(20):
            agno = rng.randrange(fs.geo.agcount)
            recs = exact[agno]
            r = rng.choice(recs)  # a window on a record, so merged neighbours are likely
            win = {agno: [(r[0], r[0])]}
            got, _, covered = _walk(fs, False, {agno}, win)
            assert _overlapping(got[agno], r[0], r[0]) == _overlapping(recs, r[0], r[0])
            whole += covered[agno] is None
        assert whole  # some window needed the whole AG (the chunk's inode blocks merge into one record)


@pytest.mark.parametrize("name", NO_RMAP)
def test_owner_map_answers_are_the_same_from_windows(built, name, monkeypatch):
    """locate's path: OwnerMap.prepare(ranges) walks only near the ranges (a small margin here, so windows
    matter on 64 MiB images), and every answer is the whole walk's, also for blocks asked later."""
    from fsdaxctl.xfs import walkvec
    from fsdaxctl.xfs.owners import OwnerMap

    path, _ = built(name)
    with XfsFilesystem.open(path) as fs:
        geo = fs.geo
        whole = OwnerMap(fs)
        whole.prepare([(0, geo.size)])
        monkeypatch.setattr(walkvec, "MARGIN", 64)
        rng = random.Random(name)
        ranges = [(rng.randrange(0, geo.size // 512) * 512, rng.choice((512, 4096, 65536, 8 << 20)))
                  for _ in range(30)]
        ranges += [(geo.ag_to_byte(a, 0) - 4096, 8192) for a in range(1, geo.agcount)]  # across AG ends
        for off, n in ranges:
            one = OwnerMap(fs)
            one.prepare([(off, n)])
            assert one.pieces(off, n) == whole.pieces(off, n), (off, n)
        many = OwnerMap(fs)
        many.prepare(ranges[:10])
        for off, n in ranges:  # the last ones were not prepared: walked when asked
            assert many.pieces(off, n) == whole.pieces(off, n), (off, n)


# --- random damage --------------------------------------------------------------------------------------------

class PatchedDevice(Device):
    """An image with some bytes replaced, in memory."""

    def __init__(self, path, patches):
        super().__init__(path)
        self.patches = patches  # [(offset, bytes)]

    def pread(self, offset, length, what="data"):
        buf = super().pread(offset, length, what)
        hits = [(o, b) for o, b in self.patches if o < offset + length and o + len(b) > offset]
        if not hits:
            return buf
        out = bytearray(buf)
        for o, b in hits:
            lo, hi = max(o, offset), min(o + len(b), offset + length)
            out[lo - offset:hi - offset] = b[lo - o:hi - o]
        return bytes(out)


_TARGETS: dict = {}


def _targets(path):
    """Byte offsets of every in-use inode and every bmbt block of a clean image."""
    if path not in _TARGETS:
        with XfsFilesystem.open(path) as fs:
            geo = fs.geo
            inodes = []
            for agno in range(geo.agcount):
                agi = fs.agi(agno)
                for rec in btree.query_records(fs, btree.INOBT, agno, agi.agi_root, agi.agi_level, 0, 0xFFFFFFFF):
                    states = chunk_slot_states(fs, rec)
                    for i in range(XFS_INODES_PER_CHUNK):
                        if states[i] == IN_USE:
                            inodes.append(geo.ag_to_byte(agno, 0) + (rec[0] + i) * geo.inodesize)
            recs, _, _ = _walk(fs, True)
            bmbt = sorted({geo.ag_to_byte(agno, r[0] + k) for agno, rs in recs.items() for r in rs
                           if r[2] >= 0 and r[3] & f.XFS_RMAP_OFF_BMBT_BLOCK for k in range(r[1])})
            _TARGETS[path] = (inodes, bmbt, geo.inodesize, geo.blocksize)
    return _TARGETS[path]


# Where damage matters: the core fields the walk reads, then anywhere in the forks / the block.
INODE_SPOTS = [0, 1, 5, 24, 27, 31, 76, 79, 80, 81, 82, 83, 90, 91, 120, 127, 152, 159]
BMBT_SPOTS = [0, 3, 4, 5, 6, 7, 24, 31, 56, 63]


@st.composite
def damage(draw, path):
    inodes, bmbt, isize, bs = _targets(path)
    patches = []
    for _ in range(draw(st.integers(1, 4))):
        if bmbt and draw(st.integers(0, 3)) == 0:
            base, size, spots, crc_off = draw(st.sampled_from(bmbt)), bs, BMBT_SPOTS, f.XFS_BTREE_LBLOCK_CRC_OFF
            rec_start = f.XFS_BTREE_LBLOCK_CRC_LEN
        else:
            base, size, spots, crc_off = draw(st.sampled_from(inodes)), isize, INODE_SPOTS, f.XFS_DINODE_CRC_OFF
            rec_start = f.XFS_DINODE_CORE_SIZE
        where = draw(st.one_of(st.sampled_from(spots), st.integers(rec_start, min(size - 1, rec_start + 16 * 24))))
        value = draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 1, 2, 3, 0x80, 0xFF])))
        mode = draw(st.sampled_from(["set", "xor"]))
        patches.append((base, size, crc_off, where, value, mode, draw(st.booleans())))
    return patches


def _apply(path, plan):
    """Patches for the plan: each damaged structure read clean, changed, and (when asked) its CRC made valid."""
    with open(path, "rb") as fh:
        bufs = {}
        for base, size, crc_off, where, value, mode, fix in plan:
            if base not in bufs:
                fh.seek(base)
                bufs[base] = [bytearray(fh.read(size)), crc_off, False]
            buf = bufs[base][0]
            buf[where] = value if mode == "set" else buf[where] ^ value
            bufs[base][2] |= fix
    patches = []
    for base, (buf, crc_off, fix) in bufs.items():
        if fix:
            buf[crc_off:crc_off + 4] = xfs_cksum(bytes(buf), crc_off).to_bytes(4, "little")
        patches.append((base, bytes(buf)))
    return patches


SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


@contextlib.contextmanager
def _patched(path, plan):
    """The image with the plan's damage applied in memory (never written)."""
    fs = XfsFilesystem(PatchedDevice(path, _apply(path, plan)))
    try:
        yield fs
    finally:
        fs.close()


def _same_walks(fs):
    """The numpy walk and the per-record walk give the same records and the same problems; the records."""
    exact, exact_problems, _ = _walk(fs, True)
    vec, vec_problems, _ = _walk(fs, False)
    assert vec_problems == exact_problems
    assert vec == exact
    return exact


@pytest.mark.parametrize("name", NO_RMAP)
def test_damaged_inodes_and_bmbt_blocks_same_records_and_problems(built, name):
    path, _ = built(name)

    @SETTINGS
    @given(data=st.data())
    def run(data):
        plan = data.draw(damage(path))
        with _patched(path, plan) as fs:
            exact = _same_walks(fs)
            _check_windows(fs, exact, random.Random(len(plan)), n=2)

    run()


@pytest.mark.parametrize("name", NO_RMAP)
def test_realtime_flag_same_records_and_problems(built, name):
    """A realtime file's data fork counts rt-device blocks: its extents are dropped, its bmbt blocks kept, an
    extent count too large for the fork is not a problem. Set on a bmbt-format file, an extent-format file, and
    one whose extent count is then impossible (CRC made valid each time)."""
    path, _ = built(name)
    inodes, _, isize, _ = _targets(path)
    with open(path, "rb") as fh:
        def core(off):
            fh.seek(off)
            return bytearray(fh.read(isize))
        by_format = {}
        for off in inodes:
            raw = core(off)
            n = int.from_bytes(raw[76:80], "big")
            by_format.setdefault((raw[5], n > 0), off)
    cases = []
    for key in ((f.XFS_DINODE_FMT_BTREE, True), (f.XFS_DINODE_FMT_EXTENTS, True)):
        assert key in by_format, key
        cases.append([(by_format[key], 91, 0x01)])
    cases.append([(by_format[(f.XFS_DINODE_FMT_EXTENTS, True)], 91, 0x01),
                  (by_format[(f.XFS_DINODE_FMT_EXTENTS, True)], 79, 0xFF)])
    for case in cases:
        plan = [(base, isize, f.XFS_DINODE_CRC_OFF, where, value, "set", True) for base, where, value in case]
        with _patched(path, plan) as fs:
            _same_walks(fs)

