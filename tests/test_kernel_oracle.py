"""fsdaxctl's offline answers against the kernel's GETFSMAP, piece for piece, on real loop-mounted images.

Each image is made by mkfs.xfs, populated with files of every shape on a real mount, unmounted, and re-mounted
read-only to record the kernel's full GETFSMAP. Then fsdaxctl reads the unmounted image and must agree on
owner, inode, fork, file offset, flags and the clipped byte range for every piece of many random ranges.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from fsdaxctl.locate import locate
from fsdaxctl.ranges import Range
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap
from tests import images
from tests import kernel as K
from tests.oracle import KernelMap, ours

pytestmark = pytest.mark.kernel

CONFIGS = sorted(images.IMAGE_CONFIGS)


def kernel_map(path, rec):
    with XfsFilesystem.open(path) as fs:
        return KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)


def interesting_ranges(km: KernelMap, fs, rng: random.Random, n: int) -> list[Range]:
    """Single sectors, ranges straddling record edges, ranges across AGs, random spans, the whole device."""
    size = fs.dev.size
    edges = sorted({r.physical for r in km.recs} | {r.physical + r.length for r in km.recs})
    ag_bytes = fs.geo.agblocks << fs.geo.blocklog
    out = [Range(0, size)]
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:  # one sector anywhere
            off = rng.randrange(0, size // 512) * 512
            ln = 512
        elif kind == 1:  # across a record edge, unaligned
            e = rng.choice(edges)
            off = max(0, e - rng.randrange(1, 3 * fs.geo.blocksize))
            ln = rng.randrange(2, 6 * fs.geo.blocksize)
        elif kind == 2 and fs.geo.agcount > 1:  # across an AG boundary
            a = rng.randrange(1, fs.geo.agcount)
            off = a * ag_bytes - rng.randrange(1, 1 << 20)
            ln = rng.randrange(2, 2 << 20)
        elif kind == 3:  # a page-sized poison at a page boundary (what memory_failure reports)
            off = rng.randrange(0, size // 4096) * 4096
            ln = 4096
        else:  # anything
            off = rng.randrange(0, size - 1)
            ln = rng.randrange(1, max(2, size // 8))
        ln = max(1, min(ln, size - off))
        out.append(Range(off, ln))
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_random_ranges_match_getfsmap(built, name):
    path, rec = built(name)
    km = kernel_map(path, rec)
    with XfsFilesystem.open(path) as fs:
        # without rmapbt the kernel's own answer is free space and 'unknown': compare that view here
        omap = OwnerMap(fs, source=None if fs.has_rmapbt else "bnobt")
        ranges = interesting_ranges(km, fs, random.Random(name), 400)
        results = locate(omap, ranges)
        if fs.has_rmapbt:
            assert omap.problems == []
        for r, res in zip(ranges, results):
            assert (res.offset, res.length) == (r.offset, r.length)
            assert ours(res.owners) == km.pieces(r.offset, r.length), (name, r)
            assert sum(p.length for p in res.owners) >= r.length  # every byte has an owner


@pytest.mark.parametrize("name", CONFIGS)
def test_image_has_every_shape(built, name):
    """The population really made what the comparison claims to cover."""
    path, rec = built(name)
    km = kernel_map(path, rec)
    flags = [r.flags for r in km.recs]
    if images.IMAGE_CONFIGS[name]["rmapbt"]:
        kinds = {K.owner_name(r) for r in km.recs}
        assert {"file", "free", "static-fs-metadata", "per-ag-metadata", "inode-btree", "inodes", "log"} <= kinds
        assert any(f & K.FMR_OF_EXTENT_MAP for f in flags), "no bmbt-format file"
        assert any(f & K.FMR_OF_ATTR_FORK for f in flags), "no attr fork blocks"
        assert any(f & K.FMR_OF_PREALLOC for f in flags), "no unwritten extents"
        if images.IMAGE_CONFIGS[name]["reflink"]:
            assert any(f & K.FMR_OF_SHARED for f in flags), "no shared extents"
            assert "refcount-btree" in kinds
    else:
        assert {K.owner_name(r) for r in km.recs} == {"free", "unknown"}


@pytest.mark.parametrize("name", ["4k-reflink", "1k-reflink"])
def test_keyed_getfsmap_queries_match(built, name, tmp_path):
    """Ask the kernel itself about each range (keyed GETFSMAP on a read-only mount), not just the full dump."""
    path, rec = built(name)
    rng = random.Random(f"keyed-{name}")
    with XfsFilesystem.open(path) as fs:
        km = kernel_map(path, rec)
        ranges = interesting_ranges(km, fs, rng, 60)
        ranges = [r for r in ranges if r.end <= fs.geo.size]
        results = locate(OwnerMap(fs), ranges)
        blocksize, fs_size = fs.geo.blocksize, fs.geo.size
    with images.loop_mount(path, readonly=True) as mnt:
        for r, res in zip(ranges, results):
            got = K.getfsmap(mnt, r.offset, r.end - 1)
            # The kernel answers with whole records; clip them, and take sharing from the full map.
            kr = KernelMap(got, blocksize, fs_size, mapped=km.mapped)
            assert ours(res.owners) == kr.pieces(r.offset, r.length), r


def test_cli_json_contract_matches_getfsmap(built, tmp_path):
    """End to end through the installed command: JSON shape, input order, exit status."""
    path, rec = built("4k-reflink")
    km = kernel_map(path, rec)
    rng = random.Random(7)
    with XfsFilesystem.open(path) as fs:
        ranges = interesting_ranges(km, fs, rng, 200)
    rng.shuffle(ranges)
    listing = tmp_path / "ranges.txt"
    listing.write_text("# offset length\n" + "".join(f"{r.offset} {r.length}\n" for r in ranges))
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--ranges", str(listing),
                           "--format", "json"], capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    assert doc["source"] == path
    assert doc["filesystem"]["type"] == "xfs" and doc["filesystem"]["block_size"] == 4096
    assert [(x["offset"], x["length"]) for x in doc["results"]] == [(r.offset, r.length) for r in ranges]
    status = 0
    for r, res in zip(ranges, doc["results"]):
        assert ours(res["owners"]) == km.pieces(r.offset, r.length)
        for p in res["owners"]:
            assert set(p) <= {"offset", "length", "owner", "inode", "fork", "file_offset", "extent_map",
                              "unwritten", "shared", "paths", "detail", "impact"}
            if p["owner"] == "file":
                assert "paths" in p and isinstance(p["paths"], list)
                data = p["fork"] == "data" and not p["extent_map"]
                status |= 4 if data else 8
            elif p["owner"] not in ("free", "outside-filesystem"):
                status |= 8
    assert proc.returncode == status, proc.stderr


def test_long_ranges_list_is_streamed_and_matches_getfsmap(built, tmp_path):
    """A ranges list longer than two of the session's windows is answered as it is read: every range as the
    kernel's GETFSMAP says, in the list's order across windows, the exit status the union of every window's,
    the sub-sector note once at the end; a bad line after the first window is still one line and exit 2."""
    from fsdaxctl.session import Session

    path, rec = built("4k-reflink")
    km = kernel_map(path, rec)
    rng = random.Random(11)
    with XfsFilesystem.open(path) as fs:
        ranges = interesting_ranges(km, fs, rng, 2 * Session.STREAM_WINDOW + 500)
    rng.shuffle(ranges)
    ranges.append(Range(0, 100))  # the superblock's sector, and a length shorter than one
    listing = tmp_path / "ranges.txt"
    listing.write_text("".join(f"{r.offset} {r.length}\n" for r in ranges))
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--ranges", str(listing),
                           "--format", "jsonl", "--no-detail"], capture_output=True, text=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(x["offset"], x["length"]) for x in lines] == [(r.offset, r.length) for r in ranges]
    status = 0
    for r, res in zip(ranges, lines):
        assert ours(res["owners"]) == km.pieces(r.offset, r.length), r
        for p in res["owners"]:
            if p["owner"] == "file":
                status |= 4 if p["fork"] == "data" and not p["extent_map"] else 8
            elif p["owner"] not in ("free", "outside-filesystem"):
                status |= 8
    assert proc.returncode == status == 12, proc.stderr
    assert proc.stderr.count("less than one 512-byte sector") == 1
    bad = ranges[:Session.STREAM_WINDOW + 10]
    listing.write_text("".join(f"{r.offset} {r.length}\n" for r in bad) + "12 x\n")
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--ranges", str(listing),
                           "--format", "jsonl", "--no-detail"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"fsdaxctl: {listing} line {len(bad) + 1}: length")


def test_read_only_block_device(built):
    """A read-only loop device can only be opened O_RDONLY: locate works on it, and on the mounted device
    it warns that the answer may be stale."""
    path, rec = built("4k-reflink")
    km = kernel_map(path, rec)
    dev = subprocess.run(["losetup", "-r", "-f", "--show", path], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", dev, "--offset", "0",
                               "--length", "1m", "--format", "json"], capture_output=True, text=True)
        doc = json.loads(proc.stdout)
        assert ours(doc["results"][0]["owners"]) == km.pieces(0, 1 << 20)
        assert "mounted" not in proc.stderr
        mnt = os.path.join(os.path.dirname(path), "mnt")
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", "-o", "ro", dev, mnt], check=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", dev], capture_output=True, text=True)
            assert f"mounted read-only at {mnt}" in proc.stderr
            proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", path], capture_output=True, text=True)
            assert f"mounted read-only at {mnt}" in proc.stderr  # found through the loop device's backing file
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def test_dirty_log_detected_like_xfs_repair(built, tmp_path):
    """Shut a mounted filesystem down without flushing the log: xfs_repair -n sees a dirty log, so must we."""
    from fsdaxctl.xfs.log import log_is_clean

    path, _ = built("4k-reflink")
    dirty = str(tmp_path / "dirty.img")
    subprocess.run(["cp", "--sparse=always", path, dirty], check=True)
    with images.loop_mount(dirty) as mnt:
        for i in range(20):
            with open(os.path.join(mnt, f"new{i}"), "w") as fh:
                fh.write("x" * i)
        os.sync()
        os.mkdir(os.path.join(mnt, "after-sync"))
        subprocess.run(["xfs_io", "-x", "-c", "shutdown", mnt], check=True)
    for img, want in ((path, True), (dirty, False)):
        repair = subprocess.run(["xfs_repair", "-n", "-f", img], capture_output=True, text=True)
        assert ("valuable metadata changes in a log" not in repair.stdout + repair.stderr) == want
        with XfsFilesystem.open(img) as fs:
            assert log_is_clean(fs) is want
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", dirty], capture_output=True, text=True)
    assert "the log is dirty" in proc.stderr


@pytest.mark.parametrize("name", ["4k-reflink", "1k-reflink"])
def test_one_range_reads_only_its_path(built, name):
    """A query reads the AGF and one root-to-leaf path per tree it needs, never a scan of a tree."""
    path, rec = built(name)
    rng = random.Random(name)
    km = kernel_map(path, rec)
    shared_blocks = [r.physical for r in km.recs if r.flags & K.FMR_OF_SHARED]
    deepest = 0
    for i in range(60):
        with XfsFilesystem.open(path) as fs:
            offset = rng.choice(shared_blocks) if i % 3 == 0 else rng.randrange(0, fs.geo.size // 512) * 512
            agno, _ = fs.geo.byte_to_ag(offset)
            agf = fs.agf(agno)
            # AGF sector + one path per tree: rmapbt, refcountbt (sharing), bnobt and cntbt (free needs both)
            budget = 1 + agf.agf_rmap_level + agf.agf_refcount_level + agf.agf_bno_level + agf.agf_cnt_level
            deepest = max(deepest, agf.agf_rmap_level)
            fs._agf.clear()
            reads = []
            real = fs.dev.pread
            fs.dev.pread = lambda off, n, what="data": (reads.append((off, n, what)), real(off, n, what))[1]
            OwnerMap(fs).pieces(offset, 512)
            assert len(reads) <= budget, reads
            assert sum(n for _, n, _ in reads) <= fs.geo.sectsize + (budget - 1) * fs.geo.blocksize
    assert deepest >= 2  # some queries went through a real tree, not a single leaf


@pytest.mark.parametrize("name", CONFIGS)
def test_paths_match_the_mounted_tree(built, name):
    """Every inode's names (all hard links) as os.walk saw them on the mounted filesystem."""
    from fsdaxctl.xfs.paths import PathResolver

    path, rec = built(name)
    with XfsFilesystem.open(path) as fs:
        names = PathResolver(fs).name(int(i) for i in rec["files"])
    for ino, info in rec["files"].items():
        n = names[int(ino)]
        assert sorted(n.paths) == sorted(info["paths"]), (ino, n, info)
        assert n.ftype == info["type"]
        assert n.reason is None


