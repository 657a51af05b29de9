"""The running kernel as the oracle: FS_IOC_GETFSMAP, FS_IOC_FIEMAP and a "can we loop-mount XFS here" probe.

Only the stdlib (fcntl/struct/os/subprocess).  Everything here asks the kernel about a *mounted* filesystem;
fsdaxctl's answers about the unmounted image are compared against these in the tests.

Struct layouts are those of include/uapi/linux/fsmap.h and include/uapi/linux/fiemap.h (native endian, no
padding).  All GETFSMAP quantities (physical, offset, length) are in bytes.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass

# --- GETFSMAP --------------------------------------------------------------------------------------------

FS_IOC_GETFSMAP = 0xC0C0583B  # _IOWR('X', 59, struct fsmap_head): sizeof(fsmap_head) == 192

# struct fsmap: u32 device, u32 flags, u64 physical, u64 owner, u64 offset, u64 length, u64 reserved[3]
_FSMAP = struct.Struct("=IIQQQQ24x")
# struct fsmap_head: u32 iflags, u32 oflags, u32 count, u32 entries, u64 reserved[6]; then fmh_keys[2]
_HEAD = struct.Struct("=IIII48x")
_KEYS_AT = _HEAD.size  # 64
_RECS_AT = _KEYS_AT + 2 * _FSMAP.size  # 192
assert _FSMAP.size == 64 and _HEAD.size == 64 and _RECS_AT == 192

FMH_OF_DEV_T = 0x1  # fmh_oflags: fmr_device values are (new-encoded) dev_t

FMR_OF_PREALLOC = 0x1  # unwritten extent
FMR_OF_ATTR_FORK = 0x2
FMR_OF_EXTENT_MAP = 0x4  # a bmbt block of the owning inode
FMR_OF_SHARED = 0x8  # (data-fork records only) some block of the record is shared
FMR_OF_SPECIAL_OWNER = 0x10  # fmr_owner is one of the FMR_OWN_* / XFS_FMR_OWN_* codes, not an inode
FMR_OF_LAST = 0x20  # last record of the whole query


def FMR_OWNER(type_: int, code: int) -> int:  # noqa: N802 - named after the C macro
    return ((type_ & 0xFFFFFFFF) << 32) | (code & 0xFFFFFFFF)


FMR_OWN_FREE = FMR_OWNER(0, 1)
FMR_OWN_UNKNOWN = FMR_OWNER(0, 2)
FMR_OWN_METADATA = FMR_OWNER(0, 3)

_X = ord("X")  # 88
XFS_FMR_OWN_FREE = FMR_OWN_FREE
XFS_FMR_OWN_UNKNOWN = FMR_OWN_UNKNOWN
XFS_FMR_OWN_FS = FMR_OWNER(_X, 1)  # static fs metadata (sb, agf, agi, agfl headers)
XFS_FMR_OWN_LOG = FMR_OWNER(_X, 2)
XFS_FMR_OWN_AG = FMR_OWNER(_X, 3)  # per-AG metadata: bnobt, cntbt, rmapbt, AGFL blocks
XFS_FMR_OWN_INOBT = FMR_OWNER(_X, 4)  # inobt and finobt
XFS_FMR_OWN_INODES = FMR_OWNER(_X, 5)
XFS_FMR_OWN_REFC = FMR_OWNER(_X, 6)
XFS_FMR_OWN_COW = FMR_OWNER(_X, 7)
XFS_FMR_OWN_DEFECTIVE = FMR_OWNER(_X, 8)

# Short aliases (the names used in the brief / tests).
FREE, UNKNOWN, METADATA = FMR_OWN_FREE, FMR_OWN_UNKNOWN, FMR_OWN_METADATA
FS, LOG, AG, INOBT, INODES, REFC, COW, DEFECTIVE = (
    XFS_FMR_OWN_FS, XFS_FMR_OWN_LOG, XFS_FMR_OWN_AG, XFS_FMR_OWN_INOBT, XFS_FMR_OWN_INODES,
    XFS_FMR_OWN_REFC, XFS_FMR_OWN_COW, XFS_FMR_OWN_DEFECTIVE)

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class FsmapRec:
    device: int
    flags: int
    physical: int
    owner: int
    offset: int
    length: int

    def to_dict(self) -> dict:
        return {"device": self.device, "flags": self.flags, "physical": self.physical, "owner": self.owner,
                "offset": self.offset, "length": self.length}


def _new_encode_dev(st_dev: int) -> int:
    """The kernel's new_encode_dev(): the form fmr_device takes when FMH_OF_DEV_T is set."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def _pack_key(device: int, flags: int, physical: int, owner: int, offset: int, length: int) -> bytes:
    return _FSMAP.pack(device & _U32, flags & _U32, physical & _U64, owner & _U64, offset & _U64, length & _U64)


