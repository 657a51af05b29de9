"""The `fsdaxctl` command group: global behaviour, lazy command registration, the one error chokepoint.

Commands are imported only when invoked, so `fsdaxctl --help` and every command pay only for what they use.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from fsdaxctl import __version__
from fsdaxctl.errors import EXIT_FAILED, FsdaxError

COMMANDS = {
    "info": "superblock, features, AG geometry and warnings",
    "fsmap": "the whole owner map (offline GETFSMAP)",
    "locate": "who owns these bytes? owners of each damaged range",
    "inject": "what would the kernel do? walk the memory-failure chain for an event; --act to do it",
    "badblocks": "normalise badblocks lists, ndctl JSON, ddrescue maps and kernel logs to byte ranges",
}


class FsdaxGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"fsdaxctl.commands.{name}").command

    def format_commands(self, ctx, formatter):
        # Listing help from the table above keeps `--help` from importing every command module.
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FsdaxError as e:
            click.echo(f"fsdaxctl: {e}", err=True)
            ctx.exit(e.exit_status)
        except BrokenPipeError:
            # The reader went away (`| head`): not an error of ours; keep Python from complaining at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(EXIT_FAILED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("fsdaxctl: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug, not an input problem: still one line unless asked for more
            if os.environ.get("FSDAXCTL_DEBUG"):
                raise
            click.echo(f"fsdaxctl: internal error: {type(e).__name__}: {e} "
                       "(set FSDAXCTL_DEBUG=1 for a traceback, and please report it)", err=True)
            ctx.exit(EXIT_FAILED)


@click.group(cls=FsdaxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fsdaxctl")
def cli():
    """What did a media error hit? Offline, read-only owner lookup for XFS images and devices.

    Exit status (bits, like fsck): 0 nothing in use was hit, 4 file data hit, 8 filesystem metadata hit,
    1 part of the job could not be done (unreadable or unresolved structures), 2 usage error.
    """


def main():
    # File names are bytes on disk; those that are not UTF-8 travel as surrogate escapes and must leave as
    # \udcXX escapes (valid JSON, visible in text) instead of failing the write.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    cli(prog_name="fsdaxctl")
