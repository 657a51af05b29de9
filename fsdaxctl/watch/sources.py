"""Event sources for `watch`: each one a file descriptor to poll() and a read() that returns Reports.

- KmsgSource: /dev/kmsg records, one read() each, with their sequence numbers (resume after a restart);
- TextSource: kernel log text from a pipe or file (`journalctl -kf -o cat | fsdaxctl watch --kmsg -`);
- BadblocksSource: a sysfs badblocks attribute, re-read when the kernel signals it (sysfs_notify wakes poll()
  with POLLPRI|POLLERR; the attribute must be read again to re-arm), or every --poll-interval where it is not
  sysfs (a copied tree) or the driver does not notify; only new or grown ranges are reported;
- ScrubSource: an nd bus's `nfit/scrub` attribute (its count changes when an address-range scrub finishes):
  all region badblocks are read again;
- UeventSource: kernel uevents (pyroute2's UeventSocket) for the block, nd and dax subsystems;
- MountsSource: /proc/self/mountinfo, which wakes poll() with POLLPRI|POLLERR when the mount table changes.

A Report carries what was found; nothing here resolves owners.
"""

from __future__ import annotations

import errno
import os
import select
import time
from dataclasses import dataclass, field, replace

from fsdaxctl.errors import FsdaxError
from fsdaxctl.inputs import Parsed
from fsdaxctl.stack import Extent
from fsdaxctl.units import SECTOR

POLLIN = select.POLLIN
POLLPRI_ERR = select.POLLPRI | select.POLLERR


@dataclass
class Report:
    """One thing a source noticed: a damage report (parsed extents/inodes) or a device event (uevent)."""

    source: str                  # kmsg, journal, badblocks, uevent, health
    origin: str                  # '/dev/kmsg seq 1234', 'stdin line 5', '/sys/block/pmem0/badblocks sector 8'
    text: str = ""               # the log message, the badblocks entries, the uevent's action@devpath
    parsed: Parsed | None = None
    uevent: dict | None = None
    seq: int | None = None       # /dev/kmsg sequence number
    time: float = field(default_factory=time.time)


# --- the kernel log ---------------------------------------------------------------------------------------------

class _LineParser:
    """fsdaxctl.inputs.kmsg's parser kept across lines (GHES prints the severity and the address on separate
    lines), emptied after each line so nothing accumulates in a process that runs for months."""

    def __init__(self, buffer_block_size: int = 4096):
        from fsdaxctl.inputs import kmsg

        self._k = kmsg._Kmsg("kmsg", buffer_block_size)

    def parse(self, text: str, origin: str) -> Parsed | None:
        """The extents/inodes one line reports (None: not a damage report). Origins become `origin`."""
        k = self._k
        k.out, k.seen, k.used = Parsed(), set(), 0
        k.name = "line"
        k.line(1, text)
        out = k.out
        if len(k.ghes) > 64:
            k.ghes.clear()
        if not out.extents and not out.inodes and not out.skipped:
            return None
        out.extents = [replace(e, origin=origin) for e in out.extents]
        out.inodes = [replace(i, origin=origin) for i in out.inodes]
        out.skipped = [(origin, why) for _, why in out.skipped]
        return out


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class KmsgSource:
    """/dev/kmsg: one record per read(): 'PRI,SEQ,USEC,FLAGS[,...];MESSAGE\\n' then ' KEY=VALUE' lines.

    `after_seq`: records up to this sequence number were handled before (same boot): skipped. `from_now`:
    start at the end of the ring buffer instead of its oldest record. `user`: also take records userspace
    wrote (facility != 0: `echo ... > /dev/kmsg`, drills and tests); by default only the kernel's own."""

    name = "kmsg"
    events = POLLIN

    def __init__(self, path: str = "/dev/kmsg", *, after_seq: int | None = None, from_now: bool = False,
                 user: bool = False, buffer_block_size: int = 4096):
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise FsdaxError(f"cannot open {path}: {e.strerror}") from None
        self.path = path
        if from_now:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.last_seq = after_seq
        self.user = user
        self.lost = 0            # records overwritten before we read them (EPIPE)
        self.user_skipped = 0
        self.parser = _LineParser(buffer_block_size)
        self.done = False

    def fileno(self) -> int:
        return self.fd

    def read(self, limit: int = 4096) -> list[Report]:
        out = []
        for _ in range(limit):
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # the ring buffer overwrote records we had not read yet
                self.lost += 1
                continue
            except InterruptedError:
                continue
            if not rec:
                break
            r = self._record(rec)
            if r is not None:
                out.append(r)
        return out

    def _record(self, rec: bytes) -> Report | None:
        head, sep, body = rec.partition(b";")
        if not sep:
            return None
        fields = head.split(b",")
        try:
            pri, seq = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):
            return None
        if self.last_seq is not None and seq <= self.last_seq:
            return None
        self.last_seq = seq
        if pri >> 3 and not self.user:
            self.user_skipped += 1
            return None
        text = body.split(b"\n", 1)[0].decode("utf-8", "backslashreplace")
        origin = f"{self.path} seq {seq}"
        parsed = self.parser.parse(text, origin)
        if parsed is None:
            return None
        return Report("kmsg", origin, text, parsed, seq=seq)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class TextSource:
    """Kernel log text, a line at a time, from a pipe or a file ('-' = stdin): journalctl -kf -o cat, dmesg -w,
    a kern.log. Done at end of file."""

    name = "journal"
    events = POLLIN

    def __init__(self, path: str, buffer_block_size: int = 4096):
        self.shown = "stdin" if path == "-" else path
        if path == "-":
            self.fd = os.dup(0)
        else:
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise FsdaxError(f"cannot open {path}: {e.strerror}") from None
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.n = 0
        self.done = False
        self.parser = _LineParser(buffer_block_size)

    def fileno(self) -> int:
        return self.fd

    def read(self, limit: int = 4096) -> list[Report]:
        out = []
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return out
        except InterruptedError:
            return out
        if not chunk:
            self.done = True
            if self.buf:
                chunk, self.buf = self.buf + b"\n", b""
            else:
                return out
        data = self.buf + chunk
        lines = data.split(b"\n")
        self.buf = lines.pop()
        if len(self.buf) > 1 << 20:  # no newline in a megabyte: not a log; drop it rather than grow
            self.buf = b""
        for raw in lines:
            self.n += 1
            text = raw.rstrip(b"\r").decode("utf-8", "backslashreplace")
            origin = f"{self.shown} line {self.n}"
            parsed = self.parser.parse(text, origin)
            if parsed is not None:
                out.append(Report("journal", origin, text, parsed))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- sysfs badblocks --------------------------------------------------------------------------------------------

