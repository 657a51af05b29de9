"""A pmem namespace and the block device the kernel makes of it: the info block and the offset map.

An fsdax namespace (ndctl create-namespace -m fsdax) carries an info block, struct nd_pfn_sb, at namespace byte
4096; the pmem block device starts `dataoff` bytes into the namespace. The arithmetic is the kernel's:

- pmem_attach_disk (drivers/nvdimm/pmem.c): phys_addr = namespace start (nsio->res.start), size = namespace
  size, data_offset = dataoff, pfn_pad = size - range_len(pgmap.range) = start_pad + end_trunc, and the capacity
  is (size - pfn_pad - data_offset) / 512 sectors.
- __nvdimm_setup_pfn (drivers/nvdimm/pfn_devs.c): pgmap.range = [start + start_pad, end - end_trunc]; block I/O
  reads virt_addr(range.start) + data_offset + sector * 512, so /dev/pmemN byte 0 is namespace byte
  start_pad + dataoff (pfnN.M/resource prints the same sum).
- pmem_pagemap_memory_failure: offset = PFN_PHYS(pfn) - phys_addr - data_offset. With start_pad 0 (every block
  current kernels write: nd_pfn_init refuses a misaligned start instead of padding it) this is the same byte.
  A legacy block with start_pad != 0 is the case pfn.h calls broken: block I/O (where the filesystem's
  metadata went) sits start_pad bytes after where the dax path and memory_failure look. This layer follows the
  block-I/O path, which is where an image's bytes are, and says so in every hop.
- mode pmem (map=dev): the struct pages live in the namespace between the info-block reserve and dataoff
  (altmap: base + nd_info_block_reserve() .. base + dataoff); memory_failure_dev_pagemap answers a pfn there
  with "device metadata space is not recoverable". mode ram (map=mem): that span is alignment padding.
"""

from __future__ import annotations

import struct
import sys
import uuid as uuidlib
from dataclasses import dataclass

from fsdaxctl.errors import CorruptError, DeviceError, TruncatedError
from fsdaxctl.parsers.nvdimm import (
    DAX_SIG, ND_PFN_SB_CSUM_OFF, ND_PFN_SB_OFFSET, ND_PFN_SB_SIZE, PFN_MODE_PMEM, PFN_MODE_RAM, PFN_MODES, PFN_SIG,
    nd_pfn_sb,
)
from fsdaxctl.stack import Dropped, Hop, Layer, Space
from fsdaxctl.units import SECTOR

SZ_4K = 4096
SZ_8K = 8192
SZ_1G = 1 << 30
PAGE_SIZE = 4096  # what a pre-minor-4 block is taken to have been written with (x86-64, the common case)
MAX_STRUCT_PAGE_SIZE = 64  # nd_pfn_init's page_struct_size; nd_pfn_validate refuses less than sizeof(struct page)
_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1
_END = 1 << 64  # past any byte offset: the last piece of every map

SIGNATURES = {PFN_SIG: "fsdax", DAX_SIG: "devdax"}


def nd_fletcher64(buf: bytes, le: bool = True) -> int:
    """drivers/nvdimm/core.c nd_fletcher64: over whole u32 words, lo32 (u32) += word, hi32 (u64) += lo32, result
    hi32 << 32 | lo32 in a u64 (so only hi32's low half survives). le=False reads the words in the CPU's order,
    as the kernel does; every caller in the kernel passes le=1."""
    n = len(buf) // 4
    fmt = ("<" if le else ("<" if sys.byteorder == "little" else ">")) + f"{n}I"
    lo32 = hi32 = 0
    for word in struct.unpack_from(fmt, buf):
        lo32 = (lo32 + word) & _MASK32
        hi32 = (hi32 + lo32) & _MASK64
    return ((hi32 << 32) | lo32) & _MASK64


def nd_sb_checksum(block: bytes) -> int:
    """drivers/nvdimm/claim.c nd_sb_checksum: the fletcher of the 4 KiB block with its last 8 bytes zero."""
    return nd_fletcher64(bytes(block[:ND_PFN_SB_CSUM_OFF]) + bytes(8))


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


