"""Rendering: the fast JSON encoder is exactly json.dumps of the contract dict; CSV and tables are safe."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsdaxctl.errors import UsageError
from fsdaxctl.locate import Result
from fsdaxctl.render import (CSV_FIELDS, CSV_PATH_SEPARATOR, detail_cell, piece_csv_line, piece_json, printable,
                             write_locate)
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
    device = draw(st.none() | st.sampled_from(["data", "log", "rt"]))
    if owner != "file":
        return Piece(off, length, owner, draw(st.none() | st.integers(0, 1000)), detail=detail, impact=impact,
                     device=device)
    extent_map = draw(st.booleans())
    return Piece(off, length, "file", draw(st.integers(0, 1000)), draw(st.integers(0, (1 << 64) - 1)),
                 draw(st.sampled_from(["data", "attr"])),
                 None if extent_map else draw(st.integers(0, 1 << 62)), extent_map, draw(st.booleans()),
                 draw(st.sampled_from([True, False, None])), tuple(draw(st.lists(names, max_size=3))), detail, impact,
                 device)


@settings(max_examples=500)
@given(pieces())
def test_piece_json_is_json_dumps_of_the_contract(p):
    assert piece_json(p) == json.dumps(p.to_dict(), ensure_ascii=False)


def reference_csv_row(p) -> list:
    """The CSV row as csv.writer would be given it, from the contract dict: an independent rendering. Cells are
    plain values (README.md "Conventions"): paths joined by '|', detail as the tables write it, never JSON."""
    d = p.to_dict()
    cell = {True: "true", False: "false", None: ""}
    row = []
    for k in CSV_FIELDS:
        v = d.get(k)
        if isinstance(v, bool) or v is None:
            row.append(cell[v])
        elif isinstance(v, list):
            row.append(CSV_PATH_SEPARATOR.join(v))
        elif isinstance(v, dict):
            row.append(detail_cell(v, None))
        else:
            row.append(v)
    return row


@settings(max_examples=300)
@given(pieces())
def test_csv_row_round_trips(p):
    # Our line, read back by the csv module, is the reference row (a name's CR or LF is quoted, never a row end).
    line = piece_csv_line(p)
    rows = list(csv.reader(io.StringIO(line, newline="")))
    assert len(rows) == 1 and rows[0] == [str(v) for v in reference_csv_row(p)]
    row = dict(zip(CSV_FIELDS, rows[0]))
    d = p.to_dict()
    assert int(row["offset"]) == p.offset and int(row["length"]) == p.length and row["owner"] == p.owner
    if p.owner == "file":
        assert int(row["inode"]) == p.inode and row["fork"] == p.fork
        assert row["file_offset"] == ("" if p.extent_map else str(p.file_offset))
        assert row["paths"] == "|".join(d["paths"])
        assert not row["paths"].startswith("[")  # a plain value, not a JSON string
    assert (row["detail"] == "") == (not p.detail)
    assert piece_csv_line(p, "7,8,") == "7,8," + line


@given(names)
def test_printable_never_lets_a_name_forge_a_line(name):
    out = printable(name)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\t" not in out


def test_csv_detail_is_plain_text_with_every_item():
    from fsdaxctl.xfs.piece import Piece

    detail = {"ag": 1, "blocks": [{"agbno": b, "structure": "rmapbt", "level": 0} for b in range(10)]}
    line = piece_csv_line(Piece(0, 4096, "per-ag-metadata", 1, detail=detail, impact="filesystem-metadata"))
    row = next(csv.reader(io.StringIO(line)))
    assert row[CSV_FIELDS.index("detail")].startswith("ag: 1; blocks: 0 rmapbt 0, 1 rmapbt 0")
    assert "9 rmapbt 0" in row[CSV_FIELDS.index("detail")] and "more" not in row[CSV_FIELDS.index("detail")]
    line = piece_csv_line(Piece(0, 4096, "file", 0, 7, "data", 0, paths=("/a,b", "/c|d", "/e")))
    assert next(csv.reader(io.StringIO(line)))[CSV_FIELDS.index("paths")] == "/a,b|/c|d|/e"


def test_fit_table_wraps_long_columns_to_the_width():
    from fsdaxctl.render import fit_table

    rows = [["1", "file", "/very/long/path/" + "x" * 80, "structure: something; entries: " + "y " * 40]]
    headers = ["OFFSET", "OWNER", "PATHS", "DETAIL"]
    text = fit_table(rows, headers, 80)
    assert max(map(len, text.splitlines())) <= 80
    assert "".join(text.split()).count("x") == 80  # wrapped, nothing cut
    narrow = fit_table(rows, headers, 30)  # too narrow to wrap: long cells go on lines of their own
    assert "    paths: /very/long/path/" in narrow and "    detail: structure" in narrow
    assert fit_table(rows, headers, None) == fit_table(rows, headers, 10000)  # no width: whole lines


@pytest.mark.parametrize("good", [3, 256, 300])
@pytest.mark.parametrize("stop", [UsageError("r.txt line N: expected 'OFFSET LENGTH'"), KeyboardInterrupt()])
def test_jsonl_writes_the_lines_made_before_the_stream_stops(good, stop):
    """A streamed list stopped after `good` results (a bad line, Ctrl-C): every result before it is on stdout,
    then the stop goes up."""
    def stream():
        for i in range(good):
            yield Result(i * 4096, 4096, [Piece(i * 4096, 4096, "free", 0)])
        raise stop

    out = io.StringIO()
    with pytest.raises(type(stop)):
        write_locate(out, "jsonl", "img", {}, stream(), [])
    lines = out.getvalue().splitlines()
    assert [json.loads(ln)["offset"] for ln in lines] == [i * 4096 for i in range(good)]


class _Reads:
    """A piece that records which of its fields are read."""

    def __init__(self, piece):
        self._piece, self.read = piece, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._piece, name)


@settings(max_examples=300)
@given(pieces(), st.sampled_from([None, "file", "dir", "symlink"]))
def test_the_exit_rule_reads_only_the_fields_exit_status_keys_on(p, ftype):
    """exit_status works out each kind of piece's bits once, keyed on policy._RULE_FIELDS: the rule must read
    nothing else of a piece, and the memoised status is the rule's."""
    from fsdaxctl import policy

    spy = _Reads(p)
    policy.piece_bits(spy, ftype)
    keyed = {Piece._fields[i] for i in policy._RULE_FIELDS(tuple(range(len(Piece._fields))))}
    assert spy.read <= keyed
    ftypes = {p.inode: ftype} if p.inode is not None else {}
    twice = [Result(0, 1, [p, p._replace(offset=p.offset + 1)])]
    assert policy.exit_status(twice, ftypes) == policy.piece_bits(p, ftypes.get(p.inode) if p.owner == "file"
                                                                  else None)
