"""fsdaxctl locate: the owners of every byte of each range."""

from __future__ import annotations

import sys

import click

from fsdaxctl.commands.common import (open_filesystem, progress_printer, source_option, target_options,
                                     verify_option, verify_rmap_warnings, warn)
from fsdaxctl.errors import UsageError
from fsdaxctl.render import LOCATE_FORMATS


@click.command("locate")
@target_options
@click.option("--offset", help="Start of the damaged range, bytes on TARGET (suffixes: 512s, 4k, 1m, 2g).")
@click.option("--length", help="Length of the range (default: one 512-byte sector).")
@click.option("--ranges", "ranges_file", type=click.File("rb"),
              help="File of 'OFFSET LENGTH' lines ('-' for stdin; '#' comments).")
@click.option("--no-detail", is_flag=True,
              help="Owners only: no paths, no structure detail (skips the directory walk and tree indexes).")
@source_option
@verify_option
@click.option("--format", "fmt", type=click.Choice(LOCATE_FORMATS), default=None,
              help="Output format (default: table on a terminal, json otherwise); paths: every path of every "
                   "file hit, one a line.")
@click.option("--null", "-0", "null", is_flag=True, help="With --format paths: end each path with NUL, not newline.")
@click.pass_context
def command(ctx, target, offset, length, ranges_file, no_detail, source, verify_rmap, fmt, null):
    """Who owns these bytes? Every owner of each range, clipped to it.

    \b
    Exit status: 0 nothing in use was hit, 4 file data, 8 filesystem metadata (12 both),
    1 some owners could not be resolved, 2 usage error.
    """
    from fsdaxctl.locate import describe_results, exit_status, locate
    from fsdaxctl.ranges import check_within, make_range, parse_ranges
    from fsdaxctl.render import default_format, write_locate, write_paths
    from fsdaxctl.units import parse_size
    from fsdaxctl.xfs.fs import filesystem_info
    from fsdaxctl.xfs.owners import OwnerMap

    if fmt == "paths" and no_detail:
        raise UsageError("--format paths needs the paths: drop --no-detail")
    if null and fmt != "paths":
        raise UsageError("--null goes with --format paths")
    if ranges_file is not None and (offset is not None or length is not None):
        raise UsageError("give --offset/--length or --ranges, not both")
    if ranges_file is not None:
        name = getattr(ranges_file, "name", "<stdin>")
        name = "stdin" if name in ("<stdin>", "-") else name
        ranges = parse_ranges(ranges_file, name)
    elif offset is not None:
        ranges = [make_range(parse_size(offset, "--offset"),
                             parse_size(length, "--length") if length is not None else 512, "--offset/--length")]
    else:
        raise UsageError("nothing to locate: give --offset [--length] or --ranges FILE")

    fs = open_filesystem(target)
    with fs:
        check_within(ranges, max(fs.dev.size, fs.geo.size), target)
        omap = OwnerMap(fs, source=_source(fs, source), progress=progress_printer("walking inodes"))
        omap.prepare([(r.offset, r.length) for r in ranges])
        results = locate(omap, ranges)
        warnings = fs.warnings + omap.problems
        if not no_detail:
            warnings += describe_results(fs, results)
        checked = verify_rmap_warnings(fs, [(r.offset, r.length) for r in ranges]) if verify_rmap else []
        warnings += checked
        if fmt == "paths":
            sys.stdout.flush()
            unnamed = write_paths(sys.stdout, results, null)
            warnings += [f"inode {ino} was hit but has no path (see --format json for why)" for ino in unnamed]
            warn(warnings)
        else:
            warn(warnings)
            write_locate(sys.stdout, fmt or default_format(), target, filesystem_info(fs), results, warnings)
    ctx.exit(exit_status(results) | (1 if checked else 0))


def _source(fs, source):
    if source == "rmapbt" and not fs.has_rmapbt:
        raise UsageError("--source rmapbt: this filesystem has no rmapbt")
    return source
