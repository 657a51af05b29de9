"""fsdaxctl fsmap: the whole owner map, offline, like `xfs_io -c fsmap` on a mounted filesystem."""

from __future__ import annotations

import gc
import sys

import click

from fsdaxctl.commands.common import (format_option, fs_device_option, open_filesystem, progress_printer,
                                     source_option, target_options, verify_option, verify_rmap_warnings, warn)


@click.command("fsmap")
@target_options
@click.option("--partition", type=int, metavar="N",
              help="Use partition N of a whole-disk TARGET (default: the one holding XFS).")
@click.option("--start", default="0", show_default=True,
              help="First byte to map (suffixes: 8b filesystem blocks, 512s sectors, 4k, 1m...).")
@click.option("--end", default=None,
              help="Map up to this byte, exclusive (default, and at most: the end of the device).")
@source_option
@verify_option
@fs_device_option
@format_option("jsonl")
@click.pass_context
def command(ctx, target, start, end, source, verify_rmap, fmt, partition, fs_device="data"):
    """Every owner of every byte, in device order, streamed.

    Pieces are clipped to [--start, --end); shared blocks show once per owner.
    """
    from fsdaxctl.errors import UsageError
    from fsdaxctl.render import FsmapWriter, default_format
    from fsdaxctl.units import parse_size
    from fsdaxctl.xfs.fs import filesystem_info

    from fsdaxctl.xfs import devices

    fs = open_filesystem(target, partition)
    with fs:
        limit = max(devices.device_file(fs, fs_device).size, devices.device_size(fs, fs_device))
        lo = parse_size(start, "--start", fs.geo.blocksize)
        hi = parse_size(end, "--end", fs.geo.blocksize) if end is not None else limit
        hi = min(hi, limit)  # bytes past the device do not exist: nothing to list there
        if lo >= limit:
            raise UsageError(f"--start {lo} is past the end of {target} ({limit} bytes)")
        if hi <= lo:
            raise UsageError(f"--end ({hi}) must be past --start ({lo})")
        warn(fs.warnings)
        if source == "rmapbt" and not fs.has_rmapbt:
            raise UsageError("--source rmapbt: this filesystem has no rmapbt")
        if fs_device != "data" and (source or verify_rmap):
            raise UsageError(f"--source and --verify-rmap are about the data device, not --fs-device {fs_device}")
        omap = devices.owner_map(fs, fs_device, source=source, progress=progress_printer("walking inodes"))
        omap.prepare([(lo, hi - lo)])
        writer = FsmapWriter(sys.stdout, fmt or default_format(piped="jsonl"), target, filesystem_info(fs))
        # A dump makes millions of short-lived tuples and strings, none in reference cycles: refcounting frees
        # them at once, and the cyclic collector would only rescan them (about 6% of a full dump's time).
        gc.disable()
        try:
            writer.write_all(omap.iter_batches(lo, hi - lo))
        finally:
            gc.enable()
        checked = verify_rmap_warnings(fs, [(lo, hi - lo)]) if verify_rmap else []
        warn(omap.problems + checked)
        writer.close(fs.warnings + omap.problems + checked)
    ctx.exit(1 if (omap.problems and omap.source != "bnobt") or checked else 0)
