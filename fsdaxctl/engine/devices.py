"""The kernel's decisions for failures on a filesystem's other devices (fs/xfs/xfs_notify_failure.c, 6.14+).

External log device: xfs_dax_notify_failure -> xfs_dax_notify_logdev_failure: xfs_dax_translate_range clips
the range to the log *device* (-ENXIO and nothing else when it lies wholly outside); MF_MEM_PRE_REMOVE returns 0
(the device is going away; the forced unmount follows); otherwise "ondisk log corrupt, shutting down fs!",
xfs_force_shutdown(SHUTDOWN_CORRUPT_ONDISK), -EFSCORRUPTED. No rmap query: every log byte is metadata.

Realtime device: xfs_dax_notify_failure -> xfs_dax_notify_dev_failure(XG_TYPE_RTG). A classic realtime
device belongs to a filesystem without rmapbt (mkfs.xfs allows rmapbt with a realtime device only with realtime
groups), so that returns -EOPNOTSUPP ("needs rmapbt enabled") and memory_failure falls back to the generic
path, page->mapping only: the same walk as a data device without rmapbt, over the realtime device's owners.
With realtime groups the rt rmap btrees name the owners and the walk is the data device's, group by group
(engine.chain.rt_groups_walk).
"""

from __future__ import annotations

from fsdaxctl.engine.chain import Decision, Outcome, btobb
from fsdaxctl.engine.flags import MF_MEM_PRE_REMOVE
from fsdaxctl.errors import UsageError

EFSCORRUPTED, ENXIO = 117, 6  # EUCLEAN, as the kernel defines EFSCORRUPTED


def notify_logdev_failure(fs, offset: int, length: int, flags: int, event: dict, mapping=None) -> Outcome:
    """What the kernel does about bytes [offset, offset + length) of the external log device."""
    out = Outcome(event, flags)
    logdev_failure(fs, offset, length, flags, out, 0)
    return out


def logdev_failure(fs, offset: int, length: int, flags: int, out: Outcome, d: int) -> int:
    """xfs_dax_notify_logdev_failure, traced into `out` from depth d; its return code."""
    from fsdaxctl.xfs.devices import LOG, device_file, device_size

    dev_len = device_file(fs, LOG).size  # bdev_nr_bytes(m_logdev_targp->bt_bdev): the device, not the log
    log_len = device_size(fs, LOG)
    out.line(d, "xfs_dax_notify_failure: the external log device (m_logdev_targp)")
    out.line(d + 1, "xfs_dax_notify_logdev_failure")
    if offset > dev_len - 1:
        _past_device(out, d + 2, "log", offset, length, dev_len)
        return -ENXIO
    if offset + length - 1 > dev_len - 1:
        length = dev_len - offset
    out.line(d + 2, f"xfs_dax_translate_range: daddr = BTOBB({offset}) = {btobb(offset):#x}, "
                    f"bblen = BTOBB({length}) = {btobb(length)}")
    if offset >= log_len:
        out.notes.append(f"bytes {offset}+{length} of the log device lie past the log ({log_len} bytes): the kernel "
                         "still treats them as the log's (it clips to the device, not to the log)")
    if flags & MF_MEM_PRE_REMOVE:
        out.line(d + 2, "MF_MEM_PRE_REMOVE: the device is about to be removed: return 0 (the forced unmount follows)")
        out.decisions.append(Decision("none", "the log device is being removed (MF_MEM_PRE_REMOVE): no shutdown "
                                      "from this notification", owner="log", offset=offset, length=length))
        out.result = "Recovered"
        return 0
    out.line(d + 2, 'xfs_err: "ondisk log corrupt, shutting down fs!"')
    out.line(d + 2, "xfs_force_shutdown(SHUTDOWN_CORRUPT_ONDISK) -> -EFSCORRUPTED")
    out.decisions.append(Decision("shutdown-filesystem", "the on-disk log is damaged", owner="log", offset=offset,
                                  length=length, shutdown="SHUTDOWN_CORRUPT_ONDISK"))
    out.result = "Failed"
    return -EFSCORRUPTED


def notify_rtdev_failure(fs, offset: int, length: int, flags: int, event: dict, mapping=None) -> Outcome:
    """What the kernel does about bytes [offset, offset + length) of the realtime device."""
    out = Outcome(event, flags)
    rc = rtdev_failure(fs, offset, length, flags, mapping, out, 0, event.get("kind") in ("pfn", "phys"))
    if rc != -ENXIO:
        out.result = "Recovered" if rc == 0 else "Failed"
        out.line(0, f"result: {rc} ({out.result})")
    return out


def rtdev_failure(fs, offset: int, length: int, flags: int, mapping, out: Outcome, d: int, memory: bool) -> int:
    """xfs_dax_notify_failure on the realtime device, traced into `out` from depth d; its return code."""
    from fsdaxctl.engine.chain import no_rmapbt
    from fsdaxctl.xfs.devices import RT, device_size, owner_map

    omap = owner_map(fs, RT)  # one line, never a guess, for a device it does not map
    size = device_size(fs, RT)
    out.line(d, "xfs_dax_notify_failure: the realtime device (m_rtdev_targp)")
    if offset > size - 1:
        _past_device(out, d + 1, "realtime", offset, length, size)
        return -ENXIO
    if offset < omap.origin:
        raise UsageError(f"byte {offset} lies before this disk's realtime section (rtstart, byte {omap.origin}): "
                         "it is the data section's; give it without --fs-device rt")
    if omap.grouped:  # realtime groups: rmapbt on the rt device too
        from fsdaxctl.engine.chain import rt_groups_walk

        return rt_groups_walk(fs, omap, offset, length, flags, mapping, out, d + 1)
    return no_rmapbt(fs, omap, offset, length, flags, mapping, out, d + 1, memory, size)


def _past_device(out: Outcome, depth: int, what: str, offset: int, length: int, size: int) -> Outcome:
    """xfs_dax_translate_range on a range starting past the device: -ENXIO, and nothing is done."""
    out.line(depth, f"xfs_dax_translate_range: offset {offset} is past the {what} device ({size} bytes): -ENXIO")
    out.decisions.append(Decision("none", f"outside the {what} device", owner="outside-filesystem",
                                  offset=offset, length=length))
    out.result = "Ignored"
    return out
