"""Realtime devices against a kernel that has them: the filesystems in tests/data/rt were made, filled and
recorded in a QEMU guest (tests/make_rt_fixtures.py; this machine's kernel has no CONFIG_XFS_RT). Every
byte of a classic realtime device is checked against what that kernel said: free space against its GETFSMAP
of the rt device, file data against FIEMAP of every realtime file, paths against the tree, and the rest of
the device against GETFSMAP's `unknown`. No root needed: the images are read, never mounted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fsdaxctl.xfs import devices
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.ranges import merge_spans as _runs

DATA = os.path.join(os.path.dirname(__file__), "data", "rt")
CLASSIC = ["rt-classic", "rt-classic-ext16k-logdev"]
GROUPED = ["rtgroups", "rtgroups-3", "zoned-external", "zoned-seq", "zoned-gaps"]
ZONED = ["zoned-internal"]
KERNEL_OWNERS = {"free space": "free", "static fs metadata": "static-fs-metadata", "cow reservation": "cow-staging",
                 "unknown": "unknown", "per-AG metadata": "per-ag-metadata", "refcount btree": "refcount-btree",
                 "journalling log": "log", "inode btree": "inode-btree", "inodes": "inodes"}



def _open(paths):
    fs = XfsFilesystem.open(paths["data"])
    devices.attach(fs, paths.get("log"), paths.get("rt"))  # no rt image: an internal realtime section
    return fs


def _kernel_file_blocks(truth, bs):
    """{block byte on the rt device: (inode, file byte, unwritten)} from FIEMAP of every realtime file."""
    out = {}
    for f in truth["files"]:
        if f.get("fiemap_device") != "rt":
            continue
        for e in f["fiemap"]:
            if e["hole"] or e["physical"] is None:
                continue
            for i in range(0, e["length"], bs):
                out[e["physical"] + i] = (f["ino"], e["logical"] + i, "unwritten" in e["flag_names"])
    return out


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_rt_device_matches_the_kernel(unpacked, name):
    truth, paths = unpacked(name)
    with _open(paths) as fs:
        bs = fs.geo.blocksize
        omap = devices.owner_map(fs, "rt")
        size = fs.sb.sb_rblocks * bs
        pieces = omap.pieces(0, size)
        assert omap.problems == []
    kernel = truth["fsmap"]["rt"]
    kfree = _runs((r["start"], r["start"] + r["length"]) for r in kernel if r["owner"] == "free space")
    kunknown = _runs((r["start"], r["start"] + r["length"]) for r in kernel if r["owner"] == "unknown")
    assert {r["owner"] for r in kernel} <= {"free space", "unknown"}  # the kernel knows no more than this
    assert _runs((p.offset, p.offset + p.length) for p in pieces if p.owner == "free") == kfree
    assert _runs((p.offset, p.offset + p.length) for p in pieces if p.owner != "free") == kunknown
    ours = {}
    for p in pieces:
        assert p.device == "rt" and p.owner in ("file", "free"), p
        if p.owner == "file":
            assert p.fork == "data" and not p.extent_map and p.shared is False
            for i in range(0, p.length, bs):
                ours[p.offset + i] = (p.inode, p.file_offset + i, p.unwritten)
    want = _kernel_file_blocks(truth, bs)
    assert want and ours == want


@pytest.mark.parametrize("name", CLASSIC + GROUPED)
def test_locate_on_the_rt_device_names_the_file(unpacked, name):
    """Through the command line: bytes on the rt device (--fs-device rt) name the realtime file that holds
    them, with its paths from the tree, exit status 4 (file data)."""
    truth, paths = unpacked(name)
    f = next(x for x in truth["files"] if x["path"].endswith("/rt/multi.dat"))
    ext = next(e for e in f["fiemap"] if not e["hole"])
    names = sorted(p for ino, p in truth["paths"] if ino == f["ino"])
    args = ["locate", paths["data"], "--rtdev", paths["rt"], "--fs-device", "rt", "--offset",
            str(ext["physical"]), "--length", "4096", "--format", "json"]
    if "log" in paths:
        args[2:2] = ["--logdev", paths["log"]]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", *args], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    [res] = json.loads(proc.stdout)["results"]
    [owner] = res["owners"]
    assert (owner["owner"], owner["inode"], owner["file_offset"], owner["device"]) == \
        ("file", f["ino"], ext["logical"], "rt")
    assert sorted(owner["paths"]) == names and owner["impact"] == "file-data"


def _device_matches(truth, paths, device: str) -> tuple[dict, dict]:
    """Our pieces of a whole device block for block against the kernel's GETFSMAP of it; (our shared flags, the
    kernel's records). GETFSMAP ran on the mounted filesystem, the images are of it unmounted: the unmount
    released the CoW reservations (speculative CoW fork blocks are freed when their inodes are evicted), so the
    kernel's `cow reservation` blocks must be free on the image."""
    with _open(paths) as fs:
        bs = fs.geo.blocksize
        omap = devices.owner_map(fs, device)
        pieces = omap.pieces(0, fs.sb.sb_rblocks * bs if device == "rt" else fs.geo.size)
        assert omap.problems == []
    ours, our_shared = _blocks(pieces, bs)
    kernel, _ = _blocks(truth["fsmap"][device], bs)
    released = {b for b, owners in kernel.items() if owners == [("cow-staging", None, None, False)]}
    assert all(ours[b] == [("free", None, None, False)] for b in released)
    assert {b: o for b, o in ours.items() if b not in released} == {
        b: o for b, o in kernel.items() if b not in released}
    return our_shared, released


