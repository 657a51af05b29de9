"""Real pmem material from the Linux kernel (tests/data/pmem, made by tests/make_pmem_fixtures.py in a QEMU guest
running Debian's 6.1 kernel and ndctl 76 with four emulated NVDIMMs; its README gives every number).

The guest's kernel is the oracle: its info blocks, its sysfs tree, the badblocks it recorded after a real
(virtual-hardware) machine check, ndctl's JSON, its log lines, its `xfs_io fsmap` of the filesystem on pmem0,
and the results of its own memory-failure chain (which process got SIGBUS, Recovered or Failed, the XFS shutdown).
"""

from __future__ import annotations

import json
import lzma
import os
import re
import tarfile

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from fsdaxctl.stack import BLOCK, PHYS, REGION, Extent, Space, Stack
from tests.conftest import need_kernel

DATA = os.path.join(os.path.dirname(__file__), "data", "pmem")
REGION0, DATAOFF0 = 0x100000000, 0xC00000
LABEL_AREA = 128 << 10
INODES = {"a.dat": 131, "b.dat": 132, "c.dat": 133, "d.dat": 134, "e.dat": 135, "f.dat": 136}


def unpack(name: str, dest: str) -> str:
    """Decompress a backing file, sparsely (they are mostly zeros)."""
    with lzma.open(os.path.join(DATA, name)) as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate()
    return dest


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pmem-real")
    imgs = {n: unpack(f"nvdimm{n}.img.xz", str(tmp / f"nvdimm{n}.img")) for n in range(3)}
    with tarfile.open(os.path.join(DATA, "sysfs-final.tar.xz")) as tar:
        tar.extractall(tmp, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
    return imgs, str(tmp / "sysfs-final" / "sys")


@pytest.fixture(scope="module")
def replayed(real, tmp_path_factory):
    """nvdimm0 after the kernel replayed its log. The guest's XFS was shut down by experiment 6 with the files'
    metadata still in the log (the image's log is dirty, and fsdaxctl says so); this kernel mounts the data area
    through a loop device at dataoff (4096-byte sectors, as mkfs chose on pmem), recovers the log, unmounts."""
    need_kernel()
    import shutil
    import subprocess

    from tests.images import _retry

    imgs, sysroot = real
    copy = str(tmp_path_factory.mktemp("replayed") / "nvdimm0.img")
    shutil.copyfile(imgs[0], copy)
    size = 1286144 * 512  # /sys/block/pmem0/size in the guest
    dev = subprocess.run(["losetup", "-f", "--show", "--offset", str(DATAOFF0), "--sizelimit", str(size),
                          "--sector-size", "4096", copy], capture_output=True, text=True, check=True).stdout.strip()
    mnt = str(tmp_path_factory.mktemp("mnt"))
    try:
        subprocess.run(["mount", "-t", "xfs", dev, mnt], check=True)
        assert _retry(["umount", mnt])
    finally:
        assert _retry(["losetup", "-d", dev])
    return copy, sysroot


def fsdaxctl(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in (r.stderr or ""), r.stderr
    return r


def test_info_blocks_written_by_the_kernel(real):
    from fsdaxctl.device import Device
    from fsdaxctl.discovery.pmem import read_info_block

    imgs, _ = real
    # README table: the guest's own nd_pfn_init wrote these (and its sysfs agrees, next test)
    want = {0: ("fsdax", "pmem", 0xC00000, 160768), 1: ("fsdax", "ram", 0x200000, 65024),
            2: ("devdax", "pmem", 0x400000, 39936)}
    for n, (kind, mode, dataoff, npfns) in want.items():
        with Device(imgs[n]) as dev:
            info = read_info_block(dev.pread, dev.size - LABEL_AREA)
        assert (info.signature, info.mode, info.dataoff, info.npfns) == (kind, mode, dataoff, npfns)
        assert (info.version_major, info.version_minor, info.align) == (1, 4, 2 << 20)


def test_real_sysfs_gives_the_kernels_badblock_offsets(real):
    """After the machine check at 0x100d58000 the kernel recorded pmem0 sector 2752 and region0 sector 27328."""
    from fsdaxctl.discovery.sysfs import Sysfs

    _, sysroot = real
    sysfs = Sysfs(sysroot)
    layers, _ = sysfs.layers_to_block("pmem0")
    stack = Stack(layers, Space(BLOCK, "pmem0"))
    route = stack.route(Extent(Space(PHYS), 0x100D58000, 4096, "mce"))
    [fs] = route.fs_ranges()
    with open(os.path.join(DATA, "exp4-badblocks.txt")) as fh:
        text = fh.read()
    assert "2752 8" in text and fs.offset == 2752 * 512
    region_hop = next(h for h in route.paths[0] if h.space.kind == REGION)
    assert region_hop.offset == 27328 * 512  # region0/badblocks after the same machine check
    assert (sysfs.pfn_device("pfn0.0").start - sysfs.namespace("namespace0.0").start) == DATAOFF0


def test_the_image_says_its_log_is_dirty(real):
    imgs, _ = real
    r = fsdaxctl("locate", imgs[0], "--offset", DATAOFF0, "--format", "json")
    assert "the log is dirty" in r.stderr


def test_one_command_from_each_real_report_to_the_file(replayed, tmp_path):
    img, sysroot = replayed
    common = ["--sysfs-root", sysroot, "--device", "pmem0", "--format", "json", "--no-detail"]
    bb = tmp_path / "pmem0-badblocks"
    bb.write_text("2752 8\n")  # /sys/block/pmem0/badblocks as badblocks-final.txt recorded it
    for args in (["--ndctl-json", os.path.join(DATA, "ndctl-list-N-after-mce.json")],
                 ["--ndctl-json", os.path.join(DATA, "ndctl-list-RN-after-mce.json")],
                 ["--kmsg", os.path.join(DATA, "exp4-dmesg.txt")],
                 ["--badblocks", f"pmem0={bb}"],
                 ["--pfn", "0x100d58"]):
        r = fsdaxctl("locate", img, *args, *common)
        out = json.loads(r.stdout)
        inodes = {o.get("inode") for res in out["results"] for o in res["owners"]}
        assert inodes == {INODES["d.dat"]}, (args, r.output)
        assert all(res["offset"] == 2752 * 512 for res in out["results"])
        assert r.exit_code & 4


def test_our_owners_match_the_guest_kernels_fsmap(replayed):
    """xfs_io fsmap -v on the guest (512-byte units, inclusive) against our offline answer on the image."""
    img, _ = replayed
    row = re.compile(r"^\s*\d+: \S+ \[(\d+)\.\.(\d+)\]:\s+(.+?)\s{2,}")
    names = {"static fs metadata": "static-fs-metadata", "per-AG metadata": "per-ag-metadata",
             "inode btree": "inode-btree", "refcount btree": "refcount-btree", "inodes": "inodes",
             "free space": "free", "journalling log": "log"}
    checked = 0
    with open(os.path.join(DATA, "fsmap-before.txt")) as fh:
        for line in fh:
            m = row.match(line)
            if not m:
                continue
            lo, hi, owner = int(m[1]) * 512, (int(m[2]) + 1) * 512, m[3].strip()
            r = fsdaxctl("locate", img, "--offset", DATAOFF0 + lo, "--length", min(hi - lo, 1 << 20),
                         "--format", "json", "--no-detail")
            [res] = json.loads(r.stdout)["results"]
            got = {(o["owner"], o.get("inode")) for o in res["owners"]}
            want = ("file", int(owner.split()[0])) if owner[0].isdigit() else (names[owner], None)
            assert want in got, (line, got)
            checked += 1
    assert checked >= 28


def test_inject_reproduces_the_kernels_own_chain(replayed):
    img, sysroot = replayed
    common = ["--sysfs-root", sysroot, "--device", "pmem0", "--format", "json"]
    # Experiment 1: hard_offline_page on the reflinked page: the kernel said "Recovered"; the early-kill mapper
    # of a.dat got SIGBUS BUS_MCEERR_AO at once, the late-kill mapper of b.dat (same page) kept running.
    r = fsdaxctl("inject", img, "--pfn", "0x100c18", *common)
    oc = json.loads(r.stdout)["outcomes"][0]
    with open(os.path.join(DATA, "exp1-dmesg.txt")) as fh:
        assert "recovery action for dax page: Recovered" in fh.read()
    assert oc["result"] == "Recovered"
    kills = [d for d in oc["decisions"] if d["action"] == "kill-mappers"]
    assert sorted(d["inode"] for d in kills) == [131, 132] and all(d["pgoff"] == 0 for d in kills)
    assert all(d["when"] == "on-access" and d["si_code"] == "BUS_MCEERR_AO" for d in kills)
    # Experiment 6: the page of AG 1's AGF: "Corruption of on-disk metadata ... Shutting down", "Failed".
    r = fsdaxctl("inject", img, "--pfn", "0x10a901", *common)
    oc = json.loads(r.stdout)["outcomes"][0]
    with open(os.path.join(DATA, "exp6-dmesg.txt")) as fh:
        log = fh.read()
    assert "Shutting down filesystem" in log and "recovery action for dax page: Failed" in log
    assert oc["result"] == "Failed" and r.exit_code == 8
    assert [d["shutdown"] for d in oc["decisions"] if d["action"] == "shutdown-filesystem"] == \
        ["SHUTDOWN_CORRUPT_ONDISK"]
    # A pfn in the struct-page reserve of the map=dev namespace: memory_failure_dev_pagemap's -ENXIO.
    r = fsdaxctl("inject", img, "--pfn", hex((REGION0 + 0x10000) >> 12), *common)
    oc = json.loads(r.stdout)["outcomes"][0]
    assert oc["result"] == "Failed" and oc["decisions"][0]["owner"] == "struct-page-reserve"


def test_qemu_label_area_is_not_namespace_data(real):
    """QEMU keeps the NVDIMM label area (label-size=128K) after the region in the backing file."""
    imgs, _ = real
    r = fsdaxctl("locate", imgs[0], "--offset", 640 << 20, "--explain", "--format", "json")
    out = json.loads(r.stdout)
    assert any("the last 131072 bytes are an NVDIMM label area" in line for line in out["stack"])
    assert out["results"] == [] and out["not_on_filesystem"][0]["dropped"] == "outside-device"
