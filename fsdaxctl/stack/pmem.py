"""A pmem namespace and the block device the kernel makes of it: what the info block says, and the offset map.

An fsdax namespace (ndctl create-namespace -m fsdax) carries an info block, struct nd_pfn_sb, at namespace byte
4096 (fsdaxctl.discovery.pmem reads it); the pmem block device starts `dataoff` bytes into the namespace. The
arithmetic is the kernel's:

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

from dataclasses import dataclass

from fsdaxctl.stack import Dropped, Hop, Layer, Space
from fsdaxctl.units import PAGE_SIZE, SECTOR

SZ_4K = 4096
SZ_8K = 8192
_END = 1 << 64  # past any byte offset: the last piece of every map


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


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


class NamespaceLayer(Layer):
    """Raw namespace bytes -> the pmem block device's bytes (info=None: a raw namespace, the identity).

    discovery/probe.py builds it from an image's info block, discovery/sysfs.py from pfnN.M/resource and size.
    """

    kernel_call = "pmem_pagemap_memory_failure"

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
