"""Partition tables: our reader against the tools that wrote them, and against the kernel.

Every table here is written by a real partitioning tool on a sparse image (sgdisk, sfdisk, parted, fdisk), and
every field we parse is compared with that tool's own machine-readable answer (`sfdisk --json`, `parted -m unit B
print`, `sgdisk -i N` / `sgdisk -p`, `fdisk -l -o ...`). The kernel here is built without partition-table support
(`losetup -P` does nothing), so the kernel oracle is a loop device over exactly the bytes sfdisk says a partition
has (`losetup --offset --sizelimit`): mkfs.xfs and files go through it, and we then find them through our table,
our PartitionLayer and the XFS reader. Damage (flipped bytes, re-sealed CRCs, truncation, EBR loops) must give a
warning or one CorruptError line, never a traceback; a hypothesis fuzzer mutates real tables to hold us to that.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import struct
import subprocess
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fsdaxctl.device import Device, Window
from fsdaxctl.discovery.partition import read_partition_table
from fsdaxctl.errors import CorruptError, FsdaxError, TruncatedError, UsageError
from fsdaxctl.parsers import partition as f
from fsdaxctl.stack import BLOCK, Dropped, Extent, Hop, Space, Stack
from fsdaxctl.stack.partition import Partition, PartitionLayer, choose_partition, partition_name
from tests.conftest import need_kernel
from tests.conftest import need_tool as conftest_need_tool

MiB = 1 << 20
LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4"
LINUX_RAID = "a19d880f-05fc-4d3b-a006-743f0f84911e"


# --- helpers -------------------------------------------------------------------------------------------------

def need_tool(*names):
    conftest_need_tool(*names, package="gdisk fdisk parted")


def run(cmd, stdin: str | None = None, env=None) -> str:
    p = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True, env=env)
    if p.returncode:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def blank(path, size: int) -> str:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return str(path)


def table_of(path, **kw):
    with Device(str(path)) as dev:
        return read_partition_table(dev.pread, dev.size, **kw)


def patch(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def peek(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def flip(path, offset: int) -> None:
    patch(path, offset, bytes([peek(path, offset, 1)[0] ^ 0xFF]))


def reseal(buf: bytearray, ss: int, size: int | None = None) -> None:
    """Recompute both GPT headers' CRCs (entry array first, then header) where the fields allow: damage written
    the way a buggy tool would write it, so the checks behind the CRCs are reached."""
    size = len(buf) if size is None else size
    for lba in (1, size // ss - 1):
        off = lba * ss
        if off + ss > size or buf[off:off + 8] != f.GPT_HEADER_SIGNATURE:
            continue
        hsize, = struct.unpack_from("<I", buf, off + 12)
        pel, num, esz = struct.unpack_from("<QII", buf, off + 72)
        if num * esz <= 4 * MiB and pel * ss + num * esz <= size:
            struct.pack_into("<I", buf, off + 88, zlib.crc32(buf[pel * ss:pel * ss + num * esz]))
        if 92 <= hsize <= ss:
            struct.pack_into("<I", buf, off + 16, 0)
            struct.pack_into("<I", buf, off + 16, zlib.crc32(buf[off:off + hsize]))


def reseal_file(path, ss: int = 512) -> None:
    with open(path, "r+b") as fh:
        buf = bytearray(fh.read())
        reseal(buf, ss)
        fh.seek(0)
        fh.write(buf)


class MemDisk:
    """A disk in memory, read like Device.pread (TruncatedError past `size`)."""

    def __init__(self, buf, size: int | None = None):
        self.buf, self.size = buf, len(buf) if size is None else size

    def pread(self, offset: int, length: int, what: str = "data") -> bytes:
        if offset < 0 or offset + length > self.size:
            raise TruncatedError(f"{what} lies past the end", daddr=offset >> 9)
        return bytes(self.buf[offset:offset + length])


def node_number(node: str) -> int:
    return int(re.search(r"(\d+)$", node).group(1))


# --- the tools' own answers -----------------------------------------------------------------------------------

def sfdisk_json(target) -> dict:
    return json.loads(run(["sfdisk", "--json", target]))["partitiontable"]


def parted_m(target):
    """({number: (start, end inclusive, size, name)}, disk fields) in bytes from `parted -m TARGET unit B print`."""
    lines = run(["parted", "-s", "-m", target, "unit", "B", "print"]).splitlines()
    disk = lines[1].rstrip(";").split(":")
    parts = {}
    for line in lines[2:]:
        fields = line.rstrip(";").split(":")
        start, end, size = (int(x.rstrip("B")) for x in fields[1:4])
        parts[int(fields[0])] = (start, end, size, fields[5])
    return parts, disk


def sgdisk_info(target, n: int) -> dict:
    text = run(["sgdisk", "-i", str(n), target])

    def get(key):
        return re.search(rf"^{key}: (.*)$", text, re.M).group(1)

    return {"type": get("Partition GUID code").split()[0].lower(), "uuid": get("Partition unique GUID").lower(),
            "first": int(get("First sector").split()[0]), "last": int(get("Last sector").split()[0]),
            "attributes": int(get("Attribute flags"), 16), "name": get("Partition name")[1:-1]}


def fdisk_rows(target, sector_size: int, columns: str) -> list[list[str]]:
    text = run(["fdisk", "-b", str(sector_size), "-l", "-o", columns, target])
    rows = text[text.index("\nDevice"):].strip().splitlines()[1:]
    return [r.split() for r in rows]


def check_against_sfdisk(t, js: dict) -> None:
    ss = js["sectorsize"]
    assert t.sector_size == ss
    assert t.scheme == {"gpt": "gpt", "dos": "mbr"}[js["label"]]
    assert t.disk_id.lower() == js["id"].lower()
    if t.scheme == "gpt":
        assert t.usable == (js["firstlba"] * ss, (js["lastlba"] + 1) * ss)
    ours = {p.number: p for p in t.partitions + t.extended}
    theirs = {node_number(q["node"]): q for q in js["partitions"]}
    assert sorted(ours) == sorted(theirs)
    for n, q in theirs.items():
        p = ours[n]
        assert (p.start, p.size) == (q["start"] * ss, q["size"] * ss), n
        if t.scheme == "gpt":
            assert (p.type, p.uuid, p.name) == (q["type"].lower(), q["uuid"].lower(), q.get("name", "")), n
        else:
            assert int(p.type, 16) == int(q["type"], 16), n
            assert (p.attributes == 0x80) == q.get("bootable", False), n


def check_against_parted(t, parted) -> None:
    parts, disk = parted
    assert (int(disk[1].rstrip("B")), int(disk[3])) == (t.size, t.sector_size)
    assert disk[5] == {"gpt": "gpt", "mbr": "msdos"}[t.scheme]
    ours = {p.number: p for p in t.partitions + t.extended}
    assert sorted(ours) == sorted(parts)
    for n, (start, end, size, name) in parts.items():
        p = ours[n]
        assert (p.start, p.end - 1, p.size) == (start, end, size), n
        if t.scheme == "gpt":
            assert p.name == name, n


def check_against_sgdisk(t, target, infos: dict | None = None) -> None:
    ss = t.sector_size
    for p in t.partitions:
        info = infos[p.number] if infos else sgdisk_info(target, p.number)
        assert info == {"type": p.type, "uuid": p.uuid, "first": p.start // ss, "last": p.end // ss - 1,
                        "attributes": p.attributes, "name": p.name}, p.number


def sgdisk_summary(target) -> dict:
    text = run(["sgdisk", "-p", target])
    first, last = re.search(r"First usable sector is (\d+), last usable sector is (\d+)", text).groups()
    return {"disk_id": re.search(r"Disk identifier \(GUID\): (\S+)", text).group(1).lower(),
            "entries": int(re.search(r"holds up to (\d+) entries", text).group(1)),
            "first": int(first), "last": int(last),
            "sector": int(re.search(r"Sector size \(logical(?:/physical)?\): (\d+)", text).group(1))}


# --- images the tools make ----------------------------------------------------------------------------------

def make_sgdisk_gpt(path, size=64 * MiB) -> str:
    """Four partitions; entry 3 is made last, so partition 3 lies after partition 4 on the disk (numbers are entry
    indexes + 1, not disk order). A non-ASCII name, an attribute bit, four type GUIDs."""
    need_tool("sgdisk")
    blank(path, size)
    run(["sgdisk", "-n", "1:2048:+8M", "-t", "1:8300", "-c", "1:data one",
         "-n", "2:0:+16M", "-t", "2:fd00", "-c", "2:räid ✓", "-A", "2:set:2",
         "-n", "4:0:+4M", "-t", "4:8200", "-c", "4:swap",
         "-n", "3:0:0", "-t", "3:8e00", path])
    return str(path)


SFDISK_MBR = """label: dos
label-id: 0x1234abcd
start=2048, size=8M, type=83, bootable
size=8M, type=82
size=40M, type=5
start=36864, size=4M, type=83
size=6M, type=8e
size=8M, type=83
size=4M, type=83
"""

SFDISK_MBR_SMALL = """label: dos
start=2048, size=2M, type=83
size=1M, type=82
size=8M, type=5
start=10240, size=1M, type=83
start=14336, size=1M, type=8e
start=18432, size=2M, type=83
"""

SFDISK_GPT = """label: gpt
size=8M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="alpha one", attrs="RequiredPartition GUID:63"
size=16M, type=A19D880F-05FC-4D3B-A006-743F0F84911E, name="beta"
size=4M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
"""


def make_sfdisk(path, script: str, size=64 * MiB) -> str:
    need_tool("sfdisk")
    blank(path, size)
    run(["sfdisk", "-q", path], stdin=script)
    return str(path)


def make_parted(path, label: str, size=64 * MiB) -> str:
    need_tool("parted")
    blank(path, size)
    if label == "gpt":
        cmds = ["mklabel", "gpt", "mkpart", "alpha", "xfs", "1MiB", "9MiB", "mkpart", "beta", "9MiB", "25MiB",
                "mkpart", "gamma", "25MiB", "100%", "set", "2", "legacy_boot", "on"]
    else:  # parted's extended partitions are type 0x0f (LBA)
        cmds = ["mklabel", "msdos", "mkpart", "primary", "1MiB", "9MiB", "mkpart", "extended", "9MiB", "100%",
                "mkpart", "logical", "10MiB", "20MiB", "mkpart", "logical", "21MiB", "30MiB"]
    run(["parted", "-s", path, *cmds])
    return str(path)


def make_fdisk_4k(path, label: str, size=64 * MiB) -> str:
    """fdisk -b 4096 writes a table for 4096-byte logical sectors into a plain file (no loop device needed)."""
    need_tool("fdisk")
    blank(path, size)
    if label == "gpt":
        script = "g\nn\n1\n\n+8M\nn\n2\n\n+16M\nn\n3\n\n\nw\n"
    else:
        script = "o\nn\np\n1\n\n+8M\nn\ne\n2\n\n\nn\n\n+4M\nn\n\n+6M\nw\n"
    run(["fdisk", "-b", "4096", path], stdin=script)
    return str(path)


@contextlib.contextmanager
def loop(image, *, offset=None, sizelimit=None, sector_size=None, readonly=False):
    args = ["losetup", "-f", "--show"]
    if offset is not None:
        args += ["--offset", str(offset), "--sizelimit", str(sizelimit)]
    if sector_size:
        args += ["--sector-size", str(sector_size)]
    if readonly:
        args.append("-r")
    dev = run([*args, image]).strip()
    try:
        yield dev
    finally:
        from tests.images import _retry

        assert _retry(["losetup", "-d", dev]), f"could not detach {dev}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """built(name) -> image path; each table made once per module."""
    d = tmp_path_factory.mktemp("ptables")
    makers = {
        "sgdisk-gpt": lambda p: make_sgdisk_gpt(p),
        "sfdisk-mbr": lambda p: make_sfdisk(p, SFDISK_MBR),
        "sfdisk-gpt": lambda p: make_sfdisk(p, SFDISK_GPT),
        "parted-gpt": lambda p: make_parted(p, "gpt"),
        "parted-msdos": lambda p: make_parted(p, "msdos"),
        "fdisk-gpt-4k": lambda p: make_fdisk_4k(p, "gpt"),
        "fdisk-dos-4k": lambda p: make_fdisk_4k(p, "dos"),
    }
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = makers[name](d / f"{name}.img")
        return cache[name]

    return get


def copy_of(built, name, tmp_path) -> str:
    dst = str(tmp_path / f"{name}.img")
    run(["cp", "--sparse=always", built(name), dst])
    return dst


# --- declarations ----------------------------------------------------------------------------------------------

def offsets(decl) -> dict:
    out, pos = {}, 0
    for sub in decl.subcons:
        out[sub.name] = pos
        pos += sub.sizeof()
    return out


def test_declared_offsets_match_the_uefi_spec():
    # UEFI 2.10 tables 5-3 (legacy MBR), 5-4 (partition record), 5-5 (GPT header), 5-6 (GPT partition entry).
    assert offsets(f.legacy_mbr) == {"boot_code": 0, "unique_mbr_signature": 440, "unknown": 444,
                                     "partition_record": 446, "signature": 510}
    assert f.legacy_mbr.sizeof() == f.MBR_SIZE == 512
    assert offsets(f.gpt_mbr_record) == {"boot_indicator": 0, "start_head": 1, "start_sector": 2, "start_track": 3,
                                         "os_type": 4, "end_head": 5, "end_sector": 6, "end_track": 7,
                                         "starting_lba": 8, "size_in_lba": 12}
    assert f.gpt_mbr_record.sizeof() == f.gpt_mbr_record_struct.size == 16
    assert offsets(f.gpt_header) == {"signature": 0, "revision": 8, "header_size": 12, "header_crc32": 16,
                                     "reserved1": 20, "my_lba": 24, "alternate_lba": 32, "first_usable_lba": 40,
                                     "last_usable_lba": 48, "disk_guid": 56, "partition_entry_lba": 72,
                                     "num_partition_entries": 80, "sizeof_partition_entry": 84,
                                     "partition_entry_array_crc32": 88}
    assert f.gpt_header.sizeof() == f.GPT_HEADER_SIZE == 92
    assert offsets(f.gpt_entry) == {"partition_type_guid": 0, "unique_partition_guid": 16, "starting_lba": 32,
                                    "ending_lba": 40, "attributes": 48, "partition_name": 56}
    assert f.gpt_entry.sizeof() == f.gpt_entry_struct.size == f.GPT_ENTRY_SIZE == 128
    assert struct.unpack("<Q", f.GPT_HEADER_SIGNATURE)[0] == 0x5452415020494645  # efi.h GPT_HEADER_SIGNATURE


# --- the tools' tables, field by field --------------------------------------------------------------------------

def test_sgdisk_gpt_matches_sgdisk_sfdisk_parted(built):
    img = built("sgdisk-gpt")
    t = table_of(img)
    assert (t.scheme, t.sector_size, t.warnings) == ("gpt", 512, [])
    assert [p.number for p in t.partitions] == [1, 2, 3, 4]
    assert t.get(3).start > t.get(4).start  # numbered by entry, not by place
    assert t.get(2).name == "räid ✓" and t.get(2).attributes == 4 and t.get(2).type == LINUX_RAID
    check_against_sgdisk(t, img)
    s = sgdisk_summary(img)
    assert t.disk_id == s["disk_id"] and t.usable == (s["first"] * 512, (s["last"] + 1) * 512)
    check_against_sfdisk(t, sfdisk_json(img))
    check_against_parted(t, parted_m(img))
    # The table's own sectors: protective MBR, primary header + 128 entries, backup entries + header.
    last = t.size // 512 - 1
    assert t.reserved == [(0, 512, "protective MBR (LBA 0)"), (512, 512, "primary GPT header (LBA 1)"),
                          (1024, 16384, "primary GPT entry array (LBA 2)"),
                          ((last - 32) * 512, 16384, f"backup GPT entry array (LBA {last - 32})"),
                          (last * 512, 512, f"backup GPT header (LBA {last})")]


def test_sfdisk_gpt_matches_sfdisk_sgdisk_parted(built):
    img = built("sfdisk-gpt")
    t = table_of(img)
    assert (t.scheme, t.warnings) == ("gpt", [])
    assert t.get(1).attributes == (1 << 63) | 1  # RequiredPartition GUID:63
    check_against_sfdisk(t, sfdisk_json(img))
    check_against_sgdisk(t, img)
    check_against_parted(t, parted_m(img))


def test_parted_gpt_matches(built):
    img = built("parted-gpt")
    t = table_of(img)
    assert t.warnings == []
    assert [p.name for p in t.partitions] == ["alpha", "beta", "gamma"]
    assert t.get(2).attributes == 4  # legacy_boot
    check_against_parted(t, parted_m(img))
    check_against_sfdisk(t, sfdisk_json(img))
    check_against_sgdisk(t, img)


def test_sfdisk_mbr_with_logical_partitions(built):
    img = built("sfdisk-mbr")
    t = table_of(img)
    assert (t.scheme, t.sector_size, t.disk_id, t.warnings) == ("mbr", 512, "0x1234abcd", [])
    assert [p.number for p in t.partitions] == [1, 2, 4, 5, 6, 7]
    assert [(e.number, e.type) for e in t.extended] == [(3, "0x05")]
    assert t.get(1).attributes == 0x80 and t.get(4).type == "0x8e"
    # msdos.c: logical partitions are numbered from 5 in EBR chain order, each EBR reserved.
    ext = t.extended[0]
    ebrs = [r for r in t.reserved if r[2].startswith("EBR")]
    assert len(ebrs) == 3 and ebrs[0][0] == ext.start
    for (start, size, _), n in zip(ebrs, (5, 6, 7)):
        assert size == 512 and start < t.get(n).start < ext.end
    check_against_sfdisk(t, sfdisk_json(img))
    check_against_parted(t, parted_m(img))


def test_parted_msdos_0x0f_extended(built):
    img = built("parted-msdos")
    t = table_of(img)
    assert t.warnings == []
    assert [(e.number, e.type) for e in t.extended] == [(2, "0x0f")]
    assert [p.number for p in t.partitions] == [1, 5, 6]
    check_against_parted(t, parted_m(img))
    check_against_sfdisk(t, sfdisk_json(img))


def test_linux_extended_0x85(built, tmp_path):
    img = copy_of(built, "sfdisk-mbr", tmp_path)
    before = table_of(img)
    patch(img, 446 + 2 * 16 + 4, b"\x85")  # record 3 is the extended partition
    t = table_of(img)
    assert t.partitions == before.partitions and t.extended[0].type == "0x85"


def test_fdisk_gpt_4096_byte_sectors(built):
    img = built("fdisk-gpt-4k")
    t = table_of(img)  # no sector size given: found where "EFI PART" is
    assert (t.scheme, t.sector_size, t.warnings) == ("gpt", 4096, [])
    assert t.reserved[:3] == [(0, 4096, "protective MBR (LBA 0)"), (4096, 4096, "primary GPT header (LBA 1)"),
                              (8192, 16384, "primary GPT entry array (LBA 2)")]
    rows = fdisk_rows(img, 4096, "Device,Start,End,Sectors,Type-UUID,UUID")
    assert [(node_number(r[0]), int(r[1]) * 4096, int(r[3]) * 4096, r[4].lower(), r[5].lower()) for r in rows] == \
        [(p.number, p.start, p.size, p.type, p.uuid) for p in t.partitions]
    assert [int(r[2]) for r in rows] == [p.end // 4096 - 1 for p in t.partitions]
    assert table_of(img, sector_size=4096) == t


def test_fdisk_dos_4096_byte_sectors(built):
    img = built("fdisk-dos-4k")
    t = table_of(img, sector_size=4096)  # an MBR does not say its sector size: the caller must
    assert (t.scheme, t.sector_size, t.warnings) == ("mbr", 4096, [])
    rows = fdisk_rows(img, 4096, "Device,Start,End,Sectors,Id")
    ours = {p.number: p for p in t.partitions + t.extended}
    assert sorted(ours) == [node_number(r[0]) for r in rows]
    for r in rows:
        p = ours[node_number(r[0])]
        assert (p.start, p.size, int(p.type, 16)) == (int(r[1]) * 4096, int(r[3]) * 4096, int(r[4], 16))
    # Read as 512-byte sectors the extended partition's EBR is not where it should be: said, with the hint.
    wrong = table_of(img)
    assert any("is the logical sector size 4096?" in w for w in wrong.warnings)


def test_gpt_4096_byte_sectors_made_by_sgdisk_on_a_4k_loop_device(tmp_path):
    """sgdisk has no sector-size option: it uses the device's. So: a loop device with 4096-byte sectors, and
    sfdisk, parted and sgdisk all read the result through it."""
    need_kernel()
    need_tool("sgdisk", "sfdisk", "parted")
    img = blank(tmp_path / "gpt4k.img", 64 * MiB)
    with loop(img, sector_size=4096) as dev:
        run(["sgdisk", "-n", "1:0:+8M", "-c", "1:four k", "-n", "2:0:+16M", "-t", "2:fd00", "-A", "2:set:0",
             "-n", "3:0:0", dev])
        js, parted, summary = sfdisk_json(dev), parted_m(dev), sgdisk_summary(dev)
        infos = {n: sgdisk_info(dev, n) for n in (1, 2, 3)}
    t = table_of(img)
    assert (t.sector_size, t.warnings) == (4096, []) and summary["sector"] == 4096
    check_against_sfdisk(t, js)
    parted[1][0] = img
    check_against_parted(t, parted)
    check_against_sgdisk(t, None, infos)
    assert t.disk_id == summary["disk_id"]


# --- the kernel as oracle --------------------------------------------------------------------------------------

def looks_like_xfs(path):
    def probe(p: Partition) -> bool:
        with Device(path) as dev:
            return dev.pread(p.start, 4, "superblock magic") == b"XFSB"
    return probe


@pytest.mark.kernel
@pytest.mark.parametrize("label,number", [("dos", 5), ("gpt", 2)])
def test_kernel_sees_our_partition_bytes(tmp_path, label, number):
    """XFS made and written by the kernel inside partition N (a logical one for MBR), over a loop device whose
    offset and size come from sfdisk's JSON; our table, layer and XFS reader must find the same bytes."""
    need_kernel()
    need_tool("sfdisk")
    from tests import kernel as K
    from tests.images import MKFS_ENV, _retry

    img = blank(tmp_path / "disk.img", 160 * MiB)
    if label == "dos":
        script = "label: dos\nsize=16M, type=83\nsize=130M, type=5\nstart=36864, size=80M, type=83\n"
    else:
        script = 'label: gpt\nsize=16M\nsize=80M, name="xfs here"\nsize=16M\n'
    run(["sfdisk", "-q", img], stdin=script)
    js = sfdisk_json(img)
    q = next(q for q in js["partitions"] if node_number(q["node"]) == number)
    start, size = q["start"] * js["sectorsize"], q["size"] * js["sectorsize"]

    rng = random.Random(7)
    payload = {"a": rng.randbytes(64 << 10), "b": rng.randbytes(1 << 20)}
    kernel = {}  # partition byte -> the kernel's bytes there (read through the loop device)
    with loop(img, offset=start, sizelimit=size) as dev:
        run(["mkfs.xfs", "-f", "-q", "-m", "rmapbt=1,reflink=1", dev], env=MKFS_ENV)
        mnt = tempfile.mkdtemp(prefix="fsdaxctl-part-")
        run(["mount", "-t", "xfs", dev, mnt])
        try:
            files = {}
            for name, data in payload.items():
                path = os.path.join(mnt, name)
                with open(path, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                files[name] = (os.stat(path).st_ino, K.fiemap(path))
        finally:
            assert _retry(["umount", mnt]), f"could not unmount {mnt}"
            os.rmdir(mnt)
        fd = os.open(dev, os.O_RDONLY)
        try:
            wanted = [0, 512, size - 4096] + [e.physical for _, ext in files.values() for e in ext]
            for x in wanted:
                kernel[x] = os.pread(fd, 4096, x)
        finally:
            os.close(fd)

    t = table_of(img)
    assert t.warnings == []
    p = choose_partition(t, None, looks_like_xfs(img))  # the only partition holding XFS
    assert (p.number, p.start, p.size) == (number, start, size)
    disk = "loop7"
    layer = PartitionLayer(t, p, Space(BLOCK, disk), Space(BLOCK, partition_name(disk, number)), disk)
    with Device(img) as dev:
        for x, data in kernel.items():
            [hop] = layer.map(start + x, len(data))
            assert isinstance(hop, Hop) and (hop.space, hop.offset, hop.length) == (layer.lower, x, len(data))
            assert dev.pread(p.start + hop.offset, len(data)) == data  # our partition byte x is the kernel's

        # The whole way down: disk bytes of file b -> the stack -> the filesystem -> file b's inode.
        from fsdaxctl.xfs.fs import XfsFilesystem
        from fsdaxctl.xfs.owners import OwnerMap

        ino, extents = files["b"]
        stack = Stack([layer], layer.lower)
        route = stack.route(Extent(layer.upper, start + extents[0].physical, 8192, "test"))
        [fs_range] = route.fs_ranges()
        assert fs_range.offset == extents[0].physical
        fs = XfsFilesystem(Window(dev, p.start, p.size, f"partition {p.number}"))
        owners = OwnerMap(fs).pieces(fs_range.offset, fs_range.length)
        assert {pc.inode for pc in owners} == {ino}
        assert payload["b"][:8192] == dev.pread(start + extents[0].physical, 8192)


# --- damage: one warning or one error, never a traceback ---------------------------------------------------------

@pytest.fixture
def gpt_img(built, tmp_path):
    return copy_of(built, "sgdisk-gpt", tmp_path)


@pytest.fixture
def mbr_img(built, tmp_path):
    return copy_of(built, "sfdisk-mbr", tmp_path)


def one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text and text
    return text


def test_primary_header_damaged_uses_backup(built, gpt_img):
    good = table_of(built("sgdisk-gpt"))
    flip(gpt_img, 512 + 40)  # first_usable_lba: the header CRC no longer matches
    t = table_of(gpt_img)
    last = t.size // 512 - 1
    assert t.partitions == good.partitions
    [w] = t.warnings
    assert w.startswith("primary GPT header is damaged (bad header CRC") and f"using the backup at LBA {last}" in w


def test_both_headers_damaged(gpt_img):
    size = os.path.getsize(gpt_img)
    flip(gpt_img, 512)
    flip(gpt_img, size - 512 + 20)
    with pytest.raises(CorruptError) as e:
        table_of(gpt_img)
    text = one_line(e.value)
    assert "GPT: both headers are damaged" in text and "no 'EFI PART' signature" in text
    assert "bad header CRC" in text and "structure GPT header" in text and "daddr 0x1" in text


def test_entry_array_damaged_uses_backup(built, gpt_img):
    flip(gpt_img, 1024 + 56)  # the first character of partition 1's name
    t = table_of(gpt_img)
    assert t.partitions == table_of(built("sgdisk-gpt")).partitions
    [w] = t.warnings
    assert "bad entry array CRC" in w and "using the backup" in w


def test_truncated_image_loses_the_backup_and_the_last_partition(gpt_img):
    size = os.path.getsize(gpt_img)
    os.truncate(gpt_img, size - MiB)
    t = table_of(gpt_img)
    assert [p.number for p in t.partitions] == [1, 2, 4]  # 3 ran to the last usable LBA
    text = "\n".join(t.warnings)
    assert f"LBA {size // 512 - 1} is past the end of the disk" in text and "is the image truncated?" in text
    assert "GPT entry 3" in text and "ignored, as the kernel does" in text
    with pytest.raises(UsageError) as e:
        choose_partition(t, 3, lambda p: True)
    assert "the kernel makes no partition of it (runs past the end of the disk)" in one_line(e.value)
    assert all(s + n <= t.size for s, n, _ in t.reserved)


def test_grown_image_backup_not_at_the_end(built, gpt_img):
    size = os.path.getsize(gpt_img)
    os.truncate(gpt_img, size + MiB)  # dd to a larger disk: the backup stays where it was
    t = table_of(gpt_img)
    assert t.partitions == table_of(built("sgdisk-gpt")).partitions
    text = "\n".join(t.warnings)
    assert "puts the backup at LBA" in text and "not at the end of the disk" in text


@pytest.mark.parametrize("field,offset,value,reason", [
    ("num_partition_entries", 80, struct.pack("<I", 0x10000000), "more than the kernel reads"),
    ("num_partition_entries", 80, struct.pack("<I", 0), "num_partition_entries is 0"),
    ("sizeof_partition_entry", 84, struct.pack("<I", 256), "the kernel reads only 128-byte entries"),
    ("my_lba", 24, struct.pack("<Q", 5), "my_lba is 5 but the header is at LBA 1"),
    ("header_size", 12, struct.pack("<I", 4096), "header_size 4096 is larger than a sector"),
    ("header_size", 12, struct.pack("<I", 91), "header_size 91 is smaller"),
    ("last_usable_lba", 48, struct.pack("<Q", 1 << 40), "run past the end of the disk"),
    ("partition_entry_lba", 72, struct.pack("<Q", 1 << 40), "partition_entry_lba 1099511627776 is past the end"),
])
def test_resealed_header_damage(gpt_img, field, offset, value, reason):
    """Bad values with a good CRC (a buggy tool): the checks behind the CRC, as efi.c is_gpt_valid() makes them."""
    size = os.path.getsize(gpt_img)
    patch(gpt_img, 512 + offset, value)
    reseal_file(gpt_img)
    t = table_of(gpt_img)
    assert len(t.partitions) == 4
    assert any(w.startswith("primary GPT header is damaged") and reason in w for w in t.warnings), t.warnings
    patch(gpt_img, size - 512 + offset, value)  # and the backup: nothing left to read
    if field == "my_lba":
        patch(gpt_img, size - 512 + offset, struct.pack("<Q", 7))
    reseal_file(gpt_img)
    if field == "last_usable_lba":  # intact but too big for the disk: read anyway, like a truncated image
        t = table_of(gpt_img)
        assert "the kernel refuses such a GPT (is the image truncated?); read anyway" in t.warnings[0]
        return
    with pytest.raises(CorruptError) as e:
        table_of(gpt_img)
    assert "both headers are damaged" in one_line(e.value)


def test_gpt_entry_past_the_end_is_ignored(gpt_img):
    last = os.path.getsize(gpt_img) // 512 - 1
    for array in (1024, (last - 32) * 512):  # entry 2 in both arrays
        patch(gpt_img, array + 128 + 40, struct.pack("<Q", last + 10))
    reseal_file(gpt_img)
    t = table_of(gpt_img)
    assert [p.number for p in t.partitions] == [1, 3, 4]
    assert any(f"GPT entry 2 (LBA 18432..{last + 10}) runs past the end" in w for w in t.warnings)


def test_gpt_entry_ending_before_starting(gpt_img):
    last = os.path.getsize(gpt_img) // 512 - 1
    for array in (1024, (last - 32) * 512):
        patch(gpt_img, array + 40, struct.pack("<Q", 100))  # partition 1 starts at 2048
    reseal_file(gpt_img)
    t = table_of(gpt_img)
    assert [p.number for p in t.partitions] == [2, 3, 4]
    assert any("ending_lba 100 < starting_lba 2048" in w for w in t.warnings)


def test_overlapping_gpt_partitions_warned_and_mapped_to_both(gpt_img):
    last = os.path.getsize(gpt_img) // 512 - 1
    for array in (1024, (last - 32) * 512):
        patch(gpt_img, array + 40, struct.pack("<Q", 18432 + 7))  # partition 1 now ends 8 sectors into 2
    reseal_file(gpt_img)
    t = table_of(gpt_img)
    assert any(w.startswith("partitions 1 and 2 overlap") for w in t.warnings)
    layer = PartitionLayer(t, t.get(2), Space(BLOCK, "sda"), Space(BLOCK, "sda2"), "sda")
    out = layer.map(18432 * 512, 4096)
    assert sorted((h.space.name, h.offset) for h in out) == [("sda1", 8 * MiB), ("sda2", 0)]


def test_hybrid_mbr_warned(gpt_img):
    run(["sgdisk", "-h", "1:2", gpt_img])
    t = table_of(gpt_img)
    assert t.scheme == "gpt" and len(t.partitions) == 4
    assert any(w.startswith("hybrid MBR: MBR records") for w in t.warnings), t.warnings


def test_gpt_without_protective_mbr(built, gpt_img):
    patch(gpt_img, 0, bytes(512))
    t = table_of(gpt_img)
    assert t.partitions == table_of(built("sgdisk-gpt")).partitions
    assert t.warnings[0].startswith("no protective MBR") and "'gpt'" in t.warnings[0]


def test_protective_record_not_at_lba_1(gpt_img):
    rec = bytearray(peek(gpt_img, 446, 16))
    rec[8:12] = struct.pack("<I", 2)
    patch(gpt_img, 446, bytes(rec))
    t = table_of(gpt_img)
    assert len(t.partitions) == 4 and "starts at LBA 2, not 1" in t.warnings[0]


def test_stale_gpt_behind_an_mbr(built, mbr_img):
    patch(mbr_img, 512, peek(built("sgdisk-gpt"), 512, 512))
    t = table_of(mbr_img)
    assert t.scheme == "mbr" and t.partitions == table_of(built("sfdisk-mbr")).partitions
    assert any("a stale GPT?" in w for w in t.warnings)


def test_4k_gpt_read_with_512_byte_sectors(built):
    with pytest.raises(CorruptError) as e:
        table_of(built("fdisk-gpt-4k"), sector_size=512)
    assert "is the logical sector size 4096?" in one_line(e.value)


def test_no_table():
    assert read_partition_table(MemDisk(bytes(1 * MiB)).pread, MiB) is None
    assert read_partition_table(MemDisk(bytes(100)).pread, 100) is None
    fat = bytearray(4096)  # 0x55AA, but boot indicators that are not 0/0x80: a boot sector (msdos.c)
    fat[446] = 0x12
    fat[510:512] = b"\x55\xaa"
    assert read_partition_table(MemDisk(fat).pread, len(fat)) is None
    with pytest.raises(UsageError):
        read_partition_table(MemDisk(fat).pread, len(fat), sector_size=1000)


def test_xfs_image_is_not_a_table(mkfs_image):
    assert table_of(mkfs_image) is None


def ebr(records, signed=True) -> bytes:
    """A sector with up to four (type, start, count) records."""
    s = bytearray(512)
    for i, (typ, start, count) in enumerate(records):
        struct.pack_into("<8BII", s, 446 + 16 * i, 0, 0, 0, 0, typ, 0, 0, 0, start, count)
    if signed:
        s[510:512] = b"\x55\xaa"
    return bytes(s)


def test_ebr_chain_loop(mbr_img):
    t0 = table_of(mbr_img)
    second = [r for r in t0.reserved if r[2].startswith("EBR")][1][0]
    link = peek(mbr_img, second + 446 + 16, 16)
    assert link[4] == 0x05
    patch(mbr_img, second + 446 + 16 + 8, struct.pack("<I", 0))  # the second EBR's link: back to the first
    t = table_of(mbr_img)
    assert [p.number for p in t.partitions] == [1, 2, 4, 5, 6]
    assert any("the EBR chain loops back to the EBR at sector 34816" in w for w in t.warnings), t.warnings


def test_ebr_chain_without_logical_partitions_stops_after_100_links():
    disk = bytearray(1 * MiB)
    disk[:512] = ebr([(0x05, 1, 1000)])
    for k in range(1, 200):  # EBR k links to EBR k + 1, none holds a partition
        disk[k * 512:(k + 1) * 512] = ebr([(0, 0, 0), (0x05, k, 1)])
    t = read_partition_table(MemDisk(disk).pread, len(disk))
    assert t.partitions == [] and len([r for r in t.reserved if r[2].startswith("EBR")]) == 100
    assert any("100 EBR links without a logical partition" in w for w in t.warnings)


def test_more_than_255_partitions():
    disk = bytearray(2 * MiB)
    disk[:512] = ebr([(0x83, 2000, 10), (0x05, 1, 1000)])
    for k in range(1, 300):  # EBR k: a 1-sector logical partition right behind it, and a link to EBR k + 2
        disk[(2 * k - 1) * 512:2 * k * 512] = ebr([(0x83, 1, 1), (0x05, 2 * k, 1)])
    t = read_partition_table(MemDisk(disk).pread, len(disk))
    assert [p.number for p in t.partitions] == [1] + list(range(5, 256))
    assert t.get(255).start == 2 * 251 * 512  # the logical partition of EBR 251, right behind it
    assert any("the kernel stops at partition 255" in w for w in t.warnings)


def test_mbr_partition_past_the_end(mbr_img):
    size = os.path.getsize(mbr_img)
    patch(mbr_img, 446 + 3 * 16 + 12, struct.pack("<I", 1 << 31))  # primary 4: 1 TiB
    patch(mbr_img, 446 + 1 * 16 + 8, struct.pack("<I", size // 512 + 5))  # primary 2 starts past the end
    t = table_of(mbr_img)
    p4 = t.get(4)
    assert p4.end == size and t.get(2) is None
    text = "\n".join(t.warnings)
    assert f"partition 4 (bytes {p4.start}+{(1 << 31) * 512}) runs past the end of the disk" in text
    assert f"cut to {size - p4.start} bytes" in text
    assert "partition 2 starts at byte" in text and "ignored, as the kernel does" in text


def test_ebr_past_the_end(mbr_img):
    size = os.path.getsize(mbr_img)
    os.truncate(mbr_img, 25 * MiB)  # the second EBR (at 24 MiB) stays, logical 6 is cut, the third EBR is gone
    t = table_of(mbr_img)
    assert [p.number for p in t.partitions] == [1, 2, 5, 6]
    assert t.get(6).end == 25 * MiB and size > 25 * MiB
    assert any("past the end of the disk: the chain ends there" in w for w in t.warnings)


# --- naming and choosing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("disk,n,name", [("sda", 1, "sda1"), ("sdab", 12, "sdab12"), ("pmem0", 1, "pmem0p1"),
                                         ("nvme0n1", 3, "nvme0n1p3"), ("loop0", 1, "loop0p1"), ("vda", 5, "vda5"),
                                         ("mmcblk0", 2, "mmcblk0p2"), ("md127", 1, "md127p1")])
def test_partition_name_as_the_kernel(disk, n, name):
    assert partition_name(disk, n) == name


def test_choose_partition(built):
    t = table_of(built("sfdisk-mbr"))
    assert choose_partition(t, 6, lambda p: False).number == 6
    with pytest.raises(UsageError) as e:
        choose_partition(t, 9, lambda p: True)
    text = one_line(e.value)
    assert "no partition 9" in text and "MBR partitions: 1: start 1048576 (sector 2048)" in text
    with pytest.raises(UsageError) as e:
        choose_partition(t, 3, lambda p: True)
    assert "extended partition" in str(e.value)
    assert choose_partition(t, None, lambda p: p.number == 5).number == 5
    for looks in (lambda p: False, lambda p: p.number in (2, 7)):
        with pytest.raises(UsageError) as e:
            choose_partition(t, None, looks)
        text = one_line(e.value)
        assert "use --partition N" in text and "7: start" in text and "type 0x83" in text

    def unreadable(p):
        if p.number == 1:
            raise TruncatedError("superblock magic lies past the end")
        return p.number == 2

    assert choose_partition(t, None, unreadable).number == 2
    g = table_of(built("sgdisk-gpt"))
    with pytest.raises(UsageError) as e:
        choose_partition(g, None, lambda p: False)
    assert "name 'räid ✓'" in str(e.value)


# --- the layer -------------------------------------------------------------------------------------------------

def spans(out):
    return [(type(o).__name__, o.space.name, o.offset, o.length, getattr(o, "kind", None)) for o in out]


def test_layer_off_by_one_at_every_partition_edge(built):
    for name in ("sgdisk-gpt", "sfdisk-mbr", "fdisk-gpt-4k"):
        t = table_of(built(name))
        for p in t.partitions:
            layer = PartitionLayer(t, p, Space(BLOCK, "sda"), Space(BLOCK, "sda-x"), "sda")
            assert spans(layer.map(p.start, 1)) == [("Hop", "sda-x", 0, 1, None)]
            assert spans(layer.map(p.end - 1, 1)) == [("Hop", "sda-x", p.size - 1, 1, None)]
            before, after = layer.map(p.start - 1, 1), layer.map(p.end, 1)
            assert all(getattr(o, "space", None) != layer.lower for o in before + after)
            out = layer.map(p.start - 1, p.size + 2)
            assert [o for o in out if o.space == layer.lower] == layer.map(p.start, p.size)
            assert spans(layer.map(p.start, p.size)) == [("Hop", "sda-x", 0, p.size, None)]
            assert sum(o.length for o in out) == p.size + 2
            [hop] = layer.map(p.start + 512, 1)
            assert hop.arithmetic == (f"byte {p.start + 512} - partition {p.number} start {p.start} (sector "
                                      f"{p.start // t.sector_size}) = byte 512 of sda-x")


def test_layer_table_structures_gaps_and_the_end(built):
    t = table_of(built("sgdisk-gpt"))
    layer = PartitionLayer(t, t.get(1), Space(BLOCK, "sda"), Space(BLOCK, "sda1"), "sda")
    size = t.size
    assert spans(layer.map(0, 513)) == [("Dropped", "sda", 0, 512, "partition-table"),
                                        ("Dropped", "sda", 512, 1, "partition-table")]
    [gap] = layer.map(17408, 1)
    assert gap.kind == "unpartitioned" and "before partition 1" in gap.reason
    assert spans(layer.map(size - 1, 2)) == [("Dropped", "sda", size - 1, 1, "partition-table"),
                                             ("Dropped", "sda", size, 1, "outside-device")]
    [other] = layer.map(t.get(3).start + 10, 5)
    assert (other.space, other.offset) == (Space(BLOCK, "sda3"), 10)
    m = table_of(built("sfdisk-mbr"))
    layer = PartitionLayer(m, m.get(5), Space(BLOCK, "sda"), Space(BLOCK, "sda5"), "sda")
    ext = m.extended[0]
    assert spans(layer.map(ext.start, 1024)) == [("Dropped", "sda", ext.start, 512, "partition-table"),
                                                 ("Dropped", "sda", ext.start + 512, 512, "unpartitioned")]
    assert "inside extended partition 3" in layer.map(ext.start + 512, 1)[0].reason
    assert layer.describe() == (f"partition: MBR partition 5 (sda5) of sda: sectors {m.get(5).start // 512}+8192 of "
                                f"512 bytes = bytes {m.get(5).start}+{8192 * 512}, type 0x83")


def test_layer_in_the_stack(built):
    """Only the chosen partition reaches the filesystem; another partition is named as the kernel names it (or
    'partition N' on an unnamed image) and reported as not under the filesystem."""
    t = table_of(built("sgdisk-gpt"))
    p1, p2 = t.get(1), t.get(2)
    for disk, other in (("nvme0n1", "nvme0n1p2"), (None, "partition 2")):
        lower = Space(BLOCK, partition_name(disk, 1) if disk else "partition 1")
        layer = PartitionLayer(t, p1, Space(BLOCK, disk), lower, disk)
        stack = Stack([layer], lower)
        route = stack.route(Extent(Space(BLOCK, disk), p1.end - 4096, 8192, "test"))
        [fs] = route.fs_ranges()
        assert (fs.offset, fs.length) == (p1.size - 4096, 4096)
        [dropped] = route.dropped()
        assert dropped.kind == "elsewhere" and dropped.space == Space(BLOCK, other) and dropped.offset == 0
        assert p2.start == p1.end
    assert "GPT partition 1 (partition 1)" in layer.describe() and "name 'data one'" in layer.describe()
    with pytest.raises(UsageError):
        PartitionLayer(t, Partition(9, 0, 512, "gpt", LINUX_FS), Space(BLOCK), Space(BLOCK, "x"))


# --- fuzz: random damage to real tables ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory):
    """Small real tables in memory: (bytes, sector size, regions worth damaging)."""
    need_tool("sgdisk", "sfdisk", "fdisk")
    d = tmp_path_factory.mktemp("fuzz")
    made = {
        "gpt": make_sgdisk_gpt(d / "gpt.img", 40 * MiB),
        "mbr": make_sfdisk(d / "mbr.img", SFDISK_MBR_SMALL, 16 * MiB),
        "gpt4k": make_fdisk_4k(d / "gpt4k.img", "gpt", 16 * MiB),
    }
    out = {}
    for name, path in made.items():
        t = table_of(path)
        assert t is not None and not t.warnings, (name, t and t.warnings)
        with open(path, "rb") as fh:
            buf = bytearray(fh.read())
        regions = [(0, 512)]
        for start, size, what in t.reserved:
            if "header" in what:
                regions.append((start, 92))
            elif "entry array" in what:
                regions.append((start, 5 * 128))  # the used entries and one unused
            else:
                regions.append((start + 446, 66))  # MBR / EBR records and signature
        out[name] = (buf, t.sector_size, regions)
    return out


def covered(out, layer) -> list[tuple[int, int]]:
    """The disk bytes each output stands for, merged."""
    t = layer.table
    iv = []
    for o in out:
        if isinstance(o, Hop):
            q = next(p for p in t.partitions if layer.space_of(p) == o.space)
            assert 0 <= o.offset and o.offset + o.length <= q.size
            iv.append((q.start + o.offset, q.start + o.offset + o.length))
        else:
            assert isinstance(o, Dropped) and o.space == layer.upper and o.length > 0
            iv.append((o.offset, o.offset + o.length))
    iv.sort()
    merged = []
    for a, b in iv:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def check_consistent(t, size: int) -> None:
    assert t.scheme in ("gpt", "mbr") and t.sector_size in (512, 4096) and t.size == size
    numbers = [p.number for p in t.partitions + t.extended]
    assert len(numbers) == len(set(numbers))
    for p in t.partitions:
        assert p.size > 0 and 0 <= p.start and p.end <= size, p  # cut at the end of the disk, as the kernel does
        assert (1 <= p.number <= 255) if t.scheme == "gpt" else (1 <= p.number <= 4 or 5 <= p.number <= 255)
    for p, why in t.ignored:
        assert why and any(str(p.number) in w for w in t.warnings)
    logical = sorted(n for n in [p.number for p in t.partitions] + [p.number for p, _ in t.ignored] if n >= 5)
    if t.scheme == "mbr":
        assert logical == list(range(5, 5 + len(logical)))
    for start, n, what in t.reserved:
        assert 0 <= start and n > 0 and start + n <= size and what
    for w in t.warnings:
        assert isinstance(w, str) and "\n" not in w


@given(data=st.data())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_fuzz_damaged_real_tables(fuzz_bases, data):
    name = data.draw(st.sampled_from(sorted(fuzz_bases)), label="base")
    buf, ss, regions = fuzz_bases[name]
    saved = []

    def write(off, new):
        new = new[:max(0, len(buf) - off)]
        saved.append((off, bytes(buf[off:off + len(new)])))
        buf[off:off + len(new)] = new

    try:
        for _ in range(data.draw(st.integers(1, 4), label="mutations")):
            start, length = data.draw(st.sampled_from(regions), label="region")
            off = start + data.draw(st.integers(0, length - 1), label="at")
            kind = data.draw(st.sampled_from(["bytes", "flip", "le32", "le64"]), label="kind")
            if kind == "bytes":
                write(off, data.draw(st.binary(min_size=1, max_size=16)))
            elif kind == "flip":
                write(off, bytes([buf[off] ^ (1 << data.draw(st.integers(0, 7)))]))
            else:
                width = 4 if kind == "le32" else 8
                off -= (off - start) % width
                last = len(buf) // ss - 1
                value = data.draw(st.sampled_from([0, 1, 2, 33, 34, last - 1, last, last + 1, 0xFFFFFFFF,
                                                   (1 << 64) - 1, 1 << 31]) | st.integers(0, (1 << 8 * width) - 1))
                write(off, (value % (1 << 8 * width)).to_bytes(width, "little"))
        size = len(buf)
        if data.draw(st.booleans(), label="truncate"):
            size = data.draw(st.integers(0, len(buf)) | st.sampled_from([len(buf) - ss, len(buf) - 1, 1024]))
        if ss and data.draw(st.booleans(), label="reseal"):
            for lba in (1, size // ss - 1):
                if 0 <= lba * ss and lba * ss + ss <= len(buf):
                    saved.append((lba * ss, bytes(buf[lba * ss:lba * ss + ss])))
            reseal(buf, ss, size)
        disk = MemDisk(buf, size)
        try:
            t = read_partition_table(disk.pread, size)
        except FsdaxError as e:
            event(f"{name}: {type(e).__name__}")
            one_line(e)
            return
        if t is None:
            event(f"{name}: no table")
            return
        event(f"{name}: {t.scheme} table, {len(t.partitions)} partitions, {'warnings' if t.warnings else 'clean'}")
        check_consistent(t, size)
        for p in t.partitions[:3]:
            disk_name = data.draw(st.sampled_from(["sda", "pmem0", None]), label="disk")
            layer = PartitionLayer(t, p, Space(BLOCK, disk_name), Space(BLOCK, "the-fs"), disk_name)
            layer.describe()
            o = data.draw(st.integers(0, size + 4096), label="offset")
            n = data.draw(st.integers(1, 2 * MiB), label="length")
            out = layer.map(o, n)
            assert covered(out, layer) == [(o, o + n)]
    finally:
        for off, old in reversed(saved):
            buf[off:off + len(old)] = old