def getfsmap(path, start: int = 0, end: int | None = None, *, batch: int = 1024) -> list[FsmapRec]:
    """All GETFSMAP records of the filesystem holding `path` (any file or directory on it), in kernel order.

    With the defaults the low key is all zeroes and the high key all ones (but fmr_length 0, which this
    kernel insists on): the whole of every device.
    With `start` and/or `end` (byte addresses on the data device; `end` is the high key's fmr_physical, i.e.
    the last byte wanted, inclusive) both keys carry the data device's dev_t, because XFS zeroes a low key
    whose device is below the device being queried and ignores a high key naming another device.  What the
    kernel returns for such a keyed query is returned as is, never clipped here.

    Continuation follows the uapi header: the last record returned becomes the next low key.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        keyed = start != 0 or end is not None
        if keyed:
            dev = _new_encode_dev(os.fstat(fd).st_dev)
            low = _pack_key(dev, 0, start, 0, 0, 0)
            high = _pack_key(dev, _U32, _U64 if end is None else end, _U64, _U64, 0)
        else:
            low = _pack_key(0, 0, 0, 0, 0, 0)
            high = _pack_key(_U32, _U32, _U64, _U64, _U64, 0)  # kernel 6.18 rejects a nonzero high-key length
        buf = bytearray(_RECS_AT + batch * _FSMAP.size)
        buf[_KEYS_AT:_KEYS_AT + _FSMAP.size] = low
        buf[_KEYS_AT + _FSMAP.size:_RECS_AT] = high
        out: list[FsmapRec] = []
        while True:
            _HEAD.pack_into(buf, 0, 0, 0, batch, 0)
            fcntl.ioctl(fd, FS_IOC_GETFSMAP, buf, True)
            _, _, _, entries = _HEAD.unpack_from(buf, 0)
            if entries == 0:
                break
            for i in range(entries):
                out.append(FsmapRec(*_FSMAP.unpack_from(buf, _RECS_AT + i * _FSMAP.size)))
            last_at = _RECS_AT + (entries - 1) * _FSMAP.size
            if out[-1].flags & FMR_OF_LAST:
                break
            buf[_KEYS_AT:_KEYS_AT + _FSMAP.size] = buf[last_at:last_at + _FSMAP.size]
        return out
    finally:
        os.close(fd)


_SPECIAL_NAMES = {
    FMR_OWN_FREE: "free",
    FMR_OWN_UNKNOWN: "unknown",
    # FMR_OWN_METADATA is the generic "some metadata" code.  XFS never emits it (xfs_fsmap.c maps every rmap
    # owner to an XFS_FMR_OWN_* code; only ext4 uses it, for its group descriptors/bitmaps/inode tables).
    # Were it ever seen it would mean "filesystem metadata of no finer kind", closest to static-fs-metadata.
    FMR_OWN_METADATA: "static-fs-metadata",
    XFS_FMR_OWN_FS: "static-fs-metadata",
    XFS_FMR_OWN_LOG: "log",
    XFS_FMR_OWN_AG: "per-ag-metadata",
    XFS_FMR_OWN_INOBT: "inode-btree",
    XFS_FMR_OWN_INODES: "inodes",
    XFS_FMR_OWN_REFC: "refcount-btree",
    XFS_FMR_OWN_COW: "cow-staging",
    XFS_FMR_OWN_DEFECTIVE: "defective",
}

OWNER_NAMES = ("file", *dict.fromkeys(_SPECIAL_NAMES.values()))


def owner_name(rec) -> str:
    """This project's owner vocabulary for a GETFSMAP record (FsmapRec or dict with flags/owner)."""
    flags, owner = (rec["flags"], rec["owner"]) if isinstance(rec, dict) else (rec.flags, rec.owner)
    if not flags & FMR_OF_SPECIAL_OWNER:
        return "file"
    try:
        return _SPECIAL_NAMES[owner]
    except KeyError:
        raise ValueError(f"unknown GETFSMAP special owner {owner:#x} (type {owner >> 32}, code "
                         f"{owner & _U32})") from None


# --- FIEMAP ----------------------------------------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap): sizeof(struct fiemap) == 32

FIEMAP_FLAG_SYNC = 0x1
FIEMAP_FLAG_XATTR = 0x2

FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_ENCODED = 0x8
FIEMAP_EXTENT_DATA_ENCRYPTED = 0x80
FIEMAP_EXTENT_NOT_ALIGNED = 0x100
FIEMAP_EXTENT_DATA_INLINE = 0x200
FIEMAP_EXTENT_DATA_TAIL = 0x400
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_EXTENT_MERGED = 0x1000
FIEMAP_EXTENT_SHARED = 0x2000