class Pieces:
    """An offset map as consecutive pieces from byte 0 to 2^64: make(a, b) turns bytes [a, b) of the upper space
    into a Hop or a Dropped. Built in order with upto(), so the pieces never overlap and leave no gap."""

    END = _END

    def __init__(self):
        self.items: list[tuple[int, int, object]] = []
        self.cursor = 0

    def upto(self, end: int, make) -> None:
        """The next piece: from where the last one ended to `end` (nothing if `end` is not past it)."""
        if end > self.cursor:
            self.items.append((self.cursor, end, make))
            self.cursor = end

    def map(self, offset: int, length: int) -> list[Hop | Dropped]:
        out: list[Hop | Dropped] = []
        end = offset + length
        for lo, hi, make in self.items:
            if hi <= offset:
                continue
            if lo >= end:
                break
            out.append(make(max(offset, lo), min(end, hi)))
        return out


@dataclass(frozen=True)
class PfnInfo:
    """What an info block says (or, source 'sysfs', what pfnN.M/ and namespaceN.M/ imply)."""

    signature: str        # 'fsdax' (NVDIMM_PFN_INFO) or 'devdax' (NVDIMM_DAX_INFO)
    uuid: str             # the pfn/dax instance's uuid, printed like the kernel's %pUb
    parent_uuid: str      # the namespace's uuid (all zero: a label-less namespace)
    flags: int
    version_major: int
    version_minor: int
    dataoff: int          # bytes from namespace base + start_pad to the data
    npfns: int
    mode: str             # 'none', 'ram' (map=mem) or 'pmem' (map=dev)
    start_pad: int        # with the kernel's defaults for fields older minor versions lack
    end_trunc: int
    align: int            # as recorded, or 1 << ilog2(dataoff) for minor < 2 (nd_pfn_validate)
    page_size: int
    page_struct_size: int
    source: str = "info block"

    @property
    def data_start(self) -> int:
        """Namespace byte that is byte 0 of the pmem block device (or of the device-dax range)."""
        return self.start_pad + self.dataoff

    @property
    def reserve(self) -> int:
        """nd_info_block_reserve(): ALIGN(SZ_8K, PAGE_SIZE), the space the info block keeps to itself."""
        return _align_up(SZ_8K, self.page_size or PAGE_SIZE)

    def describe(self) -> str:
        src = (f"info block v{self.version_major}.{self.version_minor}" if self.source == "info block"
               else f"from {self.source}")
        mapped = {"pmem": " (map=dev: struct pages on the device)", "ram": " (map=mem: struct pages in RAM)"}
        pad = f", start_pad {self.start_pad:#x}" if self.start_pad else ""
        return (f"{self.signature} {src}: mode {self.mode}{mapped.get(self.mode, '')}, dataoff "
                f"{self.dataoff:#x}{pad}, end_trunc {self.end_trunc:#x}, align {self.align:#x}")


def _uuid_text(raw: bytes) -> str:
    return str(uuidlib.UUID(bytes=bytes(raw)))  # %pUb: the 16 bytes in stored order


