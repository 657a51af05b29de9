"""One command from a damage report to the owners (issue 4), end to end through the CLI.

- A whole-disk GPT image made by sfdisk with XFS in partition 2, made and written by the kernel through a loop
  device at the offset sfdisk reports: every answer is compared with the kernel's GETFSMAP of that filesystem.
- Kernel log lines in the kernel's formats (sources quoted at each), sysfs badblocks lists and ddrescue maps
  naming sectors of that disk.
- A raw pmem namespace image (info block as nd_pfn_init writes it, the bundled sample XFS in its data area) and
  a sysfs tree laid out as the kernel lays it out: --pfn, --phys, region badblocks and ndctl JSON land on the
  same owners as a plain --offset on the filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from tests.conftest import need_kernel, need_tool
from tests.oracle import KernelMap, ours

MiB = 1 << 20


def fsdaxctl(*args, input=None):
    r = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    assert "Traceback" not in (r.stderr or ""), r.stderr
    return r


def results(r):
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def gpt_disk(tmp_path_factory):
    """(disk image, partition start, KernelMap of the XFS in partition 2, {name: inode})."""
    need_kernel()
    need_tool("sfdisk", package="fdisk")
    from tests import kernel as K
    from tests.images import MKFS_ENV, _retry

    img = str(tmp_path_factory.mktemp("gpt") / "disk.img")
    with open(img, "wb") as fh:
        fh.truncate(112 * MiB)
    subprocess.run(["sfdisk", "-q", img], input='label: gpt\nsize=8M\nsize=96M, name="data"\n', text=True,
                   check=True)
    js = json.loads(subprocess.run(["sfdisk", "--json", img], capture_output=True, text=True,
                                   check=True).stdout)["partitiontable"]
    p2 = js["partitions"][1]
    start, size = p2["start"] * 512, p2["size"] * 512
    dev = subprocess.run(["losetup", "-f", "--show", "--offset", str(start), "--sizelimit", str(size), img],
                         capture_output=True, text=True, check=True).stdout.strip()
    inodes = {}
    try:
        subprocess.run(["mkfs.xfs", "-f", "-q", "-m", "rmapbt=1,reflink=1", dev], env=MKFS_ENV, check=True)
        mnt = tempfile.mkdtemp(prefix="fsdaxctl-gpt-")
        subprocess.run(["mount", "-t", "xfs", dev, mnt], check=True)
        try:
            with open(os.path.join(mnt, "data.bin"), "wb") as fh:
                fh.write(os.urandom(3 * MiB))
            subprocess.run(["cp", "--reflink=always", os.path.join(mnt, "data.bin"), os.path.join(mnt, "copy.bin")],
                           check=True)
            os.sync()
            for name in ("data.bin", "copy.bin"):
                inodes[name] = os.stat(os.path.join(mnt, name)).st_ino
            kmap = KernelMap(K.getfsmap(mnt), 4096, size)
        finally:
            assert _retry(["umount", mnt])
            os.rmdir(mnt)
    finally:
        assert _retry(["losetup", "-d", dev])
    return img, start, kmap, inodes


def first_data(kmap):
    return next(r for r in kmap.recs if KernelMap.is_data(r))


def test_offset_on_the_whole_disk_finds_the_partition(gpt_disk):
    img, start, kmap, inodes = gpt_disk
    rec = first_data(kmap)
    for x in (0, 4096, rec.physical, rec.physical + 8192, 20 * MiB):
        r = fsdaxctl("locate", img, "--offset", start + x, "--length", 4096, "--format", "json", "--explain")
        [res] = results(r)["results"]
        assert (res["offset"], res["length"]) == (x, 4096)
        assert sorted(ours(res["owners"])) == sorted(kmap.pieces(x, 4096)), x
        assert any(h["layer"] == "partition" and "partition 2" in h["arithmetic"] for h in res["trace"])
        assert res["input"]["space"] == "the target"


def test_sysfs_badblocks_list_of_the_disk(gpt_disk, tmp_path):
    img, start, kmap, inodes = gpt_disk
    rec = first_data(kmap)
    bb = tmp_path / "badblocks"
    bb.write_text(f"{(start + rec.physical) // 512} 8\n1 1\n")  # "%llu %u\n" (block/badblocks.c badblocks_show)
    r = fsdaxctl("locate", img, "--badblocks", f"sdb={bb}", "--format", "json")
    assert r.exit_code == 4 | 8, r.output  # file data, and the GPT header (metadata of the disk)
    out = results(r)
    [res] = out["results"]
    assert res["input"]["origin"] == f"{bb} line 1"
    assert sorted(ours(res["owners"])) == sorted(kmap.pieces(rec.physical, 4096))
    assert {o["inode"] for o in res["owners"]} == set(inodes.values())  # both reflinked files
    [drop] = out["not_on_filesystem"]
    assert drop["dropped"] == "partition-table" and drop["input"]["origin"] == f"{bb} line 2"


def test_kernel_log_lines_of_the_disk_and_partition(gpt_disk, tmp_path):
    img, start, kmap, inodes = gpt_disk
    rec = first_data(kmap)
    x = rec.physical
    log = tmp_path / "dmesg.txt"
    log.write_text("\n".join([
        "[    0.000000] Linux version 6.18.0 (nobody) #1 SMP",
        # block/blk-mq.c blk_print_req_error: "%s error, dev %s, sector %llu op 0x%x:(%s) flags 0x%x phys_seg %u
        # prio class %u\n" with blk_errors[BLK_STS_MEDIUM].name "critical medium": sectors of the whole disk
        f"[ 12.000001] critical medium error, dev sdb, sector {(start + x) // 512} op 0x0:(READ) flags 0x0 "
        "phys_seg 1 prio class 2",
        # fs/buffer.c buffer_io_error: "Buffer I/O error on dev %pg, logical block %llu%s\n": the partition's
        # blocks, 4096 bytes (set_init_blocksize)
        f"[ 12.000002] Buffer I/O error on dev sdb2, logical block {(x + 4096) // 4096}, async page read",
        # fs/xfs/xfs_buf.c xfs_buf_ioerror_alert: "metadata I/O error in \"%pS\" at daddr 0x%llx len %d error %d"
        '[ 12.000003] XFS (sdb2): metadata I/O error in "xfs_read_agf+0x8e/0x120 [xfs]" at daddr 0x1 len 1 error 5',
        "[ 12.000004] usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    ]) + "\n")
    r = fsdaxctl("locate", img, "--kmsg", log, "--format", "json", "--explain")
    out = results(r)
    assert r.exit_code == 4 | 8, r.output
    got = [(res["offset"], res["length"]) for res in out["results"]]
    assert got == [(x, 512), (x + 4096, 4096), (512, 512)]
    for res in out["results"]:
        assert sorted(ours(res["owners"])) == sorted(kmap.pieces(res["offset"], res["length"]))
    assert any("taking TARGET to be sdb" in line for line in out["warnings"])


def test_dropped_bytes_say_why(gpt_disk, tmp_path):
    img, start, kmap, _ = gpt_disk
    r = fsdaxctl("locate", img, "--offset", 2 * MiB, "--length", 4096, "--format", "json", "--device", "sdb")
    out = results(r)
    assert out["results"] == [] and r.exit_code == 0
    [drop] = out["not_on_filesystem"]
    assert drop["dropped"] == "elsewhere" and "sdb1" in drop["reason"]
    assert "sdb1" in r.stderr  # and a warning line says it was skipped


def test_badblocks_command_normalises(gpt_disk, tmp_path):
    img, start, kmap, _ = gpt_disk
    bb = tmp_path / "bb"
    bb.write_text(f"{start // 512 + 8} 8\n{start // 512 + 12} 8\n")  # overlapping entries merge
    r = fsdaxctl("badblocks", f"sysfs:{bb}", "--format", "ranges")
    assert r.stdout == f"# the target\n{start + 4096} 6144\n"
    r = fsdaxctl("badblocks", f"sysfs:{bb}", "--on", img, "--format", "ranges")
    assert r.stdout == "4096 6144\n"


def test_ddrescue_mapfile_of_the_disk(gpt_disk, tmp_path):
    img, start, kmap, _ = gpt_disk
    rec = first_data(kmap)
    pos = start + rec.physical
    mapfile = tmp_path / "rescue.map"
    # GNU ddrescue manual, "Mapfile structure": comments, the current-position line, then pos size status
    mapfile.write_text(f"# Mapfile. Created by GNU ddrescue version 1.27\n# current_pos  current_status  "
                       f"current_pass\n0x00000000     +               1\n#      pos        size  status\n"
                       f"0x00000000  {pos:#010x}  +\n{pos:#010x}  0x00001000  -\n{pos + 4096:#010x}  "
                       f"{112 * MiB - pos - 4096:#010x}  +\n")
    r = fsdaxctl("locate", img, "--ddrescue", mapfile, "--format", "json")
    [res] = results(r)["results"]
    assert (res["offset"], res["length"]) == (rec.physical, 4096) and r.exit_code == 4


# --- a raw pmem namespace and its machine's sysfs ----------------------------------------------------------

REGION, NS_START = 0x240000000, 0x240000000 + (64 << 20)
NS_SIZE, ALIGN = 128 << 20, 2 << 20


@pytest.fixture(scope="module")
def pmem(tmp_path_factory):
    """(namespace image, sysfs root, dataoff, sample image): the sample XFS in an fsdax (map=dev) namespace."""
    from fsdaxctl.sample import sample_image
    from tests.test_pmem import SysfsTree, nd_pfn_init_block

    tmp = tmp_path_factory.mktemp("pmem")
    sample = sample_image()
    block, dataoff, end_trunc = nd_pfn_init_block(start=NS_START, size=NS_SIZE, align=ALIGN)
    ns = str(tmp / "namespace0.0.img")
    with open(ns, "wb") as fh:
        fh.truncate(NS_SIZE)
        fh.seek(4096)
        fh.write(block)  # nd_pfn_validate reads the info block at SZ_4K
        fh.seek(dataoff)
        with open(sample, "rb") as src:
            shutil.copyfileobj(src, fh)
    t = SysfsTree(tmp / "sys")
    t.region(0, REGION, 1 << 30)
    t.namespace(0, 0, 0, NS_START, NS_SIZE, "memory", "11223344-5566-7788-9900-aabbccddeeff", "pfn0.0")
    t.pfn("pfn", 0, 0, 0, "namespace0.0", "pmem", uuid="a-0", resource=NS_START + dataoff,
          size=NS_SIZE - dataoff - end_trunc)
    t.disk(f"{t.BUS}/region0/pfn0.0", "pmem0", 259, 0, NS_SIZE - dataoff - end_trunc)
    return ns, str(tmp / "sys"), dataoff, sample


SHARED = 46235648  # the sample's two reflinked files (README)


def owners_of(sample, offset, length=4096):
    r = fsdaxctl("locate", sample, "--offset", offset, "--length", length, "--format", "json")
    return results(r)["results"][0]["owners"]


def test_pfn_and_phys_through_region_and_namespace(pmem):
    ns, sysroot, dataoff, sample = pmem
    want = owners_of(sample, SHARED)
    pfn = (NS_START + dataoff + SHARED) >> 12  # pmem_pagemap_memory_failure, backwards
    for args in (["--pfn", hex(pfn)], ["--phys", hex((pfn << 12) + 123)]):
        r = fsdaxctl("locate", ns, *args, "--sysfs-root", sysroot, "--device", "pmem0", "--format", "json",
                     "--explain")
        [res] = results(r)["results"]
        assert (res["offset"], res["length"]) == (SHARED, 4096) and res["owners"] == want, r.output
        layers = [h["layer"] for h in res["trace"]]
        assert any("region0" in x for x in layers) and r.exit_code == 4


def test_region_badblocks_and_ndctl_json(pmem, tmp_path):
    ns, sysroot, dataoff, sample = pmem
    want = owners_of(sample, SHARED)
    region_dir = tmp_path / "sys" / "bus" / "nd" / "devices" / "region0"
    region_dir.mkdir(parents=True)
    (region_dir / "badblocks").write_text(f"{(NS_START - REGION + dataoff + SHARED) // 512} 8\n")
    ndjson = tmp_path / "ndctl.json"
    # ndctl list --media-errors (ndctl/json.c): offsets in 512-byte sectors from the fsdax data start
    ndjson.write_text(json.dumps([{"dev": "namespace0.0", "mode": "fsdax", "map": "dev", "size": NS_SIZE - dataoff,
                                   "blockdev": "pmem0", "badblock_count": 1,
                                   "badblocks": [{"offset": SHARED // 512, "length": 8}]}]))
    for args in (["--badblocks", region_dir / "badblocks"], ["--ndctl-json", ndjson]):
        r = fsdaxctl("locate", ns, *args, "--sysfs-root", sysroot, "--device", "pmem0", "--format", "json")
        [res] = results(r)["results"]
        assert (res["offset"], res["owners"]) == (SHARED, want), r.output


def test_namespace_image_offsets_info_block_and_struct_pages(pmem):
    ns, sysroot, dataoff, sample = pmem
    r = fsdaxctl("locate", ns, "--offset", dataoff + SHARED, "--length", 4096, "--format", "json")
    [res] = results(r)["results"]
    assert res["owners"] == owners_of(sample, SHARED)
    r = fsdaxctl("locate", ns, "--offset", 4096, "--length", 512, "--format", "json")
    out = results(r)
    assert out["results"] == [] and out["not_on_filesystem"][0]["dropped"] == "namespace-metadata"
    assert r.exit_code == 8  # the info block: without it the namespace comes up raw and the data is unreachable
    r = fsdaxctl("locate", ns, "--offset", 64 << 10, "--length", 4096, "--format", "json")
    out = results(r)
    assert out["not_on_filesystem"][0]["dropped"] == "struct-page-reserve" and r.exit_code == 0


def test_phys_without_sysfs_is_one_clear_line(pmem):
    ns, _, _, _ = pmem
    r = fsdaxctl("locate", ns, "--pfn", "0x12345")
    assert r.exit_code == 2 and "--sysfs-root" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_dm_linear_table_over_a_disk(tmp_path):
    """dmsetup table names the underlying device; a badblocks list of that device lands in the dm device."""
    from fsdaxctl.sample import sample_image

    table = tmp_path / "table"
    table.write_text("vg-lv: 0 131072 linear /dev/sdc 2048\n")  # dmsetup table output: NAME: START LEN linear DEV OFF
    bb = tmp_path / "bb"
    bb.write_text(f"{2048 + SHARED // 512} 8\n")
    sample = sample_image()
    r = fsdaxctl("locate", sample, "--dm-table", table, "--badblocks", f"sdc={bb}", "--format", "json", "--explain")
    out = results(r)
    [res] = out["results"]
    assert (res["offset"], res["owners"]) == (SHARED, owners_of(sample, SHARED))
    assert any("vg-lv" in line for line in out["stack"])


def test_md_raid1_mirror_is_recoverable(tmp_path):
    from fsdaxctl.sample import sample_image

    bb = tmp_path / "bb"
    bb.write_text(f"{2048 + SHARED // 512} 8\n")
    sample = sample_image()
    spec = "md0 raid1 sdb1@1m sdc1@1m"
    r = fsdaxctl("locate", sample, "--md", spec, "--badblocks", f"sdb1={bb}", "--format", "json")
    [res] = results(r)["results"]
    assert res["recoverable"].startswith("raid1:") and r.exit_code == 0
    both = tmp_path / "bb2"
    both.write_text(f"{2048 + SHARED // 512} 8\n")
    r = fsdaxctl("locate", sample, "--md", spec, "--badblocks", f"sdb1={bb}", "--badblocks", f"sdc1={both}",
                 "--format", "json")
    assert r.exit_code == 4 and all("recoverable" not in res for res in results(r)["results"])


def test_xfs_lines_alone_name_the_disk(gpt_disk, tmp_path):
    """'XFS (sdb2): ...' is the filesystem's device: on a whole-disk image it says TARGET is sdb."""
    img, start, kmap, _ = gpt_disk
    log = tmp_path / "xfs.txt"
    # fs/xfs/xfs_buf.c xfs_buf_ioerror_alert, prefixed by xfs_message.c's "XFS (%s): "
    log.write_text('XFS (sdb2): metadata I/O error in "xfs_read_agi+0x9e/0x140 [xfs]" at daddr 0x2 len 1 error 5\n')
    r = fsdaxctl("locate", img, "--kmsg", log, "--format", "json")
    [res] = results(r)["results"]
    assert (res["offset"], r.exit_code) == (1024, 8)
    assert sorted(ours(res["owners"])) == sorted(kmap.pieces(1024, 512))
    log.write_text('XFS (sdc1): metadata I/O error in "xfs_read_agi+0x9e/0x140 [xfs]" at daddr 0x2 len 1 error 5\n')
    r = fsdaxctl("locate", img, "--kmsg", log, "--format", "json", "--device", "sdb")
    assert results(r)["results"] == [] and "sdc1" in r.stderr and r.exit_code == 1  # not looked at: bit 1


