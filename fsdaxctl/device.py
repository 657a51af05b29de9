"""The target: an image file or a block device, opened O_RDONLY, read with pread.

The only module that touches the target. It knows bytes, never filesystem structures.
"""

from __future__ import annotations

import os
import stat

from fsdaxctl.errors import DeviceError, TruncatedError


class Device:
    def __init__(self, path: str):
        self.path = path
        try:
            # O_RDONLY is the whole point: a forensic target is never opened for writing.
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise DeviceError(f"cannot open {path}: {e.strerror}", device=None) from None
        try:
            st = os.fstat(self.fd)
            self.is_block_device = stat.S_ISBLK(st.st_mode)
            if not (self.is_block_device or stat.S_ISREG(st.st_mode)):
                raise DeviceError(f"{path} is neither a regular file nor a block device")
            self.rdev = st.st_rdev if self.is_block_device else None
            self.ino = (st.st_dev, st.st_ino)
            # SEEK_END gives a block device's size too, without an ioctl.
            self.size = os.lseek(self.fd, 0, os.SEEK_END)
        except BaseException:
            os.close(self.fd)
            raise

    def pread(self, offset: int, length: int, what: str = "data") -> bytes:
        """Exactly `length` bytes at `offset`, or TruncatedError / DeviceError naming what was being read."""
        if offset + length > self.size:
            raise TruncatedError(
                f"{what} lies past the end of {self.path} ({self.size} bytes): the image is truncated",
                daddr=offset >> 9,
            )
        try:
            buf = os.pread(self.fd, length, offset)
        except OSError as e:
            raise DeviceError(f"read error in {what}: {e.strerror}", daddr=offset >> 9) from None
        if len(buf) != length:
            raise TruncatedError(f"short read of {what} ({len(buf)} of {length} bytes)", daddr=offset >> 9)
        return buf

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _loop_devices_backing(path: str) -> list[str]:
    """'MAJ:MIN' of every loop device whose backing file is `path`."""
    real = os.path.realpath(path)
    found = []
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return found
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as fh:
                backing = fh.read().rstrip("\n")
            with open(f"/sys/block/{name}/dev") as fh:
                majmin = fh.read().strip()
        except OSError:
            continue
        if backing == real or backing.removesuffix(" (deleted)") == real:
            found.append(majmin)
    return found


def mount_points(dev: Device, mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, bool]]:
    """(mount point, read-only?) for every mount of the target, directly or through a loop device."""
    if dev.is_block_device:
        wanted = {f"{os.major(dev.rdev)}:{os.minor(dev.rdev)}"}
    else:
        wanted = set(_loop_devices_backing(dev.path))
    if not wanted:
        return []
    out = []
    try:
        with open(mountinfo) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 5 and fields[2] in wanted:
                    # Octal escapes (\040 for space) as the kernel writes them in mountinfo.
                    point = fields[4].encode().decode("unicode_escape")
                    out.append((point, "ro" in fields[5].split(",")))
    except OSError:
        pass
    return out


def mount_warnings(dev: Device) -> list[str]:
    out = []
    for point, ro in mount_points(dev):
        if ro:
            out.append(f"{dev.path} is mounted read-only at {point}")
        else:
            out.append(f"{dev.path} is mounted read-write at {point}: the kernel holds metadata in memory that "
                       "is not on disk yet, so the answers may be stale")
    return out
