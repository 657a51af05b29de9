"""The pmem side of the device stack: nd_pfn_sb, the namespace -> pmem map, and sysfs as the kernel lays it out.

Expectations are computed here from the kernel's own formulas, written out independently of the code under test:
the info block is assembled field by field the way nd_pfn_init (drivers/nvdimm/pfn_devs.c) fills it, its
checksum by the most literal reading of nd_fletcher64 (core.c), and the sysfs tree is written with the names,
formats and links the kernel uses (each attribute below cites its source).
"""

from __future__ import annotations

import errno
import os
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsdaxctl.discovery import sysfs as sysfs_mod
from fsdaxctl.discovery.pmem import nd_fletcher64, read_info_block
from fsdaxctl.discovery.sysfs import Sysfs
from fsdaxctl.errors import CorruptError, DeviceError, FsdaxError, TruncatedError, UnsupportedError, UsageError
from fsdaxctl.parsers import nvdimm as nv
from fsdaxctl.stack import BLOCK, FS, NAMESPACE, PHYS, Dropped, Extent, Hop, Space, Stack
from fsdaxctl.stack.pmem import NamespaceLayer, PfnInfo

SZ_4K, SZ_8K, SZ_2M, SZ_1G = 4096, 8192, 2 << 20, 1 << 30


