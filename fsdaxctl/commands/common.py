"""Options and steps shared by the commands."""

from __future__ import annotations

import functools

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
