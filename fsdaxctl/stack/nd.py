"""The nd bus as offset maps: system physical addresses -> the region that holds them -> the namespace
allocated there. Region and Namespace are what sysfs says of them (fsdaxctl.discovery.sysfs reads it); the
layers here know only those numbers: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdaxctl.stack import NAMESPACE, PHYS, REGION, Layer, Space
from fsdaxctl.stack.pmem import Pieces

@dataclass(frozen=True)
class Region:
    name: str
    start: int     # system physical address (regionN/resource)
    size: int
    devtype: str   # nd_pmem, nd_volatile
    mappings: int  # DIMMs interleaved in it (0: e820 / memmap= regions have none)
    path: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Namespace:
    name: str
    region: str
    start: int     # system physical address (namespaceN.M/resource): the kernel's pmem->phys_addr
    size: int
    mode: str      # raw, safe, memory, dax
    uuid: str | None
    holder: str    # pfnN.M, daxN.M, bttN.M or ''
    devtype: str
    disk: str | None  # a raw namespace's block device
    path: str



class PhysLayer(Layer):
    """System physical addresses -> the nd region that holds each (one layer per machine)."""

    kernel_call = "get_dev_pagemap"

    def __init__(self, regions: list[Region], lower: Space):
        self.upper, self.lower, self.name = Space(PHYS), lower, "nd bus"
        self.regions = sorted(regions, key=lambda r: r.start)
        self._pieces = Pieces()
        for r in self.regions:
            self._pieces.upto(r.start, self._not_pmem)
            self._pieces.upto(r.end, self._into(r))
        self._pieces.upto(Pieces.END, self._not_pmem)

    def describe(self) -> str:
        rs = ", ".join(f"{r.name} {r.start:#x}..{r.end - 1:#x}" for r in self.regions) or "no regions"
        return f"{self.name}: {rs}"

    def _not_pmem(self, a, b):
        return self.drop(a, b - a, "not-pmem", f"physical addresses {a:#x}..{b - 1:#x} are in no nd region: not "
                                               "persistent memory the nd bus knows (System RAM, MMIO or another "
                                               "device)")

    def _into(self, r: Region):
        space = Space(REGION, r.name)
        return lambda a, b: self.hop(a - r.start, b - a, f"address {a:#x} - {r.name} start {r.start:#x} = byte "
                                                         f"{a - r.start} of {r.name}", space=space)

    def map(self, offset, length):
        return self._pieces.map(offset, length)


class RegionLayer(Layer):
    """Bytes of one region -> the namespace allocated there (by namespaceN.M/resource within the region)."""

    kernel_call = "nd_region"

    def __init__(self, region: Region, namespaces: list[Namespace], lower: Space):
        self.upper, self.lower, self.name = Space(REGION, region.name), lower, region.name
        self.region = region
        self.namespaces = sorted((n for n in namespaces if n.size), key=lambda n: n.start)
        self._pieces = Pieces()
        for ns in self.namespaces:
            rel = ns.start - region.start
            self._pieces.upto(rel, self._unallocated)
            self._pieces.upto(rel + ns.size, self._into(ns, rel))
        self._pieces.upto(region.size, self._unallocated)
        self._pieces.upto(Pieces.END, lambda a, b: self.drop(a, b - a, "outside-device",
                                                             f"past the end of {region.name} ({region.size} bytes)"))

    def describe(self) -> str:
        ns = ", ".join(f"{n.name} at {n.start - self.region.start:#x} ({n.size} bytes, {n.mode})"
                       for n in self.namespaces) or "no namespaces"
        return f"{self.name} ({self.region.start:#x}, {self.region.size} bytes): {ns}"

    def _unallocated(self, a, b):
        return self.drop(a, b - a, "unallocated-region-space", f"bytes {a}..{b - 1} of {self.region.name} belong "
                                                               "to no namespace (unallocated region space)")

    def _into(self, ns: Namespace, rel: int):
        space = Space(NAMESPACE, ns.name)
        return lambda a, b: self.hop(a - rel, b - a, f"byte {a} - {ns.name} at {rel:#x} = byte {a - rel} of "
                                                     f"{ns.name}", space=space)

    def map(self, offset, length):
        return self._pieces.map(offset, length)
