"""Realtime groups answered per query: a range reads only its groups' metadata inodes, the rt rmap and refcount
btree blocks whose keys meet it and the bitmap blocks holding its extents, and answers exactly what the whole
device's answer says of those bytes. On the kernel-made filesystems of tests/data/rt (tests/make_rt_fixtures.py),
and on synthetic long-format btrees deep enough that a range query must choose its children."""

from __future__ import annotations

import os
import random
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsdaxctl.errors import CorruptError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import devices, rt
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.inode import children_meeting, long_btree_records
from fsdaxctl.xfs.piece import Piece, clip
from fsdaxctl.xfs.rt import group_blocks, group_start
from fsdaxctl.xfs.verify import xfs_cksum

DATA = os.path.join(os.path.dirname(__file__), "data", "rt")
GROUPED = ["rtgroups", "rtgroups-3", "zoned-external", "zoned-seq", "zoned-gaps", "zoned-internal"]



def _open(paths):
    fs = XfsFilesystem.open(paths["data"])
    devices.attach(fs, paths.get("log"), paths.get("rt"))
    return fs


def _reads(fs) -> list[str]:
    """What every read of the data device (where all realtime metadata lives) is for, from now on."""
    seen, pread = [], fs.dev.pread

    def counted(offset, length, what="data"):
        seen.append(what)
        return pread(offset, length, what)

    fs.dev.pread = counted
    return seen


def _clipped(whole: list[Piece], lo: int, hi: int) -> list[Piece]:
    out = [clip(p, lo, hi) for p in whole if p.offset < hi and p.offset + p.length > lo]
    return sorted(out, key=Piece.sort_key)