def _blocks(pieces, bs):
    """{block byte: sorted [(owner, inode, file byte, unwritten)]} and {(block, inode): shared} of pieces or
    kernel records (dicts of truth.json's fsmap)."""
    owners, shared = {}, {}
    for p in pieces:
        if isinstance(p, dict):
            owner = KERNEL_OWNERS.get(p["owner"], "file")
            start, length, ino, off = p["start"], p["length"], p["inode"], p["offset"]
            unwritten, sh = "unwritten" in p["flags"], "shared" in p["flags"]
            fork = "attr" if "attr_fork" in p["flags"] else "data"
            if p["extent_map"]:
                off = None
        else:
            owner, start, length, ino, off = p.owner, p.offset, p.length, p.inode, p.file_offset
            unwritten, sh, fork = p.unwritten, p.shared, p.fork
        for i in range(0, length, bs):
            fo = None if owner != "file" or off is None else off + i
            key = (owner, ino, fo, unwritten) if fork in (None, "data") else (owner, ino, fo, unwritten, fork)
            owners.setdefault(start + i, []).append(key)
            if owner == "file":
                shared[(start + i, ino)] = sh
    return {k: sorted(v, key=str) for k, v in owners.items()}, shared


@pytest.mark.parametrize("name", GROUPED)
def test_rtgroups_device_matches_the_kernel(unpacked, name):
    """Realtime groups: every block of the rt device has the owners the kernel's GETFSMAP gives it (files with
    their offsets and unwritten state, the rt superblock, free space); `shared` exactly where the refcount
    btree counts a block twice, which is inside every record GETFSMAP flags shared and nowhere else."""
    truth, paths = unpacked(name)
    our_shared, released = _device_matches(truth, paths, "rt")
    bs = truth["geometry"]["blocksize"]
    for r in truth["fsmap"]["rt"]:
        if r["owner"].startswith("inode"):
            inside = [our_shared[(r["start"] + i, r["inode"])] for i in range(0, r["length"], bs)]
            assert any(inside) == ("shared" in r["flags"]), r
    if "reflink=1" in truth["mkfs_command"]:  # zoned filesystems have no reflink
        assert released and any(our_shared.values()) and not all(our_shared.values())


@pytest.mark.parametrize("name", GROUPED)
def test_rtgroups_data_device_matches_the_kernel(unpacked, name):
    """The data device of a filesystem with realtime groups: the metadata directory's inodes and the realtime
    groups' btree blocks (extent maps of their metadata inodes) are owned as the kernel says."""
    truth, paths = unpacked(name)
    _device_matches(truth, paths, "data")


