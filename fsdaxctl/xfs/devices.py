"""The filesystem's devices beside the data device: an external log (`--logdev`) and a realtime device (`--rtdev`).

A filesystem made with `mkfs.xfs -l logdev=LOG` has sb_logstart 0 and its whole log on LOG, from byte 0 for
sb_logblocks blocks; the kernel's GETFSMAP reports that device as one record, XFS_RMAP_OWN_LOG from 0 for the
log's length (xfs_getfsmap_logdev), and nothing past it. A realtime device holds only file data (and, with
rtgroups, its group superblocks); its owners need the rt bitmap or the rt rmap btree (fsdaxctl.xfs.rt).

Every piece of a filesystem that has more than one device says which one it lies on (`device`: data, log, rt).
"""

from __future__ import annotations

from fsdaxctl.device import Device
from fsdaxctl.errors import Problems, UnsupportedError, UsageError
from fsdaxctl.xfs.piece import Piece, device_batches

DATA, LOG, RT = "data", "log", "rt"
DEVICES = (DATA, LOG, RT)


def from_mount(fs) -> dict[str, str]:
    """The log and realtime devices of a mounted TARGET, from its mount options (logdev=, rtdev=)."""
    from fsdaxctl.device import mount_of_path, mount_points

    found: dict[str, str] = {}
    try:
        for mp, _ in mount_points(fs.dev):
            m = mount_of_path(mp)
            for key, name in (("logdev", LOG), ("rtdev", RT)):
                value = m.option(key) if m is not None else None
                if isinstance(value, str) and value:
                    found.setdefault(name, value)
    except Exception:  # noqa: BLE001 - best effort: without it the user gives --logdev/--rtdev
        return {}
    return found


def attach(fs, logdev: str | None = None, rtdev: str | None = None) -> None:
    """Open the devices named beside TARGET and hang them on fs (fs.logdev, fs.rtdev), checking that the
    filesystem has them; warn when it has a device that was not given. A mounted TARGET's own devices are
    found from its mount options when not given."""
    sb, geo = fs.sb, fs.geo
    if (not logdev and sb.sb_logstart == 0) or (not rtdev and sb.sb_rblocks):
        mounted = from_mount(fs)
        if not logdev and sb.sb_logstart == 0 and LOG in mounted:
            logdev = mounted[LOG]
            fs.warnings.append(f"the log device is {logdev} (from the mount options)")
        if not rtdev and sb.sb_rblocks and RT in mounted:
            rtdev = mounted[RT]
            fs.warnings.append(f"the realtime device is {rtdev} (from the mount options)")
    if logdev:
        if sb.sb_logstart != 0:
            raise UsageError(f"--logdev {logdev}: this filesystem's log is internal (sb_logstart {sb.sb_logstart}): "
                             "it has no log device")
        fs.logdev = _open(logdev, "--logdev")
        fs.extra_devices = getattr(fs, "extra_devices", []) + [fs.logdev]
        need = sb.sb_logblocks << geo.blocklog
        if fs.logdev.size < need:
            fs.warnings.append(f"the log device {logdev} ({fs.logdev.size} bytes) is shorter than the log "
                               f"({need} bytes): the image is truncated")
    elif has_own(fs, LOG) and not fs.log_problem:
        fs.warnings.append("this filesystem's log is on a device of its own (external log): give --logdev FILE to "
                           "map its bytes and to check whether it is clean")
    if rtdev and fs.geo.internal_rt is not None:
        a, b = fs.geo.internal_rt
        raise UsageError(f"--rtdev {rtdev}: this zoned filesystem's realtime section lies inside TARGET (bytes "
                         f"{a}..{b - 1}): it has no realtime device of its own")
    if not rtdev and has_own(fs, RT):
        fs.warnings.append(f"this filesystem has a realtime device ({sb.sb_rblocks} blocks) holding its realtime "
                           "files' data: give --rtdev FILE to map its bytes (--fs-device rt)")
    if rtdev:
        if not sb.sb_rblocks:
            raise UsageError(f"--rtdev {rtdev}: this filesystem has no realtime device (sb_rblocks 0)")
        fs.rtdev = _open(rtdev, "--rtdev")
        fs.extra_devices = getattr(fs, "extra_devices", []) + [fs.rtdev]


def _open(path: str, what: str) -> Device:
    try:
        return Device(path)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror or e}") from None


def has_own(fs, device: str) -> bool:
    """Does the filesystem keep `device` (LOG, RT) on a device of its own? (An internal zoned realtime
    section lies inside TARGET.)"""
    if device == RT:
        return bool(fs.sb.sb_rblocks) and fs.geo.internal_rt is None
    return device == LOG and fs.sb.sb_logstart == 0


