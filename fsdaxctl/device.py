"""The target: an image file or a block device, opened O_RDONLY, read with pread.

The only module that touches the target. It knows bytes, never filesystem structures.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat

from fsdaxctl.errors import DeviceError, TruncatedError

MOUNTINFO = "/proc/self/mountinfo"


_DIRECT_ALIGN = 4096  # O_DIRECT reads: offset, length and buffer aligned to the logical block size (<= 4096)


class Device:
    def __init__(self, path: str, *, direct: bool = False):
        """direct: read with O_DIRECT, for a block device under a mounted filesystem: its page cache is not
        kept current by XFS (which writes through its own buffer cache), so only O_DIRECT sees the disk."""
        self.path = path
        self.mounted_at = None  # (mount point, read-only?) list, filled in by mount_points()
        self.direct = False
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            # O_RDONLY is the whole point: a forensic target is never opened for writing.
            self.fd = os.open(path, flags | (os.O_DIRECT if direct else 0))
            self.direct = direct
        except OSError as e:
            if not direct:
                raise DeviceError(f"cannot open {path}: {e.strerror}", device=None) from None
            try:  # a file system that refuses O_DIRECT (tmpfs): a regular file's page cache is the truth there
                self.fd = os.open(path, flags)
            except OSError as e2:
                raise DeviceError(f"cannot open {path}: {e2.strerror}", device=None) from None
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

    def use_direct(self) -> None:
        """Read with O_DIRECT from now on (a filesystem was found mounted on it), without opening it again;
        where the file's filesystem refuses O_DIRECT (tmpfs), its page cache is the truth and stays in use."""
        import fcntl

        try:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_DIRECT)
            self.direct = True
        except OSError:
            pass

    def pread(self, offset: int, length: int, what: str = "data") -> bytes:
        """Exactly `length` bytes at `offset`, or TruncatedError / DeviceError naming what was being read."""
        if offset + length > self.size:
            raise TruncatedError(
                f"{what} lies past the end of {self.path} ({self.size} bytes): the image is truncated",
                daddr=offset >> 9,
            )
        try:
            buf = self._pread_direct(offset, length) if self.direct else os.pread(self.fd, length, offset)
        except OSError as e:
            raise DeviceError(f"read error in {what}: {e.strerror}", daddr=offset >> 9) from None
        if len(buf) != length:
            raise TruncatedError(f"short read of {what} ({len(buf)} of {length} bytes)", daddr=offset >> 9)
        return buf

    def _pread_direct(self, offset: int, length: int) -> bytes:
        """An aligned O_DIRECT read into a page-aligned buffer (mmap), cut to what was asked."""
        import mmap

        start = offset - offset % _DIRECT_ALIGN
        end = -(-(offset + length) // _DIRECT_ALIGN) * _DIRECT_ALIGN
        with mmap.mmap(-1, end - start) as buf:
            n = os.preadv(self.fd, [buf], start)
            return bytes(buf[offset - start:min(n, offset - start + length)])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Window:
    """Bytes [start, start + size) of a Device seen as a device of their own: the filesystem inside a partition
    or a pmem namespace's data area. Offsets, sizes and messages are the window's, as the filesystem counts them.
    """

    def __init__(self, dev: Device, start: int, size: int, name: str):
        self.base, self.start = dev, start
        self.size = max(0, min(size, dev.size - start))  # a truncated image: the window ends where the file does
        self.declared_size = size
        self.path = f"{dev.path} ({name})"
        self.is_block_device, self.rdev, self.ino = dev.is_block_device, dev.rdev, dev.ino

    def pread(self, offset: int, length: int, what: str = "data") -> bytes:
        if offset + length > self.size:
            raise TruncatedError(f"{what} lies past the end of {self.path} ({self.size} bytes): the image is "
                                 "truncated", daddr=offset >> 9)
        return self.base.pread(self.start + offset, length, what)

    def close(self) -> None:
        self.base.close()

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


# --- mounts ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo (fs/proc_namespace.c show_mountinfo), unescaped."""

    mount_id: int
    parent_id: int
    dev: tuple[int, int]              # sb->s_dev: for XFS on a loop device, the loop device's major:minor
    root: str                         # the directory of the filesystem mounted here ("/" unless a bind mount)
    mount_point: str
    mount_options: tuple[str, ...]    # per mount (rw/ro, nosuid, relatime ...)
    fs_type: str
    source: str
    super_options: tuple[str, ...]    # per superblock: rw/ro, then the filesystem's ->show_options
    optional: tuple[str, ...] = ()    # shared:N, master:N ...

    @property
    def read_only(self) -> bool:
        """Read-only through either the mount or the superblock."""
        return "ro" in self.mount_options or "ro" in self.super_options

    def option(self, name: str) -> str | bool | None:
        """The value of super or mount option `name` ("dax=always" -> "always"), True for a flag, None if absent."""
        for opt in self.super_options + self.mount_options:
            key, eq, value = opt.partition("=")
            if key == name:
                return value if eq else True
        return None


_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes | str) -> str:
    """Undo the kernel's mangle(): mountinfo writes space, tab, newline and backslash as \\ooo (seq_path_root,
    seq_escape); other bytes, UTF-8 or not, are written raw. Bytes that are not UTF-8 come back as \\udcXX."""
    raw = field if isinstance(field, bytes) else os.fsencode(field)
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), raw))


