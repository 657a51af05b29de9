"""fsdaxctl locate: the owners of every byte of each range, from whatever the damage report says."""

from __future__ import annotations

import sys

import click

from fsdaxctl.commands.common import (build_plan, chain_options, check_chain_options, fs_device_option,
                                     input_options, input_warnings,
                                     progress_printer, run_act, source_option, target_options, verify_option,
                                     verify_rmap_warnings, warn)
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
def command(ctx, target, explain, no_detail, source, verify_rmap, fmt, null, **inputs):
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
    from fsdaxctl.pipeline import dropped_inputs, resolve
    from fsdaxctl.policy import exit_status

    if fmt == "paths" and no_detail:
        raise UsageError("--format paths needs the paths: drop --no-detail")
    if null and fmt != "paths":
        raise UsageError("--null goes with --format paths")
    if inputs["ranges_file"] is not None and inputs["offset"] is not None:
        raise UsageError("give --offset/--length or --ranges, not both")
    flags = check_chain_options(inputs)
    plan = build_plan(target, inputs)
    if inputs.get("fs_device", "data") != "data":
        ctx.exit(_other_device(target, plan, inputs, fmt, no_detail))
    answer = resolve(plan)
    with answer.fs:
        omap, results, warnings, checked = _owners(answer, plan, explain, no_detail, source, verify_rmap)
        dropped, drop_bits, skipped = dropped_inputs(answer.routes, explain)
        warnings += skipped
        _write(fmt, null, target, answer, results, warnings, dropped, explain)
        acted = run_act(answer, omap, {"kind": "locate"}, flags, inputs) if inputs["act"] else 0
        status = exit_status(results, _file_types(answer.fs, results) if no_detail else None)
    ctx.exit(status | drop_bits | (1 if checked else 0) | acted)


def _owners(answer, plan, explain, no_detail, source, verify_rmap):
    """(owner map, results, warnings, check warnings) for every input that reached the filesystem."""
    from fsdaxctl.locate import describe_results, locate_routes
    from fsdaxctl.pipeline import fs_paths
    from fsdaxctl.xfs.devices import owner_map

    fs = answer.fs
    warnings = list(fs.warnings) + input_warnings(plan.parsed) + answer.warnings
    ranges = [(p[-1].offset, p[-1].length) for _, p in fs_paths(answer.routes)]
    omap = owner_map(fs, "data", source=_source(fs, source), progress=progress_printer("walking inodes"))
    omap.prepare(ranges)
    results = locate_routes(omap, answer.routes, explain)
    for r in results:
        r.source = "kernel" if omap.source == "kernel" else "disk"
    warnings += omap.problems
    if not no_detail:
        warnings += describe_results(fs, results)
    checked = verify_rmap_warnings(fs, ranges) if verify_rmap else []
    if omap.source != "kernel":  # the disk answered a mounted target (--offline): check it with the kernel
        checked += _live_check(fs, results)
    if answer.plain and not explain:
        for r in results:  # bytes on the filesystem itself: the query is the answer's offset, as before
            r.input = None
    return omap, results, warnings + checked, checked


def _write(fmt, null, target, answer, results, warnings, dropped, explain) -> None:
    from fsdaxctl.render import default_format, write_locate, write_paths
    from fsdaxctl.xfs.fs import filesystem_info

    if fmt == "paths":
        sys.stdout.flush()
        unnamed = write_paths(sys.stdout, results, null)
        warn(warnings + [f"inode {ino} was hit but has no path (see --format json for why)" for ino in unnamed])
        return
    warn(warnings)
    write_locate(sys.stdout, fmt or default_format(), target, filesystem_info(answer.fs), results, warnings,
                 dropped=dropped, stack=answer.stack.describe() if explain else None)


def _file_types(fs, results):
    """Without detail the impact rule still needs each data-fork owner's inode type (one inode read each)."""
    from fsdaxctl.xfs.detail import file_types

    return file_types(fs, {p.inode for r in results for p in r.owners
                           if p.owner == "file" and p.fork == "data" and not p.extent_map})


def _live_check(fs, results) -> list[str]:
    """Mounted here: the kernel's GETFSMAP is the live truth; say where the disk's answer differs from it."""
    from fsdaxctl.device import mount_points
    from fsdaxctl.engine.live import stale_ranges
    from fsdaxctl.errors import FsdaxError

    mounts = mount_points(fs.dev)
    if not mounts or len(results) > 10000:
        return []
    mount = mounts[0][0]
    items = [(r.offset, r.length, {p.inode for p in r.owners if p.owner == "file" and p.fork == "data" and
                                   not p.extent_map}) for r in results]
    try:
        stale = stale_ranges(mount, items)
    except FsdaxError:
        return []  # not ours to ask (permissions, not XFS, shut down): the mount warning stands

    def files(inos):
        return f"file data of inode(s) {', '.join(map(str, sorted(inos)))}" if inos else "no file data"

    return [f"bytes {off}+{n}: the mounted filesystem's kernel says {files(kernel)}, the disk (--offline) says "
            f"{files(ours)}: its newest changes are still in the log (fsfreeze -f/-u "
            f"{mount} writes them back)" for off, n, kernel, ours in stale]


def _source(fs, source):
    if source == "rmapbt" and not fs.has_rmapbt:
        raise UsageError("--source rmapbt: this filesystem has no rmapbt")
    return source


def _other_device(target, plan, inputs, fmt, no_detail) -> int:
    """--fs-device log|rt: --offset/--ranges are bytes on that device of the filesystem, answered directly
    (no stack lies between them and the filesystem). The exit status."""
    from fsdaxctl.commands.common import open_filesystem
    from fsdaxctl.locate import describe_results, locate_on_device
    from fsdaxctl.policy import exit_status
    from fsdaxctl.pipeline import TARGET
    from fsdaxctl.render import default_format, write_locate, write_paths
    from fsdaxctl.xfs import devices
    from fsdaxctl.xfs.fs import filesystem_info

    device = inputs["fs_device"]
    extents = plan.parsed.extents
    if plan.fs_queries or plan.parsed.inodes or any(e.space.kind != TARGET for e in extents) or inputs["act"]:
        raise UsageError(f"--fs-device {device} takes byte ranges (--offset/--length, --ranges) on that device, "
                         "not damage reports, filesystem places or --act")
    fs = open_filesystem(target, inputs.get("partition"))
    with fs:
        omap = devices.owner_map(fs, device)
        limit = max(devices.device_file(fs, device).size, devices.device_size(fs, device))
        for e in extents:
            if e.offset + e.length > limit:
                raise UsageError(f"{e.origin}: bytes {e.offset}..{e.offset + e.length - 1} run past the end of the "
                                 f"{device} device ({limit} bytes)")
        results = locate_on_device(omap, extents)
        warnings = list(fs.warnings) + input_warnings(plan.parsed) + omap.problems
        if not no_detail:
            warnings += describe_results(fs, results)
        if fmt == "paths":
            sys.stdout.flush()
            write_paths(sys.stdout, results, inputs.get("null", False))
            warn(warnings)
        else:
            warn(warnings)
            write_locate(sys.stdout, fmt or default_format(), target, filesystem_info(fs), results, warnings)
        return exit_status(results) | (1 if omap.problems else 0)