@pytest.mark.parametrize("name, names, disk", [
    ("sda1", (), "sda"), ("sdb12", (), "sdb"), ("nvme0n1p2", (), "nvme0n1"), ("pmem0p1", (), "pmem0"),
    ("mmcblk0p1", (), "mmcblk0"), ("loop0p1", (), "loop0"), ("md127p1", (), "md127"), ("pmem1.1p1", (), "pmem1.1"),
    ("xvda2", (), "xvda"), ("dm-3", (), "dm-3"), ("md127", (), "md127"), ("rbd0", (), "rbd0"), ("zd0", (), "zd0"),
    ("sr0", (), "sr0"), ("nullb0", (), "nullb0"), ("drbd0", (), "drbd0"), ("foo3", ("foo", "foo3"), "foo"),
])
def test_disk_of_inverts_the_kernels_partition_names(name, names, disk):
    from fsdaxctl.stack.partition import disk_of, partition_name

    assert disk_of(name, names) == disk
    if disk != name:
        assert partition_name(disk, int(name[len(disk):].lstrip("p"))) == name


def test_empty_list_and_clean_log_are_healthy_answers(tmp_path):
    empty, clean = tmp_path / "badblocks", tmp_path / "dmesg"
    empty.write_text("")  # /sys/block/X/badblocks on a healthy device
    clean.write_text("[    1.000000] Linux version 6.18.0\n")
    for args in (["--badblocks", empty], ["--kmsg", clean]):
        r = fsdaxctl("locate", "--sample", *args, "--format", "json")
        assert r.exit_code == 0 and results(r)["results"] == [] and "no damage reported" in r.stderr


