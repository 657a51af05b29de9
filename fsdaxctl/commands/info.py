"""fsdaxctl info: superblock, features, AG geometry, warnings."""

from __future__ import annotations

import sys

import click

from fsdaxctl.commands.common import format_option, target_options, warn


@click.command("info")
@target_options
@click.option("--partition", type=int, metavar="N",
              help="Use partition N of a whole-disk TARGET (default: the one holding XFS).")
@format_option("json")
@click.pass_context
def command(ctx, spec, fmt, partition):
    """Superblock, features and AG geometry of TARGET, and what makes its answers doubtful."""
    import dataclasses

    from fsdaxctl.errors import FsdaxError
    from fsdaxctl.render import default_format, write_info
    from fsdaxctl.session import Session

    status = 0
    with Session.open(dataclasses.replace(spec, partition=partition)) as session:
        fs = session.fs
        geo = fs.geo
        ags = []
        readable = fs.readable_agcount
        if readable < geo.agcount:
            fs.warnings.append(f"AGs {readable} to {geo.agcount - 1} lie past the end of the device: not read")
            status = 1
        for agno in range(readable):
            row = {"ag": agno, "offset": geo.ag_to_byte(agno, 0), "blocks": geo.ag_length(agno)}
            try:
                hdr = fs.ag(agno)
            except FsdaxError as e:
                fs.warnings.append(str(e))
                row["error"] = str(e)
                status = 1
            else:
                agf, agi = hdr.agf, hdr.agi
                row.update({"free_blocks": agf.agf_freeblks, "longest_free": agf.agf_longest,
                            "inodes": agi.agi_count, "free_inodes": agi.agi_freecount})
                if fs.has_rmapbt:
                    row["rmapbt_levels"] = agf.agf_rmap_level
                if fs.has_reflink:
                    row["refcountbt_levels"] = agf.agf_refcount_level
            ags.append(row)
        warn(fs.warnings)
        write_info(sys.stdout, fmt or default_format(), str(spec), session.filesystem, ags, fs.warnings)
    ctx.exit(status)