def test_zone_gaps_are_placed_as_the_kernel_places_them(unpacked):
    """Zone capacity below zone size (ZONE_GAPS): each realtime group starts at a power-of-two boundary. Every
    realtime file block sits where the kernel's FIEMAP put it, over the whole device (the kernel's GETFSMAP
    stops at rblocks blocks, before the last groups, so FIEMAP is the witness there); a zone gap is free with
    a note, as GETFSMAP says; a failure in a gap touches no group, one in group 1 is found with its group
    block."""
    truth, paths = unpacked("zoned-gaps")
    with _open(paths) as fs:
        sb, bs = fs.sb, fs.geo.blocksize
        assert sb.sb_features_incompat & 0x400 and (sb.sb_rgextents, sb.sb_rgblklog) == (3072, 12)
        omap = devices.owner_map(fs, "rt")
        end = devices.device_size(fs, "rt")
        pieces = omap.pieces(0, end)
        assert omap.problems == []
    assert end == (7 * 4096 + 3072) * bs
    ours, _ = _blocks(pieces, bs)
    assert _kernel_file_blocks(truth, bs) == {k: v[0][1:] for k, v in ours.items() if v[0][0] == "file"}
    gaps = [p for p in pieces if p.detail and "zone gap" in p.detail.get("note", "")]
    assert [(p.offset, p.length, p.owner) for p in gaps][:1] == [(3072 * bs, 1024 * bs, "free")]
    assert len(gaps) == 7 and all(ours[k] == [("free", None, None, False)] for k in ours if k >= sb.sb_rblocks * bs
                                  and not any(p.offset <= k < p.offset + p.length and p.owner == "file"
                                              for p in pieces))
    big = next(f for f in truth["files"] if f["path"].endswith("/rt/big.dat"))
    second = next(e for e in big["fiemap"] if not e["hole"] and e["physical"] >= 4096 * bs)
    for daddr, want in ((3072 * bs // 512, set()), (second["physical"] // 512, {big["ino"]})):
        proc = _cli(paths, "inject", "--fs-device", "rt", "--daddr", str(daddr), "--length", "4096", "--format",
                    "json")
        assert proc.returncode in (0, 4), proc.stderr
        [out] = json.loads(proc.stdout)["outcomes"]
        assert {d.get("inode") for d in out["decisions"]} - {None} == want
        if want:
            assert any("rtgroup 1: xfs_rmap_query_range(rgbno " in t["call"] for t in out["trace"])


@pytest.mark.parametrize("name", ZONED)
def test_internal_zoned_filesystem_matches_the_kernel(unpacked, name):
    """A zoned filesystem whose realtime section lies inside the data device (rtstart): the kernel addresses
    "the realtime device" as the whole disk. Its GETFSMAP of the rt device, block for block: the data section as
    one static-metadata record, then every rt rmap record; past the last record the kernel lists nothing and
    we say free (no record claims it, zoned: nothing else to ask). The data view of TARGET gives the same
    pieces for the rt section's bytes, the kernel's data-device GETFSMAP for the rest."""
    truth, paths = unpacked(name)
    with XfsFilesystem.open(paths["data"]) as fs:
        devices.attach(fs)
        bs, (a, b) = fs.geo.blocksize, fs.geo.internal_rt
        rtmap, omap = devices.owner_map(fs, "rt"), devices.owner_map(fs, "data")
        rt_pieces = rtmap.pieces(0, b)
        data_pieces = omap.pieces(0, b)
        assert rtmap.problems == [] and omap.problems == [] and fs.warnings == []
    kernel_rt, _ = _blocks(truth["fsmap"]["rt"], bs)
    ours_rt, _ = _blocks(rt_pieces, bs)
    last = max(kernel_rt) + bs
    assert a == fs.geo.size and last < b
    assert {k: v for k, v in ours_rt.items() if k < last} == kernel_rt
    assert all(v == [("free", None, None, False)] for k, v in ours_rt.items() if k >= last)
    assert all(p.device == "rt" for p in rt_pieces)
    ours_data, _ = _blocks(data_pieces, bs)
    kernel_data, _ = _blocks(truth["fsmap"]["data"], bs)
    assert {k: v for k, v in ours_data.items() if k < a} == kernel_data
    assert {k: v for k, v in ours_data.items() if k >= a} == {k: v for k, v in ours_rt.items() if k >= a}
    realtime = [x for x in truth["files"] if x.get("realtime")]  # their FIEMAP: bytes of the one disk
    assert realtime and _kernel_file_blocks({"files": [dict(x, fiemap_device="rt") for x in realtime]}, bs) == {
        k: (v[0][1], v[0][2], v[0][3]) for k, v in ours_rt.items() if v[0][0] == "file"}


@pytest.mark.parametrize("name", ZONED)
def test_internal_zoned_cli(unpacked, name):
    """Through the command line: --file on a realtime file gives its bytes on the disk, owned by it; a disk
    byte of the rt section names the file (exit 4); --rtdev is refused in one line (there is no such device)."""
    truth, paths = unpacked(name)
    f = next(x for x in truth["files"] if x["path"].endswith("/rt/multi.dat"))
    ext = next(e for e in f["fiemap"] if not e["hole"])
    base = [sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--format", "json"]
    for args in (["--file", "/rt/multi.dat", "--file-offset", str(ext["logical"]), "--length", "4096"],
                 ["--offset", str(ext["physical"]), "--length", "4096"]):
        proc = subprocess.run(base + args, capture_output=True, text=True)
        assert proc.returncode == 4, proc.stderr
        [res] = json.loads(proc.stdout)["results"]
        [owner] = res["owners"]
        assert (res["offset"], owner["inode"], owner["file_offset"], owner["device"], owner["paths"]) == \
            (ext["physical"], f["ino"], ext["logical"], "rt", ["/rt/multi.dat"])
    proc = subprocess.run(base + ["--rtdev", paths["data"], "--offset", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert "realtime section lies inside TARGET" in proc.stderr.splitlines()[-1]
    inject = [sys.executable, "-m", "fsdaxctl", "inject", paths["data"], "--format", "json"]
    proc = subprocess.run(inject + ["--daddr", str(ext["physical"] // 512), "--length", "4096"],
                          capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    [out] = json.loads(proc.stdout)["outcomes"]
    assert any("XG_TYPE_RTG" in t["call"] for t in out["trace"])
    assert {(d["action"], d["inode"], d["file_offset"]) for d in out["decisions"]} == {
        ("kill-mappers", f["ino"], ext["logical"]), ("restore-from-backup", f["ino"], ext["logical"])}
    proc = subprocess.run(inject + ["--fs-device", "rt", "--daddr", "8"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert "before this disk's realtime section" in proc.stderr.splitlines()[-1]


def _cli(paths, *args):
    extra = ["--rtdev", paths["rt"]] + (["--logdev", paths["log"]] if "log" in paths else [])
    return subprocess.run([sys.executable, "-m", "fsdaxctl", args[0], paths["data"], *extra, *args[1:]],
                          capture_output=True, text=True)


@pytest.mark.parametrize("name", CLASSIC + GROUPED)
def test_file_on_a_realtime_file_gives_rt_device_bytes(unpacked, name):
    """--file on a realtime file: its bytes on the realtime device, each as the kernel's FIEMAP placed it,
    owned by that file; a hole is said, not guessed."""
    truth, paths = unpacked(name)
    f = next(x for x in truth["files"] if x["path"].endswith("/rt/sparse.dat"))
    rel = f["path"].split("/", 2)[2] if f["path"].startswith("/mnt/") else f["path"]
    for ext in f["fiemap"][:3]:
        proc = _cli(paths, "locate", "--file", rel, "--file-offset", str(ext["logical"]), "--length", "4096",
                    "--format", "json")
        if ext["hole"]:
            assert proc.returncode == 0 and "hole" in proc.stderr and json.loads(proc.stdout)["results"] == []
            continue
        assert proc.returncode == 4, proc.stderr
        [res] = json.loads(proc.stdout)["results"]
        assert (res["offset"], res["input"]["device"]) == (ext["physical"], "rt")
        [owner] = res["owners"]
        assert (owner["inode"], owner["file_offset"], owner["device"]) == (f["ino"], ext["logical"], "rt")


@pytest.mark.parametrize("name", CLASSIC)
def test_inject_on_the_rt_device_follows_the_kernel(unpacked, name):
    """A failure on a classic realtime device: no rmapbt, so the holder returns -EOPNOTSUPP and the generic
    path acts on the page's mapping: the realtime file's mappers are killed and its data is lost. Past the
    device: -ENXIO and nothing else."""
    truth, paths = unpacked(name)
    f = next(x for x in truth["files"] if x["path"].endswith("/rt/one.dat"))
    ext = f["fiemap"][0]
    proc = _cli(paths, "inject", "--fs-device", "rt", "--daddr", str(ext["physical"] // 512), "--length", "4096",
                "--format", "json")
    assert proc.returncode == 4, proc.stderr
    [oc] = json.loads(proc.stdout)["outcomes"]
    assert "needs rmapbt enabled" in json.dumps(oc["trace"])
    assert {d["action"] for d in oc["decisions"]} == {"kill-mappers", "restore-from-backup"}
    assert all(d["inode"] == f["ino"] for d in oc["decisions"])
    size = truth["geometry"]["rblocks"] * truth["geometry"]["blocksize"]
    proc = _cli(paths, "inject", "--fs-device", "rt", "--daddr", str(size // 512 + 8), "--format", "json")
    [oc] = json.loads(proc.stdout)["outcomes"]
    assert proc.returncode == 0 and oc["result"] == "Ignored" and oc["decisions"][0]["action"] == "none"


@pytest.mark.parametrize("name", GROUPED)
def test_inject_on_rtgroups_follows_the_kernel(unpacked, name):
    """Realtime groups (zoned devices too) have an rmap btree each: the kernel walks the groups the bytes lie in
    and decides per owner, as on the data device: the realtime superblock is metadata (shutdown), file data
    names its file, a reflinked block every file sharing it."""
    truth, paths = unpacked(name)
    proc = _cli(paths, "inject", "--fs-device", "rt", "--daddr", "0", "--format", "json")
    [oc] = json.loads(proc.stdout)["outcomes"]
    assert "XG_TYPE_RTG" in json.dumps(oc["trace"])
    if truth["fsmap"]["rt"][0]["owner"] == "static fs metadata":  # the rt superblock (not on zoned devices)
        assert proc.returncode == 8 and [(d["action"], d.get("shutdown")) for d in oc["decisions"]] == [
            ("shutdown-filesystem", "SHUTDOWN_CORRUPT_ONDISK")]
    else:
        assert proc.returncode == 4 and {d["inode"] for d in oc["decisions"]} == {truth["fsmap"]["rt"][0]["inode"]}
    rec = next((r for r in truth["fsmap"]["rt"] if "shared" in r["flags"]), None)
    if rec is None:  # zoned: no reflink
        return
    sharers = {r["inode"] for r in truth["fsmap"]["rt"] if r["inode"] is not None
               and r["start"] <= rec["start"] < r["start"] + r["length"]}
    proc = _cli(paths, "inject", "--fs-device", "rt", "--daddr", str(rec["start"] // 512), "--length", "4096",
                "--format", "json")
    [oc] = json.loads(proc.stdout)["outcomes"]
    assert proc.returncode == 4, proc.stderr
    assert len(sharers) > 1 and {d["inode"] for d in oc["decisions"] if d["action"] == "kill-mappers"} == sharers


def test_rt_superblock_is_described_as_itself(unpacked):
    """The first block of realtime group 0 is the realtime superblock, not AG 0's headers; tables name the
    device of every piece on a filesystem with more than one."""
    truth, paths = unpacked("rtgroups")
    proc = _cli(paths, "locate", "--fs-device", "rt", "--offset", "0", "--length", "4096", "--format", "json")
    [res] = json.loads(proc.stdout)["results"]
    [p] = res["owners"]
    assert (p["owner"], p["device"], proc.returncode) == ("static-fs-metadata", "rt", 8)
    assert "realtime superblock" in p["detail"]["structure"]
    proc = _cli(paths, "locate", "--fs-device", "rt", "--offset", "0", "--length", "4096", "--format", "table")
    header = next(line for line in proc.stdout.splitlines() if line.startswith("OFFSET"))
    assert "DEVICE" in header.split()


def _flip(path: str, byte: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(byte)
        b = fh.read(1)
        fh.seek(byte)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_damaged_rt_group_metadata_is_unknown_not_free(unpacked, tmp_path):
    """A realtime group whose rmap btree block fails its CRC is one `unknown` piece naming why (never free),
    one whose bitmap block is damaged has its unclaimed bytes `unknown`; every other group is answered as
    before; exit status 1, no traceback."""
    import shutil

    from fsdaxctl.xfs.inode import read_inode
    from fsdaxctl.xfs.metadir import metadir_paths

    truth, paths = unpacked("rtgroups")
    bad = str(tmp_path / "data.img")
    shutil.copyfile(paths["data"], bad)
    with XfsFilesystem.open(bad) as fs:
        inodes = {p: ino for ino, p in metadir_paths(fs)[0].items()}
        rmap_root = read_inode(fs, inodes["/rtgroups/0.rmap"]).fork("data")[1]
        maxrecs = (len(rmap_root) - 4) // 48
        leaf = int.from_bytes(rmap_root[4 + 40 * maxrecs:12 + 40 * maxrecs], "big")
        bitmap = read_inode(fs, inodes["/rtgroups/1.bitmap"])
        from fsdaxctl.xfs.inode import bmap

        bitmap_block = bmap(fs, bitmap, "data")[0].startblock
        group = fs.sb.sb_rgextents * fs.geo.blocksize
        _flip(bad, fs.geo.fsb_to_byte(leaf) + 200)
        _flip(bad, fs.geo.fsb_to_byte(bitmap_block))  # the bitmap block's magic
    damaged = dict(paths, data=bad)
    with _open(damaged) as fs:
        omap = devices.owner_map(fs, "rt")
        pieces = omap.pieces(0, fs.sb.sb_rblocks * fs.geo.blocksize)
        assert any("bad CRC" in p for p in omap.problems) and any("bitmap" in p for p in omap.problems)
    g0 = [p for p in pieces if p.offset < group]
    assert [(p.owner, p.offset, p.length) for p in g0] == [("unknown", 0, group)]
    assert "rmap btree cannot be read" in g0[0].detail["error"]
    g1 = [p for p in pieces if group <= p.offset < 2 * group]
    assert not [p for p in g1 if p.owner == "free"] and any(p.owner == "unknown" for p in g1)
    with _open(paths) as fs:
        clean = devices.owner_map(fs, "rt").pieces(0, fs.sb.sb_rblocks * fs.geo.blocksize)
    assert [p for p in pieces if p.offset >= 2 * group] == [p for p in clean if p.offset >= 2 * group]
    proc = _cli(damaged, "fsmap", "--fs-device", "rt", "--format", "jsonl")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("stream", [True, False])
def test_ranges_lines_name_their_device(unpacked, tmp_path, stream):
    """A ranges file's line may start with the device its bytes are on (data, log, rt): each range is answered
    on its device, results in the file's order, whether the list is streamed or read whole (--explain)."""
    truth, paths = unpacked("rt-classic-ext16k-logdev")
    f = next(x for x in truth["files"] if x["path"].endswith("/rt/one.dat"))
    rt_at = f["fiemap"][0]["physical"]
    listing = tmp_path / "ranges.txt"
    listing.write_text(f"rt {rt_at} 4096\n0 4096\n# a comment\nlog 0 512\ndata 4096 512\n")
    args = ["locate", "--ranges", str(listing), "--format", "jsonl", "--no-detail"] + ([] if stream else ["--explain"])
    proc = _cli(paths, *args)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith('{"offset"')]
    assert [(x["offset"], x.get("input", {}).get("device")) for x in lines] == [
        (rt_at, "rt"), (0, "data"), (0, "log"), (4096, "data")], proc.stderr
    assert [(o["owner"], o.get("inode")) for o in lines[0]["owners"]] == [("file", f["ino"])]
    assert [o["owner"] for o in lines[2]["owners"]] == ["log"]
    assert proc.returncode == 12  # file data and metadata


# --- damage reports about the realtime or log device reach it through the stack ----------------------------

PMEM = os.path.join(os.path.dirname(__file__), "data", "pmem")
PFN2_RESOURCE = 0x128200000  # pfn2.0/resource in the recorded sysfs: byte 0 of pmem2's data


@pytest.fixture(scope="module")
def recorded_sysfs(tmp_path_factory):
    """The sysfs tree recorded in the pmem guest (tests/data/pmem): pmem0 and pmem2 are fsdax namespaces."""
    out = tmp_path_factory.mktemp("sysfs")
    subprocess.run(["tar", "-xJf", os.path.join(PMEM, "sysfs-final.tar.xz"), "-C", str(out)], check=True)
    return str(out / "sysfs-final" / "sys")


def _first_extent(truth, name="/rt/multi.dat"):
    f = next(x for x in truth["files"] if x["path"].endswith(name))
    return f, next(e for e in f["fiemap"] if not e["hole"])


def test_a_physical_address_on_the_rt_pmem_reaches_the_rt_device(unpacked, recorded_sysfs):
    """The realtime device is pmem2 (--rtdev pmem2=FILE): a machine-check address in pmem2's data goes down the
    nd layers to its byte on the realtime device and names the realtime file there; inject walks the rt groups
    (XG_TYPE_RTG) after the same hops and kills the file's mappers."""
    truth, paths = unpacked("rtgroups")
    f, ext = _first_extent(truth)
    args = [paths["data"], "--device", "pmem0", "--rtdev", f"pmem2={paths['rt']}", "--sysfs-root", recorded_sysfs,
            "--phys", str(PFN2_RESOURCE + ext["physical"]), "--format", "json"]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", *args], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    [res] = json.loads(proc.stdout)["results"]
    assert (res["input"]["device"], res["offset"]) == ("rt", ext["physical"]) and "pmem2" in res["input"]["note"]
    assert [(o["inode"], o["file_offset"], o["device"]) for o in res["owners"]] == [(f["ino"], 0, "rt")]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "inject", *args], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    [out] = json.loads(proc.stdout)["outcomes"]
    calls = [t["call"] for t in out["trace"]]
    assert any("of pmem2" in c for c in calls) and any("XG_TYPE_RTG" in c for c in calls)
    assert ("kill-mappers", f["ino"]) in {(d["action"], d.get("inode")) for d in out["decisions"]}


@pytest.mark.parametrize("named", [True, False])
def test_a_badblocks_list_of_the_rt_device(unpacked, tmp_path, named):
    """A badblocks list of the realtime device's disk: with the device named (--rtdev pmem2=FILE) its sectors
    are realtime bytes and name the file; without the name nothing says which device pmem2 is: skipped, with
    a warning and exit bit 1, never answered as data-device bytes."""
    truth, paths = unpacked("rtgroups")
    f, ext = _first_extent(truth)
    bb = tmp_path / "bb.txt"
    bb.write_text(f"{ext['physical'] // 512} 8\n")
    rtdev = f"pmem2={paths['rt']}" if named else paths["rt"]
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--device", "pmem0", "--rtdev",
                           rtdev, "--badblocks", f"pmem2={bb}", "--format", "json"], capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    if named:
        assert proc.returncode == 4, proc.stderr
        [res] = doc["results"]
        assert [(o["inode"], o["file_offset"]) for o in res["owners"]] == [(f["ino"], 0)]
    else:
        assert proc.returncode == 1 and doc["results"] == []
        assert any("pmem2" in w and "skipped" in w for w in doc["warnings"])


def test_a_badblocks_list_of_the_log_device(unpacked, tmp_path):
    """The external log's disk named (--logdev pmem3=FILE): its bad sectors are the log's (metadata, exit 8)."""
    truth, paths = unpacked("rt-classic-ext16k-logdev")
    bb = tmp_path / "bb.txt"
    bb.write_text("64 8\n")
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--device", "pmem0",
                           "--rtdev", paths["rt"], "--logdev", f"pmem3={paths['log']}", "--badblocks", f"pmem3={bb}",
                           "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 8, proc.stderr
    [res] = json.loads(proc.stdout)["results"]
    assert (res["offset"], [(o["owner"], o["device"]) for o in res["owners"]]) == (32768, [("log", "log")])


def test_a_block_device_rtdev_is_known_by_its_own_name(unpacked, tmp_path):
    """--rtdev /dev/loopN: the device's own kernel name is what reports about it say (a kernel log line about
    loopN reaches the realtime device), as TARGET's is."""
    from tests.conftest import need_kernel

    need_kernel()
    truth, paths = unpacked("rtgroups")
    f, ext = _first_extent(truth)
    loop = subprocess.run(["losetup", "-f", "--show", "-r", paths["rt"]], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        name = os.path.basename(loop)
        kmsg = tmp_path / "dmesg.txt"
        kmsg.write_text(f"[  12.345678] critical medium error, dev {name}, sector {ext['physical'] // 512} op "
                        "0x0:(READ) flags 0x0 phys_seg 1 prio class 0\n")
        proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--rtdev", loop,
                               "--kmsg", str(kmsg), "--format", "json"], capture_output=True, text=True)
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
    assert proc.returncode == 4, proc.stderr
    [res] = json.loads(proc.stdout)["results"]
    assert res["input"]["device"] == "rt" and [o["inode"] for o in res["owners"]] == [f["ino"]]


@pytest.mark.parametrize("name", ["rt-classic", "rtgroups"])
def test_inject_file_on_a_realtime_file(unpacked, name):
    """inject --file on a realtime file: the kernel's rt-device branch on the bytes FIEMAP gives (the generic
    path on a classic device, the rt group walk with groups), killing that file's mappers."""
    truth, paths = unpacked(name)
    f, ext = _first_extent(truth)
    proc = _cli(paths, "inject", "--file", f["path"].removeprefix("/mnt"), "--file-offset", str(ext["logical"]),
                "--length", "4096", "--format", "json")
    assert proc.returncode == 4, proc.stderr
    [out] = json.loads(proc.stdout)["outcomes"]
    assert any("the realtime device" in t["call"] for t in out["trace"])
    kills = [d for d in out["decisions"] if d["action"] == "kill-mappers"]
    assert [(d["inode"], d["file_offset"], d["offset"]) for d in kills] == [(f["ino"], ext["logical"],
                                                                            ext["physical"])]


def test_device_names_are_never_guessed(unpacked, tmp_path):
    """A device named both TARGET and the realtime device is refused; reports naming a device, with a realtime
    device whose name is not known, do not make TARGET that device (which is it?); a file whose name holds '='
    is that file, not NAME=FILE."""
    truth, paths = unpacked("rtgroups")
    bb = tmp_path / "bb.txt"
    bb.write_text("8 8\n")
    base = [sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--badblocks", f"pmem0={bb}"]
    for extra, words in ((["--device", "pmem0", "--rtdev", f"pmem0={paths['rt']}"], "TARGET's name"),
                         (["--rtdev", paths["rt"]], "whose name is not known")):
        proc = subprocess.run(base + extra, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
        assert words in proc.stderr.splitlines()[-1]
    odd = tmp_path / "rt=copy.img"
    odd.write_bytes(open(paths["rt"], "rb").read())
    f, ext = _first_extent(truth)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", paths["data"], "--rtdev", str(odd),
                           "--fs-device", "rt", "--offset", str(ext["physical"]), "--format", "json"],
                          capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["owners"][0]["inode"] == f["ino"]


def test_inject_across_rtstart_walks_both_sections(unpacked):
    """A failure over the last data block and the first realtime block of an internal zoned disk: the data part
    goes through the AG walk, the rest through the realtime groups (nothing dropped)."""
    truth, paths = unpacked("zoned-internal")
    a = truth["geometry"]["dblocks"] * truth["geometry"]["blocksize"]
    first = next(r for r in truth["fsmap"]["rt"] if r["start"] == a)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "inject", paths["data"], "--daddr", str(a // 512 - 8),
                           "--length", "8192", "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    [out] = json.loads(proc.stdout)["outcomes"]
    calls = [t["call"] for t in out["trace"]]
    assert any("the data device" in c for c in calls) and any("XG_TYPE_RTG" in c for c in calls)
    assert ("kill-mappers", first["inode"]) in {(d["action"], d.get("inode")) for d in out["decisions"]}


@pytest.mark.parametrize("name", ["rtgroups-3", "zoned-gaps", "zoned-internal"])
def test_realtime_intents_left_in_the_log_make_their_rt_bytes_unknown(unpacked, name):
    """A realtime intent (extent-free, rmap or refcount) left in a dirty log names realtime blocks: their bytes
    on the realtime device (group arithmetic, zone gaps and rtstart included) are `unknown` with the reason,
    never data-device bytes; the data device's answer is untouched; blocks past the device are one error."""
    from types import SimpleNamespace

    from fsdaxctl.xfs import logrecover as L
    from fsdaxctl.xfs.rt import rtb_to_byte

    truth, paths = unpacked(name)
    f, ext = _first_extent(truth)
    with _open(paths) as fs:
        sb, bs = fs.sb, fs.geo.blocksize
        rgno = sb.sb_rgcount - 1
        rtb = (rgno << sb.sb_rgblklog) | 5  # block 5 of the last group
        out = SimpleNamespace(effects=[])
        L._Replayer._rt_phys(SimpleNamespace(fs=fs, geo=fs.geo, out=out), "an unfinished rt intent", rtb, 2)
        [e] = out.effects
        assert (e.device, e.start, e.end) == ("rt", rtb_to_byte(sb, rtb), rtb_to_byte(sb, rtb) + 2 * bs)
        with pytest.raises(L._Fatal, match="outside the realtime device"):
            L._Replayer._rt_phys(SimpleNamespace(fs=fs, geo=fs.geo, out=out), "x", sb.sb_rgcount << sb.sb_rgblklog, 1)
        before = devices.owner_map(fs, "data").pieces(0, fs.geo.size)
        fs.replay = SimpleNamespace(effects=[e, L.Effect("unknown", "an unfinished rt intent", ext["physical"],
                                                         ext["physical"] + bs, device="rt")])
        rt = devices.owner_map(fs, "rt")
        for lo, hi in ((e.start, e.end), (ext["physical"], ext["physical"] + bs)):
            got = rt.pieces(lo - bs, hi - lo + 2 * bs)
            assert [(p.owner, p.device) for p in got if lo <= p.offset < hi] == [("unknown", "rt")], got
            assert all(p.agno is None for p in got)
        assert devices.owner_map(fs, "data").pieces(0, fs.geo.size) == before


@pytest.mark.parametrize("name", CLASSIC + GROUPED + ZONED)
def test_info_says_where_the_realtime_section_is(unpacked, name):
    """info: the realtime section (its own device or inside TARGET from rtstart), its size, extent size and
    groups as the superblock gives them, zone gaps as a stride above the group size; valid against the
    shipped JSON schema; one table line."""
    import jsonschema

    from fsdaxctl.schemas import load

    truth, paths = unpacked(name)
    g, bs = truth["geometry"], truth["geometry"]["blocksize"]
    base = [sys.executable, "-m", "fsdaxctl", "info", paths["data"]] + (["--rtdev", paths["rt"]] if "rt" in paths
                                                                        else [])
    proc = subprocess.run(base + ["--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(load("info")).validate(doc)
    rt = doc["filesystem"]["realtime"]
    assert (rt["internal"], rt["length"], rt["extent_size"]) == (name in ZONED, g["rblocks"] * bs, g["rextsize"] * bs)
    assert rt["offset"] == (doc["filesystem"]["size"] if name in ZONED else 0)
    if name != "zoned-gaps":  # the section's end: its last group may be short (rtgroups-3)
        assert rt["end"] == rt["offset"] + rt["length"]
    if g.get("rgcount"):
        assert (rt["groups"], rt["group_size"]) == (g["rgcount"], g["rgextents"] * g["rextsize"] * bs)
        assert (rt["group_stride"] > rt["group_size"]) == (name == "zoned-gaps")
    else:
        assert "groups" not in rt
    table = subprocess.run(base + ["--format", "table"], capture_output=True, text=True).stdout
    assert len([line for line in table.splitlines() if line.startswith("realtime ")]) == 1