def test_huge_numbers_are_skipped_not_crashes(tmp_path):
    huge = "9" * 5000
    bb, nd, km = tmp_path / "bb", tmp_path / "nd.json", tmp_path / "k"
    bb.write_text(f"{huge} 8\n8 8\n")
    nd.write_text(f'[{{"dev": "namespace0.0", "mode": "fsdax", "blockdev": "pmem0", "badblocks": '
                  f'[{{"offset": {huge}, "length": 1}}]}}]')
    km.write_text(f"critical medium error, dev sdb, sector {huge} op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n")
    r = fsdaxctl("locate", "--sample", "--badblocks", bb, "--format", "json")
    assert r.exit_code == 8 and "too large" in r.stderr
    for args in (["--ndctl-json", nd], ["--kmsg", km]):
        r = fsdaxctl("locate", "--sample", *args)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_inputs_from_stdin_are_refused():
    r = fsdaxctl("locate", "--sample", "--kmsg", "-", "--badblocks", "-", input="")
    assert r.exit_code == 2 and "stdin" in r.stderr


def test_partition_inside_a_pmem_namespace(tmp_path):
    """pmem0p1: a GPT (made by sfdisk) in the fsdax data area, XFS in partition 1. --pfn goes memory -> region ->
    namespace -> pmem0 -> pmem0p1 (the probe finds both the info block and the table) -> the file."""
    need_tool("sfdisk", package="fdisk")
    from fsdaxctl.sample import sample_image
    from tests.test_pmem import SysfsTree, nd_pfn_init_block

    sample = sample_image()
    block, dataoff, end_trunc = nd_pfn_init_block(start=NS_START, size=NS_SIZE, align=ALIGN)
    disk_size = NS_SIZE - dataoff - end_trunc
    disk = tmp_path / "pmem0.img"
    with open(disk, "wb") as fh:
        fh.truncate(disk_size)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: gpt\nstart=2048, size=131072\n", text=True, check=True)
    part_start = 2048 * 512
    ns = tmp_path / "ns.img"
    with open(ns, "wb") as out:
        out.truncate(NS_SIZE)
        out.seek(4096)
        out.write(block)
        out.seek(dataoff)
        with open(disk, "rb") as src:
            shutil.copyfileobj(src, out)
        out.seek(dataoff + part_start)
        with open(sample, "rb") as src:
            shutil.copyfileobj(src, out)
    t = SysfsTree(tmp_path / "sys")
    t.region(0, REGION, 1 << 30)
    t.namespace(0, 0, 0, NS_START, NS_SIZE, "memory", "11223344-5566-7788-9900-aabbccddeeff", "pfn0.0")
    t.pfn("pfn", 0, 0, 0, "namespace0.0", "pmem", uuid="a-0", resource=NS_START + dataoff, size=disk_size)
    t.disk(f"{t.BUS}/region0/pfn0.0", "pmem0", 259, 0, disk_size)
    pfn = (NS_START + dataoff + part_start + SHARED) >> 12
    r = fsdaxctl("locate", ns, "--pfn", hex(pfn), "--sysfs-root", tmp_path / "sys", "--device", "pmem0",
                 "--format", "json", "--explain")
    out = results(r)
    [res] = out["results"]
    assert (res["offset"], res["owners"]) == (SHARED, owners_of(sample, SHARED)), r.output
    assert [h["space"] for h in res["trace"]][-3:] == ["pmem0", "pmem0p1", "filesystem device pmem0p1"]
    r = fsdaxctl("inject", ns, "--pfn", hex(pfn), "--sysfs-root", tmp_path / "sys", "--device", "pmem0",
                 "--format", "json")
    oc = results(r)["outcomes"][0]
    calls = [t["call"] for t in oc["trace"]]
    assert any(c.startswith("xfs_dax_translate_range (bt_dax_part_off): byte") for c in calls), calls
    assert oc["result"] == "Recovered" and r.exit_code == 4