def _edge_ranges(fs, omap, truth) -> list[tuple[int, int]]:
    """Ranges at every group's start and end (zone gaps: its data's end and the next group's start), inside
    one rt rmap record, across groups and at the ends of the device, sub-block ones among them."""
    sb, bs, size = fs.sb, fs.geo.blocksize, omap.size
    out = [(0, size), (0, 1), (size - bs, bs), (max(0, omap.origin - bs), 2 * bs)]
    for g in range(sb.sb_rgcount):
        start, data_end = group_start(sb, g) * bs, (group_start(sb, g) + group_blocks(sb)) * bs
        for x in (start, data_end):
            for d, n in ((-bs, 2 * bs), (-512, 1024), (0, bs), (-3 * bs, 7 * bs), (-bs, 4 << 20)):
                out.append((x + d, n))
        out.append((start + bs // 2, group_blocks(sb) * bs))  # one whole group's length, straddling two
    for r in truth["fsmap"]["rt"][:40]:
        if r["length"] > bs:
            out += [(r["start"] + bs, r["length"] - 2 * bs or bs), (r["start"] + 512, 512)]
    out.append((group_start(sb, 0) * bs + bs, (group_start(sb, sb.sb_rgcount - 1) - group_start(sb, 0)) * bs))
    return [(max(0, a), min(n, size - max(0, a))) for a, n in out if a < size and n > 0]


@pytest.mark.parametrize("name", GROUPED)
def test_every_range_is_what_the_whole_device_says(unpacked, name):
    """Each range answered alone (its own groups' blocks read) has exactly the pieces of the whole device's
    answer clipped to it: edges of groups and zone gaps, inside records, across groups, random ones."""
    truth, paths = unpacked(name)
    with _open(paths) as fs:
        whole_map = devices.owner_map(fs, "rt")
        whole = whole_map.pieces(0, whole_map.size)
        omap = devices.owner_map(fs, "rt")
        rng, size = random.Random(name), omap.size
        ranges = _edge_ranges(fs, omap, truth)
        for _ in range(300):
            a = rng.randrange(size)
            n = rng.choice([1, 512, 4096, rng.randrange(1, 1 << 16), rng.randrange(1, 1 << 25)])
            ranges.append((a, min(n, size - a)))
        for lo, n in ranges:
            assert omap.pieces(lo, n) == _clipped(whole, lo, lo + n), (lo, n)
        assert whole_map.problems == [] and omap.problems == []


@pytest.mark.parametrize("name", GROUPED)
@pytest.mark.parametrize("window", [1, 3, 64])
def test_a_dump_cut_into_small_windows_is_the_same(unpacked, name, window, monkeypatch):
    """A group read a few blocks at a time (as a dump of a large group is) is cut only where no piece
    crosses: the same pieces as one query of the whole device, one batch per window."""
    truth, paths = unpacked(name)
    with _open(paths) as fs:
        omap = devices.owner_map(fs, "rt")
        whole = omap.pieces(0, omap.size)
        monkeypatch.setattr(rt, "_WINDOW_BLOCKS", window)
        small = devices.owner_map(fs, "rt")
        batches = list(small.iter_batches(0, omap.size))
        assert [p for b in batches for p in b] == whole
        assert len(batches) > fs.sb.sb_rgcount and small.problems == []


def test_one_block_reads_its_path_only(unpacked):
    """One block of rtgroups (the fixture with the most metadata: rmap, refcount and bitmap per group, a
    two-level rmap btree in group 0): the /rtgroups directory (two inodes, shortform), group 0's three
    metadata inodes, the one rmap leaf on its path and one bitmap block. Then another block of that group:
    the leaf and the bitmap block only. The whole device reads every group's."""
    truth, paths = unpacked("rtgroups")
    group = truth["geometry"]["blocksize"] * 8192
    recs = [r for r in truth["fsmap"]["rt"] if r["inode"] and r["start"] + r["length"] < group]
    rec = next(r for r in recs if "shared" not in r["flags"])
    with _open(paths) as fs:
        assert group == group_blocks(fs.sb) * fs.geo.blocksize
        omap = devices.owner_map(fs, "rt")
        reads = _reads(fs)
        [p] = omap.pieces(rec["start"], 4096)
        assert (p.owner, p.inode) == ("file", rec["inode"])
        cold = list(reads)
        reads.clear()
        omap.pieces(recs[-1]["start"], 4096)
        warm = list(reads)
        inodes = [w for w in cold if w.startswith("inode ")]
        assert len(inodes) == 5 and len(cold) == 7, cold
        assert sorted(w.split(" ")[0] for w in warm) == ["rt", "rtrmapbt"], warm
        assert any(w.startswith("rtrmapbt block") for w in cold) and "rt bitmap of group 0 block 0" in cold
    with _open(paths) as fs:
        reads = _reads(fs)
        omap = devices.owner_map(fs, "rt")
        omap.pieces(0, omap.size)
        assert {w for w in reads if w.startswith("rt bitmap")} == {f"rt bitmap of group {g} block 0" for g in range(4)}
        assert len(reads) >= 2 * len(cold) + 1


def test_a_dump_streams_group_by_group(unpacked):
    """The first batch of a whole-device dump comes before any other group's metadata is read."""
    truth, paths = unpacked("rtgroups-3")
    with _open(paths) as fs:
        omap = devices.owner_map(fs, "rt")
        reads = _reads(fs)
        batches = omap.iter_batches(0, omap.size + 4096)
        first = next(batches)
        assert first and first[-1].offset + first[-1].length == group_blocks(fs.sb) * fs.geo.blocksize
        assert [w for w in reads if w.startswith("rt bitmap")] == ["rt bitmap of group 0 block 0"]
        assert len([w for w in reads if w.startswith("inode ")]) == 2 + 3
        rest = list(batches)
        assert rest[-1] == [Piece(omap.size, 4096, "outside-filesystem", device="rt")]


def test_damage_off_the_query_path_is_not_read(unpacked, tmp_path):
    """Group 0's only rmap leaf fails its CRC: a query reaching it gives the group's part one unknown piece with
    why (as the whole device does), a query past the leaf's high key (in its root) never reads it."""
    import shutil

    truth, paths = unpacked("rtgroups")
    bad = str(tmp_path / "data.img")
    shutil.copyfile(paths["data"], bad)
    with _open(paths) as fs:
        omap = devices.owner_map(fs, "rt")
        inode = omap._inode(0, "rmap")
        lit = inode.fork("data")[1]
        maxrecs = (len(lit) - 4) // 48
        high = struct.unpack_from(">I", lit, 4 + 20)[0]  # the leaf's high key's startblock
        leaf = int.from_bytes(lit[4 + 40 * maxrecs:12 + 40 * maxrecs], "big")
        byte, bs = fs.geo.fsb_to_byte(leaf) + 200, fs.geo.blocksize
    with open(bad, "r+b") as fh:
        fh.seek(byte)
        b = fh.read(1)
        fh.seek(byte)
        fh.write(bytes([b[0] ^ 0xFF]))
    with _open(dict(paths, data=bad)) as fs:
        omap = devices.owner_map(fs, "rt")
        [p] = omap.pieces(bs, bs)
        assert p.owner == "unknown" and "rmap btree cannot be read" in p.detail["error"]
        assert omap.pieces(0, 2 * bs) == [p._replace(offset=0, length=2 * bs)]
        past = (high + 1) * bs
        assert [q.owner for q in omap.pieces(past, bs)] == ["free"]
        assert len(omap.problems) == 1 and "bad CRC" in omap.problems[0]


# --- synthetic long-format btrees: the child choice of a range query ----------------------------------------

_BS = 512  # small blocks: deep trees from a few hundred records
_INO = 4242
_LHDR = struct.Struct(">IHHQQQQ16sQII")  # struct xfs_btree_lblock with CRC (72 bytes)


class _Dev:
    def __init__(self):
        self.blocks: dict[int, bytes] = {}
        self.reads: list[int] = []

    def pread(self, offset, length, what="data"):
        self.reads.append(offset // _BS)
        return self.blocks[offset]


def _fake_fs():
    geo = SimpleNamespace(blocksize=_BS, fsb_is_valid=lambda fsb: 0 < fsb < 1 << 30,
                          fsb_to_daddr=lambda fsb: fsb * (_BS >> 9), fsb_to_byte=lambda fsb: fsb * _BS)
    return SimpleNamespace(geo=geo, dev=_Dev())


def _block(fs, tree, level: int, n: int, body: bytes) -> int:
    """A long-format block of `tree` (level, n entries: `body`) as the verifier wants it; its fsblock."""
    fsb = len(fs.dev.blocks) + 1
    buf = bytearray(_BS)
    _LHDR.pack_into(buf, 0, tree.magic, level, n, 0, 0, fsb * (_BS >> 9), 0, b"\0" * 16, _INO, 0, 0)
    buf[72:72 + len(body)] = body
    struct.pack_into("<I", buf, f.XFS_BTREE_LBLOCK_CRC_OFF, xfs_cksum(bytes(buf), f.XFS_BTREE_LBLOCK_CRC_OFF))
    fs.dev.blocks[fsb * _BS] = bytes(buf)
    return fsb


def _pack_keys(tree, keys, ptrs, maxrecs: int) -> bytes:
    ks = b"".join(struct.pack(">IqQIqQ", lo, 0, 0, hi, 0, 0) if tree.overlapping else struct.pack(">I", lo)
                  for lo, hi in keys)
    return ks.ljust(tree.key_size * maxrecs, b"\0") + b"".join(struct.pack(">Q", p) for p in ptrs)


def _build(fs, tree, recs, rng, root_size: int = 120) -> bytes:
    """The root fork bytes of a tree of `recs` ((start, length, ...) in key order), in random-sized blocks;
    keys are each child's first start and (overlapping) the greatest last block under it."""
    per_leaf, per_node = (_BS - 72) // tree.rec_size, (_BS - 72) // (tree.key_size + 8)
    level, entries = 0, []  # (low, high, fsblock)
    i = 0
    while i < len(recs):
        chunk = recs[i:i + rng.randint(1, per_leaf)]
        i += len(chunk)
        body = b"".join(_pack_rec(tree, r) for r in chunk)
        entries.append((chunk[0][0], max(r[0] + r[1] - 1 for r in chunk), _block(fs, tree, 0, len(chunk), body)))
    root_max = (root_size - 4) // (tree.key_size + 8)
    while len(entries) > root_max:
        level, up, i = level + 1, [], 0
        while i < len(entries):
            chunk = entries[i:i + rng.randint(2, per_node)]
            i += len(chunk)
            body = _pack_keys(tree, [(a, b) for a, b, _ in chunk], [p for _, _, p in chunk], per_node)
            up.append((chunk[0][0], max(b for _, b, _ in chunk), _block(fs, tree, level, len(chunk), body)))
        entries = up
    head = struct.pack(">HH", level + 1, len(entries))
    body = _pack_keys(tree, [(a, b) for a, b, _ in entries], [p for _, _, p in entries], root_max)
    return (head + body).ljust(root_size, b"\0")


def _pack_rec(tree, r) -> bytes:
    return struct.pack(">IIqQ", *r) if tree.overlapping else struct.pack(">III", *r)


def _rmap_recs(rng, n: int) -> list[tuple]:
    """rt rmap records (start, length, owner, offset), overlapping (shared blocks), sorted as the tree."""
    out = [(rng.randrange(1 << 16), rng.choice([1, 2, 8, rng.randrange(1, 4000)]), rng.randrange(64, 1 << 20),
            rng.randrange(1 << 30)) for _ in range(n)]
    return sorted(out, key=lambda r: (r[0], r[2], r[3]))


def _refcount_recs(rng, n: int) -> list[tuple]:
    """rt refcount records: disjoint runs (start, length, refcount), then CoW staging ones (start | bit 31)."""
    out, cur = [], 0
    for _ in range(n):
        cur += rng.randrange(0, 300)
        length = rng.randrange(1, 300)
        out.append((cur, length, rng.randrange(2, 5)))
        cur += length
    cow = sorted(rng.sample(range(1 << 16), 30))
    return out + [(s | f.XFS_REFC_COWFLAG, 1, 1) for s in cow]


@pytest.mark.parametrize("kind,seed", [(k, s) for k in ("rmap", "refcount") for s in range(4)])
def test_range_query_reads_only_the_children_meeting_it(kind, seed):
    """A range query of a deep tree returns exactly the records of the whole tree meeting the range (every
    block read verified), and a narrow one reads far fewer blocks than the whole tree has."""
    rng = random.Random(seed)
    tree = rt._TREES[kind]
    fs = _fake_fs()
    recs = _rmap_recs(rng, 700) if kind == "rmap" else _refcount_recs(rng, 500)
    lit = _build(fs, tree, recs, rng)
    inode = SimpleNamespace(ino=_INO)
    every = long_btree_records(fs, inode, lit, tree, "data fork")
    assert every == recs and len(fs.dev.reads) == len(fs.dev.blocks) and struct.unpack_from(">H", lit)[0] >= 2
    for _ in range(60):
        lo = rng.randrange(1 << 16)
        hi = lo + rng.choice([0, 1, 10, 1000, 1 << 17])
        fs.dev.reads.clear()
        got = long_btree_records(fs, inode, lit, tree, "data fork", span=(lo, hi))
        assert got == [r for r in recs if r[0] <= hi and r[0] + r[1] > lo]
        assert len(fs.dev.reads) <= len(fs.dev.blocks)
        if hi - lo <= 10:
            assert len(fs.dev.reads) < len(fs.dev.blocks) // 2


def test_range_query_still_verifies_what_it_reads():
    """A damaged block the query's keys lead to is refused as a full walk refuses it; one they do not lead
    to is never read."""
    rng = random.Random(7)
    tree = rt._TREES["rmap"]
    fs = _fake_fs()
    recs = [(i * 10, 5, 100 + i, 0) for i in range(600)]
    lit = _build(fs, tree, recs, rng)
    inode = SimpleNamespace(ino=_INO)
    first_leaf = min(fs.dev.blocks)  # the leaf of the first records
    raw = bytearray(fs.dev.blocks[first_leaf])
    raw[100] ^= 0xFF
    fs.dev.blocks[first_leaf] = bytes(raw)
    with pytest.raises(CorruptError, match="CRC"):
        long_btree_records(fs, inode, lit, tree, "data fork", span=(0, 3))
    with pytest.raises(CorruptError, match="CRC"):
        long_btree_records(fs, inode, lit, tree, "data fork")
    fs.dev.reads.clear()
    assert long_btree_records(fs, inode, lit, tree, "data fork", span=(5000, 5004)) == [(5000, 5, 600, 0)]
    assert fs.dev.reads and first_leaf // _BS not in fs.dev.reads


@st.composite
def _node(draw, overlapping: bool):
    """A node of a valid tree: its children's records ((start, length), in key order) and keys."""
    n = draw(st.integers(1, 12))
    children, cur = [], 0
    for _ in range(n):
        recs = []
        for _ in range(draw(st.integers(1, 4))):
            if overlapping:
                cur += draw(st.integers(0, 20))
                recs.append((cur, draw(st.integers(1, 60))))
            else:
                cur += draw(st.integers(0, 20))
                length = draw(st.integers(1, 20))
                recs.append((cur, length))
                cur += length
        children.append(recs)
    keys = [(c[0][0], max(s + k - 1 for s, k in c)) if overlapping else (c[0][0],) for c in children]
    return children, keys


@given(st.booleans().flatmap(lambda o: st.tuples(_node(o), st.integers(0, 400), st.integers(0, 200))))
def test_children_meeting_misses_no_record_and_takes_none_its_keys_exclude(args):
    (children, keys), lo, n = args
    hi = lo + n
    chosen = children_meeting(keys, lo, hi)
    for i, recs in enumerate(children):
        if any(s <= hi and s + k > lo for s, k in recs):
            assert i in chosen
    for i in chosen:
        if len(keys[i]) == 2:
            assert keys[i][0] <= hi and keys[i][1] >= lo
        else:
            assert keys[i][0] <= hi and (i + 1 == len(keys) or keys[i + 1][0] > lo)
    assert chosen == sorted(set(chosen))


@pytest.mark.parametrize("first,last", [(0, 3), (1, 2), (2, 2), (0, 0)])
def test_bitmap_blocks_read_alone_give_the_runs_of_the_whole_bitmap(first, last):
    """Free runs of some of a group's bitmap blocks (each its own words after a 48-byte header) are those of
    the whole bitmap over their extents: a run going on across a block boundary stays one run."""
    from fsdaxctl.errors import Problems

    rng, bs, nbits = random.Random(first * 10 + last), 512, 3 * 3712 + 1000  # 3712 bits a block
    bits = []
    while len(bits) < nbits:
        bits += [rng.random() < 0.6] * rng.choice([1, 5, 100, 3000, 5000])
    bits = bits[:nbits] + [False] * (4 * 3712 - nbits)
    words = [sum(1 << j for j in range(32) if bits[w * 32 + j]) for w in range(len(bits) // 32)]
    payload = b"".join(struct.pack(">I", w) for w in words)
    blocks = {i: struct.pack(">I", 0x424D505A) + bytes(44) + payload[i * 464:(i + 1) * 464] for i in range(4)}
    omap = rt.RtOwnerMap.__new__(rt.RtOwnerMap)
    omap.fs = SimpleNamespace(sb=SimpleNamespace(sb_rextsize=2, sb_rgextents=nbits))
    omap.geo, omap.problems = SimpleNamespace(blocksize=bs, blocklog=9), Problems()
    omap._bitmap_blocks = lambda rgno, a, b: ((i, blocks[i]) for i in range(a, b + 1))
    unit, base = 2 * bs, 1 << 30
    got = omap._bitmap_runs(0, base, first, last)
    a, b = base + first * 3712 * unit, base + min((last + 1) * 3712, nbits) * unit
    whole = rt._free_runs(payload, "big", nbits, base, unit)
    assert got == [(max(s, a), min(e, b)) for s, e in whole if s < b and e > a] and omap.problems == []
    assert any(s < a + 3712 * unit < e for s, e in got) or last == first


@pytest.mark.parametrize("kind", ["rmap", "refcount"])
def test_a_node_whose_keys_are_out_of_order_is_refused(kind):
    """The range query skips children by their keys: keys out of order (a valid CRC over damaged contents)
    would hide records, so such a node is refused, not pruned on."""
    tree = rt._TREES[kind]
    for seed in range(50):  # a tree whose root holds two keys or more
        rng = random.Random(seed)
        fs = _fake_fs()
        recs = _rmap_recs(rng, 700) if kind == "rmap" else _refcount_recs(rng, 500)
        lit = bytearray(_build(fs, tree, recs, rng))
        if struct.unpack_from(">H", lit, 2)[0] >= 2:
            break
    assert struct.unpack_from(">H", lit, 2)[0] >= 2
    first, second = lit[4:4 + tree.key_size], lit[4 + tree.key_size:4 + 2 * tree.key_size]
    lit[4:4 + tree.key_size], lit[4 + tree.key_size:4 + 2 * tree.key_size] = second, first  # swap two keys
    inode = SimpleNamespace(ino=_INO)
    with pytest.raises(CorruptError, match="keys out of order"):
        long_btree_records(fs, inode, bytes(lit), tree, "data fork", span=(0, 10))
