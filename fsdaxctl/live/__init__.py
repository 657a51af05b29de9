"""The live source: a mounted XFS answered by its running kernel, never from stale disk blocks.

- `fsmap`: FS_IOC_GETFSMAP and XFS_IOC_FSGEOMETRY, the kernel's own owner map and geometry;
- `owners`: `LiveOwnerMap`, the same pieces as the on-disk reader's `OwnerMap`, from GETFSMAP;
- `names`: paths (from the machine's root) and who holds each file open or mapped, from the mounted tree and
  /proc;
- `procs`: /proc read once for a batch of questions (who maps which file);
- `target`: which mount a TARGET (mount point, mounted block device, image behind a mounted loop device) is.
"""

__all__ = ["LiveOwnerMap", "LivePathResolver", "LiveTarget", "find_live_target"]

_HOMES = {"LivePathResolver": "names", "LiveOwnerMap": "owners", "LiveTarget": "target", "find_live_target": "target"}


def __getattr__(name: str):
    """Each name from its module when first asked: finding out whether TARGET is mounted (live.target, on
    every run) must not import the names and owners of a live filesystem it does not have."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