def test_device_naming_a_partition_of_the_whole_disk(gpt_disk, tmp_path):
    img, start, kmap, inodes = gpt_disk
    rec = first_data(kmap)
    log = tmp_path / "k"
    # fs/buffer.c: "Buffer I/O error on dev %pg, logical block %llu%s" (blocks of the partition, 4096 bytes)
    log.write_text(f"Buffer I/O error on dev sdb2, logical block {rec.physical // 4096}, async page read\n")
    r = fsdaxctl("locate", img, "--device", "sdb2", "--kmsg", log, "--format", "json")
    [res] = results(r)["results"]
    assert res["offset"] == rec.physical // 4096 * 4096 and "taking TARGET to be sdb" in r.stderr
    assert sorted(ours(res["owners"])) == sorted(kmap.pieces(res["offset"], 4096))
    r = fsdaxctl("locate", img, "--device", "sdb1", "--kmsg", log)
    assert r.exit_code == 2 and "partition 2, not 1" in r.stderr


def test_dm_mapper_name_and_kernel_name(tmp_path):
    """dmsetup calls it vg-lv, the kernel log dm-3: with only one dm device given, the XFS line is about it."""
    from fsdaxctl.sample import sample_image

    sample = sample_image()
    table = tmp_path / "t"
    table.write_text("vg-lv: 0 131072 linear /dev/sdc 2048\n")
    log = tmp_path / "k"
    log.write_text(f'XFS (dm-3): metadata I/O error in "xfs_buf_read_map+0x1/0x2 [xfs]" at daddr {SHARED // 512:#x} '
                   "len 16 error 5\n")
    r = fsdaxctl("locate", sample, "--dm-table", table, "--kmsg", log, "--format", "json")
    [res] = results(r)["results"]
    assert (res["offset"], res["owners"]) == (SHARED, owners_of(sample, SHARED, 8192))
    assert "taking XFS (dm-3) to be TARGET's filesystem (vg-lv)" in r.stderr


def test_results_follow_the_input_order(tmp_path):
    from fsdaxctl.sample import sample_image

    log = tmp_path / "k"
    log.write_text(  # fs/xfs/xfs_error.c verifier and inode reports, fs/xfs/xfs_buf.c I/O error
        "XFS (sdb): Metadata CRC error detected at xfs_agf_read_verify+0x1/0x2 [xfs], xfs_agf block 0x1 \n"
        "XFS (sdb): Metadata corruption detected at xfs_dinode_verify+0x1/0x2 [xfs], inode 0x83 dinode\n"
        'XFS (sdb): metadata I/O error in "xfs_read_agi+0x1/0x2 [xfs]" at daddr 0x2 len 1 error 5\n')
    r = fsdaxctl("locate", sample_image(), "--kmsg", log, "--format", "json")
    assert [res["input"]["origin"] for res in results(r)["results"]] == [f"{log} line {n}" for n in (1, 2, 3)]


def test_a_whole_dmesg_is_recognised():
    import os as _os

    path = _os.path.join(_os.path.dirname(__file__), "data", "pmem", "dmesg-full.txt")
    r = fsdaxctl("badblocks", path, "--format", "json")
    assert r.exit_code == 0 and {x["space"] for x in results(r)} >= {"physical address space"}
