"""The `fsdaxctl` command group: global behaviour, lazy command registration, the one error chokepoint.

Commands are imported only when invoked, so `fsdaxctl --help` and every command pay only for what they use.
"""

from __future__ import annotations

import importlib
import os
import signal
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
    "watch": "as a service: each new media error (kernel log, badblocks, uevents) -> its owners and the action",
    "completion": "print the shell completion script for bash, zsh or fish",
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

    def format_epilog(self, ctx, formatter):
        from fsdaxctl.commands.manpage import where

        formatter.write_paragraph()
        formatter.write_text(f"Manual: {where()}. Conventions (units, exit status, colour, completion, JSON "
                             "schemas): README.md.")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with every error one line on stderr (click's usage errors too: no usage block) and a
        closed stdout (`| head`) ending the process as coreutils do: killed by SIGPIPE, silently."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()  # inside the try: a reader gone before the last buffer is a closed pipe too
        except click.exceptions.UsageError as e:
            cmd = e.ctx.command_path if e.ctx is not None else "fsdaxctl"
            _error_line(f"{_one_line(e.format_message())} (see '{cmd} --help')")
            sys.exit(2)
        except click.ClickException as e:
            _error_line(_one_line(e.format_message()))
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            _error_line("aborted")
            sys.exit(EXIT_FAILED)
        except BrokenPipeError:
            _closed_pipe()
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FsdaxError as e:
            _error_line(str(e))
            ctx.exit(e.exit_status)
        except BrokenPipeError:
            _closed_pipe()  # the reader went away (`| head`); here, before click's main turns it into exit 1
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("fsdaxctl: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug, not an input problem: still one line unless asked for more
            if os.environ.get("FSDAXCTL_DEBUG"):
                raise
            _error_line(f"internal error: {type(e).__name__}: {e} "
                        "(set FSDAXCTL_DEBUG=1 for a traceback, and please report it)")
            ctx.exit(EXIT_FAILED)


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _error_line(text: str) -> None:
    from fsdaxctl.style import enabled, error_prefix

    click.echo(f"{error_prefix(sys.stderr)} {_one_line(text)}", err=True, color=enabled(sys.stderr))


def _closed_pipe() -> None:
    """Die of SIGPIPE, as `yes | head` does: the shell sees 141, `set -o pipefail` treats it as it treats
    coreutils, nothing is printed. (Python ignores SIGPIPE, so the write raised EPIPE instead of killing us.)"""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit, whatever happens next
    except (OSError, ValueError):
        pass
    if sys.stdout is not sys.__stdout__:  # inside a test runner's captured stdout: never signal the runner
        sys.exit(128 + signal.SIGPIPE)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)  # not reached


@click.group(cls=FsdaxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fsdaxctl")
@click.option("--color", "--colour", "color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour owner kinds, impacts and warnings: auto = on a terminal, unless "
                                      "NO_COLOR is set.")
def cli(color):
    """What did a media error hit? Offline, read-only owner lookup for XFS images and devices.

    Exit status (bits, like fsck): 0 nothing in use was hit, 4 file data hit, 8 filesystem metadata hit
    (a file's extent-map, xattr, directory and symlink blocks count as metadata), 1 part of the job could not
    be done (unreadable or unresolved structures), 2 usage error. A closed pipe (`| head`) ends the process
    by SIGPIPE, silently, as coreutils do.

    Sizes take xfsprogs' suffixes: 8b (filesystem blocks), 512s (512-byte sectors), 4k, 1m, 2g, 1t; or 0x hex.
    """
    from fsdaxctl.style import set_mode

    set_mode(color)


def main():
    # File names are bytes on disk; those that are not UTF-8 travel as surrogate escapes and must leave as
    # \udcXX escapes (valid JSON, visible in text) instead of failing the write.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    cli(prog_name="fsdaxctl")
