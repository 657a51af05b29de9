"""Open an input source and hand it to its parser: by kind, or by a look at its first bytes.

The one place that opens input files (docs/architecture.md: the inputs stage). `-` is stdin.
"""

from __future__ import annotations

import os
import re
import sys

from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import Parsed
from fsdaxctl.stack import BLOCK, Space

KINDS = ("sysfs", "ndctl", "ddrescue", "e2fs", "kmsg")


def read_source(path: str) -> tuple[str, bytes]:
    """(display name, bytes), all of it (sysfs attribute files report a size of 4096 whatever they hold)."""
    if path == "-":
        return "stdin", sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return path, fh.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def detect(name: str, data: bytes) -> str:
    """The kind of a source from its name and first bytes; UsageError when it is anybody's guess."""
    from fsdaxctl.inputs.badblocks import space_for_sysfs_path

    head = data.lstrip()[:4096]
    if not head:
        return "sysfs"  # an empty list: what /sys/block/X/badblocks holds on a healthy device
    if name.endswith("badblocks") and space_for_sysfs_path(name) is not None:
        return "sysfs"
    # JSON starts with { or [, but so does a dmesg line ("[ 7504.88] ...", "[Tue Nov 24 ...]" with -T).
    if head[:1] == b"{" or (head[:1] == b"[" and not re.match(rb"\[\s*\d+\.\d+\]|\[[A-Z][a-z]{2} ", head)):
        return "ndctl"
    if b"ddrescue" in head[:512] or b"Mapfile" in head[:512]:
        return "ddrescue"
    lines = [ln.split(b"#", 1)[0].split() for ln in head.splitlines()[:50]]
    lines = [f for f in lines if f]
    if lines and all(len(f) == 2 and all(x.isdigit() for x in f) for f in lines):
        return "sysfs"
    if lines and all(len(f) == 1 and f[0].isdigit() for f in lines):
        return "e2fs"
    # A kernel log starts with pages of boot messages: look for its shape, and for reports anywhere.
    if re.match(rb"(<\d+>)?\[\s*\d+\.\d+\]|\d+,\d+,\d+,", head) or any(
            x in data for x in (b"Memory failure", b"XFS (", b"error, dev ", b"Buffer I/O error", b"mce:",
                                b"physical_address", b"bad range")):
        return "kmsg"
    raise UsageError(f"{name}: cannot tell what kind of list this is; say it: sysfs:FILE, ndctl:FILE, "
                     "ddrescue:FILE, e2fs:FILE (badblocks -o, with --block-size) or kmsg:FILE")


def split_kind(spec: str) -> tuple[str | None, str]:
    """'kmsg:dmesg.txt' -> ('kmsg', 'dmesg.txt'); a path that merely contains ':' stays whole."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS and rest:
        return kind, rest
    return None, spec


def load(spec: str, *, kind: str | None = None, space: Space | None = None, block_size: int = 1024,
         buffer_block_size: int = 4096, damaged: set[str] | None = None) -> Parsed:
    """Parse one source. `space` is where block-relative lists count from (default: the target)."""
    from fsdaxctl.inputs import badblocks, ddrescue, kmsg, ndctl

    k, path = split_kind(spec)
    kind = kind or k
    name, data = read_source(path)
    kind = kind or detect(name, data)
    text = data.decode("utf-8", "surrogateescape")
    lines = text.splitlines()
    if kind == "sysfs":
        sp = space or badblocks.space_for_sysfs_path(os.path.abspath(path) if path != "-" else "") or Space(BLOCK)
        return badblocks.parse_sysfs_badblocks(lines, name, sp)
    if kind == "e2fs":
        return badblocks.parse_e2fs_badblocks(lines, name, block_size, space or Space(BLOCK))
    if kind == "ddrescue":
        kw = {"damaged": damaged} if damaged is not None else {}
        return ddrescue.parse_ddrescue_mapfile(lines, name, space=space or Space(BLOCK), **kw)
    if kind == "ndctl":
        return ndctl.parse_ndctl_json(text, name)
    if kind == "kmsg":
        return kmsg.parse_kmsg(lines, name, buffer_block_size=buffer_block_size)
    raise UsageError(f"{spec}: unknown source kind {kind!r} (one of {', '.join(KINDS)})")
