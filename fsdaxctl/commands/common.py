"""Options and steps shared by the commands."""

from __future__ import annotations

import functools
import sys

import click

from fsdaxctl.errors import UsageError
from fsdaxctl.render import FORMATS


def target_options(f):
    """TARGET (an image or block device) or --sample (the small XFS image shipped with fsdaxctl)."""

    @click.argument("target", required=False, metavar="TARGET")
    @click.option("--sample", is_flag=True, help="Use the sample XFS image bundled with fsdaxctl as TARGET.")
    @functools.wraps(f)
    def wrapper(*args, target, sample, **kw):
        if sample and target:
            raise UsageError("give TARGET or --sample, not both")
        if sample:
            from fsdaxctl.sample import sample_image

            target = sample_image()
        elif not target:
            raise UsageError("missing TARGET: an XFS image or block device (or --sample)")
        return f(*args, target=target, **kw)

    return wrapper


def format_option(piped_default: str = "json"):
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=None,
        help=f"Output format (default: table on a terminal, {piped_default} otherwise).")


def open_filesystem(target: str):
    """Open TARGET read-only and warn (stderr) about what makes its answers doubtful."""
    from fsdaxctl.device import mount_warnings
    from fsdaxctl.xfs.fs import XfsFilesystem
    from fsdaxctl.xfs.log import log_warnings

    fs = XfsFilesystem.open(target)
    fs.warnings += mount_warnings(fs.dev)
    fs.warnings += log_warnings(fs)
    return fs


def warn(lines) -> None:
    for line in lines:
        click.echo(f"fsdaxctl: warning: {line}", err=True)


def source_option(f):
    return click.option(
        "--source", type=click.Choice(["rmapbt", "walk", "bnobt"]), default=None,
        help="Where owners come from: the rmapbt (default when there is one); a walk of all metadata "
             "(default without rmapbt); or bnobt: free space only, the rest 'unknown' (the kernel's view).")(f)


def verify_option(f):
    return click.option("--verify-rmap", is_flag=True,
                        help="Also walk all metadata and report every disagreement with the rmapbt.")(f)


def progress_printer(label: str):
    """A progress callback for long walks: a bar on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    state = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    return progress


def verify_rmap_warnings(fs, omap_ranges=None) -> list[str]:
    from fsdaxctl.errors import UsageError
    from fsdaxctl.xfs.walk import verify_rmap

    if not fs.has_rmapbt:
        raise UsageError("--verify-rmap: this filesystem has no rmapbt to verify")
    agnos = None if omap_ranges is None else fs.geo.agnos_touched(omap_ranges)
    return [f"rmapbt check: {line}" for line in verify_rmap(fs, agnos, progress_printer("checking the rmapbt"))]