def multi_device(fs) -> bool:
    """Does the filesystem have a device besides the data device? (Then every piece names its device.)"""
    return fs.sb.sb_logstart == 0 or bool(fs.sb.sb_rblocks)


def device_size(fs, device: str) -> int:
    """Bytes of `device` the filesystem covers (an internal realtime section: the disk up to its end, as the
    kernel addresses it)."""
    sb, geo = fs.sb, fs.geo
    if device == DATA:
        return geo.size
    if device == LOG:
        return sb.sb_logblocks << geo.blocklog if sb.sb_logstart == 0 else 0
    from fsdaxctl.xfs.rt import rt_device_end

    return rt_device_end(sb) if sb.sb_rblocks else 0


def device_file(fs, device: str):
    """The open Device holding `device`'s bytes, or a one-line error saying what to give."""
    if device == DATA:
        return fs.dev
    if device == LOG:
        if fs.sb.sb_logstart != 0:
            raise UsageError("this filesystem's log is internal: its bytes are on the data device")
        dev = getattr(fs, "logdev", None)
        if dev is None:
            raise UsageError("the log device's bytes: give --logdev FILE (this filesystem has an external log)")
        return dev
    if not fs.sb.sb_rblocks:
        raise UsageError("this filesystem has no realtime device")
    if fs.geo.internal_rt is not None:  # zoned, rtstart: the realtime section is TARGET's tail
        return fs.dev
    dev = getattr(fs, "rtdev", None)
    if dev is None:
        raise UsageError("the realtime device's bytes: give --rtdev FILE")
    return dev


class LogDeviceMap:
    """Owners on an external log device, as the kernel's xfs_getfsmap_logdev reports them: `log` from byte 0
    for sb_logblocks blocks; past that `outside-filesystem`. Same protocol as OwnerMap."""

    device = LOG

    def __init__(self, fs):
        self.fs = fs
        self.source = "log"
        self.problems = Problems()
        device_file(fs, LOG)  # a one-line error unless --logdev was given
        self.size = device_size(fs, LOG)

    def prepare(self, ranges) -> None:
        pass

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def iter_batches(self, offset: int, length: int):
        return iter(device_batches(offset, length, self.size, LOG,
                                   lambda lo, hi: [Piece(lo, hi - lo, "log", device=LOG)], self.problems.append))


class DataDeviceMap:
    """The data device's OwnerMap with every piece marked `device: data` (a filesystem with other devices). On
    a disk that also holds the realtime section (zoned, sb_rtstart), that section's bytes are answered by the
    realtime map, `device: rt`, as the kernel's GETFSMAP of the rt device reports them."""

    device = DATA

    def __init__(self, omap, fs=None):
        self._omap = omap
        self._rt_section = fs.geo.internal_rt if fs is not None else None
        self._rtmap = None
        self._fs = fs

    def __getattr__(self, name):
        return getattr(self._omap, name)

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def iter_batches(self, offset: int, length: int):
        end, sect = offset + length, self._rt_section
        if sect is None or end <= sect[0] or offset >= sect[1]:
            for batch in self._omap.iter_batches(offset, length):
                yield [p._replace(device=DATA) for p in batch]
            return
        if offset < sect[0]:
            yield from self.iter_batches(offset, sect[0] - offset)
        a, b = max(offset, sect[0]), min(end, sect[1])
        yield from self.rt_map.iter_batches(a, b - a)
        if end > b:
            yield from self.iter_batches(b, end - b)

    @property
    def rt_map(self):
        if self._rtmap is None:
            from fsdaxctl.xfs.rt import RtOwnerMap

            self._rtmap = RtOwnerMap(self._fs)
            self._rtmap.problems = self._omap.problems  # one list of what could not be read
        return self._rtmap


def owner_map(fs, device: str = DATA, **kw):
    """The owner map of one of the filesystem's devices (kw go to the data device's OwnerMap)."""
    if device == LOG:
        return LogDeviceMap(fs)
    if device == RT:
        from fsdaxctl.xfs.rt import rt_owner_map

        return rt_owner_map(fs)
    live = getattr(fs, "live", None)
    if live is not None and kw.get("source") is None:  # mounted: the running kernel answers (fsdaxctl.live)
        from fsdaxctl.live import LiveOwnerMap

        omap = LiveOwnerMap(live.mount_point, fs.geo, has_rmapbt=fs.has_rmapbt)
        return DataDeviceMap(omap, fs) if multi_device(fs) else omap
    from fsdaxctl.xfs.owners import OwnerMap

    omap = OwnerMap(fs, **kw)
    return DataDeviceMap(omap, fs) if multi_device(fs) else omap


def not_mapped(fs, device: str) -> UnsupportedError:
    return UnsupportedError(f"the {device} device of this filesystem is not mapped by fsdaxctl yet")
