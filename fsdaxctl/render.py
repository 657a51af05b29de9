"""Output: table, json, jsonl, csv. Takes plain values (dicts, Pieces, Results); never reads the filesystem.

JSON carries bytes, always; tables carry human units next to exact offsets.
"""

from __future__ import annotations

import csv
import json
import sys

from fsdaxctl.units import human

FORMATS = ("table", "json", "jsonl", "csv")
LOCATE_FORMATS = FORMATS + ("paths",)

CSV_FIELDS = ("offset", "length", "owner", "inode", "fork", "file_offset", "extent_map", "unwritten", "shared",
              "paths", "detail", "impact")


_BOOL = {True: "true", False: "false", None: "null"}


def piece_json(p) -> str:
    """json.dumps(p.to_dict(), ensure_ascii=False), built directly: the schema is fixed and a dump writes
    millions of pieces. tests/test_render.py proves the two agree."""
    offset, length, owner, _, inode, fork, file_offset, extent_map, unwritten, shared, paths, detail, impact = p[:13]
    if owner == "file":
        fo = "" if extent_map else f'"file_offset": {file_offset}, '
        pj = json.dumps(list(paths), ensure_ascii=False) if paths else "[]"
        text = (f'{{"offset": {offset}, "length": {length}, "owner": "file", "inode": {inode}, "fork": "{fork}", '
                f'{fo}"extent_map": {_BOOL[extent_map]}, "unwritten": {_BOOL[unwritten]}, '
                f'"shared": {_BOOL[shared]}, "paths": {pj}')
    else:
        text = f'{{"offset": {offset}, "length": {length}, "owner": "{owner}"'
    if detail:
        text = f'{text}, "detail": {json.dumps(detail, ensure_ascii=False)}'
    if impact:
        text = f'{text}, "impact": "{impact}"'
    if len(p) > 13 and p[13]:  # device: on filesystems with a log or realtime device of their own
        text = f'{text}, "device": "{p[13]}"'
    return text + "}"


def result_json(r) -> str:
    extra = ""
    if r.input is not None:
        extra += ', "input": ' + json.dumps(r.input, ensure_ascii=False)
    if r.recoverable:
        extra += ', "recoverable": ' + json.dumps(r.recoverable, ensure_ascii=False)
    if r.trace is not None:
        extra += ', "trace": ' + json.dumps(r.trace, ensure_ascii=False)
    if getattr(r, "source", ""):
        extra += f', "source": "{r.source}"'
    return (f'{{"offset": {r.offset}, "length": {r.length}, "owners": ['
            + ", ".join([piece_json(p) for p in r.owners]) + "]" + extra + "}")


def _write_lines(out, results) -> None:
    """Each result as a JSON line, 256 lines a write when out is not a terminal (a million writes cost
    seconds). Lines already made are written before whatever ends the stream goes up (a bad input line
    further on, Ctrl-C)."""
    size = 1 if getattr(out, "isatty", bool)() else 256
    lines: list[str] = []
    try:
        for r in results:
            lines.append(result_json(r) + "\n")
            if len(lines) >= size:
                text, lines = "".join(lines), []
                out.write(text)
    finally:
        text, lines = "".join(lines), []
        if text:
            out.write(text)


def default_format(stream=None, interactive="table", piped="json") -> str:
    stream = stream or sys.stdout
    return interactive if stream.isatty() else piped


