"""A filesystem's devices beside the data device (issue 14): an external log (--logdev) and the metadata
directory tree (METADIR) without realtime, against the kernel's GETFSMAP, whose fmr_device tells the devices apart.

- external log: made by CI's mkfs.xfs (-l logdev=), populated and recorded live on a loop mount with
  `-o logdev=` (kernel marker);
- metadir: the committed fixture tests/data/4k-metadir (mkfs.xfs 6.15, recorded on Linux 6.18; see
  tests/make_fixtures.py), and a live build when FSDAXCTL_MKFS_NEW names a mkfs.xfs >= 6.13.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import random
import subprocess
import tempfile
import zlib

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from fsdaxctl.locate import locate
from fsdaxctl.ranges import Range
from fsdaxctl.xfs import devices
from fsdaxctl.xfs.fs import XfsFilesystem
from tests import images
from tests.conftest import need_tool
from tests import kernel as K
from tests.oracle import KernelMap, ours

DATA = os.path.join(os.path.dirname(__file__), "data")
MiB = 1 << 20


def run(*args):
    return CliRunner().invoke(cli, list(args))


def _loop(path) -> str:
    return subprocess.run(["losetup", "-f", "--show", os.fspath(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def mount_with_logdev(image, log, readonly=False):
    """Mount IMAGE with its external log LOG (both through loop devices); yield (mount point, log dev_t)."""
    mnt = tempfile.mkdtemp(prefix="fsdaxctl-logdev-")
    logloop = _loop(log)
    try:
        opts = f"loop,logdev={logloop}" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "xfs", "-o", opts, os.fspath(image), mnt], check=True, capture_output=True)
        try:
            yield mnt, K._new_encode_dev(os.stat(logloop).st_rdev)
        finally:
            subprocess.run(["umount", mnt], check=True, capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", logloop], capture_output=True)
        os.rmdir(mnt)


def _pieces_equal_kernel(omap, km, size, seed, n=200):
    rng = random.Random(seed)
    edges = sorted({r.physical for r in km.recs})
    ranges = [Range(0, size)]
    for _ in range(n):
        off = max(0, rng.choice(edges) - rng.randrange(0, 8192)) if rng.random() < 0.5 else rng.randrange(size - 1)
        ranges.append(Range(off, min(rng.choice((1, 512, 4096, 65536, 1 << 20)), size - off)))
    for r, res in zip(ranges, locate(omap, ranges)):
        assert ours(res.owners) == km.pieces(r.offset, r.length), r


# --- external log ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logdev_fs(tmp_path_factory):
    from tests.conftest import need_kernel

    need_kernel()  # under FSDAXCTL_REQUIRE_KERNEL=1 (CI) a failure, not a skip
    tmp = tmp_path_factory.mktemp("logdev")
    image, log = tmp / "data.img", tmp / "log.img"
    with open(log, "wb") as fh:
        fh.truncate(20 * MiB)  # 4 MiB of the device past the log: outside the filesystem
    images.mkfs(image, 64 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=3",
                                  "-l", f"logdev={log},size=16m"])
    with mount_with_logdev(image, log) as (mnt, _):
        images.populate(mnt, reflink=True, seed=zlib.crc32(b"logdev"), block_size=4096)
    with mount_with_logdev(image, log, readonly=True) as (mnt, logdevt):
        recs = K.getfsmap(mnt)
        datadevt = K._new_encode_dev(os.stat(mnt).st_dev)
        files, _, _ = images.collect_files(mnt)
    return str(image), str(log), recs, datadevt, logdevt, files



@pytest.mark.kernel
def test_external_log_both_devices_match_getfsmap(logdev_fs):
    image, log, recs, datadevt, logdevt, _ = logdev_fs
    assert {r.device for r in recs} == {datadevt, logdevt}
    with XfsFilesystem.open(image) as fs:
        devices.attach(fs, logdev=log)
        data = KernelMap([r for r in recs if r.device == datadevt], fs.geo.blocksize, fs.geo.size)
        omap = devices.owner_map(fs, "data")
        _pieces_equal_kernel(omap, data, fs.dev.size, "logdev-data")
        assert all(p.device == "data" for p in omap.pieces(0, fs.dev.size))
        assert omap.problems == []
        logmap = KernelMap([r for r in recs if r.device == logdevt], fs.geo.blocksize,
                           devices.device_size(fs, "log"))
        lmap = devices.owner_map(fs, "log")
        size = fs.logdev.size
        assert size > devices.device_size(fs, "log")
        _pieces_equal_kernel(lmap, logmap, size, "logdev-log", 50)
        assert {p.device for p in lmap.pieces(0, size)} == {"log"}


@pytest.mark.kernel
def test_external_log_cli(logdev_fs):
    image, log, _, _, _, files = logdev_fs
    r = run("info", image, "--format", "json")
    assert r.exit_code == 0
    assert any("--logdev" in w for w in json.loads(r.stdout)["warnings"])
    r = run("locate", image, "--logdev", log, "--fs-device", "log", "--offset", "1m", "--length", "16m",
            "--format", "json")
    assert r.exit_code == 8, r.output  # the log is metadata
    res = json.loads(r.stdout)["results"][0]
    assert res["input"]["device"] == "log"
    assert [(p["owner"], p["device"], p["offset"], p["length"]) for p in res["owners"]] == [
        ("log", "log", 1 * MiB, 15 * MiB), ("outside-filesystem", "log", 16 * MiB, 1 * MiB)]
    assert res["owners"][0]["detail"] == {"structure": "log", "log_offset": 1 * MiB}
    r = run("locate", image, "--fs-device", "log", "--offset", "0")
    assert r.exit_code == 2 and "--logdev" in r.output
    r = run("locate", image, "--logdev", log, "--fs-device", "log", "--offset", "20m")
    assert r.exit_code == 2 and "past the end of the log device" in r.output
    # data-device pieces say so on a filesystem with two devices; the data device's answer is unchanged
    r = run("fsmap", image, "--logdev", log, "--format", "json")
    assert r.exit_code == 0, r.output
    owners = json.loads(r.stdout)["owners"]
    assert owners and {p["device"] for p in owners} == {"data"}
    assert any(p["owner"] == "file" and p["paths"] for p in run_locate_file(image, log, files))
    r = run("fsmap", image, "--logdev", log, "--fs-device", "log", "--format", "json")
    assert [p["owner"] for p in json.loads(r.stdout)["owners"]] == ["log", "outside-filesystem"]
    r = run("info", image, "--logdev", image)  # the data device again: accepted (sb_logstart 0), but no log
    assert r.exit_code == 1 and "the log cannot be replayed" in r.output and "--no-replay" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = run("info", image, "--logdev", image, "--no-replay")  # the disk as it is, the log's state in a warning
    assert r.exit_code == 0
    short = os.path.join(os.path.dirname(log), "short-log.img")  # a log device cut short: not replayable
    with open(log, "rb") as src, open(short, "wb") as dst:
        dst.write(src.read(8 * MiB))
    r = run("locate", image, "--logdev", short, "--offset", "0")
    assert r.exit_code == 1 and "cannot read the log on the log device" in r.output and "--no-replay" in r.output
    zeros = os.path.join(os.path.dirname(log), "zero-log.img")  # all zeros: no log record at all
    with open(zeros, "wb") as fh:
        fh.truncate(20 * MiB)
    r = run("info", image, "--logdev", zeros, "--format", "json")
    assert r.exit_code == 0 and any("no log record" in w for w in json.loads(r.stdout)["warnings"])


def run_locate_file(image, log, files):
    ino, info = next((i, f) for i, f in files.items() if f["type"] == "file" and f["size"] >= 4096 and f["paths"]
                     and f["paths"][0].isascii() and f["paths"][0].isprintable())
    r = run("locate", image, "--logdev", log, "--file", info["paths"][0], "--length", "4k", "--format", "json")
    assert r.exit_code in (0, 4), r.output
    return [p for res in json.loads(r.stdout)["results"] for p in res["owners"]]


@pytest.mark.kernel
def test_external_log_dirty_check_reads_the_log_device(logdev_fs, tmp_path):
    image, log, *_ = logdev_fs
    dimg, dlog = tmp_path / "d.img", tmp_path / "l.img"
    dimg.write_bytes(open(image, "rb").read())
    dlog.write_bytes(open(log, "rb").read())
    r = run("info", str(dimg), "--logdev", str(dlog), "--format", "json")
    assert not any("dirty" in w for w in json.loads(r.stdout)["warnings"])
    with mount_with_logdev(dimg, dlog) as (mnt, _):
        with open(os.path.join(mnt, "new-file"), "wb") as fh:
            fh.write(b"x" * 8192)
            fh.flush()
            os.fsync(fh.fileno())
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True, capture_output=True)
    r = run("info", str(dimg), "--logdev", str(dlog), "--format", "json")
    assert any("the log is dirty" in w for w in json.loads(r.stdout)["warnings"]), r.output


# --- metadir without rt ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def metadir_fixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("metadir") / "4k-metadir.img"
    with open(os.path.join(DATA, "4k-metadir.img.xz"), "rb") as fh:
        path.write_bytes(lzma.decompress(fh.read()))
    with open(os.path.join(DATA, "4k-metadir.kernel.json.xz"), "rb") as fh:
        rec = json.loads(lzma.decompress(fh.read()))
    return str(path), rec


def _check_metadir(path, rec):
    from fsdaxctl.xfs.metadir import metadir_paths
    from fsdaxctl.xfs.owners import OwnerMap
    from fsdaxctl.xfs.paths import PathResolver
    from fsdaxctl.xfs.walk import verify_rmap

    with XfsFilesystem.open(path) as fs:
        assert "metadir" in fs.feature_names()
        km = KernelMap(rec["fsmap"], fs.geo.blocksize, fs.geo.size)
        for source in ("rmapbt", "walk"):
            omap = OwnerMap(fs, source=source)
            assert ours(omap.pieces(0, fs.dev.size)) == km.pieces(0, fs.dev.size), source
            assert omap.problems == []
        assert verify_rmap(fs, None, None) == []
        tree, problems = metadir_paths(fs)
        assert problems == [] and tree[fs.sb.sb_metadirino] == "/" and "/rtgroups" in tree.values()
        names = PathResolver(fs).name(list(tree) + [int(i) for i in rec["files"]])
        for ino, mpath in tree.items():  # metadata inodes: named by their metadir path, never an ordinary path
            assert names[ino].paths == [] and names[ino].reason == f"metadata: metadir {mpath} (no name)"
        for ino, info in rec["files"].items():
            assert sorted(names[int(ino)].paths) == sorted(info["paths"]), ino
        assert not set(tree) & {int(i) for i in rec["files"]}
        return tree


def test_metadir_fixture_matches_kernel(metadir_fixture):
    path, rec = metadir_fixture
    assert rec["metadir"] and rec["mkfs_version"] >= "6.13"
    _check_metadir(path, rec)


def test_metadir_inode_detail_names_its_metadir_path(metadir_fixture):
    path, _ = metadir_fixture
    with XfsFilesystem.open(path) as fs:
        root = fs.sb.sb_metadirino
    r = run("locate", path, "--inode", str(root), "--format", "json")
    assert r.exit_code == 8, r.output
    (piece,) = json.loads(r.stdout)["results"][0]["owners"]
    (entry,) = [i for i in piece["detail"]["inodes"] if i["inode"] == root]
    assert entry["paths"] == [] and entry["name"] == "metadata: metadir / (no name)"


@pytest.mark.kernel
@pytest.mark.skipif(not os.environ.get("FSDAXCTL_MKFS_NEW"), reason="FSDAXCTL_MKFS_NEW (a mkfs.xfs >= 6.13) not set")
def test_metadir_live(tmp_path):
    from tests.conftest import need_kernel

    need_kernel()
    cfg = images._cfg(64 * MiB, ["-b", "size=1024", "-m", "metadir=1,rmapbt=1,reflink=1", "-d", "agcount=2"],
                      block_size=1024, reflink=True, rmapbt=True)
    image = tmp_path / "metadir-1k.img"
    try:
        rec = images.build_and_record(image, "metadir-1k", cfg=cfg, mkfs_binary=os.environ["FSDAXCTL_MKFS_NEW"])
    except RuntimeError as e:  # build_and_record's xfs_db check: an xfs_db that cannot read metadir
        if "btree format" in str(e) or "xfs_db" in str(e):
            pytest.skip(f"the xfs_db on PATH cannot read metadir: {e}")
        raise
    _check_metadir(str(image), rec)


# --- the kernel's decisions on the log device; the realtime device refused, never guessed ------------------

@pytest.fixture(scope="module")
def unmounted_devices(tmp_path_factory):
    """An external-log filesystem and an old-style realtime one, made by CI's mkfs.xfs (no mount needed)."""
    tmp = tmp_path_factory.mktemp("devs")
    image, log, rtimg, rt = tmp / "d.img", tmp / "l.img", tmp / "r.img", tmp / "rt.img"
    with open(log, "wb") as fh:
        fh.truncate(20 * MiB)
    with open(rt, "wb") as fh:
        fh.truncate(16 * MiB)
    need_tool("mkfs.xfs", package="xfsprogs")  # CI installs it: a mkfs.xfs that fails here is a failure
    images.mkfs(image, 64 * MiB, ["-m", "rmapbt=1,reflink=1", "-l", f"logdev={log},size=16m"])
    images.mkfs(rtimg, 64 * MiB, ["-m", "rmapbt=0,reflink=0", "-r", f"rtdev={rt}"])
    return str(image), str(log), str(rtimg), str(rt)


