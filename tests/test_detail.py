"""Exact owners against independent answers: xfs_db's block-by-block classification (blockget + blockuse),
the inodes stat()ed on the mounted filesystem, and the names os.walk saw in each directory."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from fsdaxctl.locate import describe_results, locate
from fsdaxctl.ranges import Range
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap

pytestmark = pytest.mark.kernel

DETAIL_CONFIGS = ["4k-reflink", "1k-reflink", "4k-rmap-noreflink", "8k-odd-ag", "4k-4ksect", "4k-dirblk16k"]

# xfs_db blockuse type -> (our owner, our structure name or impact)
AG_TREES = {"btbno": ("per-ag-metadata", "bnobt"), "btcnt": ("per-ag-metadata", "cntbt"),
            "btrmap": ("per-ag-metadata", "rmapbt"), "freelist": ("per-ag-metadata", "AGFL block (free list)"),
            "btino": ("inode-btree", "inobt"), "btfino": ("inode-btree", "finobt"),
            "btrefc": ("refcount-btree", "refcountbt"), "btrefcnt": ("refcount-btree", "refcountbt")}
FILE_TYPES = {"data": "file-data", "rldata": "file-data", "dir": "directory", "attr": "file-attr",
              "bmap": "file-map", "symlink": "symlink"}


def blockuse(image: str, geo) -> list[tuple[int, int, str, int | None]]:
    """(agno, agbno, type, inode) of every block, as xfs_db's consistency walk classified it."""
    cmds = ["-c", "blockget -n"]
    for agno in range(geo.agcount):  # blockuse counts stop at the end of an AG
        cmds += ["-c", f"fsblock {geo.ag_to_fsb(agno, 0)}", "-c", f"blockuse -c {geo.ag_length(agno)}"]
    out = subprocess.run(["xfs_db", "-r", *cmds, image], capture_output=True, text=True, check=True).stdout
    rows = []
    for m in re.finditer(r"^block \d+ \((\d+)/(\d+)\) type (\w+)(?: inode (\d+))?", out, re.M):
        rows.append((int(m[1]), int(m[2]), m[3], int(m[4]) if m[4] else None))
    return rows


def described(fs, ranges):
    results = locate(OwnerMap(fs), ranges)
    describe_results(fs, results)
    return results