def test_cli_paths_for_every_file_piece(built):
    """locate over the whole device: every file piece names its inode's paths, odd bytes included, and JSON
    carries names that are not UTF-8 as \\udcXX escapes of the same bytes."""
    path, rec = built("4k-reflink")
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--offset", "0", "--length",
                           str(os.path.getsize(path)), "--format", "json"], capture_output=True)
    doc = json.loads(proc.stdout)  # bytes in, so the escapes are decoded by json, not by a text layer
    seen = set()
    for p in doc["results"][0]["owners"]:
        if p["owner"] == "file":
            assert sorted(p["paths"]) == sorted(rec["files"][str(p["inode"])]["paths"]), p
            seen.add(p["inode"])
    odd = {os.fsencode(x) for info in rec["files"].values() for x in info["paths"]}
    assert any(b"\xff\xfe not utf-8 \x80" in x for x in odd)
    named = {os.fsencode(x) for p in doc["results"][0]["owners"] if p["owner"] == "file" for x in p["paths"]}
    assert any(b"\xff\xfe not utf-8 \x80" in x for x in named)
    assert seen == {r.owner for r in kernel_map(path, rec).recs if K.owner_name(r) == "file"}


def test_table_escapes_names(built):
    """A name with a newline or an escape sequence cannot forge a line or colour the terminal."""
    path, rec = built("4k-reflink")
    target = next(int(i) for i, info in rec["files"].items()
                  if any("new\nline" in x for x in info["paths"]) and info["type"] == "file")
    km = kernel_map(path, rec)
    piece = next(r for r in km.recs if r.owner == target)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--offset", str(piece.physical),
                           "--length", "512", "--format", "table"], capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 5  # summary, header, rule, one row, advice
    assert "new\\nline" in lines[3] and "new\\nline" in lines[4] and "\x1b" not in proc.stdout


def test_paths_format_lists_every_damaged_file_as_bytes(built):
    """--format paths -0: the on-disk bytes of every name of every file the kernel says owns blocks."""
    path, rec = built("4k-reflink")
    km = kernel_map(path, rec)
    owners = {r.owner for r in km.recs if K.owner_name(r) == "file"}
    want = {os.fsencode(p) for ino in owners for p in rec["files"][str(ino)]["paths"]}
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", path, "--offset", "0", "--length",
                           str(os.path.getsize(path)), "--format", "paths", "--null"], capture_output=True)
    got = proc.stdout.split(b"\0")
    assert got[-1] == b"" and len(got) - 1 == len(set(got[:-1]))
    assert set(got[:-1]) == want
    assert any(b"\xff\xfe not utf-8 \x80" in p for p in want) and any(b"new\nline" in p for p in want)