def parse_mountinfo_line(line: bytes | str) -> Mount:
    """`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue` (proc(5))."""
    raw = line if isinstance(line, bytes) else os.fsencode(line)
    fields = raw.rstrip(b"\n").split(b" ")
    try:
        sep = fields.index(b"-", 6)
        major, minor = fields[2].split(b":")
        return Mount(
            mount_id=int(fields[0]), parent_id=int(fields[1]), dev=(int(major), int(minor)),
            root=unescape(fields[3]), mount_point=unescape(fields[4]),
            mount_options=tuple(unescape(o) for o in fields[5].split(b",") if o),
            optional=tuple(unescape(o) for o in fields[6:sep]),
            fs_type=unescape(fields[sep + 1]), source=unescape(fields[sep + 2]),
            super_options=tuple(unescape(o) for o in fields[sep + 3].split(b",") if o) if len(fields) > sep + 3
            else (),
        )
    except (ValueError, IndexError):
        raise DeviceError("malformed mountinfo line", found=os.fsdecode(raw.strip())[:200]) from None


def mounts(mountinfo: str = MOUNTINFO) -> list[Mount]:
    """Every mount in this process's mount namespace."""
    try:
        with open(mountinfo, "rb") as fh:
            return [parse_mountinfo_line(line) for line in fh if line.strip()]
    except OSError as e:
        raise DeviceError(f"cannot read {mountinfo}: {e.strerror}") from None


def _devt(devt: tuple[int, int] | str) -> tuple[int, int]:
    """(major, minor) from a tuple, a "MAJ:MIN" string or the path of a block device."""
    if isinstance(devt, tuple):
        return int(devt[0]), int(devt[1])
    if re.fullmatch(r"\d+:\d+", devt):
        major, minor = devt.split(":")
        return int(major), int(minor)
    try:
        st = os.stat(devt)
    except OSError as e:
        raise DeviceError(f"cannot stat {devt}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise DeviceError(f"{devt} is not a block device (give MAJ:MIN, a device, or find its loop device first)")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def mounts_of_device(devt: tuple[int, int] | str, mountinfo: str = MOUNTINFO) -> list[Mount]:
    """Every mount (bind mounts included) of the filesystem whose superblock is on device `devt`."""
    want = _devt(devt)
    return [m for m in mounts(mountinfo) if m.dev == want]


def mount_of_path(path: str, mountinfo: str = MOUNTINFO) -> Mount | None:
    """The mount `path` lives on: same device, longest mount point that prefixes its real path."""
    real = os.path.realpath(path)
    dev = os.stat(real).st_dev
    best = None
    for m in mounts(mountinfo):
        if m.dev != (os.major(dev), os.minor(dev)):
            continue
        mp = m.mount_point.rstrip("/") or "/"
        if (real == mp or real.startswith(mp + "/") or mp == "/") and (best is None or len(mp) > len(best.mount_point)):
            best = m
    return best


def mount_points(dev, mountinfo: str = MOUNTINFO) -> list[tuple[str, bool]]:
    """(mount point, read-only?) for every mount of the target, directly or through a loop device. Looked up
    once per Device (the warnings, the live check and --act all ask)."""
    dev = getattr(dev, "base", dev)  # a Window: its mounts are the underlying device's
    if mountinfo == MOUNTINFO and getattr(dev, "mounted_at", None) is not None:
        return dev.mounted_at
    wanted = _devts(dev)
    try:
        found = [(m.mount_point, m.read_only) for m in mounts(mountinfo) if m.dev in wanted] if wanted else []
    except DeviceError:
        found = []
    if mountinfo == MOUNTINFO:
        dev.mounted_at = found
    return found


def _devts(dev) -> set[tuple[int, int]]:
    """(major, minor) of the block devices a mount of `dev` would name: itself, or the loop devices backed by
    the file."""
    if dev.is_block_device:
        return {(os.major(dev.rdev), os.minor(dev.rdev))}
    return {tuple(int(x) for x in m.split(":")) for m in _loop_devices_backing(dev.path)}


def log_device_mounts(dev, mountinfo: str = MOUNTINFO) -> list[str]:
    """Mount points of the filesystems using `dev` (directly or through a loop device) as their external log
    (mount option logdev=): its log is live there."""
    wanted = _devts(getattr(dev, "base", dev))
    out = []
    try:
        for m in mounts(mountinfo):
            value = m.option("logdev")
            if isinstance(value, str) and value:
                try:
                    st = os.stat(value)
                except OSError:
                    continue
                if (os.major(st.st_rdev), os.minor(st.st_rdev)) in wanted:
                    out.append(m.mount_point)
    except DeviceError:
        return []
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
