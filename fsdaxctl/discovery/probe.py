"""What is the target? An XFS filesystem, a whole disk with a partition table, or a raw pmem namespace whose
info block says where the data starts (and which may hold a partition table in turn).

The probe reads a few sectors through the Device (read-only, like everything else) and returns a Layout: the
structures found and the window of the target that holds the filesystem. Building the layers from a Layout is
pure, so the names can be settled after the inputs are known (an image does not know what the machine called it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.device import Window
from fsdaxctl.errors import NotXfsError
from fsdaxctl.stack import BLOCK, NAMESPACE, Layer, Space

XFS_MAGIC = b"XFSB"


@dataclass
class Layout:
    info: object = None        # PfnInfo: the target is a raw namespace with a pfn/dax info block
    ns_layer_args: tuple = ()  # (info, namespace size) to build the NamespaceLayer
    table: object = None       # PartitionTable found on the target (or in the namespace's data area)
    partition: object = None   # the chosen Partition
    fs_start: int = 0          # where the filesystem starts, in target bytes
    fs_size: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the probe found, for --explain


def _is_xfs(read, offset: int, size: int) -> bool:
    if size - offset < 512:
        return False
    try:
        return read(offset, 4, "superblock magic") == XFS_MAGIC
    except OSError:
        return False


def probe(dev, partition: int | None = None) -> Layout:
    """Find the filesystem on `dev`: at byte 0, behind a pfn info block, or in a partition."""
    layout = Layout(fs_size=dev.size)
    if dev.size < 512:
        raise NotXfsError(f"{dev.path} is not XFS: only {dev.size} bytes")
    if _is_xfs(dev.pread, 0, dev.size):
        if partition is not None:
            layout.warnings.append(f"--partition {partition} ignored: the target starts with an XFS superblock")
        return layout
    from fsdaxctl.discovery.partition import read_partition_table
    from fsdaxctl.discovery.pmem import read_info_block
    from fsdaxctl.stack.partition import choose_partition

    base, size = 0, dev.size
    info = read_info_block(dev.pread, dev.size)
    if info is not None:
        from fsdaxctl.stack.pmem import NamespaceLayer

        ns_size = dev.size - _label_area(dev, layout)
        layer = NamespaceLayer(info, ns_size, Space(NAMESPACE), Space(BLOCK))
        layout.info, layout.ns_layer_args = info, (info, ns_size)
        base, size = layer.data_start, layer.data_size
        layout.fs_start, layout.fs_size = base, size
        if _is_xfs(dev.pread, base, dev.size):
            return layout
    window = Window(dev, base, size, "data area") if base else dev
    table = read_partition_table(window.pread, window.size)
    if table is None:
        where = "at the start of the namespace's data area" if info is not None else "at byte 0"
        raise NotXfsError(f"{dev.path} is not XFS: no superblock magic 'XFSB' {where}, and no partition table or "
                          "pmem info block leading to one")
    layout.table = table
    layout.warnings += table.warnings
    chosen = choose_partition(table, partition, lambda p: _is_xfs(window.pread, p.start, window.size))
    layout.partition = chosen
    layout.fs_start, layout.fs_size = base + chosen.start, chosen.size
    return layout


def _label_area(dev, layout: Layout) -> int:
    """Bytes of NVDIMM label storage at the end of the file: QEMU's NVDIMM backing file (label-size=) keeps the
    label area after the region; it starts with a NAMESPACE_INDEX block. 0 when there is none."""
    from fsdaxctl.parsers.nvdimm import NSINDEX_SIGNATURE

    size = 128 << 10  # QEMU's smallest label-size
    while size <= min(16 << 20, dev.size // 2):
        try:
            if dev.pread(dev.size - size, len(NSINDEX_SIGNATURE), "label area") == NSINDEX_SIGNATURE:
                layout.notes.append(f"the last {size} bytes are an NVDIMM label area (NAMESPACE_INDEX): a QEMU "
                                    f"NVDIMM backing file; the namespace is the {dev.size - size} bytes before it")
                return size
        except OSError:
            return 0
        size <<= 1
    return 0


def layers_for(layout: Layout, name: str | None, namespace: str | None = None) -> tuple[list[Layer], Space, Space]:
    """(layers, the target's space, the filesystem's space) for a target called `name` (None: unnamed image)."""
    layers: list[Layer] = []
    target = Space(BLOCK, name)
    disk = target
    if layout.info is not None:
        from fsdaxctl.stack.pmem import NamespaceLayer

        target = Space(NAMESPACE, namespace)
        layers.append(NamespaceLayer(*layout.ns_layer_args, target, disk))
    fs_space = disk
    if layout.partition is not None:
        from fsdaxctl.stack.partition import PartitionLayer, partition_name

        n = layout.partition.number
        fs_space = Space(BLOCK, partition_name(name, n) if name else None)
        if fs_space.name is None:
            fs_space = Space(BLOCK, f"partition {n}")
        layers.append(PartitionLayer(layout.table, layout.partition, disk, fs_space, name))
    return layers, target, fs_space


def filesystem_window(dev, layout: Layout):
    """The target's bytes that hold the filesystem, as a device of their own (or the target itself)."""
    if layout.fs_start == 0 and layout.fs_size >= dev.size:
        return dev
    what = f"partition {layout.partition.number}" if layout.partition is not None else "namespace data area"
    return Window(dev, layout.fs_start, layout.fs_size, what)
