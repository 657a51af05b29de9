"""Rendering: the fast JSON encoder is exactly json.dumps of the contract dict; CSV and tables are safe."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fsdaxctl.render import CSV_FIELDS, piece_csv_line, piece_json, printable
from fsdaxctl.xfs.owners import OWNER_KINDS, Piece

# Names as fsdaxctl holds them: str with surrogate escapes for bytes that are not UTF-8.
names = st.lists(st.characters(codec="utf-8", exclude_categories=["Cs"])
                 | st.sampled_from(["\udcff", "\n", "\r", "\t", '"', "\\", "\x1b"]), max_size=12).map("".join)


@st.composite
def pieces(draw):
    owner = draw(st.sampled_from(OWNER_KINDS))
    off = draw(st.integers(0, 1 << 62))
    length = draw(st.integers(1, 1 << 40))
    detail = draw(st.none() | st.dictionaries(st.sampled_from(["error", "reason"]), names, min_size=1))
    impact = draw(st.none() | st.sampled_from(["none", "file-data", "file-map", "directory", "inode"]))
    if owner != "file":
        return Piece(off, length, owner, draw(st.none() | st.integers(0, 1000)), detail=detail, impact=impact)
    extent_map = draw(st.booleans())
    return Piece(off, length, "file", draw(st.integers(0, 1000)), draw(st.integers(0, (1 << 64) - 1)),
                 draw(st.sampled_from(["data", "attr"])),
                 None if extent_map else draw(st.integers(0, 1 << 62)), extent_map, draw(st.booleans()),
                 draw(st.sampled_from([True, False, None])), tuple(draw(st.lists(names, max_size=3))), detail, impact)


@settings(max_examples=500)
@given(pieces())
def test_piece_json_is_json_dumps_of_the_contract(p):
    assert piece_json(p) == json.dumps(p.to_dict(), ensure_ascii=False)


def reference_csv_row(p) -> list:
    """The CSV row as csv.writer would be given it, from the contract dict: an independent rendering."""
    d = p.to_dict()
    cell = {True: "true", False: "false", None: ""}
    row = []
    for k in CSV_FIELDS:
        v = d.get(k)
        if isinstance(v, bool) or v is None:
            row.append(cell[v])
        elif isinstance(v, (list, dict)):
            row.append(json.dumps(v, ensure_ascii=False) if v else "")
        else:
            row.append(v)
    return row


@settings(max_examples=300)
@given(pieces())
def test_csv_row_round_trips(p):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(reference_csv_row(p))
    row = dict(zip(CSV_FIELDS, next(csv.reader(io.StringIO(buf.getvalue())))))
    d = p.to_dict()
    assert int(row["offset"]) == p.offset and int(row["length"]) == p.length and row["owner"] == p.owner
    if p.owner == "file":
        assert int(row["inode"]) == p.inode and row["fork"] == p.fork
        assert row["file_offset"] == ("" if p.extent_map else str(p.file_offset))
        assert json.loads(row["paths"] or "[]") == d["paths"]
    assert json.loads(row["detail"] or "null") == (p.detail or None)
    assert piece_csv_line(p) == buf.getvalue()
    assert piece_csv_line(p, "7,8,") == "7,8," + buf.getvalue()


@given(names)
def test_printable_never_lets_a_name_forge_a_line(name):
    out = printable(name)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\t" not in out