@pytest.mark.parametrize("name", DETAIL_CONFIGS)
def test_every_block_matches_xfs_db_blockuse(built, name):
    path, rec = built(name)
    with XfsFilesystem.open(path) as fs:
        geo = fs.geo
        rows = blockuse(path, geo)
        assert len(rows) == geo.dblocks
        ranges = [Range(geo.ag_to_byte(a, b), geo.blocksize) for a, b, _, _ in rows]
        results = described(fs, ranges)
    # xfs_db's blockuse labels a fork's bmbt blocks with the file's type ("data", "dir"; seen: magic BMA3, the
    # inode's bmbt root pointing at the block): for those, the kernel's GETFSMAP EXTENT_MAP flag decides.
    from tests import kernel as K
    bmbt_blocks = {(r["physical"] + i * geo.blocksize, r["owner"]) for r in rec["fsmap"]
                   if r["flags"] & K.FMR_OF_EXTENT_MAP for i in range(r["length"] // geo.blocksize)}
    checked = {}
    for (agno, agbno, kind, ino), res in zip(rows, results):
        owners = res.owners
        where = f"{name} block {agno}/{agbno} ({kind}, inode {ino}): {[p.to_dict() for p in owners]}"
        if kind in ("sb", "agf", "agi", "agfl"):
            assert [p.owner for p in owners] == ["static-fs-metadata"], where
            named = {"sb": "superblock", "agf": "AGF", "agi": "AGI", "agfl": "AGFL"}[kind]
            assert any(named in x for x in owners[0].detail["structures"]), where
        elif kind in AG_TREES:
            owner, structure = AG_TREES[kind]
            assert [p.owner for p in owners] == [owner], where
            assert owners[0].detail["blocks"][0]["structure"] == structure, where
        elif kind == "inode":
            assert [p.owner for p in owners] == ["inodes"], where
        elif kind == "log":
            assert [p.owner for p in owners] == ["log"], where
        elif kind in FILE_TYPES:
            mine = [p for p in owners if p.owner == "file" and p.inode == ino]
            assert mine, where
            want = FILE_TYPES[kind]
            if (res.offset, ino) in bmbt_blocks:
                want = "file-map"
            elif want == "file-data" and all(p.unwritten for p in mine):
                want = "file-unwritten"  # xfs_db says data; never written, it holds none
            assert all(p.impact == want for p in mine), where
        elif kind.startswith("free"):
            assert [p.owner for p in owners] == ["free"], where
        else:
            pytest.fail(f"unexpected xfs_db block type {kind}: {where}")
        checked[kind] = checked.get(kind, 0) + 1
    assert {"btbno", "btcnt", "btrmap", "btino", "inode", "dir", "attr", "log", "data"} <= set(checked)


@pytest.mark.parametrize("name", DETAIL_CONFIGS)
def test_inode_chunks_match_stat(built, name):
    """The in-use inodes listed for damaged inode chunks are exactly the inodes stat() found, with their
    file types and paths; every other slot is free or a sparse hole."""
    path, rec = built(name)
    files = {int(i): info for i, info in rec["files"].items()}
    with XfsFilesystem.open(path) as fs:
        geo = fs.geo
        chunks = [p for p in OwnerMap(fs).pieces(0, geo.size) if p.owner == "inodes"]
        ranges = [Range(off, geo.blocksize) for p in chunks for off in range(p.offset, p.offset + p.length,
                                                                            geo.blocksize)]
        results = described(fs, ranges)
        meta = {fs.sb.sb_rbmino, fs.sb.sb_rsumino}
    in_use = {}
    for res in results:
        (p,) = res.owners
        assert "inodes_not_listed" not in p.detail
        for e in p.detail["inodes"]:
            if e["state"] == "in use":
                in_use[e["inode"]] = e
            else:
                assert e["state"] in ("free", "sparse hole (no inode allocated)"), e
    assert set(in_use) - meta == set(files)
    for ino, info in files.items():
        assert in_use[ino]["type"] == info["type"], ino
        assert sorted(in_use[ino]["paths"]) == sorted(info["paths"]), ino


@pytest.mark.parametrize("name", ["4k-reflink", "1k-reflink", "4k-dirblk16k"])
def test_directory_blocks_list_every_name(built, name):
    """Query every fs block of every directory's data: the names listed, together, are the directory's
    entries as os.walk saw them. When a directory block is one fs block each name is listed exactly once;
    when it spans several, an entry straddling two fs blocks is (rightly) listed for both."""
    path, rec = built(name)
    by_path = {p: int(i) for i, info in rec["files"].items() for p in info["paths"]}
    children: dict[int, list[str]] = {}
    for p, ino in by_path.items():
        if p != "/":
            children.setdefault(by_path[os.path.dirname(p) or "/"], []).append(os.path.basename(p))
    with XfsFilesystem.open(path) as fs:
        geo = fs.geo
        dirs = {i for i, info in rec["files"].items() if info["type"] == "dir"}
        pieces = [p for p in OwnerMap(fs).pieces(0, geo.size)
                  if p.owner == "file" and str(p.inode) in dirs and not p.extent_map and p.fork == "data"]
        ranges = [Range(off, geo.blocksize) for p in pieces for off in range(p.offset, p.offset + p.length,
                                                                             geo.blocksize)]
        results = described(fs, ranges)
        one_block_dirs = geo.dirblklog == 0
    listed: dict[int, list[str]] = {}
    for res in results:
        for p in res.owners:
            assert p.impact == "directory"
            assert "entries_not_listed" not in p.detail
            listed.setdefault(p.inode, []).extend(p.detail.get("entries", []))
    # names/, forms/block, forms/leaf and bigdir never fit in an inode: at least those were read block by block
    assert len(listed) >= 4
    for ino, names in listed.items():
        if one_block_dirs:
            assert sorted(names) == sorted(children.get(ino, [])), ino
        else:
            assert set(names) == set(children.get(ino, [])), ino


def test_unlinked_but_open_inode(built, tmp_path):
    """An image taken of a live system (frozen, copied) with a file deleted while still open: its blocks
    belong to an inode with no name, on the AGI unlinked list. The kernel's GETFSMAP on the copy (mounted
    read-only without log recovery, so the unlinked list is not processed) agrees on the owner."""
    from tests import images
    from tests import kernel as K
    from tests.oracle import KernelMap, ours

    src, _ = built("4k-reflink")
    live = str(tmp_path / "live.img")
    copy = str(tmp_path / "copy.img")
    subprocess.run(["cp", "--sparse=always", src, live], check=True)
    with images.loop_mount(live) as mnt:
        fd = os.open(os.path.join(mnt, "deleted-while-open"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.pwrite(fd, b"z" * 65536, 0)
            os.fsync(fd)
            ino = os.fstat(fd).st_ino
            os.unlink(os.path.join(mnt, "deleted-while-open"))
            subprocess.run(["xfs_freeze", "-f", mnt], check=True)
            try:
                subprocess.run(["cp", "--sparse=always", live, copy], check=True)
            finally:
                subprocess.run(["xfs_freeze", "-u", mnt], check=True)
        finally:
            os.close(fd)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro,norecovery", copy, str(mnt)], check=True)
    try:
        kernel = K.getfsmap(str(mnt))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    mine = [r for r in kernel if r.owner == ino]
    assert mine and sum(r.length for r in mine) == 65536
    with XfsFilesystem.open(copy) as fs:
        km = KernelMap(kernel, fs.geo.blocksize, fs.geo.size)
        r0 = mine[0]
        results = described(fs, [Range(r0.physical, r0.length)])
        assert ours(results[0].owners) == km.pieces(r0.physical, r0.length)
    (p,) = results[0].owners
    assert p.inode == ino and p.paths == ()
    assert p.detail["name"].startswith("unlinked: deleted while still open (on the AGI unlinked list)")


@pytest.mark.parametrize("name", ["4k-reflink", "1k-reflink", "64k-block"])
def test_xattrs_match_the_kernel(built, name):
    """Every file's attributes (names, and values stored in the leaf) as listxattr/getxattr return them."""
    from fsdaxctl.xfs.attr import read_attrs
    from fsdaxctl.xfs.inode import read_inode
    from tests import images

    path, rec = built(name)
    with XfsFilesystem.open(path) as fs, images.loop_mount(path, readonly=True) as mnt:
        compared = 0
        for ino, info in rec["files"].items():
            if info["type"] not in ("file", "dir"):
                continue
            p = os.fsencode(mnt + info["paths"][0])
            kernel = {n: os.getxattr(p, n) for n in os.listxattr(p) if n.startswith("user.")}
            ours = {f"{a.namespace}.{os.fsdecode(a.name)}": a.value for a in read_attrs(fs, read_inode(fs, int(ino)))
                    if a.namespace == "user"}
            assert set(ours) == set(kernel), info["paths"][0]
            for n, v in ours.items():
                assert v is None or v == kernel[n], (info["paths"][0], n)
            compared += len(ours)
    assert compared > 300
