"""Realtime devices against a kernel that has them: the filesystems in tests/data/rt were made, filled and
recorded in a QEMU guest (tests/make_rt_fixtures.py; this machine's kernel has no CONFIG_XFS_RT). Every
byte of a classic realtime device is checked against what that kernel said: free space against its GETFSMAP
of the rt device, file data against FIEMAP of every realtime file, paths against the tree, and the rest of
the device against GETFSMAP's `unknown`. No root needed: the images are read, never mounted."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys

import pytest

from fsdaxctl.xfs import devices
from fsdaxctl.xfs.fs import XfsFilesystem
from tests.replay_oracle import merge_spans as _runs

DATA = os.path.join(os.path.dirname(__file__), "data", "rt")
CLASSIC = ["rt-classic", "rt-classic-ext16k-logdev"]
GROUPED = ["rtgroups", "rtgroups-3", "zoned-external", "zoned-seq"]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """name -> (truth, {role: image path})."""
    cache = {}

    def get(name):
        if name not in cache:
            truth = json.load(open(os.path.join(DATA, name, "truth.json")))
            out = tmp_path_factory.mktemp(name)
            paths = {}
            for role, dev in truth["devices"].items():
                paths[role] = str(out / f"{role}.img")
                with lzma.open(os.path.join(DATA, name, dev["image"])) as src, open(paths[role], "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            cache[name] = truth, paths
        return cache[name]

    return get


def _open(paths):
    fs = XfsFilesystem.open(paths["data"])
    devices.attach(fs, paths.get("log"), paths["rt"])
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


@pytest.mark.parametrize("name", CLASSIC)
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


@pytest.mark.parametrize("name", GROUPED)
def test_grouped_rt_devices_are_refused_not_guessed(unpacked, name):
    """Realtime groups and zoned devices (rt rmap btrees per group) are not mapped yet: one line naming which,
    exit 1, never an answer (a zoned filesystem is refused as a whole: its incompat bit is not known)."""
    truth, paths = unpacked(name)
    proc = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", paths["data"], "--rtdev", paths["rt"],
                           "--fs-device", "rt", "--format", "jsonl"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert ("zoned" if name.startswith("zoned") else "realtime groups") in last, last


def _cli(paths, *args):
    extra = ["--rtdev", paths["rt"]] + (["--logdev", paths["log"]] if "log" in paths else [])
    return subprocess.run([sys.executable, "-m", "fsdaxctl", args[0], paths["data"], *extra, *args[1:]],
                          capture_output=True, text=True)


@pytest.mark.parametrize("name", CLASSIC)
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
