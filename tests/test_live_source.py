"""A mounted filesystem answered by its running kernel (fsdaxctl.live), never from stale disk blocks.

Real loop mounts with a workload that is stopped without syncing or freezing: the live answer must equal the
kernel's GETFSMAP as tests/oracle.py reads it (clipping and exact `shared` done there, independently), paths
must be the machine's paths of the mounted tree, and the stale page cache of the loop device (rm; sync; the
device still shows the deleted file) must not leak into any answer.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from fsdaxctl.live import LiveOwnerMap, LivePathResolver, find_live_target
from fsdaxctl.live.fsmap import fsgeometry, getfsmap
from fsdaxctl.xfs.fs import XfsFilesystem
from tests import images
from tests import kernel as K
from tests.conftest import need_kernel
from tests.oracle import KernelMap, ours

pytestmark = pytest.mark.kernel


@pytest.fixture
def live_fs(tmp_path):
    """A mounted 4k rmapbt+reflink filesystem with files, clones and deletes after the last sync."""
    need_kernel()
    img = str(tmp_path / "live.img")
    images.mkfs(img, 128 << 20, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"])
    with images.loop_mount(img) as mnt:
        rng = random.Random(5)
        for i in range(40):
            images.write_file(os.path.join(mnt, f"f{i}"), rng.randbytes(rng.randint(1, 40) * 4096))
        os.sync()
        for i in range(0, 40, 3):  # after the last sync: deletes, new files, reflinks
            os.unlink(os.path.join(mnt, f"f{i}"))
        os.makedirs(os.path.join(mnt, "new/deep"))
        for i in range(10):
            images.write_file(os.path.join(mnt, "new/deep", f"g{i}"), rng.randbytes(rng.randint(1, 20) * 4096))
        subprocess.run(["cp", "--reflink=always", os.path.join(mnt, "f1"), os.path.join(mnt, "new/clone")],
                       check=True)
        os.link(os.path.join(mnt, "f2"), os.path.join(mnt, "new/f2-link"))
        yield img, mnt


def _geo(img):
    with XfsFilesystem.open(img) as fs:
        return fs.geo


def test_live_pieces_are_the_kernels(live_fs):
    img, mnt = live_fs
    geo = _geo(img)
    omap = LiveOwnerMap(mnt, geo)
    for _ in range(20):  # nothing synced: compare within a window in which the kernel's map stood still
        before = K.getfsmap(mnt)
        got = ours(omap.pieces(0, geo.size))
        if K.getfsmap(mnt) == before:
            break
    assert got == KernelMap(before, geo.blocksize, geo.size).pieces(0, geo.size)
    subprocess.run(["fsfreeze", "-f", mnt], check=True)  # the ranges below: a still filesystem
    subprocess.run(["fsfreeze", "-u", mnt], check=True)
    truth = KernelMap(K.getfsmap(mnt), geo.blocksize, geo.size)
    rng = random.Random(1)
    for _ in range(200):
        off = rng.randrange(0, geo.size - 1)
        n = min(rng.choice((512, 4096, 65536, 1 << 20)), geo.size + (1 << 20) - off)
        assert ours(omap.pieces(off, n)) == truth.pieces(off, n), (off, n)
    assert omap.problems == []


def test_getfsmap_batches_give_the_same_records(live_fs):
    _, mnt = live_fs
    geo = fsgeometry(mnt)
    size = geo["datablocks"] * geo["blocksize"]
    subprocess.run(["fsfreeze", "-f", mnt], check=True)  # background writeback must not move the map between
    try:
        one = list(getfsmap(mnt, 0, size, batch=7))
        assert one == list(getfsmap(mnt, 0, size, batch=1000))
    finally:
        subprocess.run(["fsfreeze", "-u", mnt], check=True)
    assert len(one) > 50


def test_paths_are_the_machines(live_fs):
    img, mnt = live_fs
    files, _, _ = images.collect_files(mnt)
    resolver = LivePathResolver(mnt)
    names = resolver.name(int(i) for i in files)
    for ino, ent in files.items():
        want = sorted(os.path.join(mnt, p.lstrip("/")) if p != "/" else mnt for p in ent["paths"])
        assert names[int(ino)].paths == want, ino
    rel = LivePathResolver(mnt, fs_relative=True).name(int(i) for i in files)
    assert all(rel[int(i)].paths == sorted(e["paths"]) for i, e in files.items())


def test_deleted_but_open_is_named_with_its_holder(live_fs):
    _, mnt = live_fs
    path = os.path.join(mnt, "held")
    images.write_file(path, b"x" * 8192)
    fd = os.open(path, os.O_RDONLY)
    try:
        ino = os.fstat(fd).st_ino
        os.unlink(path)
        n = LivePathResolver(mnt).name([ino])[ino]
        assert n.paths == [] and "deleted while still open" in n.reason and f"pid {os.getpid()}" in n.reason
    finally:
        os.close(fd)


def test_target_forms_find_the_mount(live_fs):
    img, mnt = live_fs
    from fsdaxctl.device import Device, mount_points

    by_dir = find_live_target(mnt)
    by_subdir = find_live_target(os.path.join(mnt, "new"))
    with Device(img) as dev:
        by_image = find_live_target(img, mount_points(dev))
    with Device(by_dir.device) as dev:
        by_device = find_live_target(by_dir.device, mount_points(dev))
    assert by_dir.mount_point == by_subdir.mount_point == by_image.mount_point == by_device.mount_point == mnt
    assert by_dir.device.startswith("/dev/loop")


def test_stale_page_cache_of_the_block_device_is_never_read(live_fs):
    """rm; sync; freeze/thaw: a buffered read of /dev/loopN can still show the deleted file's inode in the
    device's page cache; O_DIRECT (the live detail reads) and the kernel's answer never do."""
    img, mnt = live_fs
    dev = find_live_target(mnt).device
    victim = os.path.join(mnt, "f4")
    ino = os.stat(victim).st_ino
    with XfsFilesystem.open(img) as fs:
        byte = fs.geo.ino_to_byte(ino)
    with open(dev, "rb") as fh:  # fill the device's page cache with the inode while it is in use
        fh.seek(byte)
        fh.read(4096)
    os.unlink(victim)
    os.sync()
    subprocess.run(["fsfreeze", "-f", mnt], check=True)
    subprocess.run(["fsfreeze", "-u", mnt], check=True)
    from fsdaxctl.device import Device

    with Device(dev, direct=True) as d:
        assert d.direct
        raw = d.pread(byte, 512)
    with open(img, "rb") as fh:
        fh.seek(byte)
        assert raw == fh.read(512)  # O_DIRECT on the device reads what the image (the disk) holds
    geo = _geo(img)
    live = LiveOwnerMap(mnt, geo).pieces(0, geo.size)
    assert not any(p.inode == ino for p in live)


def test_cli_on_a_mount_point(live_fs):
    img, mnt = live_fs
    geo = _geo(img)
    truth = KernelMap(K.getfsmap(mnt), geo.blocksize, geo.size)
    f1 = os.path.join(mnt, "f1")
    phys = K.fiemap(f1)[0].physical
    for target in (mnt, img, find_live_target(mnt).device):
        p = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", target, "--offset", str(phys), "--length",
                            "8192", "--format", "json"], capture_output=True, text=True)
        assert p.returncode == 4, p.stderr
        res = json.loads(p.stdout)
        got = res["results"][0]["owners"]
        assert ours(got) == truth.pieces(phys, 8192), target
        assert res["results"][0].get("source", "kernel") == "kernel"
        paths = sorted(x for piece in got for x in piece["paths"])
        assert os.path.join(mnt, "f1") in paths and os.path.join(mnt, "new/clone") in paths


def test_file_takes_the_machines_path_and_the_kernels_fiemap(live_fs):
    """--file on a mounted TARGET: the machine's path or one from the filesystem root, mapped by FIEMAP now
    (a file written after the last sync has no on-disk extents yet, only the kernel knows them)."""
    img, mnt = live_fs
    path = os.path.join(mnt, "new/deep/g3")  # written after the last sync
    ext = K.fiemap(path)[0]
    for given in (path, "/new/deep/g3"):
        p = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", mnt, "--file", given, "--file-offset", "0",
                            "--length", "4096", "--format", "json"], capture_output=True, text=True)
        assert p.returncode == 4, p.stderr
        res = json.loads(p.stdout)["results"]
        assert res[0]["offset"] == ext.physical and res[0]["source"] == "kernel"
        assert [x["paths"] for x in res[0]["owners"]] == [[path]]
    rel = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", mnt, "--file", path, "--fs-relative",
                          "--format", "json"], capture_output=True, text=True)
    assert json.loads(rel.stdout)["results"][0]["owners"][0]["paths"] == ["/new/deep/g3"]


def test_offline_on_a_mounted_target_says_where_the_disk_lags(live_fs):
    """--offline reads the disk under the mount: the files written after the last sync are not there yet, and
    the answer says so (warning naming the kernel's owners, exit bit 1) instead of printing 'free' alone."""
    img, mnt = live_fs
    path = os.path.join(mnt, "new/deep/g5")
    phys = K.fiemap(path)[0].physical
    p = subprocess.run([sys.executable, "-m", "fsdaxctl", "locate", img, "--offline", "--offset", str(phys),
                        "--length", "4096", "--format", "json"], capture_output=True, text=True)
    res = json.loads(p.stdout)["results"][0]
    assert res["source"] == "disk"
    ino = os.stat(path).st_ino
    if not any(x.get("inode") == ino for x in res["owners"]):  # the disk is behind the kernel here
        assert p.returncode & 1 and f"file data of inode(s) {ino}" in p.stderr, p.stderr


def test_info_on_a_mount_point_says_what_is_mounted_where(live_fs):
    img, mnt = live_fs
    p = subprocess.run([sys.executable, "-m", "fsdaxctl", "info", mnt, "--format", "json"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    fs = json.loads(p.stdout)["filesystem"]
    m = fs["mount"]
    assert m["point"] == mnt and m["device"].startswith("/dev/loop") and m["answered_by"] == "kernel"
    g = m["kernel_geometry"]
    assert g["blocksize"] * g["datablocks"] == fs["size"] and g["agcount"] == fs["ag_count"]


@pytest.mark.parametrize("config", ["4k-reflink", "1k-reflink", "4k-4ksect", "64k-reflink", "4k-normap-refl"])
def test_every_config_under_a_workload_never_synced(tmp_path, config):
    """A random workload (clones, dedupe, punch, collapse, renames, links, xattrs...) stopped without any sync or
    freeze: the live answer is the kernel's, piece for piece, and every path is the mounted tree's."""
    need_kernel()
    from tests import stress, workload

    cfg = stress.CONFIGS[config]
    img = str(tmp_path / f"{config}.img")
    images.mkfs(img, cfg["size"], cfg["mkfs"])
    with images.loop_mount(img) as mnt:
        workload.run(mnt, 7, 600, block_size=cfg["block_size"], reflink=cfg["reflink"],
                     sector_size=cfg["sector_size"])
        geo = fsgeometry(mnt)
        size, bs = geo["datablocks"] * geo["blocksize"], geo["blocksize"]

        from types import SimpleNamespace

        ag_bytes = geo["agblocks"] * bs  # the geometry LiveOwnerMap needs, from the kernel itself
        G = SimpleNamespace(blocksize=bs, size=size, byte_to_ag=lambda b: (b // ag_bytes, 0))
        live = LiveOwnerMap(mnt, G, has_rmapbt=cfg["rmapbt"])
        # Nothing was synced: background writeback may still be allocating delayed extents. Compare within a
        # window in which the kernel's own map did not change (it is the truth "at that moment").
        for _ in range(20):
            before = K.getfsmap(mnt)
            got = ours(live.pieces(0, size))
            if K.getfsmap(mnt) == before:
                break
        truth = KernelMap(before, bs, size)
        assert got == truth.pieces(0, size)
        subprocess.run(["fsfreeze", "-f", mnt], check=True)  # the ranges below: a still filesystem, same map
        subprocess.run(["fsfreeze", "-u", mnt], check=True)
        truth = KernelMap(K.getfsmap(mnt), bs, size)
        rng = random.Random(config)
        for _ in range(100):
            off = rng.randrange(0, size - 1)
            n = min(rng.choice((512, 4096, 1 << 20)), size - off)
            assert ours(live.pieces(off, n)) == truth.pieces(off, n), (off, n)
        files, _, _ = images.collect_files(mnt)
        names = LivePathResolver(mnt, fs_relative=True).name(int(i) for i in files)
        assert {i: sorted(e["paths"]) for i, e in files.items()} == {i: names[int(i)].paths for i in files}


def test_fsmap_and_inject_on_a_mount_point_use_the_kernel(live_fs):
    img, mnt = live_fs
    geo = _geo(img)
    subprocess.run(["fsfreeze", "-f", mnt], check=True)  # a still filesystem: one truth for both calls
    try:
        truth = KernelMap(K.getfsmap(mnt), geo.blocksize, geo.size)
        p = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", mnt, "--format", "jsonl"],
                           capture_output=True, text=True)
        assert p.returncode in (0, 1), p.stderr
        got = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        assert ours([x for x in got if "owner" in x]) == truth.pieces(0, geo.size)
        clone = os.path.join(mnt, "new/clone")
        phys = K.fiemap(clone)[0].physical
        p = subprocess.run([sys.executable, "-m", "fsdaxctl", "inject", mnt, "--daddr", str(phys // 512),
                            "--length", "4096", "--assume-dax", "--format", "json"], capture_output=True, text=True)
    finally:
        subprocess.run(["fsfreeze", "-u", mnt], check=True)
    assert p.returncode == 4, p.stderr
    decisions = [d for oc in json.loads(p.stdout)["outcomes"] for d in oc["decisions"]]
    kills = {d["inode"] for d in decisions if d["action"] == "kill-mappers"}
    assert kills == {os.stat(clone).st_ino, os.stat(os.path.join(mnt, "f1")).st_ino}
    assert any(clone in d.get("paths", []) for d in decisions)