def read_info_block(read, size: int, parent_uuid: str | bytes | None = None,
                    ns_start: int | None = None) -> PfnInfo | None:
    """The info block of a namespace of `size` bytes, read with read(offset, length, what) -> bytes.

    None when namespace byte 4096 holds no pfn/dax signature (a raw namespace, or a BTT). Otherwise the block is
    checked as nd_pfn_validate checks it and a damaged one raises CorruptError naming what is wrong.
    `parent_uuid` (the namespace's uuid) and `ns_start` (its physical address) enable the two checks that need
    them. A forensic tool has to go on where the kernel would give up, so the message says what the kernel
    would do with such a block.
    """
    where = {"structure": "nd_pfn_sb", "daddr": ND_PFN_SB_OFFSET >> 9}
    if size < ND_PFN_SB_OFFSET + len(PFN_SIG):
        return None
    try:
        sig = read(ND_PFN_SB_OFFSET, len(PFN_SIG), "pmem info block signature")
    except DeviceError:
        return None  # nothing readable where the signature would be: no info block to speak of
    kind = SIGNATURES.get(bytes(sig))
    if kind is None:
        return None

    def corrupt(text: str, **facts) -> CorruptError:
        return CorruptError(f"{kind} info block at namespace byte 4096: {text}", **where, **facts)

    if size < ND_PFN_SB_OFFSET + ND_PFN_SB_SIZE:
        raise corrupt(f"truncated: the namespace is {size} bytes, the block ends at byte 8192")
    try:
        block = bytes(read(ND_PFN_SB_OFFSET, ND_PFN_SB_SIZE, "pmem info block"))
    except TruncatedError as e:
        raise corrupt(f"truncated: {e.message}") from None
    except DeviceError as e:
        raise corrupt(f"unreadable: {e.message}") from None
    if len(block) != ND_PFN_SB_SIZE:
        raise corrupt(f"truncated: {len(block)} of {ND_PFN_SB_SIZE} bytes")
    sb = nd_pfn_sb.parse(block)
    want = nd_sb_checksum(block)
    if sb.checksum != want:
        raise corrupt("bad checksum; the kernel ignores such a block and attaches the namespace raw",
                      expected=f"{want:#018x}", found=f"{sb.checksum:#018x}")
    if parent_uuid is not None:
        parent = parent_uuid if isinstance(parent_uuid, str) else _uuid_text(parent_uuid)
        if _uuid_text(sb.parent_uuid) != parent.lower():
            raise corrupt("parent_uuid is not this namespace's uuid (a stale block: the kernel ignores it)",
                          expected=parent.lower(), found=_uuid_text(sb.parent_uuid))
    # nd_pfn_validate never looks at version_major; a major other than 1 would be a layout nobody has defined.
    if sb.version_major != 1:
        raise corrupt(f"version {sb.version_major}.{sb.version_minor}: only version 1.x is defined (pfn.h)",
                      expected="1.x", found=f"{sb.version_major}.{sb.version_minor}")
    minor = sb.version_minor
    # Fields a minor version did not have take the values nd_pfn_validate gives them.
    start_pad, end_trunc = (sb.start_pad, sb.end_trunc) if minor >= 1 else (0, 0)
    align = sb.align if minor >= 2 else 0
    page_size, page_struct_size = (sb.page_size, sb.page_struct_size) if minor >= 4 else (PAGE_SIZE, 64)
    if sb.mode not in (PFN_MODE_RAM, PFN_MODE_PMEM):
        raise corrupt(f"mode {sb.mode} is neither 1 (ram) nor 2 (pmem); the kernel refuses the namespace",
                      expected="1 or 2", found=sb.mode)
    mode = PFN_MODES[sb.mode]
    offset = sb.dataoff
    if not _is_pow2(page_size) or not SZ_4K <= page_size <= 1 << 16:
        raise corrupt(f"page_size {page_size} is not a page size (a power of two, 4 KiB .. 64 KiB)",
                      found=page_size)
    if mode == "pmem" and page_struct_size < MAX_STRUCT_PAGE_SIZE:
        raise corrupt(f"page_struct_size {page_struct_size} is smaller than a struct page (64 bytes); the kernel "
                      "refuses the namespace", found=page_struct_size)
    reserve = _align_up(SZ_8K, page_size)
    if offset < reserve or offset % SZ_4K:
        raise corrupt(f"dataoff {offset:#x} is not a page-aligned offset past the {reserve >> 10} KiB the info "
                      "block reserves", found=f"{offset:#x}")
    if align == 0:
        align = 1 << (offset.bit_length() - 1)  # nd_pfn_validate: 1UL << ilog2(offset)
    elif not _is_pow2(align) or not SZ_4K <= align <= SZ_1G:
        raise corrupt(f"align {align:#x} is not a power of two between 4 KiB and 1 GiB", found=f"{align:#x}")
    if align > size:
        raise corrupt(f"align {align:#x} exceeds the namespace's {size} bytes", found=f"{align:#x}")
    if offset >= size:
        raise corrupt(f"dataoff {offset:#x} is beyond the namespace's {size} bytes (\"pfn array size exceeds "
                      "capacity\")", found=f"{offset:#x}")
    if start_pad + end_trunc + offset >= size:
        raise corrupt(f"start_pad {start_pad:#x} + end_trunc {end_trunc:#x} + dataoff {offset:#x} leave no data "
                      f"in a namespace of {size} bytes (\"bad offset with small namespace\")")
    if ns_start is not None and (ns_start + offset + start_pad) % align:
        raise corrupt(f"data at physical address {ns_start + start_pad + offset:#x} is not aligned to {align:#x} "
                      "(\"bad offset\": the kernel disables the namespace)")
    return PfnInfo(kind, _uuid_text(sb.uuid), _uuid_text(sb.parent_uuid), sb.flags, sb.version_major, minor,
                   offset, sb.npfns, mode, start_pad, end_trunc, align, page_size, page_struct_size)


