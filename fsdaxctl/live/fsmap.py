"""FS_IOC_GETFSMAP and XFS_IOC_FSGEOMETRY on a mounted filesystem (include/uapi/linux/fsmap.h, xfs_fs.h).

The one place that speaks these ioctls; the engine's pre-action check and the live owner source both use it.
"""

from __future__ import annotations

import fcntl
import os
import struct
from typing import NamedTuple

from fsdaxctl.errors import FsdaxError

FS_IOC_GETFSMAP = 0xC0C0583B  # _IOWR('X', 59, struct fsmap_head)
_REC = struct.Struct("=IIQQQQ24x")  # struct fsmap: device, flags, physical, owner, offset, length, reserved[3]
_HEAD = struct.Struct("=IIII48x")  # struct fsmap_head: iflags, oflags, count, entries, reserved[6]
_RECS_AT = _HEAD.size + 2 * _REC.size  # the two keys, then the records

FMR_OF_PREALLOC = 0x1
FMR_OF_ATTR_FORK = 0x2
FMR_OF_EXTENT_MAP = 0x4
FMR_OF_SHARED = 0x8
FMR_OF_SPECIAL_OWNER = 0x10
FMR_OF_LAST = 0x20
FMR_OF_NOT_DATA = FMR_OF_ATTR_FORK | FMR_OF_EXTENT_MAP | FMR_OF_SPECIAL_OWNER


def FMR_OWNER(type_: int, code: int) -> int:  # noqa: N802 - the C macro
    return (type_ & 0xFFFFFFFF) << 32 | code & 0xFFFFFFFF


# Special owners as GETFSMAP reports them, spelled as the JSON contract does.
SPECIAL_OWNERS = {
    FMR_OWNER(0, 1): "free", FMR_OWNER(0, 2): "unknown", FMR_OWNER(0, 3): "unknown",
    FMR_OWNER(ord("X"), 1): "static-fs-metadata", FMR_OWNER(ord("X"), 2): "log",
    FMR_OWNER(ord("X"), 3): "per-ag-metadata", FMR_OWNER(ord("X"), 4): "inode-btree",
    FMR_OWNER(ord("X"), 5): "inodes", FMR_OWNER(ord("X"), 6): "refcount-btree",
    FMR_OWNER(ord("X"), 7): "cow-staging", FMR_OWNER(ord("X"), 8): "defective",
}


class FsmapRecord(NamedTuple):
    device: int
    flags: int
    physical: int
    owner: int
    offset: int
    length: int


class LiveError(FsdaxError):
    """A look-up on the live system failed (an ioctl the kernel refused, mountinfo unreadable, a path that is
    not a file)."""


def new_encode_dev(st_dev: int) -> int:
    """fmr_device's form of a dev_t (new_encode_dev)."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise LiveError(f"cannot open {path}: {e.strerror}") from None


def getfsmap(mount_point: str, start: int, end: int, *, batch: int = 512, device: int | None = None):
    """Yield the kernel's records that meet bytes [start, end) of the data device (or `device`, fmr_device
    encoded), in its order, whole (not clipped), one ioctl per `batch` records."""
    fd = open_dir(mount_point)
    try:
        dev = new_encode_dev(os.fstat(fd).st_dev) if device is None else device
        buf = bytearray(_RECS_AT + batch * _REC.size)
        buf[_HEAD.size:_RECS_AT] = (_REC.pack(dev, 0, start, 0, 0, 0)
                                    + _REC.pack(dev, 0xFFFFFFFF, end - 1, (1 << 64) - 1, (1 << 64) - 1, 0))
        while True:
            _HEAD.pack_into(buf, 0, 0, 0, batch, 0)
            try:
                fcntl.ioctl(fd, FS_IOC_GETFSMAP, buf, True)
            except OSError as e:
                raise LiveError(f"FS_IOC_GETFSMAP on {mount_point}: {e.strerror}") from None
            entries = _HEAD.unpack_from(buf, 0)[3]
            last = None
            for i in range(entries):
                last = FsmapRecord._make(_REC.unpack_from(buf, _RECS_AT + i * _REC.size))
                yield last
            if not entries or last.flags & FMR_OF_LAST:
                return
            at = _RECS_AT + (entries - 1) * _REC.size  # the next call starts after the last record
            buf[_HEAD.size:_HEAD.size + _REC.size] = buf[at:at + _REC.size]
    finally:
        os.close(fd)


# --- XFS_IOC_FSGEOMETRY (struct xfs_fsop_geom, v5: 256 bytes) ---------------------------------------------

XFS_IOC_FSGEOMETRY = 0x8100587E  # _IOR('X', 126, struct xfs_fsop_geom)
_GEOM = struct.Struct("=8I4Q16s3iI4I")  # up to logsunit; sick, checked and the rest follow
_GEOM_SIZE = 256
_GEOM_FIELDS = ("blocksize", "rtextsize", "agblocks", "agcount", "logblocks", "sectsize", "inodesize", "imaxpct",
                "datablocks", "rtblocks", "rtextents", "logstart", "uuid", "sunit", "swidth", "version", "flags",
                "logsectsize", "rtsectsize", "dirblocksize", "logsunit")


def fsgeometry(mount_point: str) -> dict:
    """The mounted filesystem's geometry as its kernel reports it."""
    fd = open_dir(mount_point)
    try:
        buf = bytearray(_GEOM_SIZE)
        try:
            fcntl.ioctl(fd, XFS_IOC_FSGEOMETRY, buf, True)
        except OSError as e:
            raise LiveError(f"XFS_IOC_FSGEOMETRY on {mount_point}: {e.strerror} (not XFS?)") from None
    finally:
        os.close(fd)
    return dict(zip(_GEOM_FIELDS, _GEOM.unpack_from(buf)))


# --- FS_IOC_FIEMAP (include/uapi/linux/fiemap.h) ---------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
_FIEMAP = struct.Struct("=QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, reserved
_EXTENT = struct.Struct("=QQQ16xI12x")  # fe_logical, fe_physical, fe_length, reserved64[2], fe_flags, reserved[3]
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2  # no physical location yet
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_UNWRITTEN = 0x800


class FiemapExtent(NamedTuple):
    logical: int
    physical: int
    length: int
    flags: int


def fiemap(path: str, batch: int = 256) -> list[FiemapExtent]:
    """The kernel's map of a file's data (no FIEMAP_FLAG_SYNC: nothing is flushed, so delayed allocations
    come back flagged UNKNOWN|DELALLOC, without device bytes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise LiveError(f"cannot open {path}: {e.strerror}") from None
    out: list[FiemapExtent] = []
    try:
        start = 0
        while True:
            buf = bytearray(_FIEMAP.size + batch * _EXTENT.size)
            _FIEMAP.pack_into(buf, 0, start, (1 << 64) - 1 - start, 0, 0, batch, 0)
            try:
                fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            except OSError as e:
                raise LiveError(f"FS_IOC_FIEMAP on {path}: {e.strerror}") from None
            n = _FIEMAP.unpack_from(buf, 0)[3]
            got = [FiemapExtent._make(_EXTENT.unpack_from(buf, _FIEMAP.size + i * _EXTENT.size)) for i in range(n)]
            out += got
            if not got or got[-1].flags & FIEMAP_EXTENT_LAST:
                return out
            start = got[-1].logical + got[-1].length
    finally:
        os.close(fd)
