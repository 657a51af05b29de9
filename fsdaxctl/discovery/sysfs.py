"""The nd bus and the block devices as sysfs shows them: live (/sys) or a copy of another machine's tree.

Every name and format below is the kernel's (drivers/nvdimm/*.c, block/genhd.c, block/partitions/core.c):

- /sys/bus/nd/devices/ holds a link to every nd device: regionN, namespaceN.M, pfnN.M, daxN.M, bttN.M (also
  ndbusN, nmemN). Devices sit under their region: .../ndbusX/regionN/namespaceN.M.
- regionN (region_devs.c): resource "%#llx" (mode 0400, and only on pmem/volatile regions: region_visible),
  size "%llu", mappings "%d", mappingK "nmemX,dpa,size,position", badblocks (region-relative sectors; reading
  fails with ENXIO while the region is disabled), devtype nd_pmem / nd_volatile / nd_blk (bus.c: type name).
- namespaceN.M (namespace_devs.c): resource "%#llx" (DEVICE_ATTR_ADMIN_RO: root only; ENXIO when the size is
  0), size "%llu", mode raw / safe (btt) / memory (fsdax) / dax (devdax), uuid "%pUb" (labelled namespaces
  only: a label-less nd_namespace_io has none), holder (the claiming pfnN.M / daxN.M / bttN.M or empty),
  devtype nd_namespace_pmem / nd_namespace_io. A raw namespace's disk is namespaceN.M/block/pmemN.
- pfnN.M and daxN.M (pfn_devs.c, dax_devs.c share nd_pfn_attribute_groups): namespace (empty on a seed), mode
  none / ram / pmem, align ("%ld" today, "%lx" in old kernels), uuid, resource "%#llx" = namespace start +
  start_pad + dataoff (root only) and size "%llu" = namespace size - start_pad - end_trunc - dataoff; both fail
  with ENXIO while the device is disabled. An fsdax disk is pfnN.M/block/pmemN (pmem_attach_disk adds the disk
  under the pfn device); devdax has no disk.
- block devices: /sys/class/block/NAME and /sys/block/DISK link to .../block/DISK[/PART]; /sys/dev/block/M:m
  links there too. dev "%u:%u", size "%llu" 512-byte sectors, ro; a partition adds partition "%d" and start
  "%llu" (512-byte sectors from the disk's start). A disk named with a final digit gets partitions DISKpN.
- Disk names (nvdimm_namespace_disk_name): pmemR for namespace index 0 of region R, else pmemR.I; BTT adds 's'.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from fsdaxctl.errors import DeviceError, UnsupportedError, UsageError
from fsdaxctl.stack import BLOCK, NAMESPACE, REGION, Layer, Shift, Space
from fsdaxctl.stack.nd import Namespace, PhysLayer, Region, RegionLayer
from fsdaxctl.stack.pmem import SZ_8K, NamespaceLayer, PfnInfo
from fsdaxctl.units import PAGE_SIZE, SECTOR

_REGION_RE = re.compile(r"region(\d+)$")
_NS_RE = re.compile(r"namespace(\d+)\.(\d+)$")
_PFN_RE = re.compile(r"(pfn|dax)(\d+)\.(\d+)$")
_DEVT_RE = re.compile(r"(\d+):(\d+)$")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class PfnDevice:
    name: str
    kind: str          # 'pfn' (fsdax) or 'dax' (devdax)
    region: str
    namespace: str
    mode: str          # none, ram, pmem
    align: int | None
    uuid: str | None
    start: int | None  # pfnN.M/resource: None while disabled (ENXIO) or not copied
    size: int | None
    disk: str | None   # fsdax: pfnN.M/block/pmemN
    path: str


@dataclass(frozen=True)
class BlockDevice:
    name: str
    devt: str              # "MAJ:MIN"
    disk: str              # the whole disk (itself when not a partition)
    partition: int | None  # partition number, None for a whole disk
    start: int             # bytes from the start of the disk (0 for a whole disk)
    size: int              # bytes
    ro: bool
    path: str


def _parse_align(text: str, path: str) -> int | None:
    """pfnN.M/align: "%ld" in current kernels, "%lx" in old ones (pfn_devs.c align_show). A valid alignment is a
    power of two, so of the two readings the one that is a power of two is the kernel's."""
    if not text:
        return None
    try:
        if text.lower().startswith("0x"):
            return int(text, 16)
        dec = int(text, 10) if text.isdigit() else None
        hexa = int(text, 16)
    except ValueError:
        raise UsageError(f"sysfs: {path}: not an alignment: {text!r}") from None
    for value in (dec, hexa):
        if value and value & (value - 1) == 0:
            return value
    return dec if dec is not None else hexa


