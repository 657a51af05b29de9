"""The committed images (tests/data, made by tests/make_fixtures.py on a real mount) against the GETFSMAP the
kernel returned for them: the core comparison, runnable without root or loop devices."""

from __future__ import annotations

import json
import lzma
import os
import random

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from fsdaxctl.locate import locate
from fsdaxctl.ranges import Range
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap
from tests.oracle import KernelMap, ours

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURES = sorted(n.removesuffix(".img.xz") for n in os.listdir(DATA) if n.endswith(".img.xz"))


@pytest.fixture(scope="session")
def fixture(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            path = tmp_path_factory.mktemp("fixtures") / f"{name}.img"
            with open(os.path.join(DATA, f"{name}.img.xz"), "rb") as fh:
                path.write_bytes(lzma.decompress(fh.read()))
            with open(os.path.join(DATA, f"{name}.kernel.json.xz"), "rb") as fh:
                rec = json.loads(lzma.decompress(fh.read()))
            cache[name] = (str(path), rec)
        return cache[name]

    return get


def test_fixtures_exist():
    assert {"4k-reflink", "1k-reflink", "4k-norefl-normap"} <= set(FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_recorded_getfsmap(fixture, name):
    path, rec = fixture(name)
    with XfsFilesystem.open(path) as fs:
        km = KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)
        assert fs.geo.blocksize == rec["block_size"] and fs.has_rmapbt == rec["rmapbt"]
        # without rmapbt the kernel's own answer is free space and 'unknown': compare that view here
        omap = OwnerMap(fs, source=None if fs.has_rmapbt else "bnobt")
        assert ours(omap.pieces(0, fs.dev.size)) == km.pieces(0, fs.dev.size)
        rng = random.Random(name)
        edges = sorted({r.physical for r in km.recs})
        ranges = []
        for _ in range(500):
            if rng.random() < 0.5:
                off = max(0, rng.choice(edges) - rng.randrange(0, 2 * fs.geo.blocksize))
            else:
                off = rng.randrange(0, fs.dev.size - 1)
            ranges.append(Range(off, min(rng.choice((1, 512, 4096, 65536, 1 << 20)), fs.dev.size - off)))
        for r, res in zip(ranges, locate(omap, ranges)):
            assert ours(res.owners) == km.pieces(r.offset, r.length), r


@pytest.mark.parametrize("name,source", [(n, s) for n in FIXTURES for s in ("rmapbt", "bnobt")
                                         if s == "bnobt" or "normap" not in n])  # the walk does not cluster
def test_clustered_ranges_get_their_own_querys_answer(fixture, name, source):
    """Ranges close together are answered from one query over their span, cut per range (fsdaxctl.locate):
    each cut must be exactly the range's own query's answer, pieces, order, detail and all; also on a copy
    with damaged metadata blocks (unreadable spans, conflicts)."""
    import shutil

    path, _ = fixture(name)
    damaged = path + f".{source}.damaged"
    shutil.copyfile(path, damaged)
    rng = random.Random(f"{name}-{source}")
    with XfsFilesystem.open(path) as fs:
        meta = [p for p in OwnerMap(fs, source=source).pieces(0, fs.geo.size) if p.owner not in ("file", "free")]
        bs, size = fs.geo.blocksize, fs.geo.size
    with open(damaged, "r+b") as fh:
        for p in rng.sample(meta, min(6, len(meta))):
            fh.seek(p.offset + rng.randrange(0, p.length // bs) * bs + rng.randrange(0, bs - 64))
            fh.write(rng.randbytes(64))
    for img in (path, damaged):
        ranges = []
        for _ in range(2000):
            near = ranges and rng.random() < 0.6
            off = max(0, ranges[-1].offset + rng.randrange(-8192, 200000)) if near else rng.randrange(0, size + 4096)
            ranges.append(Range(off, rng.choice((1, 512, 4096, 65536, 1 << 20))))
        with XfsFilesystem.open(img) as fs:
            clustered, single = OwnerMap(fs, source=source), OwnerMap(fs, source=source)
            single.cluster_gap = single.dense_after = 0  # each range its own query (whole chunks: test_dense.py)
            assert clustered.cluster_gap > 0
            got, want = locate(clustered, ranges), locate(single, ranges)
            assert [r.owners for r in got] == [r.owners for r in want]
            assert clustered.problems == single.problems


def test_sample_runs_with_no_image_of_your_own():
    """The README's first command: the bundled sample, a shared (reflinked) block, exit 4."""
    r = CliRunner().invoke(cli, ["locate", "--sample", "--offset", "46235648", "--length", "8k", "--format",
                                 "json"])
    assert r.exit_code == 4, r.stderr
    owners = json.loads(r.stdout)["results"][0]["owners"]
    assert len(owners) == 2 and all(p["owner"] == "file" and p["shared"] for p in owners)
    assert owners[0]["inode"] != owners[1]["inode"]
    r = CliRunner().invoke(cli, ["info", "--sample", "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["filesystem"]["label"] == "sample"


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_paths_match_recorded_tree(fixture, name):
    from fsdaxctl.xfs.paths import PathResolver

    path, rec = fixture(name)
    with XfsFilesystem.open(path) as fs:
        names = PathResolver(fs).name(int(i) for i in rec["files"])
    assert len(names) > 3000
    for ino, info in rec["files"].items():
        assert sorted(names[int(ino)].paths) == sorted(info["paths"]), ino


def test_parent_pointers_name_every_inode_walking_up(fixture):
    """4k-parent was made by mkfs.xfs 6.15 (-n parent=1, built here from source) and populated on a real mount
    by the kernel: with the PARENT feature every inode is named by walking up its parent pointers alone."""
    from fsdaxctl.xfs.paths import PathResolver

    path, rec = fixture("4k-parent")
    assert rec["parent"] and rec["mkfs_version"] >= "6.10"
    with XfsFilesystem.open(path) as fs:
        assert fs.has_parent
        resolver = PathResolver(fs)

        def no_walk(*a):
            raise AssertionError("fell back to walking down from the root")

        resolver._walk = no_walk
        names = resolver.name(int(i) for i in rec["files"])
    for ino, info in rec["files"].items():
        assert sorted(names[int(ino)].paths) == sorted(info["paths"]), ino
    assert resolver.problems == []


def test_stale_parent_pointer_is_reported_and_the_walk_names_the_file(fixture, tmp_path):
    """A parent pointer whose generation no longer matches its directory is stale: reported, not followed."""
    import struct

    from fsdaxctl.xfs.attr import read_attrs
    from fsdaxctl.xfs.inode import read_inode
    from fsdaxctl.xfs.paths import PathResolver
    from fsdaxctl.xfs.verify import xfs_cksum

    path, rec = fixture("4k-parent")
    target = next(int(i) for i, info in rec["files"].items() if info["paths"] == ["/links/short"])
    bad = tmp_path / "stale.img"
    bad.write_bytes(open(path, "rb").read())
    with XfsFilesystem.open(str(bad)) as fs:
        (pp,) = [a for a in read_attrs(fs, read_inode(fs, target)) if a.namespace == "parent"]
        at = fs.geo.ino_to_byte(target)
        raw = bytearray(open(bad, "rb").read()[at:at + fs.geo.inodesize])
    i = raw.index(pp.name + pp.value)  # shortform entry: name then value, in the inode
    gen_at = i + len(pp.name) + 8
    struct.pack_into(">I", raw, gen_at, (struct.unpack_from(">I", raw, gen_at)[0] + 1) & 0xFFFFFFFF)
    struct.pack_into("<I", raw, 100, 0)
    struct.pack_into("<I", raw, 100, xfs_cksum(bytes(raw), 100))  # a valid CRC: only the generation is wrong
    with open(bad, "r+b") as fh:
        fh.seek(at)
        fh.write(raw)
    with XfsFilesystem.open(str(bad)) as fs:
        resolver = PathResolver(fs)
        names = resolver.name([target])
    assert names[target].paths == ["/links/short"]
    assert any("names generation" in p and "stale" in p for p in resolver.problems), resolver.problems


@pytest.mark.parametrize("name", ["4k-reflink", "1k-reflink"])
def test_file_option_gives_the_kernels_fiemap(fixture, name):
    """--file PATH --file-offset N --length L: which device bytes hold that file range, against the kernel's
    FIEMAP of every regular file recorded when the image was made (ranges across extent boundaries too)."""
    from click.testing import CliRunner

    from fsdaxctl.cli import cli
    from fsdaxctl.ranges import merge_ranges

    path, rec = fixture(name)
    checked = 0
    for ino, extents in sorted(rec["fiemap"].items(), key=lambda kv: int(kv[0])):
        if checked == 40:
            break
        paths = [p for p in rec["files"][ino]["paths"] if p.isprintable() and p.isascii()]  # odd bytes: test_cli
        if not extents or not paths:
            continue
        first = extents[0]
        start = first["logical"] + first["length"] // 2 // 512 * 512
        end = min(start + 3 * first["length"], extents[-1]["logical"] + extents[-1]["length"])
        want = []  # the kernel's device bytes for [start, end), extent by extent, holes left out
        for e in extents:
            lo, hi = max(start, e["logical"]), min(end, e["logical"] + e["length"])
            if lo < hi:
                want.append((e["physical"] + lo - e["logical"], hi - lo))
        r = CliRunner().invoke(cli, ["locate", path, "--file", paths[0], "--file-offset", str(start), "--length",
                                     str(end - start), "--format", "json", "--no-detail"])
        got = [(x["offset"], x["length"]) for x in json.loads(r.stdout)["results"]]
        # our pieces follow the bmbt records, FIEMAP's the kernel's extents: compare them joined where they touch
        assert merge_ranges(got) == merge_ranges(want), (paths[0], start, end)
        assert all(int(ino) in {o.get("inode") for o in x["owners"]} for x in json.loads(r.stdout)["results"])
        checked += 1
    assert checked >= 10


def test_a_btree_block_read_again_with_new_contents_is_checked_again(fixture, tmp_path):
    """A btree block whose records were checked is not checked again while its CRC is the same (a long ranges
    list reads the same leaves many times); a block that changed under us (a mounted disk read --offline)
    has another CRC and is checked again: records put out of order, with a CRC to match, are refused."""
    import shutil
    import struct

    from fsdaxctl.errors import CorruptError
    from fsdaxctl.parsers import xfs as f
    from fsdaxctl.xfs import btree
    from fsdaxctl.xfs.verify import xfs_cksum

    path, _ = fixture("4k-reflink")
    img = str(tmp_path / "d.img")
    shutil.copyfile(path, img)
    with XfsFilesystem.open(img) as fs:
        agf = fs.agf(0)
        root = agf.agf_bno_root  # a bnobt root leaf with several records
        node = btree.read_node(fs, btree.BNOBT, 0, root, None, root=True)
        assert node.level == 0 and len(node.items) >= 2 and fs.verified
        byte = fs.geo.ag_to_byte(0, root)
        with open(img, "r+b") as fh:
            fh.seek(byte)
            buf = bytearray(fh.read(fs.geo.blocksize))
            a, b = btree.HDR, btree.HDR + 8  # swap the first two records: out of order, a valid CRC
            buf[a:a + 8], buf[b:b + 8] = buf[b:b + 8], buf[a:a + 8]
            struct.pack_into("<I", buf, f.XFS_BTREE_SBLOCK_CRC_OFF, xfs_cksum(bytes(buf), f.XFS_BTREE_SBLOCK_CRC_OFF))
            fh.seek(byte)
            fh.write(buf)
        fs._nodes.clear()
        with pytest.raises(CorruptError, match="out of order"):
            btree.read_node(fs, btree.BNOBT, 0, root, None, root=True)


@pytest.mark.parametrize("name", FIXTURES)
def test_names_found_near_the_inode_are_the_kernels(fixture, name):
    """A few inodes are named from the directories allocated near them, up through '..' (paths._near); every
    path must be the kernel's (all hard links), as the walk from the root finds them, and an inode whose
    directory is not near (or whose links are not all there) is named by the walk."""
    from fsdaxctl.xfs import paths as P

    from fsdaxctl.xfs.inode import read_inode

    path, rec = fixture(name)
    with XfsFilesystem.open(path) as fs:
        named = sorted((int(i), info) for i, info in rec["files"].items()
                       if info["type"] in ("file", "dir") and int(i) != fs.sb.sb_rootino)
        near = 0
        for ino, info in named[::max(1, len(named) // 120)]:
            got = P.PathResolver(fs).name([ino])[ino]
            assert sorted(got.paths) == sorted(info["paths"]), (ino, got)
            links = 1 if info["type"] == "dir" else read_inode(fs, ino).core.di_nlink
            near += P.PathResolver(fs)._near(ino, links, P.Naming())
        assert fs.has_parent or near > 0  # the near path does name some (directories spread over AGs: not all)
        resolver = P.PathResolver(fs)
        far = [int(i) for i, info in rec["files"].items() if len(info["paths"]) > 1][:1]
        if far:  # hard links: named near or by the walk, all of them either way
            assert sorted(resolver.name(far)[far[0]].paths) == sorted(rec["files"][str(far[0])]["paths"])


def test_clustered_answers_keep_replay_notes_on_their_own_bytes(fixture):
    """A free extent next to bytes an unfinished extent-free intent frees: the note stays on those bytes, so a
    range over the old free space gets the same answer clustered as alone (free pieces with different notes
    are not joined)."""
    from types import SimpleNamespace

    from fsdaxctl.xfs.logrecover import Effect

    path, _ = fixture("1k-reflink")
    with XfsFilesystem.open(path) as fs:
        free = next(p for p in OwnerMap(fs).pieces(0, fs.geo.size) if p.owner == "free" and p.length >= 4096)
        s = free.offset + free.length
        fs.replay = SimpleNamespace(effects=[Effect("free", "an unfinished extent-free intent (test)", s, s + 1024)])
        ranges = [Range(free.offset, 1024), Range(s, 1024)]
        single = OwnerMap(fs)
        single.cluster_gap = 0
        got, want = locate(OwnerMap(fs), ranges), locate(single, ranges)
        assert [r.owners for r in got] == [r.owners for r in want]
        assert got[0].owners[0].detail is None and "extent-free" in got[1].owners[0].detail["note"]


def test_a_directory_whose_dotdot_lies_is_named_by_the_walk(fixture, tmp_path):
    """A directory block whose '..' names another directory (valid CRC: damage the checksum cannot see): the
    path found up through '..' is not confirmed by that directory's entries, so the file in it is named by
    the walk from the root, with the kernel's path (never a path made up from the lie)."""
    import shutil
    import struct

    from fsdaxctl.parsers import xfs as f
    from fsdaxctl.xfs import paths as P
    from fsdaxctl.xfs.dir import DirBlocks, parse_data_block
    from fsdaxctl.xfs.inode import read_inode
    from fsdaxctl.xfs.verify import xfs_cksum

    path, rec = fixture("4k-reflink")
    img = str(tmp_path / "d.img")
    shutil.copyfile(path, img)
    with XfsFilesystem.open(img) as fs:
        root = fs.sb.sb_rootino
        for ino, info in sorted(rec["files"].items(), key=lambda kv: int(kv[0])):
            d = read_inode(fs, int(ino))
            if info["type"] != "dir" or d.fork("data")[0] != f.XFS_DINODE_FMT_EXTENTS:
                continue
            block = next(iter(DirBlocks(fs, d).data_blocks()))
            parent, entries = parse_data_block(fs, d, block)
            files = [e for e in entries if rec["files"].get(str(e.ino), {}).get("type") == "file"]
            if parent != root and files:
                break
        else:
            pytest.fail("no block directory below the root with files in it")
        target = files[0].ino
        byte = fs.geo.fsb_to_byte(DirBlocks(fs, d).map_fsb(block.dablk))
        raw = bytearray(block.data)
        dotdot = raw.find(struct.pack(">Q", parent), f.XFS_DIR3_DATA_HDR_SIZE)
        assert dotdot > 0 and rec["files"][str(target)]["paths"]
    struct.pack_into(">Q", raw, dotdot, root)  # '..' now says the root, which has no entry for it
    struct.pack_into("<I", raw, f.XFS_DIR3_DATA_CRC_OFF, xfs_cksum(bytes(raw), f.XFS_DIR3_DATA_CRC_OFF))
    with open(img, "r+b") as fh:
        fh.seek(byte)
        fh.write(raw)
    with XfsFilesystem.open(img) as fs:
        resolver = P.PathResolver(fs)
        assert not resolver._near(target, 1, P.Naming())  # the lie is not confirmed: nothing named near
        got = P.PathResolver(fs).name([target])[target]
        assert sorted(got.paths) == sorted(rec["files"][str(target)]["paths"])


def test_a_streamed_list_through_a_partition_warns_in_the_order_a_held_one_does(fixture, tmp_path):
    """A streamed window that needs the stack (TARGET a GPT disk, a range in the other partition) gives its
    warnings in the order the whole list held at once gives them: what detail could not read, then the inputs
    skipped."""
    import subprocess

    from tests.conftest import need_tool

    need_tool("sfdisk", package="fdisk")
    path, _ = fixture("4k-reflink")
    with XfsFilesystem.open(path) as fs:
        size = fs.geo.size
    dir_block, file_byte = 46563328, 46612480  # /names's directory block, a block of /names/plain
    data = bytearray(open(path, "rb").read())
    data[dir_block:dir_block + 16] = b"GARBAGEGARBAGE!!"
    disk = tmp_path / "disk.img"
    start = 1 << 20
    with open(disk, "wb") as fh:
        fh.truncate(start + size + (17 << 20))
    table = f"label: gpt\nstart=2048, size={size // 512}, type=linux\nstart={(start + size) // 512 + 2048}, " \
            "size=16384, type=linux\n"
    subprocess.run(["sfdisk", "-q", str(disk)], input=table, text=True, check=True)
    with open(disk, "r+b") as fh:
        fh.seek(start)
        fh.write(data)
    other = start + size + (1 << 20) + 4096  # a block of partition 2
    ranges = tmp_path / "r.txt"
    ranges.write_text(f"{other} 4096\n{file_byte + start} 4096\n")
    runner = CliRunner()
    streamed = runner.invoke(cli, ["locate", str(disk), "--ranges", str(ranges), "--format", "json"])
    held = runner.invoke(cli, ["locate", str(disk), "--ranges", str(ranges), "--format", "json", "--explain"])
    assert streamed.exit_code == held.exit_code == 4  # /names/plain's data
    warnings = json.loads(streamed.stdout)["warnings"]
    assert warnings == json.loads(held.stdout)["warnings"]
    assert [w for w in warnings if "unreadable" in w or "skipped" in w] == [
        next(w for w in warnings if "unreadable" in w), next(w for w in warnings if "skipped" in w)]
