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
    offset, length, owner, _, inode, fork, file_offset, extent_map, unwritten, shared, paths, detail, impact = p
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
        return f'{text}, "impact": "{impact}"}}'
    return text + "}"


def result_json(r) -> str:
    extra = ""
    if r.input is not None:
        extra += ', "input": ' + json.dumps(r.input, ensure_ascii=False)
    if r.recoverable:
        extra += ', "recoverable": ' + json.dumps(r.recoverable, ensure_ascii=False)
    if r.trace is not None:
        extra += ', "trace": ' + json.dumps(r.trace, ensure_ascii=False)
    return (f'{{"offset": {r.offset}, "length": {r.length}, "owners": ['
            + ", ".join(piece_json(p) for p in r.owners) + "]" + extra + "}")


def default_format(stream=None, interactive="table", piped="json") -> str:
    stream = stream or sys.stdout
    return interactive if stream.isatty() else piped


def printable(name: str) -> str:
    """Escape control characters so a file name cannot forge a line or a column in a table."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c != "\\" else "\\\\" for c in name)


def flags_text(p) -> str:
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
    if p.detail:
        flags += [detail_text(k, v) for k, v in p.detail.items()]
    return ", ".join(flags)


def detail_text(key: str, value) -> str:
    """A detail item for a table cell: lists shortened, every name escaped."""
    if isinstance(value, list):
        shown = [printable(_item_text(v)) for v in value[:8]]
        more = f" (+{len(value) - 8} more)" if len(value) > 8 else ""
        return f"{key}: {'; '.join(shown)}{more}"
    return f"{key}: {printable(str(value))}"


def _item_text(v) -> str:
    if isinstance(v, dict):
        return " ".join(str(x) if not isinstance(x, list) else ",".join(map(str, x)) for x in v.values())
    return str(v)


def _piece_row(p) -> list:
    return [
        p.offset, human(p.length), p.owner,
        "" if p.inode is None else p.inode,
        p.fork or "",
        "" if p.file_offset is None else p.file_offset,
        "" if p.agno is None else p.agno,
        flags_text(p),
        p.impact or "",
        ", ".join(printable(x) for x in p.paths),
    ]


PIECE_HEADERS = ["OFFSET", "LENGTH", "OWNER", "INODE", "FORK", "FILE OFFSET", "AG", "FLAGS", "IMPACT", "PATHS"]


def _drop_empty_columns(headers, rows):
    keep = [i for i in range(len(headers)) if i < 3 or any(r[i] != "" for r in rows)]
    return [headers[i] for i in keep], [[r[i] for i in keep] for r in rows]


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return _BOOL[v]
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False) if v else ""
    return v


def _csv_cell(text: str) -> str:
    """RFC 4180 quoting, as csv.writer's QUOTE_MINIMAL does it."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def piece_csv_line(p, prefix: str = "") -> str:
    """One CSV line of CSV_FIELDS (after `prefix`, already CSV), built directly: csv.writer costs more than the
    rest of a dump. Booleans are true/false, lists and dicts JSON, absent values empty. tests/test_render.py
    proves it equals csv.writer's line for the piece's contract dict."""
    offset, length, owner, _, inode, fork, file_offset, extent_map, unwritten, shared, paths, detail, impact = p
    tail = (_csv_cell(json.dumps(detail, ensure_ascii=False)) if detail else "") + "," + (impact or "")
    if owner == "file":
        pj = _csv_cell(json.dumps(list(paths), ensure_ascii=False)) if paths else ""
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
    """`dropped`: input bytes that never reached the filesystem (with why); `stack`: the layers, for --explain."""
    dropped = dropped or []
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
        for r in results:
            out.write(result_json(r) + "\n")
        for d in dropped:
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        out.write(",".join(("query_offset", "query_length") + CSV_FIELDS) + "\n")
        for r in results:
            prefix = f"{r.offset},{r.length},"
            out.write("".join(piece_csv_line(p, prefix) for p in r.owners))
    else:
        from tabulate import tabulate  # only tables pay for tabulate's import

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
            out.write(f"range {r.offset} + {r.length} ({human(r.length)}): {summary(r.owners)}\n")
            headers, rows = _drop_empty_columns(PIECE_HEADERS, [_piece_row(p) for p in r.owners])
            out.write(tabulate(rows, headers, tablefmt="simple", disable_numparse=True))
            out.write("\n")
            if r.recoverable:
                out.write(f"recoverable: {printable(r.recoverable)}; resynchronise the array to repair the bad "
                          "copy\n")
            elif any(p.impact for p in r.owners):
                from fsdaxctl.xfs.detail import advice

                out.write(f"advice: {printable(advice(r.owners))}\n")
        if dropped:
            out.write(("\n" if results else "") + "not on the filesystem:\n")
            for d in dropped:
                out.write(f"  {printable(d['input']['origin'])}: {human(d['length'])} at byte {d['offset']} of "
                          f"{printable(d['space'])}: {d['dropped']}: {printable(d['reason'])}\n")
                for hop in d.get("trace") or ():
                    out.write(f"    {hop['layer']}: {printable(hop.get('arithmetic', hop.get('reason', '')))}\n")


def summary(pieces) -> str:
    kinds = []
    for p in pieces:
        k = p.owner if p.owner != "file" else ("file data" if p.fork == "data" and not p.extent_map
                                               else "file metadata")
        if k not in kinds:
            kinds.append(k)
    return ", ".join(kinds)


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
            out.write(f"{'EXT':>8}  {'OFFSET':>15}  {'LENGTH':>10}  {'OWNER':<18}  {'INODE':>12}  "
                      f"{'FORK':<4}  {'FILE OFFSET':>15}  {'AG':>5}  FLAGS\n")

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
                n = self.n
                out.write("".join([
                    f"{n + i:>8}  {p.offset:>15}  {human(p.length):>10}  {p.owner:<18}  "
                    f"{'' if p.inode is None else p.inode:>12}  {p.fork or '':<4}  "
                    f"{'' if p.file_offset is None else p.file_offset:>15}  "
                    f"{'' if p.agno is None else p.agno:>5}  {flags_text(p)}\n" for i, p in enumerate(batch)]))
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
        ("features", ", ".join(fsinfo["features"])),
    ]
    out.write(tabulate(rows, tablefmt="plain", disable_numparse=True))
    out.write("\n\n")
    if ags:
        headers = list(ags[0])
        out.write(tabulate([[_csv_value(v) for v in ag.values()] for ag in ags], headers=headers,
                           tablefmt="simple", disable_numparse=True))
        out.write("\n")