def _subtract(ranges: list[tuple[int, int]], seen: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of (offset, length) ranges not covered by `seen` (both in bytes)."""
    cover = sorted(seen)
    out = []
    for off, n in sorted(ranges):
        cur, end = off, off + n
        for s, sn in cover:
            if s + sn <= cur or s >= end:
                continue
            if s > cur:
                out.append((cur, s - cur))
            cur = max(cur, s + sn)
            if cur >= end:
                break
        if cur < end:
            out.append((cur, end - cur))
    return out


def is_sysfs(path: str) -> bool:
    return os.path.realpath(path).startswith("/sys/")


class BadblocksSource:
    """One badblocks attribute ('SECTOR COUNT' lines). `seen`: the byte ranges already reported (from the state
    file); `space`: what the list counts from (from its path, or DEV= given)."""

    name = "badblocks"

    def __init__(self, path: str, space, seen: list | None = None, *, sysfs: bool | None = None):
        self.path = path
        self.space = space
        self.seen = [tuple(r) for r in (seen or [])]
        self.sysfs = is_sysfs(path) if sysfs is None else sysfs
        self.events = POLLPRI_ERR if self.sysfs else 0
        self.fd = -1
        self.done = False
        self.problem = None
        self._open()

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.fd = -1
            self.problem = f"cannot open {self.path}: {e.strerror}"

    def fileno(self) -> int:
        return self.fd

    def _text(self) -> str | None:
        if self.fd < 0:
            self._open()
            if self.fd < 0:
                return None
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            data = b""
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                data += chunk
            if not self.sysfs:  # a copy: re-open each time, it may have been replaced by a rename
                os.close(self.fd)
                self.fd = -1
            return data.decode("utf-8", "surrogateescape")
        except OSError as e:
            self.problem = f"cannot read {self.path}: {e.strerror}"
            if e.errno in (errno.ENODEV, errno.ENOENT, errno.EBADF):
                self.close()
            return None

    def current(self) -> list[tuple[int, int]] | None:
        from fsdaxctl.errors import UsageError
        from fsdaxctl.inputs.badblocks import parse_sysfs_badblocks

        text = self._text()
        if text is None:
            return None
        try:
            parsed = parse_sysfs_badblocks(text.splitlines(True), self.path, self.space)
        except UsageError as e:
            self.problem = str(e)
            return None
        return [(e.offset, e.length) for e in parsed.extents]

    def read(self, limit: int = 0) -> list[Report]:
        now = self.current()
        if now is None:
            return []
        new = _subtract(now, self.seen)
        self.seen = sorted(now)  # ranges that were cleared are forgotten: if they come back, they are new
        out = []
        for off, n in new:
            s, c = off // SECTOR, n // SECTOR
            origin = f"{self.path} sector {s}"
            ext = Extent(self.space, off, n, origin, f"sector {s}, {c} sector{'s' if c != 1 else ''} (new in the "
                                                     "list)")
            out.append(Report("badblocks", origin, f"{s} {c}", Parsed(extents=[ext])))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ScrubSource:
    """/sys/bus/nd/devices/ndbusN/nfit/scrub: 'COUNT[+]' (+ while a scrub runs); sysfs_notify when one ends."""

    name = "scrub"
    events = POLLPRI_ERR

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.done = False
        self.count = self._value()

    def fileno(self) -> int:
        return self.fd

    def _value(self) -> str:
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            return os.read(self.fd, 64).decode(errors="replace").strip()
        except OSError:
            return ""

    def changed(self) -> bool:
        value = self._value()
        if value != self.count:
            self.count = value
            return not value.endswith("+")
        return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def sysfs_badblocks_paths(sysfs: str = "/sys") -> list[str]:
    """Every badblocks attribute the machine has: disks that keep a list (pmem, md, null_blk with badblocks)
    and nd regions."""
    import glob

    return sorted(glob.glob(f"{sysfs}/block/*/badblocks") + glob.glob(f"{sysfs}/bus/nd/devices/region*/badblocks"))


def scrub_paths(sysfs: str = "/sys") -> list[str]:
    import glob

    return sorted(glob.glob(f"{sysfs}/bus/nd/devices/ndbus*/nfit/scrub"))


# --- uevents and mounts -----------------------------------------------------------------------------------------

SUBSYSTEMS = ("block", "nd", "dax")
_KEYS = ("ACTION", "DEVPATH", "SUBSYSTEM", "DEVNAME", "DEVTYPE", "DRIVER", "MAJOR", "MINOR", "SEQNUM",
         "DISK_MEDIA_CHANGE", "RESIZE")


class UeventSource:
    """Kernel uevents (NETLINK_KOBJECT_UEVENT through pyroute2) of the block, nd and dax subsystems."""

    name = "uevent"
    events = POLLIN

    def __init__(self):
        from pyroute2 import UeventSocket

        self.sock = UeventSocket()
        try:
            self.sock.bind()
        except BaseException:
            self.sock.close()
            raise
        self.done = False
        self.problems = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 0) -> list[Report]:
        try:
            msgs = self.sock.get()
        except OSError as e:  # ENOBUFS: a burst overflowed the socket; the next ones still come
            self.problems += 1
            return [Report("uevent", "uevent socket", f"uevents lost: {e.strerror or e}",
                           uevent={"ACTION": "lost", "SUBSYSTEM": "", "error": str(e)})]
        out = []
        for m in msgs:
            ev = {k: str(m.get(k)) for k in _KEYS if m.get(k) is not None}
            if ev.get("SUBSYSTEM") not in SUBSYSTEMS:
                continue
            text = f"{ev.get('ACTION', '?')}@{ev.get('DEVPATH', '?')}"
            out.append(Report("uevent", f"uevent {ev.get('SEQNUM', '?')}", text, uevent=ev))
        return out

    def close(self) -> None:
        self.sock.close()


class MountsSource:
    """/proc/self/mountinfo: poll() says POLLPRI|POLLERR when something was mounted or unmounted."""

    name = "mounts"
    events = POLLPRI_ERR

    def __init__(self, path: str = "/proc/self/mountinfo"):
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.done = False

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- the XFS health monitor -------------------------------------------------------------------------------------

XFS_IOC_HEALTH_MONITOR = 0x40205844  # _IOW('X', 68, struct xfs_health_monitor): 32 bytes (Linux 7.0)


def health_monitor_note(mount_point: str | None) -> str:
    """Whether this kernel has XFS_IOC_HEALTH_MONITOR, asked by trying it (the feature, not the version)."""
    import ctypes

    if mount_point is None:
        return "XFS health monitor: no mounted XFS to ask"
    try:
        fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return f"XFS health monitor: cannot open {mount_point}: {e.strerror}"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        arg = ctypes.create_string_buffer(32)  # struct xfs_health_monitor, all zero: flags 0, format 0
        mon = libc.ioctl(fd, ctypes.c_ulong(XFS_IOC_HEALTH_MONITOR), arg)  # returns the monitor's new fd
        if mon < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
                return (f"XFS health monitor: not in this kernel ({os.uname().release}: XFS_IOC_HEALTH_MONITOR "
                        f"says {errno.errorcode.get(err, err)}); media errors come from the kernel log and "
                        "badblocks instead")
            return f"XFS health monitor: {os.strerror(err)}; skipped"
        os.close(mon)
        return ("XFS health monitor: this kernel has XFS_IOC_HEALTH_MONITOR, but fsdaxctl does not read its "
                "events yet; media errors come from the kernel log and badblocks")
    finally:
        os.close(fd)
