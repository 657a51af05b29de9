"""The realtime device's owners. Not mapped yet: every question about rt bytes is a one-line error naming why,
never a guess (a realtime extent number read as a data-device block names the wrong owner)."""

from __future__ import annotations

from fsdaxctl.errors import UnsupportedError


def rt_owner_map(fs):
    from fsdaxctl.xfs.devices import device_file

    device_file(fs, "rt")  # a one-line error unless --rtdev was given
    raise UnsupportedError("the realtime device's owners (rt bitmap, rt groups, rt rmap btree) are not mapped by "
                           "fsdaxctl yet", structure="realtime device")
