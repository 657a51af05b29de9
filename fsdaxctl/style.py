"""Colour and width for a terminal: the one place that decides whether a stream gets ANSI colour and how wide a
table may be. Plain values in, strings out; nothing here knows the filesystem.

Colour follows `--color=auto|always|never` (a global option) and https://no-color.org: with `auto`, colour only
on a terminal, never when NO_COLOR is set to anything non-empty or TERM is `dumb`.
"""

from __future__ import annotations

import os
import shutil

_mode = "auto"

# Owner kinds and impacts by what they mean to the admin: nothing lost, file data, metadata, not known.
_SEVERITY = {
    "free": "green", "outside-filesystem": "green", "none": "green",
    "file": "cyan", "file-data": "yellow", "file-unwritten": "cyan",
    "unknown": "red", "defective": "red",
}
_METADATA_COLOUR = "magenta"  # every other owner kind or impact: filesystem metadata


_ANSI = {"red": 31, "green": 32, "yellow": 33, "magenta": 35, "cyan": 36}


def paint(text: str, fg: str, bold: bool = False) -> str:
    """`text` in an ANSI foreground colour (SGR codes, as click.style writes them), reset after."""
    return f"\033[{_ANSI[fg]}m" + ("\033[1m" if bold else "") + f"{text}\033[0m"


def set_mode(mode: str) -> None:
    global _mode
    _mode = mode


def enabled(stream) -> bool:
    if _mode == "never":
        return False
    if _mode == "always":
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def kind(text: str, key: str, on: bool) -> str:
    """`text` coloured by the owner kind or impact `key` (when `on`)."""
    if not on or not text:
        return text
    return paint(text, _SEVERITY.get(key, _METADATA_COLOUR))


def warning_prefix(stream) -> str:
    return paint("fsdaxctl: warning:", "yellow", bold=True) if enabled(stream) else "fsdaxctl: warning:"


def error_prefix(stream) -> str:
    return paint("fsdaxctl:", "red", bold=True) if enabled(stream) else "fsdaxctl:"


def width(stream) -> int | None:
    """How wide a table may be on a terminal: $COLUMNS if set, else the terminal's own width
    (shutil.get_terminal_size); None (no limit) when writing to a pipe or file, so that a table saved to a file
    keeps whole lines."""
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        return shutil.get_terminal_size().columns
    return None