# struct fiemap: u64 fm_start, u64 fm_length, u32 fm_flags, u32 fm_mapped_extents, u32 fm_extent_count,
# u32 fm_reserved; then struct fiemap_extent fm_extents[]
_FIEMAP = struct.Struct("=QQIIII")
# struct fiemap_extent: u64 fe_logical, u64 fe_physical, u64 fe_length, u64 reserved64[2], u32 fe_flags,
# u32 reserved[3]
_EXTENT = struct.Struct("=QQQ16xI12x")
assert _FIEMAP.size == 32 and _EXTENT.size == 56


@dataclass(frozen=True)
class FiemapExtent:
    logical: int
    physical: int
    length: int
    flags: int

    def to_dict(self) -> dict:
        return {"logical": self.logical, "physical": self.physical, "length": self.length, "flags": self.flags}


def fiemap(path, *, xattr: bool = False, batch: int = 512) -> list[FiemapExtent]:
    """Every extent of a file's data fork (or, with xattr=True, its attribute fork), bytes, FIEMAP_FLAG_SYNC."""
    flags = FIEMAP_FLAG_SYNC | (FIEMAP_FLAG_XATTR if xattr else 0)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        buf = bytearray(_FIEMAP.size + batch * _EXTENT.size)
        out: list[FiemapExtent] = []
        pos = 0
        while True:
            _FIEMAP.pack_into(buf, 0, pos, _U64 - pos, flags, 0, batch, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = _FIEMAP.unpack_from(buf, 0)[3]
            if mapped == 0:
                break
            for i in range(mapped):
                out.append(FiemapExtent(*_EXTENT.unpack_from(buf, _FIEMAP.size + i * _EXTENT.size)))
            last = out[-1]
            if last.flags & FIEMAP_EXTENT_LAST:
                break
            nxt = last.logical + last.length
            if nxt <= pos:  # no progress: never loop forever on a strange answer
                break
            pos = nxt
        return out
    finally:
        os.close(fd)


# --- can we do any of this here? -------------------------------------------------------------------------

_PROBE_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}


@functools.lru_cache(maxsize=None)
def can_loop_mount() -> tuple[bool, str]:
    """(True, "") if we are root, /dev/loop-control exists and mkfs.xfs + mount -o loop + umount really work.

    Cached per process.  Self-contained (does not use tests.images) so it can run before anything else.
    """
    if os.geteuid() != 0:
        return False, "not root"
    if not os.path.exists("/dev/loop-control"):
        return False, "no /dev/loop-control"
    for tool in ("mkfs.xfs", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found"
    env = {**os.environ, **_PROBE_ENV}
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-probe-") as tmp:
        img, mnt = os.path.join(tmp, "probe.img"), os.path.join(tmp, "mnt")
        os.mkdir(mnt)
        with open(img, "wb") as fh:
            fh.truncate(64 << 20)
        p = subprocess.run(["mkfs.xfs", "-f", "-q", "-m", "rmapbt=1,reflink=1", img], env=env,
                           capture_output=True, text=True)
        if p.returncode:
            return False, f"mkfs.xfs failed: {p.stderr.strip()}"
        p = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
        if p.returncode:
            return False, f"mount -o loop failed: {p.stderr.strip()}"
        try:
            recs = getfsmap(mnt)
            if not recs:
                return False, "FS_IOC_GETFSMAP returned nothing"
        except OSError as e:
            return False, f"FS_IOC_GETFSMAP failed: {e}"
        finally:
            for i in range(20):
                if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1 * (i + 1))
            else:
                return False, "umount failed"
    return True, ""


__all__ = [
    "FsmapRec", "getfsmap", "owner_name", "OWNER_NAMES", "FiemapExtent", "fiemap", "can_loop_mount",
    "FS_IOC_GETFSMAP", "FS_IOC_FIEMAP", "FIEMAP_FLAG_SYNC", "FIEMAP_FLAG_XATTR", "FIEMAP_EXTENT_LAST",
    "FIEMAP_EXTENT_UNWRITTEN", "FIEMAP_EXTENT_SHARED", "FIEMAP_EXTENT_DATA_INLINE",
    "FMR_OF_PREALLOC", "FMR_OF_ATTR_FORK", "FMR_OF_EXTENT_MAP", "FMR_OF_SHARED", "FMR_OF_SPECIAL_OWNER",
    "FMR_OF_LAST", "FMR_OWNER", "FMR_OWN_FREE", "FMR_OWN_UNKNOWN", "FMR_OWN_METADATA",
    "FREE", "UNKNOWN", "METADATA", "FS", "LOG", "AG", "INOBT", "INODES", "REFC", "COW", "DEFECTIVE",
    "XFS_FMR_OWN_FS", "XFS_FMR_OWN_LOG", "XFS_FMR_OWN_AG", "XFS_FMR_OWN_INOBT", "XFS_FMR_OWN_INODES",
    "XFS_FMR_OWN_REFC", "XFS_FMR_OWN_COW", "XFS_FMR_OWN_DEFECTIVE",
]
