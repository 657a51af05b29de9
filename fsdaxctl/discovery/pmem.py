"""The pmem info block (struct nd_pfn_sb at namespace byte 4096), read and checked as nd_pfn_validate checks it.

What it says becomes a fsdaxctl.stack.pmem.PfnInfo, from which the pure NamespaceLayer is built. Reading is the
caller's `read(offset, length, what)` (Device.pread, Window.pread).
"""

from __future__ import annotations

import struct
import sys
import uuid as uuidlib
from dataclasses import replace

from fsdaxctl.errors import CorruptError, DeviceError, TruncatedError
from fsdaxctl.parsers.nvdimm import (
    DAX_SIG, ND_PFN_SB_CSUM_OFF, ND_PFN_SB_OFFSET, ND_PFN_SB_SIZE, PFN_MODE_PMEM, PFN_MODE_RAM, PFN_MODES, PFN_SIG,
    nd_pfn_sb,
)
from fsdaxctl.stack.pmem import SZ_4K, PfnInfo
from fsdaxctl.units import PAGE_SIZE, SECTOR

SZ_1G = 1 << 30
MAX_STRUCT_PAGE_SIZE = 64  # nd_pfn_init's page_struct_size; nd_pfn_validate refuses less than sizeof(struct page)
_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1
_WHERE = {"structure": "nd_pfn_sb", "daddr": ND_PFN_SB_OFFSET // SECTOR}

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


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


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
    kind = _signature(read, size)
    if kind is None:
        return None
    corrupt = _corrupter(kind)
    block = _read_block(read, size, corrupt)
    sb = nd_pfn_sb.parse(block)
    _check_header(sb, block, parent_uuid, corrupt)
    info = _recorded(kind, sb, corrupt)
    _check_pages(info, corrupt)
    return replace(info, align=_checked_placement(info, size, ns_start, corrupt))


def _signature(read, size: int) -> str | None:
    """'fsdax' or 'devdax' by the signature at namespace byte 4096; None for none (or nothing readable there)."""
    if size < ND_PFN_SB_OFFSET + len(PFN_SIG):
        return None
    try:
        sig = read(ND_PFN_SB_OFFSET, len(PFN_SIG), "pmem info block signature")
    except DeviceError:
        return None  # nothing readable where the signature would be: no info block to speak of
    return SIGNATURES.get(bytes(sig))


def _corrupter(kind: str):
    """corrupt(text, **facts): the CorruptError for a damaged `kind` info block."""
    def corrupt(text: str, **facts) -> CorruptError:
        return CorruptError(f"{kind} info block at namespace byte 4096: {text}", **_WHERE, **facts)
    return corrupt


def _read_block(read, size: int, corrupt) -> bytes:
    """The whole 4 KiB block, or a CorruptError saying how it is truncated or unreadable."""
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
    return block


def _check_header(sb, block: bytes, parent_uuid: str | bytes | None, corrupt) -> None:
    """The checksum, the namespace the block belongs to (when known) and the major version."""
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


def _recorded(kind: str, sb, corrupt) -> PfnInfo:
    """What the block records, fields its minor version did not have taking the values nd_pfn_validate gives
    them (align 0: not recorded, settled by _checked_placement); the mode must be ram or pmem."""
    minor = sb.version_minor
    start_pad, end_trunc = (sb.start_pad, sb.end_trunc) if minor >= 1 else (0, 0)
    align = sb.align if minor >= 2 else 0
    # Before minor 4, nd_pfn_validate fills in its own (the running kernel's) PAGE_SIZE.
    page_size, page_struct_size = (sb.page_size, sb.page_struct_size) if minor >= 4 else (PAGE_SIZE, 64)
    if sb.mode not in (PFN_MODE_RAM, PFN_MODE_PMEM):
        raise corrupt(f"mode {sb.mode} is neither 1 (ram) nor 2 (pmem); the kernel refuses the namespace",
                      expected="1 or 2", found=sb.mode)
    return PfnInfo(kind, _uuid_text(sb.uuid), _uuid_text(sb.parent_uuid), sb.flags, sb.version_major, minor,
                   sb.dataoff, sb.npfns, PFN_MODES[sb.mode], start_pad, end_trunc, align, page_size,
                   page_struct_size)


def _check_pages(info: PfnInfo, corrupt) -> None:
    """The page size, and in mode pmem room for a struct page per page."""
    page_size, page_struct_size = info.page_size, info.page_struct_size
    if not _is_pow2(page_size) or not SZ_4K <= page_size <= 1 << 16:
        raise corrupt(f"page_size {page_size} is not a page size (a power of two, 4 KiB .. 64 KiB)",
                      found=page_size)
    if info.mode == "pmem" and page_struct_size < MAX_STRUCT_PAGE_SIZE:
        raise corrupt(f"page_struct_size {page_struct_size} is smaller than a struct page (64 bytes); the kernel "
                      "refuses the namespace", found=page_struct_size)


def _checked_placement(info: PfnInfo, size: int, ns_start: int | None, corrupt) -> int:
    """Check dataoff, align, start_pad and end_trunc against the namespace as nd_pfn_validate does; the
    alignment (1 << ilog2(dataoff) when the block records none)."""
    offset, align, start_pad, end_trunc = info.dataoff, info.align, info.start_pad, info.end_trunc
    reserve = info.reserve  # nd_info_block_reserve(): ALIGN(SZ_8K, page_size)
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
    return align
