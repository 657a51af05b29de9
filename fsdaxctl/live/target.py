"""Which mounted filesystem a TARGET is: a mount point (or any directory on it), a mounted block device, or an
image file behind a mounted loop device."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from fsdaxctl.device import Mount, mount_of_path, mounts_of_device
from fsdaxctl.errors import DeviceError


@dataclass(frozen=True)
class LiveTarget:
    mount_point: str
    mount: Mount
    device: str  # the block device (/dev/...) the filesystem is on: read for detail only, O_DIRECT
    fs_relative: bool = False  # show paths from the filesystem root, not the machine's

    @property
    def read_only(self) -> bool:
        return self.mount.read_only


def device_node(devt: tuple[int, int]) -> str:
    """/dev/NAME of a block device number, from sysfs (udev's name for it)."""
    major, minor = devt
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent") as fh:
            for line in fh:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.strip().split("=", 1)[1]
    except OSError:
        pass
    raise DeviceError(f"no device node for block device {major}:{minor}")


def find_live_target(target: str, mounted_at: list[tuple[str, bool]] | None = None) -> LiveTarget | None:
    """The XFS mount TARGET names, or None when it is not mounted here. `mounted_at`: the Device's mount
    points when TARGET was opened as a file or block device (device.mount_points)."""
    try:
        st = os.stat(target)
    except OSError as e:
        raise DeviceError(f"cannot open {target}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        mount = mount_of_path(target)
        if mount is None or mount.fs_type != "xfs":
            raise DeviceError(f"{target} is a directory but not on a mounted XFS filesystem")
        return LiveTarget(mount.mount_point, mount, device_node(mount.dev))
    for point, _ in mounted_at or ():
        for mount in _mounts_at(point):
            if mount.fs_type == "xfs":
                return LiveTarget(point, mount, device_node(mount.dev))
    return None


def _mounts_at(point: str) -> list[Mount]:
    mount = mount_of_path(point)
    return [] if mount is None else mounts_of_device(mount.dev)[:1]