class Sysfs:
    """Reads a sysfs tree laid out as the kernel lays it out. Nothing is cached: a live tree changes."""

    def __init__(self, root: str = "/sys"):
        self.root = root
        self.nd = os.path.join(root, "bus", "nd", "devices")

    # --- attribute reading ------------------------------------------------------------------------------
    def _read(self, path: str) -> str:
        try:
            with open(path) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            raise UsageError(f"sysfs: {path} is missing (is {self.root} a sysfs tree with that device?)") from None
        except PermissionError:
            why = (" (readable only by root: DEVICE_ATTR_ADMIN_RO, mode 0400)"
                   if os.path.basename(path) == "resource" else "")
            raise DeviceError(f"sysfs: cannot read {path}: permission denied{why}") from None
        except IsADirectoryError:
            raise UsageError(f"sysfs: {path} is a directory, not an attribute") from None
        except OSError as e:
            if e.errno == errno.ENXIO:
                err = DeviceError(f"sysfs: cannot read {path}: the device is disabled (ENXIO: the kernel has no "
                                  "value until it is enabled)")
                err.errno = errno.ENXIO
                raise err from None
            raise DeviceError(f"sysfs: cannot read {path}: {e.strerror}") from None

    def _int(self, path: str, base: int = 10) -> int:
        text = self._read(path)
        try:
            return int(text, base)
        except ValueError:
            raise UsageError(f"sysfs: {path}: not a number: {text!r}") from None

    def _optional(self, path: str) -> str | None:
        return self._read(path) if os.path.exists(path) else None

    def _disk_under(self, devdir: str) -> str | None:
        """The disk a pmem driver attached under an nd device (namespace or pfn): devdir/block/NAME."""
        block = os.path.join(devdir, "block")
        if not os.path.isdir(block):
            return None
        disks = sorted(os.listdir(block))
        return disks[0] if disks else None

    def _nd_entries(self, pattern: re.Pattern) -> list[tuple[str, re.Match]]:
        try:
            names = os.listdir(self.nd)
        except FileNotFoundError:
            raise UsageError(f"sysfs: {self.nd} is missing: no nd bus (libnvdimm not loaded, or {self.root} is "
                             "not a sysfs tree)") from None
        except OSError as e:
            raise DeviceError(f"sysfs: cannot list {self.nd}: {e.strerror}") from None
        found = [(n, m) for n in names if (m := pattern.match(n))]
        return sorted(found, key=lambda nm: (tuple(int(g) for g in nm[1].groups() if g.isdigit()), nm[0]))

    # --- nd devices -----------------------------------------------------------------------------------
    def region(self, name: str) -> Region:
        d = os.path.join(self.nd, name)
        return Region(name, self._int(os.path.join(d, "resource"), 16), self._int(os.path.join(d, "size")),
                      self._optional(os.path.join(d, "devtype")) or "nd_pmem",
                      self._int(m) if os.path.exists(m := os.path.join(d, "mappings")) else 0, d)

    def regions(self) -> list[Region]:
        """Regions with a physical address range (pmem and volatile; BLK regions have no resource file)."""
        return [self.region(n) for n, _ in self._nd_entries(_REGION_RE)
                if os.path.exists(os.path.join(self.nd, n, "resource"))]

    def namespace(self, name: str) -> Namespace:
        d = os.path.join(self.nd, name)
        m = _NS_RE.match(name)
        if m is None:
            raise UsageError(f"{name}: not a namespace name (namespaceR.N)")
        size = self._int(os.path.join(d, "size"))
        # resource fails with ENXIO on a namespace without an allocation (a seed): only read it when sized.
        start = self._int(os.path.join(d, "resource"), 16) if size else 0
        return Namespace(name, f"region{m.group(1)}", start, size, self._read(os.path.join(d, "mode")),
                         self._optional(os.path.join(d, "uuid")) or None,
                         self._optional(os.path.join(d, "holder")) or "",
                         self._optional(os.path.join(d, "devtype")) or "", self._disk_under(d), d)

    def namespaces(self, region: str | None = None) -> list[Namespace]:
        """Namespaces with an allocation (size 0 is a seed waiting to be configured), in region order."""
        out = []
        for n, m in self._nd_entries(_NS_RE):
            if region is not None and f"region{m.group(1)}" != region:
                continue
            if self._int(os.path.join(self.nd, n, "size")) == 0:
                continue
            out.append(self.namespace(n))
        return out

    def pfn_device(self, name: str) -> PfnDevice:
        d = os.path.join(self.nd, name)
        m = _PFN_RE.match(name)
        if m is None:
            raise UsageError(f"{name}: not a pfn or dax device name (pfnR.N, daxR.N)")

        def enabled_only(attr, base):
            # resource and size fail with ENXIO until the device is enabled (a copy then holds an empty file)
            path = os.path.join(d, attr)
            try:
                text = self._optional(path)
            except DeviceError as e:
                if e.errno == errno.ENXIO:
                    return None
                raise
            if not text:
                return None
            try:
                return int(text, base)
            except ValueError:
                raise UsageError(f"sysfs: {path}: not a number: {text!r}") from None

        align_path = os.path.join(d, "align")
        return PfnDevice(name, m.group(1), f"region{m.group(2)}", self._read(os.path.join(d, "namespace")),
                         self._read(os.path.join(d, "mode")),
                         _parse_align(self._optional(align_path) or "", align_path),
                         self._optional(os.path.join(d, "uuid")) or None,
                         enabled_only("resource", 16), enabled_only("size", 10), self._disk_under(d), d)

    def pfn_devices(self) -> list[PfnDevice]:
        """The pfn (fsdax) and dax (devdax) instances that claim a namespace; seeds (no namespace) are left out."""
        out = []
        for n, _ in self._nd_entries(_PFN_RE):
            if self._read(os.path.join(self.nd, n, "namespace")):
                out.append(self.pfn_device(n))
        return out

    # --- block devices --------------------------------------------------------------------------------
    def block_device(self, name: str) -> BlockDevice:
        base = os.path.join(self.root, "class", "block", name)
        if not os.path.isdir(base):
            base = os.path.join(self.root, "block", name)
        if not os.path.isdir(base):
            hint = ""
            if _PFN_RE.match(name) and name.startswith("dax"):
                hint = " (daxR.N is a device-dax instance, a character device: no filesystem sits on it)"
            raise UsageError(f"{name}: no block device of that name in {self.root}/class/block{hint}")
        path = os.path.realpath(base)
        devt = self._read(os.path.join(base, "dev"))
        size = self._int(os.path.join(base, "size")) * SECTOR
        ro = self._optional(os.path.join(base, "ro")) == "1"
        if not os.path.exists(os.path.join(base, "partition")):
            return BlockDevice(name, devt, name, None, 0, size, ro, path)
        number = self._int(os.path.join(base, "partition"))
        start = self._int(os.path.join(base, "start")) * SECTOR
        # a partition's directory sits in its disk's (add_partition: the disk is the parent device)
        disk = os.path.basename(os.path.dirname(path))
        if not os.path.isdir(os.path.join(self.root, "block", disk, name)):
            blocks = os.path.join(self.root, "block")
            owners = [d for d in (sorted(os.listdir(blocks)) if os.path.isdir(blocks) else ())
                      if os.path.isdir(os.path.join(blocks, d, name))]
            if not owners:
                raise UsageError(f"sysfs: {name} is a partition, but no disk in {blocks} holds it")
            disk = owners[0]
        return BlockDevice(name, devt, disk, number, start, size, ro, path)

    def name_of_devt(self, devt: str) -> str:
        """'259:1' -> 'pmem0p1', through the /sys/dev/block/MAJ:MIN link."""
        if not _DEVT_RE.match(devt):
            raise UsageError(f"{devt!r} is not a device number (MAJOR:MINOR)")
        link = os.path.join(self.root, "dev", "block", devt)
        if not os.path.exists(link):
            raise UsageError(f"{devt}: no block device with that number ({link} is missing)")
        return os.path.basename(os.path.realpath(link))

    def partitions(self, disk: str) -> list[BlockDevice]:
        d = os.path.join(self.root, "block", disk)
        names = sorted(os.listdir(d)) if os.path.isdir(d) else []
        parts = [n for n in names if n.startswith(disk) and os.path.exists(os.path.join(d, n, "partition"))]
        return sorted((self.block_device(n) for n in parts), key=lambda p: p.start)

    def _nd_parent(self, disk: str) -> str | None:
        """The nd device a pmem disk hangs under (pfnN.M for fsdax, namespaceN.M for raw, bttN.M for sector)."""
        try:
            names = sorted(os.listdir(self.nd))
        except OSError:
            return None
        for n in names:
            if os.path.isdir(os.path.join(self.nd, n, "block", disk)):
                return n
        return None

    # --- the chain from a physical address to a block device ----------------------------------------------
    def layers_to_block(self, name: str) -> tuple[list[Layer], list[str]]:
        """Layers from physical addresses down to block device `name` (a disk or a partition; 'pmem0p1',
        '/dev/pmem0p1' or '259:1'), and notes on what was assumed. A disk that is not on the nd bus gets only
        its partition layer."""
        name = name.removeprefix("/dev/")
        if _DEVT_RE.match(name):
            name = self.name_of_devt(name)
        bd = self.block_device(name)
        disk = bd.disk
        layers: list[Layer] = []
        notes: list[str] = []
        parent = self._nd_parent(disk)
        if parent is None:
            notes.append(f"{disk} is not on the nd bus (no {self.nd}/*/block/{disk}): no physical-address, "
                         "region or namespace layers")
        elif parent.startswith("btt"):
            raise UnsupportedError(f"{disk} is a BTT (sector mode) device on {parent}: the BTT remaps blocks "
                                   "through its own map (drivers/nvdimm/btt.c), which is not followed")
        else:
            layers, notes = self._pmem_layers(disk, parent)
        if bd.partition is not None:
            layers.append(self._partition_layer(bd))
        return layers, notes

    def _pmem_layers(self, disk: str, parent: str) -> tuple[list[Layer], list[str]]:
        notes = []
        if _PFN_RE.match(parent):
            pfn = self.pfn_device(parent)
            if not pfn.namespace:
                raise UsageError(f"sysfs: {pfn.path}/namespace is empty, yet {disk} hangs under {parent}")
            ns = self.namespace(pfn.namespace)
            for attr, value in (("resource", pfn.start), ("size", pfn.size)):
                if value is None:
                    raise DeviceError(f"sysfs: cannot read {pfn.path}/{attr}: {parent} is disabled or the file "
                                      "was not copied; the data offset cannot be known without it")
            if pfn.mode not in ("pmem", "ram"):
                raise UsageError(f"sysfs: {pfn.path}/mode is {pfn.mode!r}, but an enabled fsdax device has mode "
                                 "pmem or ram")
            # pfnN.M/resource = ns.start + start_pad + dataoff and pfnN.M/size = ns.size - start_pad - end_trunc
            # - dataoff (pfn_devs.c resource_show, size_show). pmem_attach_disk: phys_addr = ns.start
            # (namespaceN.M/resource), data_offset = dataoff. Current kernels never write a start_pad, so
            # data_offset = pfnN.M/resource - namespaceN.M/resource, and the kernel's
            # pmem_pagemap_memory_failure offset PFN_PHYS(pfn) - phys_addr - data_offset is byte
            # PFN_PHYS(pfn) - pfnN.M/resource of the disk: exactly what the three layers below compute.
            data_start = pfn.start - ns.start
            end_trunc = ns.size - data_start - pfn.size
            if data_start < SZ_8K or data_start >= ns.size or end_trunc < 0:
                raise UsageError(f"sysfs: {parent}/resource {pfn.start:#x} and size {pfn.size} do not fit in "
                                 f"{ns.name} ({ns.start:#x}, {ns.size} bytes): the data would start at namespace "
                                 f"byte {data_start:#x} and leave {end_trunc} bytes after it")
            info = PfnInfo("fsdax", pfn.uuid or "", ns.uuid or _ZERO_UUID, 0, 0, 0, data_start,
                           pfn.size // PAGE_SIZE, pfn.mode, 0, end_trunc, pfn.align or 0, PAGE_SIZE, 64,
                           source="sysfs")
            notes.append(f"{disk}: fsdax {parent} on {ns.name} in {ns.region}, mode {pfn.mode}: data_offset = "
                         f"{parent}/resource {pfn.start:#x} - {ns.name}/resource {ns.start:#x} = "
                         f"{data_start:#x}, end_trunc = {ns.size} - {data_start:#x} - {pfn.size} = {end_trunc}")
            notes.append(f"{disk}: sysfs shows start_pad + dataoff as one number; start_pad is taken as 0 (no "
                         "current kernel writes one), so byte = PFN_PHYS(pfn) - phys_addr - data_offset as in "
                         "pmem_pagemap_memory_failure")
        else:
            ns = self.namespace(parent)
            info = None
            notes.append(f"{disk}: raw {ns.name} in {ns.region} (mode {ns.mode}): byte = physical address - "
                         f"{ns.name}/resource {ns.start:#x}")
        regions = self.regions()
        region = next((r for r in regions if r.name == ns.region), None)
        if region is None:
            raise UsageError(f"sysfs: {ns.name} belongs to {ns.region}, which has no {self.nd}/{ns.region}/"
                             "resource")
        if not (region.start <= ns.start and ns.start + ns.size <= region.end):
            raise UsageError(f"sysfs: {ns.name} ({ns.start:#x}, {ns.size} bytes) lies outside {region.name} "
                             f"({region.start:#x}, {region.size} bytes)")
        target_ns = Space(NAMESPACE, ns.name)
        layer = NamespaceLayer(info, ns.size, target_ns, Space(BLOCK, disk))
        disk_size = self.block_device(disk).size
        if disk_size != layer.data_size:
            notes.append(f"{disk}: sysfs says {disk_size} bytes, the namespace arithmetic {layer.data_size}")
        return [PhysLayer(regions, Space(REGION, region.name)),
                RegionLayer(region, self.namespaces(region.name), target_ns), layer], notes

    def _partition_layer(self, bd: BlockDevice) -> Shift:
        siblings = [p for p in self.partitions(bd.disk) if p.name != bd.name]
        before = [p.name for p in siblings if p.start < bd.start]
        after = [p.name for p in siblings if p.start > bd.start]

        def side(names, where):
            if names:
                return ("other-partition", f"{where} {bd.name}: partition table, free space or {', '.join(names)}"
                        f" of {bd.disk}")
            return ("unpartitioned", f"{where} {bd.name}: partition table or free space of {bd.disk}")

        sectors = bd.start // SECTOR
        return Shift(Space(BLOCK, bd.disk), Space(BLOCK, bd.name), f"partition {bd.name}", bd.start, bd.size,
                     start_text=f"start {sectors} sectors ({bd.start:#x})",
                     before=side(before, "before"), after=side(after, "after"))
