"""The live source: a mounted XFS answered by its running kernel, never from stale disk blocks.

- `fsmap`: FS_IOC_GETFSMAP and XFS_IOC_FSGEOMETRY, the kernel's own owner map and geometry;
- `owners`: `LiveOwnerMap`, the same pieces as the on-disk reader's `OwnerMap`, from GETFSMAP;
- `names`: paths (from the machine's root) and who holds each file open or mapped, from the mounted tree and
  /proc;
- `procs`: /proc read once for a batch of questions (who maps which file);
- `target`: which mount a TARGET (mount point, mounted block device, image behind a mounted loop device) is.
"""

__all__ = ["LiveOwnerMap", "LivePathResolver", "LiveTarget", "find_live_target"]

from fsdaxctl.live.names import LivePathResolver
from fsdaxctl.live.owners import LiveOwnerMap
from fsdaxctl.live.target import LiveTarget, find_live_target