# --- the checksum, read as literally as possible ------------------------------------------------------
def literal_fletcher64(data: bytes) -> int:
    """nvdimm.md: over the little-endian u32 words, lo32 = (lo32 + w) mod 2^32, hi32 += lo32 (64-bit);
    result (hi32 << 32) | lo32 as a u64."""
    lo32, hi32 = 0, 0
    for i in range(0, len(data) // 4 * 4, 4):
        word = data[i] + data[i + 1] * 256 + data[i + 2] * 65536 + data[i + 3] * 16777216
        lo32 = (lo32 + word) % 2**32
        hi32 = (hi32 + lo32) % 2**64
    return (hi32 * 2**32 + lo32) % 2**64


def seal(block: bytearray) -> bytearray:
    """nd_sb_checksum: the fletcher of the block with the checksum field (bytes 4088..4095) zero."""
    block[4088:4096] = bytes(8)
    block[4088:4096] = literal_fletcher64(bytes(block)).to_bytes(8, "little")
    return block


def align_up(x, a):
    return (x + a - 1) // a * a


def align_down(x, a):
    return x // a * a


U_PFN00 = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
U_NS00 = bytes.fromhex("11223344556677889900aabbccddeeff")


def nd_pfn_init_block(sig=nv.PFN_SIG, uuid=U_PFN00, parent_uuid=U_NS00, mode=2, start=0x240000000, size=SZ_1G,
                      align=SZ_2M, minor=4) -> tuple[bytearray, int, int]:
    """(block, dataoff, end_trunc) as nd_pfn_init writes them for a namespace at `start` of `size` bytes."""
    npfns = (size - SZ_8K) // 4096                                # PHYS_PFN(size - SZ_8K)
    end_trunc = start + size - align_down(start + size, align)    # start + size - ALIGN_DOWN(start + size, align)
    if mode == 2:                                                 # PFN_MODE_PMEM: MAX_STRUCT_PAGE_SIZE * npfns
        offset = align_up(start + SZ_8K + 64 * npfns, align) - start
    else:                                                         # PFN_MODE_RAM
        offset = align_up(start + SZ_8K, align) - start
    npfns = (size - offset - end_trunc) // 4096
    b = bytearray(4096)
    b[0:16] = sig                                   # signature
    b[16:32] = uuid                                 # uuid
    b[32:48] = parent_uuid                          # parent_uuid
    b[52:54] = (1).to_bytes(2, "little")            # version_major
    b[54:56] = minor.to_bytes(2, "little")          # version_minor
    b[56:64] = offset.to_bytes(8, "little")         # dataoff
    b[64:72] = npfns.to_bytes(8, "little")          # npfns
    b[72:76] = mode.to_bytes(4, "little")           # mode
    b[80:84] = end_trunc.to_bytes(4, "little")      # end_trunc (start_pad stays 0)
    b[84:88] = align.to_bytes(4, "little")          # align
    b[88:92] = (4096).to_bytes(4, "little")         # page_size = PAGE_SIZE
    b[92:94] = (64).to_bytes(2, "little")           # page_struct_size = MAX_STRUCT_PAGE_SIZE
    return seal(b), offset, end_trunc


def reader(image: bytes):
    """Device.pread's contract: exactly `length` bytes or TruncatedError."""
    def read(offset, length, what="data"):
        if offset + length > len(image):
            raise TruncatedError(f"{what} lies past the end of the image", daddr=offset >> 9)
        return image[offset:offset + length]
    return read


def namespace_image(block: bytes) -> bytes:
    return bytes(4096) + bytes(block)


def put(block: bytearray, off: int, fmt: str, value) -> bytearray:
    struct.pack_into(fmt, block, off, value)
    return block


def one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text and text
    return text


# --- declarations -----------------------------------------------------------------------------------
def offsets(decl):
    out, pos = {}, 0
    for sub in decl.subcons:
        out[sub.name] = pos
        pos += sub.sizeof()
    return out, pos


def test_nd_pfn_sb_offsets_are_pfn_h():
    off, size = offsets(nv.nd_pfn_sb)
    assert size == 4096
    assert off == {"signature": 0, "uuid": 16, "parent_uuid": 32, "flags": 48, "version_major": 52,
                   "version_minor": 54, "dataoff": 56, "npfns": 64, "mode": 72, "start_pad": 76, "end_trunc": 80,
                   "align": 84, "page_size": 88, "page_struct_size": 92, "padding": 94, "checksum": 4088}


def test_label_offsets_are_label_h():
    off, size = offsets(nv.nd_namespace_index)
    assert size == 72
    assert off == {"sig": 0, "flags": 16, "labelsize": 19, "seq": 20, "myoff": 24, "mysize": 32, "otheroff": 40,
                   "labeloff": 48, "nslot": 56, "major": 60, "minor": 62, "checksum": 64}
    off, size = offsets(nv.nd_namespace_label)
    assert size == nv.ND_LABEL_V1_2_SIZE == 256
    assert (off["flags"], off["nlabel"], off["position"], off["isetcookie"], off["lbasize"], off["dpa"],
            off["rawsize"], off["slot"], off["align"], off["type_guid"], off["abstraction_guid"],
            off["checksum"]) == (80, 84, 86, 88, 96, 104, 112, 120, 124, 128, 144, 248)


# --- nd_fletcher64 ----------------------------------------------------------------------------------
def test_fletcher_by_hand():
    assert nd_fletcher64(b"") == 0
    # words 1, 2: lo = 1, 3; hi = 1, 4
    assert nd_fletcher64(b"\x01\0\0\0\x02\0\0\0") == (4 << 32) | 3
    # lo32 wraps at 2^32; trailing bytes that make no whole word are ignored (len / sizeof(u32))
    assert nd_fletcher64(b"\xff\xff\xff\xff\x02\0\0\0\x07") == ((0xFFFFFFFF + 1) << 32) % 2**64 | 1
    # hi32 is a u64, but `hi32 << 32` keeps only its low 32 bits
    many = b"\xff\xff\xff\xff" * 3
    assert nd_fletcher64(many) == literal_fletcher64(many)
    # le=False: the CPU's order (every kernel caller passes le=1)
    native = literal_fletcher64(b"\x01\0\0\0" if sys.byteorder == "little" else b"\0\0\0\x01")
    assert nd_fletcher64(b"\x01\0\0\0", le=False) == native


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_fletcher_matches_literal(data):
    assert nd_fletcher64(data) == literal_fletcher64(data)


# --- read_info_block ----------------------------------------------------------------------------------
def test_fsdax_pmem_block_as_nd_pfn_init_writes_it():
    block, dataoff, end_trunc = nd_pfn_init_block()
    # 1 GiB at a 2 MiB-aligned start: npfns = 262142, 8K + 64 * 262142 = 16785280 -> 9 * 2 MiB
    assert (dataoff, end_trunc) == (0x1200000, 0)
    info = read_info_block(reader(namespace_image(block)), SZ_1G, parent_uuid=U_NS00, ns_start=0x240000000)
    assert info == PfnInfo("fsdax", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "11223344-5566-7788-9900-aabbccddeeff",
                           0, 1, 4, 0x1200000, (SZ_1G - 0x1200000) // 4096, "pmem", 0, 0, SZ_2M, 4096, 64)
    assert info.data_start == 0x1200000


def test_fsdax_ram_and_devdax_blocks():
    block, dataoff, _ = nd_pfn_init_block(mode=1, size=512 << 20)
    info = read_info_block(reader(namespace_image(block)), 512 << 20)
    assert (info.signature, info.mode, info.dataoff) == ("fsdax", "ram", SZ_2M)
    block, dataoff, _ = nd_pfn_init_block(sig=nv.DAX_SIG, size=512 << 20)
    info = read_info_block(reader(namespace_image(block)), 512 << 20)
    # npfns = 131070, 8K + 64 * 131070 = 8396672 -> 5 * 2 MiB
    assert (info.signature, info.mode, info.dataoff) == ("devdax", "pmem", 0xA00000)


def test_end_trunc_when_the_end_is_not_aligned():
    start, size = 0x240000000, SZ_1G + (1 << 20)  # ends 1 MiB past a 2 MiB boundary
    block, dataoff, end_trunc = nd_pfn_init_block(start=start, size=size)
    assert end_trunc == 1 << 20
    info = read_info_block(reader(namespace_image(block)), size, ns_start=start)
    assert info.end_trunc == 1 << 20
    layer = NamespaceLayer(info, size, Space(NAMESPACE, "namespace0.0"), Space(BLOCK, "pmem0"))
    # set_capacity((size - pfn_pad - data_offset) / 512), pfn_pad = start_pad + end_trunc
    assert layer.data_size == (size - end_trunc - dataoff) // 512 * 512
    last = layer.map(size - end_trunc - 1, 2)
    assert isinstance(last[0], Hop) and last[0].offset == layer.data_size - 1
    assert isinstance(last[1], Dropped) and last[1].kind == "outside-device" and "end_trunc" in last[1].reason


def test_no_signature_is_a_raw_namespace():
    assert read_info_block(reader(bytes(SZ_8K)), SZ_8K) is None
    assert read_info_block(reader(b"x" * 100), 100) is None               # too small to hold one
    assert read_info_block(reader(bytes(4096) + b"NVDIMM_BTT_INFO\0" + bytes(4080)), SZ_8K) is None  # a BTT


def test_older_minor_versions_take_the_kernels_defaults():
    block, dataoff, _ = nd_pfn_init_block(minor=0)
    put(block, 76, "<I", 0x1000)      # start_pad and end_trunc did not exist before minor 1: ignored
    put(block, 80, "<I", 0x2000)
    put(block, 84, "<I", 0x12345)     # align did not exist before minor 2: 1 << ilog2(dataoff)
    put(block, 88, "<I", 123)         # page_size, page_struct_size did not exist before minor 4
    put(block, 92, "<H", 1)
    info = read_info_block(reader(namespace_image(seal(block))), SZ_1G)
    assert (info.start_pad, info.end_trunc, info.align, info.page_size, info.page_struct_size) == \
        (0, 0, 1 << (dataoff.bit_length() - 1), 4096, 64)
    assert info.align == 0x1000000  # ilog2(0x1200000) = 24
    block, _, _ = nd_pfn_init_block(minor=1)
    put(block, 84, "<I", 0x12345)
    info = read_info_block(reader(namespace_image(seal(block))), SZ_1G)
    assert info.align == 0x1000000
    block, _, _ = nd_pfn_init_block(minor=3)
    put(block, 88, "<I", 0)
    info = read_info_block(reader(namespace_image(seal(block))), SZ_1G)
    assert (info.page_size, info.page_struct_size) == (4096, 64)


def damaged(edit, size=SZ_1G, **kw):
    block, _, _ = nd_pfn_init_block()
    block = edit(block)
    with pytest.raises(CorruptError) as e:
        read_info_block(reader(namespace_image(block)), size, **kw)
    text = one_line(e.value)
    assert "nd_pfn_sb" in text and "daddr 0x8" in text
    return text


def test_damaged_blocks():
    assert "bad checksum" in damaged(lambda b: put(b, 100, "<B", 1))
    assert "version 2.4" in damaged(lambda b: seal(put(b, 52, "<H", 2)))
    assert "version 0.4" in damaged(lambda b: seal(put(b, 52, "<H", 0)))
    assert "mode 0" in damaged(lambda b: seal(put(b, 72, "<I", 0)))
    assert "mode 3" in damaged(lambda b: seal(put(b, 72, "<I", 3)))
    assert "beyond the namespace" in damaged(lambda b: seal(put(b, 56, "<Q", SZ_1G)))
    assert "past the 8 KiB" in damaged(lambda b: seal(put(b, 56, "<Q", 0x1000)))
    assert "page-aligned" in damaged(lambda b: seal(put(b, 56, "<Q", 0x1200200)))
    assert "leave no data" in damaged(lambda b: seal(put(b, 80, "<I", SZ_1G - 0x1200000)))
    assert "align" in damaged(lambda b: seal(put(b, 84, "<I", 3 << 20)))
    assert "page_size" in damaged(lambda b: seal(put(b, 88, "<I", 1000)))
    assert "page_struct_size" in damaged(lambda b: seal(put(b, 92, "<H", 40)))
    assert "parent_uuid" in damaged(lambda b: b, parent_uuid=bytes(16))
    assert "not aligned" in damaged(lambda b: b, ns_start=0x240001000)


def test_truncated_blocks():
    block, _, _ = nd_pfn_init_block()
    image = namespace_image(block)
    with pytest.raises(CorruptError, match="truncated"):
        read_info_block(reader(image[:5000]), SZ_1G)  # the image ends inside the block
    with pytest.raises(CorruptError, match="truncated") as e:
        read_info_block(reader(image), 6000)          # the namespace ends inside the block
    one_line(e.value)


# --- NamespaceLayer -----------------------------------------------------------------------------------
NS, PM = Space(NAMESPACE, "namespace0.0"), Space(BLOCK, "pmem0")


def fsdax_layer(mode=2):
    block, _, _ = nd_pfn_init_block(mode=mode)
    return NamespaceLayer(read_info_block(reader(namespace_image(block)), SZ_1G), SZ_1G, NS, PM)


def kinds(steps):
    return [(s.kind, s.offset, s.length) if isinstance(s, Dropped) else (str(s.space), s.offset, s.length)
            for s in steps]


def test_map_dev_layout():
    layer = fsdax_layer()
    assert (layer.data_start, layer.data_size) == (0x1200000, SZ_1G - 0x1200000)
    assert kinds(layer.map(0, SZ_1G + 1)) == [
        ("namespace-metadata", 0, 4096), ("namespace-metadata", 4096, 4096),
        ("struct-page-reserve", 8192, 0x1200000 - 8192), ("pmem0", 0, SZ_1G - 0x1200000),
        ("outside-device", SZ_1G, 1)]
    hop = layer.map(0x1200000 + 4096, 512)[0]
    assert hop.arithmetic == f"byte {0x1201000} - dataoff 0x1200000 = byte 4096 of pmem0"
    assert "not recoverable" in layer.map(0x11FFFFF, 1)[0].reason


def test_map_mem_layout_is_padding():
    layer = fsdax_layer(mode=1)
    assert kinds(layer.map(SZ_8K - 1, SZ_2M)) == [("namespace-metadata", SZ_8K - 1, 1),
                                                  ("alignment-padding", SZ_8K, SZ_2M - SZ_8K),
                                                  ("pmem0", 0, SZ_8K - 1)]


def test_raw_namespace_is_identity():
    layer = NamespaceLayer(None, SZ_1G + 100, NS, PM)
    assert kinds(layer.map(SZ_1G - 1, 200)) == [("pmem0", SZ_1G - 1, 1), ("outside-device", SZ_1G, 100),
                                                ("outside-device", SZ_1G + 100, 99)]


def test_legacy_start_pad_follows_block_io():
    info = PfnInfo("fsdax", "", "", 0, 1, 1, 0x200000, 0, "ram", 0x100000, 0, SZ_2M, 4096, 64)
    layer = NamespaceLayer(info, SZ_1G, NS, PM)
    assert layer.data_start == 0x300000  # pfnN.M/resource - ns start = start_pad + dataoff
    hop = layer.map(0x300000, 1)[0]
    assert hop.offset == 0 and "start_pad 0x100000" in hop.arithmetic and "byte 1048576" in hop.arithmetic


# --- a sysfs tree as the kernel lays it out -------------------------------------------------------------
class SysfsTree:
    """Files and links as the kernel makes them (formats in comments: the show() routine that prints each)."""

    BUS = "devices/platform/ACPI0012:00/ndbus0"

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(os.path.join(self.root, "bus/nd/devices"), exist_ok=True)
        for d in ("class/block", "block", "dev/block"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)

    def link(self, at, target):
        """A relative link, as sysfs makes them (../../devices/...)."""
        at = os.path.join(self.root, at)
        os.symlink(os.path.relpath(os.path.join(self.root, target), os.path.dirname(at)), at)

    def nd_device(self, rel, devtype):
        self.write(f"{rel}/devtype", f"{devtype}\n")           # bus.c devtype_show: "%s\n", dev->type->name
        self.write(f"{rel}/modalias", "nd:t0\n")                # bus.c modalias_show (value immaterial here)
        self.link(f"bus/nd/devices/{os.path.basename(rel)}", rel)

    def region(self, n, start, size, mappings=1):
        rel = f"{self.BUS}/region{n}"
        self.nd_device(rel, "nd_pmem")                          # region_devs.c nd_pmem_device_type
        self.write(f"{rel}/resource", f"{start:#x}\n")          # resource_show "%#llx\n", 0400
        self.write(f"{rel}/size", f"{size}\n")                  # size_show "%llu\n"
        self.write(f"{rel}/mappings", f"{mappings}\n")          # mappings_show "%d\n"
        for i in range(mappings):                               # mappingN: "%s,%llu,%llu,%d\n"
            self.write(f"{rel}/mapping{i}", f"nmem{n},0,{size},{i}\n")
        self.write(f"{rel}/badblocks", "")                      # badblocks_show: "%llu %u\n" per entry
        self.write(f"{rel}/nstype", "6\n")                      # ND_DEVICE_NAMESPACE_PMEM
        return rel

    def namespace(self, region, n, m, start, size, mode, uuid=None, holder="", io=False):
        rel = f"{self.BUS}/region{region}/namespace{n}.{m}"
        self.nd_device(rel, "nd_namespace_io" if io else "nd_namespace_pmem")
        self.write(f"{rel}/size", f"{size}\n")                  # size_show "%llu\n"
        # resource_show "%#llx\n" (DEVICE_ATTR_ADMIN_RO); -ENXIO when size is 0: a copy holds an empty file
        self.write(f"{rel}/resource", f"{start:#x}\n" if size else "")
        self.write(f"{rel}/mode", f"{mode}\n")                  # mode_show: raw / safe / memory / dax
        self.write(f"{rel}/holder", f"{holder}\n")              # holder_show: dev_name(claim) or ""
        self.write(f"{rel}/force_raw", "0\n")
        if not io:                                              # uuid is not visible on nd_namespace_io
            self.write(f"{rel}/uuid", f"{uuid}\n" if uuid else "\n")  # "%pUb\n"
        return rel

    def pfn(self, kind, region, n, m, namespace="", mode="none", align=SZ_2M, uuid=None, resource=None,
            size=None, align_fmt="%ld"):
        rel = f"{self.BUS}/region{region}/{kind}{n}.{m}"
        self.nd_device(rel, "nd_pfn" if kind == "pfn" else "nd_dax")
        self.write(f"{rel}/namespace", f"{namespace}\n")        # namespace_show: dev_name(ndns) or ""
        self.write(f"{rel}/mode", f"{mode}\n")                  # mode_show: ram / pmem / none
        self.write(f"{rel}/align", (align_fmt % align) + "\n")  # align_show "%ld\n" (old kernels "%lx\n")
        self.write(f"{rel}/uuid", f"{uuid}\n" if uuid else "\n")
        self.write(f"{rel}/supported_alignments", "4096 2097152 1073741824 \n")
        # resource_show "%#llx\n" = res.start + start_pad + dataoff (ADMIN_RO); size_show "%llu\n" =
        # resource_size - start_pad - end_trunc - dataoff; both -ENXIO while disabled (a copy: empty files)
        self.write(f"{rel}/resource", f"{resource:#x}\n" if resource is not None else "")
        self.write(f"{rel}/size", f"{size}\n" if size is not None else "")
        return rel

    def disk(self, parent, name, major, minor, size_bytes):
        rel = f"{parent}/block/{name}"
        self.write(f"{rel}/dev", f"{major}:{minor}\n")          # print_dev_t "%u:%u\n"
        self.write(f"{rel}/size", f"{size_bytes // 512}\n")     # disk_size_show "%llu\n", 512-byte sectors
        self.write(f"{rel}/ro", "0\n")
        self.write(f"{rel}/range", "0\n")
        self.write(f"{rel}/ext_range", "256\n")
        self.write(f"{rel}/badblocks", "")
        self.link(f"class/block/{name}", rel)                   # /sys/class/block/NAME -> ../../devices/...
        self.link(f"block/{name}", rel)                         # /sys/block/DISK -> ../devices/...
        self.link(f"dev/block/{major}:{minor}", rel)            # /sys/dev/block/M:m -> ../../devices/...
        return rel

    def partition(self, disk_rel, name, number, start_sect, nr_sects, major, minor):
        rel = f"{disk_rel}/{name}"
        self.write(f"{rel}/dev", f"{major}:{minor}\n")
        self.write(f"{rel}/partition", f"{number}\n")           # part_partition_show "%d\n"
        self.write(f"{rel}/start", f"{start_sect}\n")           # part_start_show "%llu\n", 512-byte sectors
        self.write(f"{rel}/size", f"{nr_sects}\n")              # part_size_show "%llu\n"
        self.write(f"{rel}/ro", "0\n")
        self.link(f"class/block/{name}", rel)
        self.link(f"dev/block/{major}:{minor}", rel)
        return rel


# The machine: region0 (4 GiB) holds an fsdax map=dev namespace at its base, a map=mem one 1.5 GiB in (after an
# unallocated gap), a devdax one at 2 GiB and unallocated space to its end; region1 (1 GiB, after a gap in the
# physical address space) is one raw label-less namespace. pmem0 carries two partitions.
R0, R0_SIZE = 0x240000000, 4 * SZ_1G
R1, R1_SIZE = 0x380000000, SZ_1G
NS00, NS00_SIZE, DATAOFF00 = R0, SZ_1G, 0x1200000
NS01, NS01_SIZE, DATAOFF01 = R0 + 0x60000000, 512 << 20, SZ_2M
NS02, NS02_SIZE, DATAOFF02 = R0 + 0x80000000, 512 << 20, 0xA00000
P1_START, P1_SECTS, P2_START, P2_SECTS = 2048, 1024000, 1026048, 1032192
UUID_NS00 = "11223344-5566-7788-9900-aabbccddeeff"


@pytest.fixture
def machine(tmp_path):
    t = SysfsTree(tmp_path)
    t.region(0, R0, R0_SIZE)
    t.region(1, R1, R1_SIZE, mappings=0)
    # each fsdax/devdax device prints resource = ns start + dataoff and size = ns size - end_trunc - dataoff
    for (m, start, size, dataoff, kind, pmode, holder) in (
            (0, NS00, NS00_SIZE, DATAOFF00, "pfn", "pmem", "pfn0.0"),
            (1, NS01, NS01_SIZE, DATAOFF01, "pfn", "ram", "pfn0.1"),
            (2, NS02, NS02_SIZE, DATAOFF02, "dax", "pmem", "dax0.0")):
        block, off, end_trunc = nd_pfn_init_block(sig=nv.DAX_SIG if kind == "dax" else nv.PFN_SIG,
                                                  mode=2 if pmode == "pmem" else 1, start=start, size=size)
        assert (off, end_trunc) == (dataoff, 0)  # the constants above are nd_pfn_init's
        t.namespace(0, 0, m, start, size, "dax" if kind == "dax" else "memory",
                    UUID_NS00 if m == 0 else f"00000000-0000-0000-0000-00000000000{m}", holder)
        t.pfn(kind, 0, 0, m if kind == "pfn" else 0, f"namespace0.{m}", pmode, uuid=f"a-{m}",
              resource=start + dataoff, size=size - dataoff)
    t.namespace(0, 0, 3, 0, 0, "raw")                                      # the seed: no allocation
    t.pfn("pfn", 0, 0, 2)                                                  # seeds: no namespace
    t.pfn("dax", 0, 0, 1)
    # pmem_attach_disk: capacity (size - pfn_pad - data_offset) / 512, disk added under the pfn device
    d0 = t.disk(f"{t.BUS}/region0/pfn0.0", "pmem0", 259, 0, NS00_SIZE - DATAOFF00)
    t.partition(d0, "pmem0p1", 1, P1_START, P1_SECTS, 259, 1)
    t.partition(d0, "pmem0p2", 2, P2_START, P2_SECTS, 259, 2)
    t.disk(f"{t.BUS}/region0/pfn0.1", "pmem0.1", 259, 3, NS01_SIZE - DATAOFF01)  # nsidx 1: "pmem%d.%d"
    t.namespace(1, 1, 0, R1, R1_SIZE, "raw", io=True)
    t.disk(f"{t.BUS}/region1/namespace1.0", "pmem1", 259, 4, R1_SIZE)          # raw: under the namespace
    sda = t.disk("devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0", "sda", 8, 0, 8 * SZ_1G)
    t.partition(sda, "sda1", 1, 2048, 1000000, 8, 1)
    return Sysfs(str(tmp_path))


def test_sysfs_devices(machine):
    assert [(r.name, r.start, r.size, r.devtype, r.mappings) for r in machine.regions()] == [
        ("region0", R0, R0_SIZE, "nd_pmem", 1), ("region1", R1, R1_SIZE, "nd_pmem", 0)]
    nss = machine.namespaces()
    assert [(n.name, n.start, n.size, n.mode, n.holder, n.disk) for n in nss] == [
        ("namespace0.0", NS00, NS00_SIZE, "memory", "pfn0.0", None),
        ("namespace0.1", NS01, NS01_SIZE, "memory", "pfn0.1", None),
        ("namespace0.2", NS02, NS02_SIZE, "dax", "dax0.0", None),
        ("namespace1.0", R1, R1_SIZE, "raw", "", "pmem1")]
    assert nss[0].uuid == UUID_NS00 and nss[3].uuid is None and nss[3].devtype == "nd_namespace_io"
    pfns = machine.pfn_devices()
    assert [(p.name, p.kind, p.namespace, p.mode, p.align, p.start, p.size, p.disk) for p in pfns] == [
        ("dax0.0", "dax", "namespace0.2", "pmem", SZ_2M, NS02 + DATAOFF02, NS02_SIZE - DATAOFF02, None),
        ("pfn0.0", "pfn", "namespace0.0", "pmem", SZ_2M, NS00 + DATAOFF00, NS00_SIZE - DATAOFF00, "pmem0"),
        ("pfn0.1", "pfn", "namespace0.1", "ram", SZ_2M, NS01 + DATAOFF01, NS01_SIZE - DATAOFF01, "pmem0.1")]


def test_sysfs_block_devices(machine):
    p1 = machine.block_device("pmem0p1")
    assert (p1.devt, p1.disk, p1.partition, p1.start, p1.size) == ("259:1", "pmem0", 1, P1_START * 512,
                                                                   P1_SECTS * 512)
    d = machine.block_device("pmem0")
    assert (d.disk, d.partition, d.start, d.size) == ("pmem0", None, 0, NS00_SIZE - DATAOFF00)
    assert machine.name_of_devt("259:2") == "pmem0p2"
    assert machine.name_of_devt("259:3") == "pmem0.1"
    assert [p.name for p in machine.partitions("pmem0")] == ["pmem0p1", "pmem0p2"]


def route(layers, target, addr, length=1):
    stack = Stack(layers, Space(BLOCK, target))
    r = stack.route(Extent(Space(PHYS), addr, length, "test"))
    return [p[-2] if isinstance(p[-1], Hop) and p[-1].space.kind == FS else p[-1] for p in r.paths]


def where(steps):
    """[(dropped kind | space name, offset)] of each path's last step (the filesystem hop left out)."""
    def kind(s):
        return f"elsewhere {s.space}" if s.kind in ("not-in-stack", "elsewhere") else s.kind

    return [(kind(s), s.offset) if isinstance(s, Dropped) else (str(s.space), s.offset) for s in steps]


def test_phys_to_pmem0_off_by_one(machine):
    layers, notes = machine.layers_to_block("pmem0")
    assert [type(x).__name__ for x in layers] == ["PhysLayer", "RegionLayer", "NamespaceLayer"]
    assert any("0x1200000" in n for n in notes)
    cases = {
        R0 - 1: ("not-pmem", R0 - 1),
        R0: ("namespace-metadata", 0),
        R0 + 4095: ("namespace-metadata", 4095),
        R0 + 4096: ("namespace-metadata", 4096),
        R0 + 8191: ("namespace-metadata", 8191),
        R0 + 8192: ("struct-page-reserve", 8192),
        NS00 + DATAOFF00 - 1: ("struct-page-reserve", DATAOFF00 - 1),
        NS00 + DATAOFF00: ("pmem0", 0),
        NS00 + NS00_SIZE - 1: ("pmem0", NS00_SIZE - DATAOFF00 - 1),
        NS00 + NS00_SIZE: ("unallocated-region-space", NS00_SIZE),
        NS01 - 1: ("unallocated-region-space", NS01 - R0 - 1),
        NS01: ("elsewhere namespace0.1", 0),
        NS02 + NS02_SIZE: ("unallocated-region-space", NS02 + NS02_SIZE - R0),
        R0 + R0_SIZE - 1: ("unallocated-region-space", R0_SIZE - 1),
        R0 + R0_SIZE: ("not-pmem", R0 + R0_SIZE),
        R1 - 1: ("not-pmem", R1 - 1),
        R1: ("elsewhere region1", 0),
    }
    for addr, want in cases.items():
        assert where(route(layers, "pmem0", addr)) == [want], hex(addr)
    # one extent across the data start: both sides (Route puts what reaches the filesystem first)
    assert where(route(layers, "pmem0", NS00 + DATAOFF00 - 512, 1024)) == [("pmem0", 0),
                                                                          ("struct-page-reserve", DATAOFF00 - 512)]


def test_pmem_offset_is_the_kernels_formula(machine):
    layers, _ = machine.layers_to_block("pmem0")
    # pmem_attach_disk: phys_addr = namespaceN.M/resource; data_offset = dataoff = pfnN.M/resource - phys_addr
    phys_addr = int(open(os.path.join(machine.nd, "namespace0.0/resource")).read(), 16)
    data_offset = int(open(os.path.join(machine.nd, "pfn0.0/resource")).read(), 16) - phys_addr
    for pfn in ((NS00 + DATAOFF00) >> 12, (NS00 + DATAOFF00) >> 12 | 0x1234, (NS00 + NS00_SIZE >> 12) - 1):
        # pmem_pagemap_memory_failure: offset = PFN_PHYS(pfn) - pmem->phys_addr - pmem->data_offset
        offset = (pfn << 12) - phys_addr - data_offset
        steps = route(layers, "pmem0", pfn << 12, 4096)
        assert [(str(s.space), s.offset, s.length) for s in steps] == [("pmem0", offset, 4096)]


def test_phys_to_partition(machine):
    layers, _ = machine.layers_to_block("pmem0p1")
    assert layers[-1].name == "partition pmem0p1"
    base = NS00 + DATAOFF00
    assert where(route(layers, "pmem0p1", base + P1_START * 512 - 1)) == [("unpartitioned", P1_START * 512 - 1)]
    assert where(route(layers, "pmem0p1", base + P1_START * 512)) == [("pmem0p1", 0)]
    end = (P1_START + P1_SECTS) * 512
    assert where(route(layers, "pmem0p1", base + end - 1)) == [("pmem0p1", P1_SECTS * 512 - 1)]
    steps = route(layers, "pmem0p1", base + end)
    assert where(steps) == [("other-partition", end)] and "pmem0p2" in steps[0].reason
    steps = route(layers, "pmem0p1", base + P1_START * 512 + 4096)
    assert isinstance(steps[0], Hop) and steps[0].arithmetic == \
        f"byte {P1_START * 512 + 4096} - start 2048 sectors (0x100000) = byte 4096 of pmem0p1"
    # the same device by number and by path
    assert [x.describe() for x in machine.layers_to_block("259:1")[0]] == [x.describe() for x in layers]
    assert [x.describe() for x in machine.layers_to_block("/dev/pmem0p1")[0]] == [x.describe() for x in layers]


def test_phys_to_map_mem_and_raw(machine):
    layers, _ = machine.layers_to_block("pmem0.1")
    assert where(route(layers, "pmem0.1", NS01 + SZ_8K)) == [("alignment-padding", SZ_8K)]
    assert where(route(layers, "pmem0.1", NS01 + DATAOFF01)) == [("pmem0.1", 0)]
    assert where(route(layers, "pmem0.1", NS00 + DATAOFF00)) == [("elsewhere namespace0.0", DATAOFF00)]
    layers, notes = machine.layers_to_block("pmem1")
    assert layers[-1].info is None and "raw namespace1.0" in notes[0]
    assert where(route(layers, "pmem1", R1)) == [("pmem1", 0)]
    assert where(route(layers, "pmem1", R1 + R1_SIZE - 1)) == [("pmem1", R1_SIZE - 1)]
    assert where(route(layers, "pmem1", R1 + R1_SIZE)) == [("not-pmem", R1 + R1_SIZE)]


def test_sysfs_layer_matches_the_info_block(machine):
    """What pfn0.0/resource implies equals what the info block nd_pfn_init wrote says."""
    sys_layer = machine.layers_to_block("pmem0")[0][-1]
    block, _, _ = nd_pfn_init_block(start=NS00, size=NS00_SIZE)
    info = read_info_block(reader(namespace_image(block)), NS00_SIZE, parent_uuid=UUID_NS00, ns_start=NS00)
    blk_layer = NamespaceLayer(info, NS00_SIZE, Space(NAMESPACE, "namespace0.0"), Space(BLOCK, "pmem0"))
    assert (sys_layer.data_start, sys_layer.data_size) == (blk_layer.data_start, blk_layer.data_size)
    for off in (0, 8192, DATAOFF00 - 1, DATAOFF00, NS00_SIZE - 1, NS00_SIZE):
        assert kinds(sys_layer.map(off, 1)) == kinds(blk_layer.map(off, 1))


def test_not_on_the_nd_bus_gets_only_the_partition(machine):
    layers, notes = machine.layers_to_block("sda1")
    assert [x.name for x in layers] == ["partition sda1"] and "not on the nd bus" in notes[0]


def test_old_kernel_hex_align(tmp_path):
    t = SysfsTree(tmp_path)
    t.region(0, R0, R0_SIZE)
    t.pfn("pfn", 0, 0, 0, "namespace0.0", "pmem", align=SZ_2M, align_fmt="%lx")  # prints 200000
    assert Sysfs(str(tmp_path)).pfn_device("pfn0.0").align == SZ_2M


def test_sysfs_errors(machine, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="no block device") as e:
        machine.layers_to_block("pmem9")
    one_line(e.value)
    with pytest.raises(UsageError, match="character device"):
        machine.layers_to_block("dax0.0")
    with pytest.raises(UsageError, match="not a device number"):
        machine.name_of_devt("259-1")
    with pytest.raises(UsageError, match="no block device with that number"):
        machine.name_of_devt("259:99")
    os.remove(os.path.join(machine.nd, "namespace0.0", "resource"))
    with pytest.raises(UsageError, match="namespace0.0/resource is missing") as e:
        machine.layers_to_block("pmem0")
    one_line(e.value)
    with pytest.raises(UsageError, match="no nd bus"):
        Sysfs(str(tmp_path / "nothing")).regions()

    real_open = open

    def root_only(path, *a, **kw):
        if os.path.basename(str(path)) == "resource":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(sysfs_mod, "open", root_only, raising=False)
    with pytest.raises(DeviceError, match="readable only by root") as e:
        machine.regions()
    one_line(e.value)


def test_disabled_pfn_device(machine, monkeypatch):
    real_open = open

    def enxio(path, *a, **kw):
        if str(path).endswith("pfn0.0/resource"):
            raise OSError(errno.ENXIO, "No such device or address", path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(sysfs_mod, "open", enxio, raising=False)
    assert machine.pfn_device("pfn0.0").start is None
    with pytest.raises(DeviceError, match="pfn0.0/resource") as e:
        machine.layers_to_block("pmem0")
    one_line(e.value)


def test_btt_is_refused(tmp_path):
    t = SysfsTree(tmp_path)
    t.region(0, R0, R0_SIZE)
    t.namespace(0, 0, 0, R0, SZ_1G, "safe", holder="btt0.0")
    rel = f"{t.BUS}/region0/btt0.0"
    t.nd_device(rel, "nd_btt")
    t.disk(rel, "pmem0s", 259, 0, SZ_1G - (1 << 20))
    with pytest.raises(UnsupportedError, match="BTT") as e:
        Sysfs(str(tmp_path)).layers_to_block("pmem0s")
    one_line(e.value)


def test_inconsistent_pfn_numbers(tmp_path):
    t = SysfsTree(tmp_path)
    t.region(0, R0, R0_SIZE)
    t.namespace(0, 0, 0, R0, SZ_1G, "memory", UUID_NS00, "pfn0.0")
    t.pfn("pfn", 0, 0, 0, "namespace0.0", "pmem", resource=R0 + DATAOFF00, size=SZ_1G)  # size too big
    t.disk(f"{t.BUS}/region0/pfn0.0", "pmem0", 259, 0, SZ_1G - DATAOFF00)
    with pytest.raises(UsageError, match="do not fit") as e:
        Sysfs(str(tmp_path)).layers_to_block("pmem0")
    one_line(e.value)


# --- fuzz: random info blocks, only FsdaxError escapes -------------------------------------------------
FIELD_AT = {"signature": (0, "16s"), "version_major": (52, "<H"), "version_minor": (54, "<H"), "dataoff": (56, "<Q"),
            "npfns": (64, "<Q"), "mode": (72, "<I"), "start_pad": (76, "<I"), "end_trunc": (80, "<I"),
            "align": (84, "<I"), "page_size": (88, "<I"), "page_struct_size": (92, "<H")}
FIELD_VALUE = {"<H": st.integers(0, 2**16 - 1), "<I": st.one_of(st.integers(0, 2**32 - 1),
                                                               st.sampled_from([0, 1, 2, 4096, SZ_2M, SZ_1G])),
               "<Q": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 1 << 32)),
               "16s": st.sampled_from([nv.PFN_SIG, nv.DAX_SIG, b"NVDIMM_PFN_INFO\1", bytes(16)])}


@st.composite
def info_blocks(draw):
    """A block nd_pfn_init would write for a random namespace, then up to three fields set to anything."""
    size = draw(st.integers(8, 2048)) * SZ_2M + draw(st.sampled_from([0, 0, 4096, 1 << 20]))
    start = draw(st.integers(1, 1 << 20)) * SZ_2M
    block, _, _ = nd_pfn_init_block(sig=draw(st.sampled_from([nv.PFN_SIG, nv.DAX_SIG])), mode=draw(st.sampled_from(
        [1, 2])), start=start, size=size, minor=draw(st.integers(0, 5)))
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_AT)), max_size=3)):
        off, fmt = FIELD_AT[name]
        put(block, off, fmt, draw(FIELD_VALUE[fmt]))
    if draw(st.booleans()) or draw(st.booleans()):
        seal(block)
    image = namespace_image(block)
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, len(image))))
    declared = draw(st.one_of(st.just(size), st.just(size), st.integers(0, 1 << 42)))
    return (image if cut is None else image[:cut]), declared, start


