"""fsdaxctl locate: the owners of every byte of each range, from whatever the damage report says."""

from __future__ import annotations

import sys

import click

from fsdaxctl.commands.common import (build_inputs, chain_options, check_chain_options, fs_device_option,
                                     input_options, progress_printer, ranges_progress, run_act, source_option,
                                     target_options, verify_option, warn, with_stack)
from fsdaxctl.errors import UsageError
from fsdaxctl.render import LOCATE_FORMATS


@click.command("locate")
@target_options
@input_options
@click.option("--explain", "--trace", "explain", is_flag=True,
              help="Show every step: input -> region -> namespace -> partition -> dm/md -> filesystem bytes.")
@click.option("--no-detail", is_flag=True,
              help="Owners only: no paths, no structure detail (skips the directory walk and tree indexes).")
@source_option
@verify_option
@fs_device_option
@chain_options
@click.option("--format", "fmt", type=click.Choice(LOCATE_FORMATS), default=None,
              help="Output format (default: table on a terminal, json otherwise); paths: every path of every "
                   "file hit, one a line.")
@click.option("--null", "-0", "null", is_flag=True, help="With --format paths: end each path with NUL, not newline.")
@click.pass_context
def command(ctx, spec, explain, no_detail, source, verify_rmap, fmt, null, **inputs):
    """Who owns these bytes? Every owner of each damaged range, clipped to it.

    The damage can be given as bytes on TARGET (--offset, --ranges), as the lists and logs that report it
    (--badblocks, --ndctl-json, --ddrescue, --e2fs-badblocks, --kmsg), as physical addresses (--phys, --pfn),
    or as filesystem places (--daddr, --fsblock, --agno/--agbno, --inode, --file). TARGET may be the
    filesystem itself, a whole disk with a partition table, or a raw pmem namespace with its info block.

    \b
    With --act, what the kernel's memory-failure chain would decide for each input (see `inject`) is carried
    out where TARGET is mounted, after a dry run and confirmation.

    \b
    Exit status: 0 nothing in use was hit, 4 file data, 8 filesystem metadata (12 both),
    1 some owners could not be resolved (or an --act action failed), 2 usage error.
    """
    from fsdaxctl.session import LocateOptions, Session

    if fmt == "paths" and no_detail:
        raise UsageError("--format paths needs the paths: drop --no-detail")
    if null and fmt != "paths":
        raise UsageError("--null goes with --format paths")
    if inputs["ranges_file"] is not None and inputs["offset"] is not None:
        raise UsageError("give --offset/--length or --ranges, not both")
    device = inputs["fs_device"]
    if device != "data" and inputs["act"]:
        raise UsageError(f"--fs-device {device} takes byte ranges (--offset/--length, --ranges) on that device, "
                         "not damage reports, filesystem places or --act")
    flags = check_chain_options(inputs)
    spec = with_stack(spec, inputs)
    plan = build_inputs(spec, inputs, stream=not (explain or verify_rmap or inputs["act"] or device != "data"))
    opts = LocateOptions(device=device, explain=explain, detail=not no_detail, source=source,
                         verify_rmap=verify_rmap, progress=progress_printer("walking inodes"),
                         ranges_progress=ranges_progress(inputs["ranges_file"]) if plan.stream else None)
    with Session.open(spec) as session:
        report = session.locate(plan, opts)
        _write(fmt, null, report)
        acted = run_act(session, report, {"kind": "locate"}, flags, inputs) if inputs["act"] else 0
    ctx.exit(report.status | acted)


def _write(fmt, null, report) -> None:
    from fsdaxctl.render import default_format, write_locate, write_paths

    if fmt == "paths":
        sys.stdout.flush()
        unnamed = write_paths(sys.stdout, report.results, null)
        warn(report.warnings + [f"inode {ino} was hit but has no path (see --format json for why)" for ino in unnamed])
        return
    streamed = not isinstance(report.results, list)
    if not streamed:
        warn(report.warnings)
    write_locate(sys.stdout, fmt or default_format(), report.target, report.filesystem, report.results,
                 report.warnings, dropped=report.dropped, stack=report.stack)
    if streamed:  # complete only once every result is out
        sys.stdout.flush()
        warn(report.warnings)
