"""Discovery: what the target and the machine are, read from them, turned into the device stack's pure layers.

Everything here reads (the target through the Device, a sysfs tree, md's sysfs); fsdaxctl.stack only maps
offsets. The modules:

- probe: `probe(dev)` finds the filesystem on TARGET (an XFS superblock, a pmem info block, a partition
  table) as a `Layout`; `layers_for(layout, name)` builds its layers; `filesystem_window(dev, layout)`.
- partition: `read_partition_table(read, size)`, GPT and MBR read the way the kernel reads them.
- pmem: `read_info_block(read, size)`, the pfn/dax info block checked as nd_pfn_validate checks it;
  `nd_fletcher64`, `nd_sb_checksum`.
- sysfs: `Sysfs(root)`, the nd bus and block devices of /sys or a copy; `layers_to_block(name)`.
- md: `read_md_sysfs(root, name)`, an md array from /sys/block/mdX/md/.

The submodules are imported on use (each run needs only some of them).
"""

__all__ = ["md", "partition", "pmem", "probe", "sysfs"]
