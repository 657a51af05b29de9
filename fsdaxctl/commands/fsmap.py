"""fsdaxctl fsmap: the whole owner map, offline, like `xfs_io -c fsmap` on a mounted filesystem."""

from __future__ import annotations

import gc
import sys

import click

from fsdaxctl.commands.common import (format_option, fs_device_option, progress_printer, source_option,
                                     target_options, verify_option, warn)


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
def command(ctx, spec, start, end, source, verify_rmap, fmt, partition, fs_device="data"):
    """Every owner of every byte, in device order, streamed.

    Pieces are clipped to [--start, --end); shared blocks show once per owner.
    """
    import dataclasses

    from fsdaxctl.errors import UsageError
    from fsdaxctl.render import FsmapWriter, default_format
    from fsdaxctl.session import Session
    from fsdaxctl.units import parse_size

    if fs_device != "data" and verify_rmap:
        raise UsageError(f"--source and --verify-rmap are about the data device, not --fs-device {fs_device}")
    with Session.open(dataclasses.replace(spec, partition=partition)) as session:
        block = session.fs.geo.blocksize
        lo = parse_size(start, "--start", block)
        hi = parse_size(end, "--end", block) if end is not None else None
        warn(session.warnings)
        omap, lo, hi = session.dump(lo, hi, device=fs_device, source=source,
                                    progress=progress_printer("walking inodes"))
        writer = FsmapWriter(sys.stdout, fmt or default_format(piped="jsonl"), str(spec), session.filesystem)
        # A dump makes millions of short-lived tuples and strings, none in reference cycles: refcounting frees
        # them at once, and the cyclic collector would only rescan them (about 6% of a full dump's time).
        gc.disable()
        try:
            writer.write_all(omap.iter_batches(lo, hi - lo))
        finally:
            gc.enable()
        checked = session.verify_rmap([(lo, hi - lo)], progress_printer("checking the rmapbt")) if verify_rmap else []
        warn(omap.problems + checked)
        writer.close(session.warnings + omap.problems + checked)
    ctx.exit(1 if (omap.problems and omap.source != "bnobt") or checked else 0)