def test_inject_on_the_log_device_follows_xfs_dax_notify_logdev_failure(unmounted_devices):
    image, log, _, _ = unmounted_devices
    r = run("inject", image, "--logdev", log, "--fs-device", "log", "--sector", "8", "--format", "json")
    assert r.exit_code == 8, r.output
    (oc,) = json.loads(r.stdout)["outcomes"]
    assert [(d["action"], d["owner"], d.get("shutdown")) for d in oc["decisions"]] == [
        ("shutdown-filesystem", "log", "SHUTDOWN_CORRUPT_ONDISK")]
    r = run("inject", image, "--logdev", log, "--fs-device", "log", "--sector", "8", "--flags", "pre-remove",
            "--format", "json")
    assert r.exit_code == 0
    assert [d["action"] for d in json.loads(r.stdout)["outcomes"][0]["decisions"]] == ["none"]
    r = run("inject", image, "--logdev", log, "--fs-device", "log", "--sector", str(20 * MiB // 512),
            "--format", "json")  # past the end of the log device: -ENXIO and nothing else
    (oc,) = json.loads(r.stdout)["outcomes"]
    assert r.exit_code == 0 and oc["result"] == "Ignored" and "-ENXIO" in oc["trace"][-1]["call"]


def test_empty_classic_realtime_device(unmounted_devices):
    """A classic realtime device nobody has written to: free from end to end (its rt bitmap says so), and a
    failure there touches no owner (the kernel's generic path, no rmapbt). tests/test_rt_fixtures.py compares
    filled realtime devices with a kernel that has them."""
    image, log, rtimg, rt = unmounted_devices
    r = run("info", rtimg, "--format", "json")
    assert any("realtime device" in w and "--rtdev" in w for w in json.loads(r.stdout)["warnings"])
    r = run("locate", rtimg, "--rtdev", rt, "--fs-device", "rt", "--offset", "0", "--length", "16m",
            "--format", "json")
    assert r.exit_code == 0 and "Traceback" not in r.output
    [res] = json.loads(r.stdout)["results"]
    assert [(o["owner"], o["offset"], o["length"], o["device"]) for o in res["owners"]] == [
        ("free", 0, 16 * MiB, "rt")]
    r = run("inject", rtimg, "--rtdev", rt, "--fs-device", "rt", "--sector", "0", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["outcomes"][0]["decisions"] == []
    r = run("locate", image, "--rtdev", rt, "--offset", "0")
    assert r.exit_code == 2 and "no realtime device" in r.output
    r = run("locate", rtimg, "--logdev", log, "--offset", "0")
    assert r.exit_code == 2 and "internal" in r.output


@pytest.mark.kernel
def test_a_crashed_filesystem_with_an_external_log_is_replayed_from_it(tmp_path):
    """A filesystem with an external log shut down mid-work (`shutdown -f`): with --logdev its log is replayed
    in memory from that device as an internal one is, and the answer agrees piece for piece with the kernel's
    GETFSMAP after it mounted a copy (its own log recovery); without --logdev the disk is answered as it is,
    with the warning."""
    import shutil

    from fsdaxctl.xfs import logrecover as L
    from fsdaxctl.xfs.owners import OwnerMap
    from tests.conftest import need_kernel
    from tests.replay_oracle import compare

    need_kernel()
    image, log = tmp_path / "data.img", tmp_path / "log.img"
    with open(log, "wb") as fh:
        fh.truncate(20 * MiB)
    images.mkfs(image, 64 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=3",
                                  "-l", f"logdev={log},size=16m"])
    with mount_with_logdev(image, log) as (mnt, _):
        images.populate(mnt, reflink=True, seed=zlib.crc32(b"logdev-crash"), block_size=4096)
        os.sync()
        for i in range(60):  # after the sync: only in the log when the shutdown comes
            with open(os.path.join(mnt, f"late{i}"), "wb") as fh:
                fh.write(os.urandom(4096 * (1 + i % 5)))
                os.fsync(fh.fileno())  # its blocks allocated, and that logged: the log is written, not the metadata
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)
    copy, copylog = tmp_path / "copy.img", tmp_path / "copy-log.img"
    shutil.copyfile(image, copy)
    shutil.copyfile(log, copylog)
    with mount_with_logdev(copy, copylog) as (mnt, logdevt):  # the kernel recovers the copy
        recs = [r for r in K.getfsmap(mnt) if r.device != logdevt]
    with XfsFilesystem.open(str(image)) as fs0:
        devices.attach(fs0, logdev=str(log))
        fs, rep = L.open_replayed(fs0)
        assert rep.dirty and rep.transactions and rep.blocks
        fs.logdev = fs0.logdev
        km = KernelMap(recs, fs.geo.blocksize, fs.geo.size)
        st = compare(fs, OwnerMap(fs), km, L.unlinked_inodes(fs))
        assert not st["ours_only"] and not st["kernel_only"], (st["ours_only"][:10], st["kernel_only"][:10])
    late = os.path.join("/", "late59")
    r = run("locate", str(image), "--logdev", str(log), "--file", late, "--format", "json")
    assert r.exit_code == 4, r.output
    assert "replayed in memory" in r.stderr
    r = run("locate", str(image), "--file", late, "--format", "json")
    assert r.exit_code == 2 and "late59" in r.output  # not on the disk yet: only the log knows it