def printable(name: str) -> str:
    """Escape control characters so a file name cannot forge a line or a column in a table."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c != "\\" else "\\\\" for c in name)


def flags_text(p) -> str:
    """The FLAGS column: flags only (extent-map, unwritten, shared); structure detail has its own column."""
    flags = []
    if p.owner == "file":
        if p.extent_map:
            flags.append("extent-map")
        if p.unwritten:
            flags.append("unwritten")
        if p.shared:
            flags.append("shared")
        elif p.shared is None:
            flags.append("shared?")
    return ", ".join(flags)


def detail_cell(detail, limit: int | None = 8) -> str:
    """The DETAIL column (and CSV's detail cell): 'key: value' items joined by '; '."""
    if not detail:
        return ""
    return "; ".join(detail_text(k, v, limit) for k, v in detail.items())


def detail_text(key: str, value, limit: int | None = 8) -> str:
    """A detail item for a table cell: lists shortened (to `limit` items), every name escaped."""
    if isinstance(value, list):
        shown = [printable(_item_text(v)) for v in (value if limit is None else value[:limit])]
        more = f" (+{len(value) - limit} more)" if limit is not None and len(value) > limit else ""
        return f"{key}: {', '.join(shown)}{more}"
    return f"{key}: {printable(str(value))}"


def _item_text(v) -> str:
    if isinstance(v, dict):
        return " ".join(str(x) if not isinstance(x, list) else ",".join(map(str, x)) for x in v.values())
    return str(v)


def _piece_row(p, colour: bool = False) -> list:
    from fsdaxctl.style import kind

    return [
        p.offset, human(p.length), kind(p.owner, p.owner, colour),
        p.device or "",  # on a filesystem with log or realtime devices: which one (else the column is dropped)
        "" if p.inode is None else p.inode,
        p.fork or "",
        "" if p.file_offset is None else p.file_offset,
        "" if p.agno is None else p.agno,
        flags_text(p),
        kind(p.impact or "", p.impact or "", colour),
        ", ".join(printable(x) for x in p.paths),
        detail_cell(p.detail),
    ]


# One column style for every table (info, fsmap, locate, inject, badblocks): upper case, words apart.
PIECE_HEADERS = ["OFFSET", "LENGTH", "OWNER", "DEVICE", "INODE", "FORK", "FILE OFFSET", "AG", "FLAGS", "IMPACT",
                 "PATHS", "DETAIL"]
WRAPPED = ("PATHS", "DETAIL", "ERROR")  # columns that wrap to fit a terminal (fit_table's default)
MIN_WRAP = 16  # narrower than this, wrapped columns go on their own lines below the table instead


def _drop_empty_columns(headers, rows):
    keep = [i for i in range(len(headers)) if i < 3 or any(r[i] != "" for r in rows)]
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows]


