"""The manual page, fsdaxctl.1 (and fsdaxctl-COMMAND.1), generated from the click commands by click-man at build
time (setup.py's build_py), and where it ended up.

The pages are installed twice: into the package (fsdaxctl/man/, always, whatever the install scheme) and as data
files into PREFIX/share/man/man1, where `man fsdaxctl` finds them (for /usr/local, a venv whose bin/ is on PATH,
or ~/.local with man-db's PATH-derived manpath). `fsdaxctl --help` names the one it finds.
"""

from __future__ import annotations

import os
import sys
import sysconfig

PAGE = "fsdaxctl.1"


def all_commands_group():
    """The lazy group with every command loaded (click-man walks `.commands`)."""
    import click

    from fsdaxctl.cli import COMMANDS, cli

    return click.Group(cli.name or "fsdaxctl", commands={n: cli.get_command(None, n) for n in COMMANDS},
                       params=cli.params, help=cli.help, epilog="See README.md for the conventions (units, exit "
                       "status, colour, completion, JSON schemas).")


def write_pages(target_dir: str, version: str | None = None, date: str | None = None) -> list[str]:
    """Generate fsdaxctl.1 and one page per command into target_dir; returns the paths written."""
    from click_man.core import write_man_pages

    from fsdaxctl import __version__

    os.makedirs(target_dir, exist_ok=True)
    before = set(os.listdir(target_dir))
    write_man_pages("fsdaxctl", all_commands_group(), version=version or __version__, target_dir=target_dir,
                    date=date)
    return sorted(os.path.join(target_dir, n) for n in set(os.listdir(target_dir)) | before if n.endswith(".1"))


def candidates() -> list[str]:
    """Where an install may have put fsdaxctl.1, in the order `man` would look."""
    out = []
    for scheme_base in {sys.prefix, sysconfig.get_config_var("userbase") or "", os.path.expanduser("~/.local")}:
        if scheme_base:
            out.append(os.path.join(scheme_base, "share", "man", "man1", PAGE))
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # fsdaxctl/, above commands/
    out.append(os.path.join(package, "man", PAGE))
    return out


def where() -> str:
    """How to read the manual here, in words: 'man fsdaxctl (PATH)' or 'man PATH' or how to build it."""
    for path in candidates():
        if os.path.exists(path):
            if os.sep + "share" + os.sep + "man" + os.sep in path:
                return f"man fsdaxctl ({path})"
            return f"man {path}"
    return "not built in this checkout (python3 setup.py build_py generates fsdaxctl/man/fsdaxctl.1)"