class NamespaceLayer(Layer):
    """Raw namespace bytes -> the pmem block device's bytes (info=None: a raw namespace, the identity).

    probe.py builds it from an image's info block, sysfs.py from pfnN.M/resource and size.
    """

    def __init__(self, info: PfnInfo | None, size: int, upper: Space, lower: Space, name: str | None = None):
        self.info, self.size, self.upper, self.lower = info, size, upper, lower
        kind = info.signature if info is not None else "raw"
        self.name = name or f"{upper.name or 'namespace'} ({kind})"
        if info is None:
            self.data_start = 0
            avail = size
        else:
            self.data_start = info.data_start
            avail = size - info.start_pad - info.end_trunc - info.dataoff
        # set_capacity() counts whole 512-byte sectors: a sub-sector tail is in no device.
        self.data_size = max(0, avail) // SECTOR * SECTOR
        self.data_end = self.data_start + self.data_size
        self._pieces = self._layout()

    def describe(self) -> str:
        what = self.info.describe() if self.info else "raw namespace: no info block, byte for byte"
        return (f"{self.name}: {what}; bytes {self.data_start}..{self.data_end - 1} of {self.upper} are "
                f"{self.lower}")

    def _layout(self) -> Pieces:
        info, up, low = self.info, self.upper, self.lower
        pieces = Pieces()
        upto = pieces.upto

        def drop(kind, reason):
            return lambda a, b: self.drop(a, b - a, kind, reason)

        if info is None:
            upto(self.data_end, lambda a, b: self.hop(a, b - a, f"byte {a} of {up} = byte {a} of {low} (raw "
                                                                "namespace: no info block)"))
        else:
            sig, ds = info.signature, self.data_start
            reserve = min(info.reserve, ds)
            upto(min(SZ_4K, reserve), drop("namespace-metadata", f"namespace bytes 0..4095 of {up}: kept free "
                                           f"ahead of the {sig} info block; no device maps them"))
            upto(min(SZ_8K, reserve), drop("namespace-metadata", f"the {sig} info block (struct nd_pfn_sb) at "
                                           f"bytes 4096..8191 of {up}"))
            upto(reserve, drop("namespace-metadata", f"the info block's reserve, padded to the {info.page_size}-"
                               "byte page (nd_info_block_reserve)"))
            upto(min(info.start_pad + reserve, ds), drop(
                "alignment-padding", f"start_pad {info.start_pad:#x}: padding to the section the legacy info "
                "block aligned the start to"))
            if info.mode == "pmem":
                upto(ds, drop("struct-page-reserve",
                              f"the struct pages (memmap) of {low}, stored in the namespace before dataoff "
                              f"{info.dataoff:#x} (mode pmem, map=dev): device metadata space is not recoverable "
                              "(memory_failure_dev_pagemap); no filesystem owns it"))
            else:
                upto(ds, drop("alignment-padding",
                              f"padding between the info block and dataoff {info.dataoff:#x} to align the data "
                              f"to {info.align:#x} (mode {info.mode}: struct pages in RAM); unused"))
            pad = f" - start_pad {info.start_pad:#x}" if info.start_pad else ""

            def data(a, b):
                # pfn.h: with a legacy start_pad the dax path and memory_failure count from dataoff alone
                legacy = (f" (legacy start_pad: the kernel's dax path and memory_failure would call it byte "
                          f"{a - info.dataoff}, pfn.h)") if info.start_pad else ""
                return self.hop(a - ds, b - a, f"byte {a}{pad} - dataoff {info.dataoff:#x} = byte {a - ds} of "
                                               f"{low}{legacy}")

            upto(self.data_end, data)
        trunc = self.size - (info.end_trunc if info else 0)
        upto(trunc, drop("outside-device", f"past the end of {low} ({self.data_size} bytes, whole 512-byte "
                         "sectors), inside the namespace"))
        if info is not None:
            upto(self.size, drop("outside-device", f"end_trunc: the last {info.end_trunc} bytes of {up} are cut "
                                 "off to align the end (nd_pfn_init) and belong to no device"))
        upto(_END, drop("outside-device", f"past the end of {up} ({self.size} bytes)"))
        return pieces

    def map(self, offset, length):
        return self._pieces.map(offset, length)