def check_block(image, size, start, probes):
    try:
        info = read_info_block(reader(image), size, ns_start=start)
    except FsdaxError as e:
        one_line(e)
        return
    if info is None:
        return
    assert SZ_8K <= info.dataoff < size and info.start_pad + info.end_trunc + info.dataoff < size
    layer = NamespaceLayer(info, size, NS, PM)
    assert 0 < layer.data_size and layer.data_end <= size
    for off, length in probes:
        steps = layer.map(off, length)
        assert sum(s.length for s in steps) == length  # every byte accounted for, once, in order
        pos = off
        for s in steps:
            upper = s.offset if isinstance(s, Dropped) else s.offset + layer.data_start
            assert upper == pos
            pos += s.length


PROBES = st.lists(st.tuples(st.integers(0, 1 << 42), st.integers(1, 1 << 40)), max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blk=info_blocks(), probes=PROBES)
def test_fuzz_info_blocks(blk, probes):
    check_block(*blk, probes)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(min_size=16, max_size=200), sig=st.sampled_from([nv.PFN_SIG, nv.DAX_SIG]), sealed=st.booleans(),
       size=st.integers(0, 1 << 42), probes=PROBES)
def test_fuzz_random_bytes(raw, sig, sealed, size, probes):
    block = bytearray(raw.ljust(4096, b"\0"))
    block[0:16] = sig
    if sealed:
        seal(block)
    check_block(namespace_image(block), size, None, probes)