def fit_table(rows, headers, width: int | None, tablefmt: str = "simple", wrap_cols=WRAPPED) -> str:
    """tabulate, fitted to `width` columns (None: no limit). Long cells of the WRAPPED columns wrap inside their
    column; when even that cannot fit, those columns leave the table and follow each row as indented lines."""
    from tabulate import tabulate

    text = tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True)
    if width is None or max(map(_visible_len, text.splitlines()), default=0) <= width:
        return text
    wrap = [i for i, h in enumerate(headers) if h in wrap_cols]
    if not wrap:
        return text
    fixed = [i for i in range(len(headers)) if i not in wrap]
    fixed_table = tabulate([[r[i] for i in fixed] for r in rows], [headers[i] for i in fixed], tablefmt=tablefmt,
                           disable_numparse=True)
    fixed_width = max(map(_visible_len, fixed_table.splitlines()), default=0)
    room = width - fixed_width - 2 * len(wrap)  # two spaces before each wrapped column
    if room // len(wrap) >= MIN_WRAP:
        natural = [max([len(headers[i])] + [_visible_len(str(r[i])) for r in rows]) for i in wrap]
        share = [max(MIN_WRAP, room * n // max(sum(natural), 1)) for n in natural]
        while sum(share) > room:  # the minimums may overshoot: take back from the widest
            share[share.index(max(share))] -= 1
        maxw = [None] * len(headers)
        for i, w in zip(wrap, share):
            maxw[i] = max(w, 1)
        return tabulate(rows, headers, tablefmt=tablefmt, disable_numparse=True, maxcolwidths=maxw)
    # Too narrow: the short columns form the table; each row's long cells follow it on lines of their own.
    table = fixed_table.splitlines()
    head = len(table) - len(rows)
    out = table[:head]
    for r, line in zip(rows, table[head:]):
        out.append(line)
        out += [f"    {headers[i].lower()}: {r[i]}" for i in wrap if r[i] != ""]
    return "\n".join(out)


def _visible_len(text: str) -> int:
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", text))


CSV_PATH_SEPARATOR = "|"  # README.md "Conventions": a name holding '|' is ambiguous in CSV; JSON never is


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return _BOOL[v]
    if isinstance(v, dict):
        return detail_cell(v, None)
    if isinstance(v, list):
        return CSV_PATH_SEPARATOR.join(map(str, v))
    return v


def _csv_cell(text: str) -> str:
    """RFC 4180 quoting, as csv.writer's QUOTE_MINIMAL does it."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def piece_csv_line(p, prefix: str = "") -> str:
    """One CSV line of CSV_FIELDS (after `prefix`, already CSV), built directly: csv.writer costs more than the
    rest of a dump. Booleans are true/false, absent values empty. tests/test_render.py
    proves it equals csv.writer's line for the piece's contract dict. Cells are plain values: paths joined by
    CSV_PATH_SEPARATOR, detail as the tables show it ('key: value; ...', every list item)."""
    offset, length, owner, _, inode, fork, file_offset, extent_map, unwritten, shared, paths, detail, impact = p[:13]
    tail = (_csv_cell(detail_cell(detail, None)) if detail else "") + "," + (impact or "")
    if owner == "file":
        pj = _csv_cell(CSV_PATH_SEPARATOR.join(paths)) if paths else ""
        return (f"{prefix}{offset},{length},file,{inode},{fork},{'' if file_offset is None else file_offset},"
                f"{_BOOL[extent_map]},{_BOOL[unwritten]},{'' if shared is None else _BOOL[shared]},{pj},{tail}\n")
    return f"{prefix}{offset},{length},{_csv_cell(owner)},,,,,,,,{tail}\n"


def write_paths(out, results, null: bool = False) -> list[int]:
    """Every path of every file hit, once, as its bytes on disk (for xargs, rsync --files-from, restores):
    newline-terminated, or NUL-terminated with `null` (names may hold newlines). Returns the inodes hit that
    have no path, for the caller to warn about."""
    seen, unnamed = set(), []
    end = b"\0" if null else b"\n"
    buf = out.buffer if hasattr(out, "buffer") else None
    for r in results:
        for p in r.owners:
            if p.owner != "file":
                continue
            if not p.paths and p.inode not in unnamed:
                unnamed.append(p.inode)
            for path in p.paths:
                if path not in seen:
                    seen.add(path)
                    raw = path.encode("utf-8", "surrogateescape") + end
                    if buf is not None:
                        buf.write(raw)
                    else:
                        out.write(raw.decode("utf-8", "surrogateescape"))
    return unnamed


def write_locate(out, fmt: str, source: str, fsinfo: dict, results, warnings: list[str], *,
                 dropped: list[dict] | None = None, stack: list[str] | None = None) -> None:
    """`dropped`: input bytes that never reached the filesystem (with why); `stack`: the layers, for --explain.
    `results` may be a stream: each is written as it comes; `dropped` and `warnings` are read after it ends."""
    dropped = [] if dropped is None else dropped
    if fmt == "json":
        head = {"source": source, "filesystem": fsinfo}
        if stack is not None:
            head["stack"] = stack
        head = json.dumps(head, ensure_ascii=False)
        out.write(head[:-1] + ', "results": [')
        out.write(", ".join(result_json(r) for r in results))
        out.write("]")
        if dropped:
            out.write(', "not_on_filesystem": ' + json.dumps(dropped, ensure_ascii=False))
        out.write(', "warnings": ' + json.dumps(warnings, ensure_ascii=False) + "}\n")
    elif fmt == "jsonl":
        _write_lines(out, results)
        for d in dropped:
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        out.write(",".join(("query_offset", "query_length") + CSV_FIELDS) + "\n")
        for r in results:
            prefix = f"{r.offset},{r.length},"
            out.write("".join(piece_csv_line(p, prefix) for p in r.owners))
    else:
        from fsdaxctl import style

        colour, width = style.enabled(out), style.width(out)
        if stack:
            out.write("stack:\n" + "".join(f"  {printable(line)}\n" for line in stack) + "\n")
        for i, r in enumerate(results):
            if i:
                out.write("\n")
            if r.input is not None:
                note = f" ({r.input['note']})" if r.input.get("note") else ""
                out.write(f"from {printable(r.input['origin'])}{printable(note)}\n")
            for hop in r.trace or ():
                if hop["layer"] != "input":  # the 'from' line above already says it
                    out.write(f"  {hop['layer']}: {printable(hop['arithmetic'])}\n")
            out.write(f"range {r.offset} + {r.length} ({human(r.length)}): {r.summary}\n")
            headers, rows = _drop_empty_columns(PIECE_HEADERS, [_piece_row(p, colour) for p in r.owners])
            out.write(fit_table(rows, headers, width))
            out.write("\n")
            if r.recoverable:
                out.write(f"recoverable: {printable(r.recoverable)}; resynchronise the array to repair the bad "
                          "copy\n")
            elif r.advice:
                out.write(f"advice: {printable(r.advice)}\n")
        if dropped:
            out.write(("\n" if results else "") + "not on the filesystem:\n")
            for d in dropped:
                out.write(f"  {printable(d['input']['origin'])}: {human(d['length'])} at byte {d['offset']} of "
                          f"{printable(d['space'])}: {d['dropped']}: {printable(d['reason'])}\n")
                for hop in d.get("trace") or ():
                    out.write(f"    {hop['layer']}: {printable(hop.get('arithmetic', hop.get('reason', '')))}\n")


class FsmapWriter:
    """Streams a whole owner map in batches: memory stays flat however many pieces there are."""

    def __init__(self, out, fmt: str, source: str, fsinfo: dict):
        self.out, self.fmt, self.n = out, fmt, 0
        if fmt == "json":
            head = json.dumps({"source": source, "filesystem": fsinfo}, ensure_ascii=False)
            out.write(head[:-1] + ', "owners": [')
        elif fmt == "csv":
            out.write(",".join(CSV_FIELDS) + "\n")
        elif fmt == "table":
            from fsdaxctl import style

            self.colour = style.enabled(out)
            out.write(f"{'EXT':>8}  {'OFFSET':>15}  {'LENGTH':>10}  {'OWNER':<18}  {'INODE':>12}  "
                      f"{'FORK':<4}  {'FILE OFFSET':>15}  {'AG':>5}  {'FLAGS':<20}  DETAIL\n")

    def write_all(self, batches) -> None:
        """Write lists of pieces (OwnerMap.iter_batches)."""
        fmt, out = self.fmt, self.out
        for batch in batches:
            if not batch:
                continue
            if fmt == "jsonl":
                out.write("\n".join(map(piece_json, batch)) + "\n")
            elif fmt == "json":
                if self.n and batch:
                    out.write(", ")
                out.write(", ".join([piece_json(p) for p in batch]))
            elif fmt == "csv":
                out.write("".join(map(piece_csv_line, batch)))
            else:
                from fsdaxctl.style import kind

                n, colour = self.n, self.colour
                out.write("".join([
                    f"{n + i:>8}  {p.offset:>15}  {human(p.length):>10}  {kind(f'{p.owner:<18}', p.owner, colour)}  "
                    f"{'' if p.inode is None else p.inode:>12}  {p.fork or '':<4}  "
                    f"{'' if p.file_offset is None else p.file_offset:>15}  "
                    f"{'' if p.agno is None else p.agno:>5}  {flags_text(p):<20}  {detail_cell(p.detail)}".rstrip()
                    + "\n" for i, p in enumerate(batch)]))
            self.n += len(batch)

    def close(self, warnings: list[str]) -> None:
        if self.fmt == "json":
            self.out.write('], "warnings": ' + json.dumps(warnings, ensure_ascii=False) + "}\n")


def write_info(out, fmt: str, source: str, fsinfo: dict, ags: list[dict], warnings: list[str]) -> None:
    if fmt in ("json", "jsonl"):
        json.dump({"source": source, "filesystem": fsinfo, "ags": ags, "warnings": warnings}, out,
                  ensure_ascii=False)
        out.write("\n")
        return
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        if ags:
            w.writerow(list(ags[0]))
            for ag in ags:
                w.writerow([_csv_value(v) for v in ag.values()])
        return
    from tabulate import tabulate

    log = fsinfo["log"]
    rows = [
        ("source", source),
        ("uuid", fsinfo["uuid"]),
        ("label", printable(fsinfo["label"]) or "(none)"),
        ("size", f"{fsinfo['size']} bytes ({human(fsinfo['size'])})"),
        ("device size", f"{fsinfo['device_size']} bytes ({human(fsinfo['device_size'])})"),
        *([("in TARGET at", f"byte {fsinfo['target_offset']} ({human(fsinfo['target_offset'])})")]
          if "target_offset" in fsinfo else []),
        ("block size", fsinfo["block_size"]),
        ("sector size", fsinfo["sector_size"]),
        ("inode size", fsinfo["inode_size"]),
        ("allocation groups", f"{fsinfo['ag_count']} x {human(fsinfo['ag_size'])}"),
        ("log", (f"internal, at byte {log['offset']}, {human(log['length'])}" if log["internal"]
                 else f"external, {human(log['length'])}")),
        *([("realtime", _rt_text(fsinfo["realtime"]))] if "realtime" in fsinfo else []),
        ("features", ", ".join(fsinfo["features"])),
    ]
    out.write(tabulate(rows, tablefmt="plain", disable_numparse=True))
    out.write("\n\n")
    if ags:
        from fsdaxctl import style

        keys = list(dict.fromkeys(k for ag in ags for k in ag))
        headers = [column_title(k) for k in keys]
        rows = [[_csv_value(ag.get(k)) for k in keys] for ag in ags]
        out.write(fit_table(rows, headers, style.width(out)))
        out.write("\n")


def _rt_text(rt: dict) -> str:
    where = (f"inside TARGET from byte {rt['offset']}" if rt["internal"]
             else f"device {printable(rt['device'])}" if rt.get("device") else "a device of its own (--rtdev)")
    groups = (f", {rt['groups']} {'zones' if rt['zoned'] else 'groups'} of {human(rt['group_size'])}"
              + (f" every {human(rt['group_stride'])}" if rt["group_stride"] != rt["group_size"] else "")
              if "groups" in rt else "")
    return f"{where}, {human(rt['length'])}, extents of {human(rt['extent_size'])}{groups}"


def column_title(key: str) -> str:
    """A JSON key as a table column title: 'free_blocks' -> 'FREE BLOCKS' (the one column style)."""
    return key.replace("_", " ").upper()
