"""GNU ddrescue mapfiles (formerly "logfiles"): the blocks a rescue could not read.

Format (ddrescue manual, "Mapfile structure"; the reader is mapfile.cc Mapfile::read_mapfile): comments from
'#' at the start of a line or after whitespace; the first other line is the status line
`current_pos current_status [current_pass]` (the pass is missing before ddrescue 1.20's format); then one
`pos size status` line per block, contiguous and non-overlapping, positions and sizes in bytes of the input
file. Numbers are C integer constants, as sscanf's %lli reads them: decimal, 0x hex or 0 octal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import Parsed
from fsdaxctl.inputs.badblocks import finish, numbered_lines
from fsdaxctl.stack import BLOCK, Extent, Space
from fsdaxctl.units import MAX_BYTES

# Block status characters (manual, "Mapfile structure"; block.h Sblock::Status).
BLOCK_STATUS = {
    "?": "non-tried block",
    "*": "failed block, non-trimmed",
    "/": "failed block, non-scraped",
    "-": "failed block, bad sector(s)",
    "+": "finished block",
}
# The status line's character also names the phase: F filling, G generating.
CURRENT_STATUS = frozenset("?*/-FG+")
DAMAGED = frozenset("-*/?")  # everything not rescued: a non-tried block may be as bad as a failed one

_COMMENT = re.compile(r"(?:^|(?<=\s))#.*")
_INT = re.compile(r"\+?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def _c_integer(text: str) -> int | None:
    """A non-negative C integer constant as strtoll(base 0) reads it (0x1F, 017, 15); None if not one."""
    if not _INT.fullmatch(text):
        return None
    t = text.lstrip("+")
    if len(t) > 40:  # no position has that many digits, and int() refuses past 4300
        return None
    if t[:2] in ("0x", "0X"):
        return int(t[2:], 16)
    if len(t) > 1 and t[0] == "0":
        return int(t[1:], 8)
    return int(t)


def _number_problem(text: str) -> str:
    if text.startswith("-") and _c_integer(text[1:]) is not None:
        return f"negative: {text}"
    if re.fullmatch(r"0[0-9]+", text):
        return f"{text!r} is octal (a leading 0) but has the digit 8 or 9"
    return f"not a number: {text[:40]!r}"


def parse_ddrescue_mapfile(lines: Iterable[str | bytes], name: str, damaged: Iterable[str] = DAMAGED,
                           space: Space = Space(BLOCK)) -> Parsed:
    """The blocks of a ddrescue mapfile whose status is in `damaged` (default: all but '+' finished), as
    extents of `space` (the device ddrescue read: its positions count from byte 0 of the input file)."""
    damaged = frozenset(damaged)
    unknown = damaged - BLOCK_STATUS.keys()
    if unknown:
        raise UsageError(f"ddrescue block status {''.join(sorted(unknown))!r} does not exist "
                         f"(statuses: {' '.join(BLOCK_STATUS)})")
    out = Parsed()
    good = 0
    status_seen = False
    prev_end = None  # end of the last accepted block
    for n, text, _ in numbered_lines(lines, name, out):
        fields = _COMMENT.sub("", text).split()
        if not fields:
            continue
        where = f"{name} line {n}"
        if not status_seen:
            status_seen = True
            # The status line: `pos status [pass]`. A mapfile made by hand may lack it; then this line is
            # already a block (its second field is a number, never a status character).
            if len(fields) in (2, 3) and len(fields[1]) == 1 and fields[1] in CURRENT_STATUS:
                why = _status_line_problem(fields)
                if why:
                    out.skipped.append((where, why))
                else:
                    good += 1
                continue
        why, pos, size = _block(fields, prev_end)
        if why:
            out.skipped.append((where, why))
            continue
        good += 1
        st = fields[2]
        if size == 0:  # "0 0 status": an empty input, no bytes
            continue
        prev_end = pos + size
        if st in damaged:
            out.extents.append(Extent(space, pos, size, where,
                                      f"ddrescue status '{st}' ({BLOCK_STATUS[st]}): pos {pos:#x}, size {size:#x}",
                                      name, n))
    return finish(out, name, good)


def _status_line_problem(fields: list[str]) -> str:
    """Why the status line `pos status [pass]` cannot be used (empty: it can)."""
    if _c_integer(fields[0]) is None:
        return f"status line: position {_number_problem(fields[0])}"
    if len(fields) == 3 and not fields[2].isdigit():
        return f"status line: pass {fields[2][:20]!r} is not a decimal number"
    return ""


def _block(fields: list[str], prev_end: int | None) -> tuple[str, int | None, int | None]:
    """(why a `pos size status` block line cannot be used, empty if it can; its pos; its size). "0 0 status" is
    the map of an empty input."""
    if len(fields) != 3:
        return (f"truncated: {len(fields)} field{'s' if len(fields) != 1 else ''}, expected 'pos size status'"
                if len(fields) < 3 else f"{len(fields)} fields, expected 3 (pos size status)"), None, None
    pos, size = _c_integer(fields[0]), _c_integer(fields[1])
    st = fields[2]
    if pos is None or size is None:
        which, text_ = ("pos", fields[0]) if pos is None else ("size", fields[1])
        why = f"{which} {_number_problem(text_)}"
    elif st not in BLOCK_STATUS:
        why = f"unknown block status {st[:10]!r} (one of {' '.join(BLOCK_STATUS)})"
    elif size == 0:
        # ddrescue itself allows only "0 0 status", the map of an empty input
        why = "zero length" if pos != 0 else ""
    elif pos + size > MAX_BYTES:
        why = f"past the largest device offset (2^63 - 1 bytes): {pos:#x} + {size:#x}"
    elif prev_end is not None and pos < prev_end:
        why = (f"overlaps the block before it (which ends at {prev_end:#x}): mapfile "
               "blocks must be sorted and non-overlapping")
    else:
        why = ""
    return why, pos, size
