"""fsdaxctl inject: put a failure into the kernel's chain at any layer and see what would happen."""

from __future__ import annotations

import sys

import click

from fsdaxctl.commands.common import (chain_mapping, chain_options, check_chain_options, fs_device_option, run_act,
                                     stack_options, target_options, warn, with_stack)
from fsdaxctl.errors import UsageError


@click.command("inject")
@target_options
@click.option("--pfn", help="A page frame number: memory_failure(pfn) (the 'Memory failure: 0x...' value).")
@click.option("--phys", help="A system physical address: memory_failure() of its page (needs the nd layout).")
@click.option("--sector", help="A block-layer error: first 512-byte sector on --device (default TARGET).")
@click.option("--count", default=None, help="With --sector or --daddr: how many 512-byte sectors (default 1 with "
                                            "--sector; instead of --length with --daddr).")
@click.option("--daddr", help="Enter at XFS with a daddr (512-byte units on the filesystem).")
@click.option("--file", "file_path", metavar="PATH",
              help="The reverse question: a poisoned file range (--file-offset, --length): which device bytes, "
                   "who else shares them, what happens.")
@click.option("--file-offset", default="0", help="With --file: start of the range.")
@click.option("--length", help="With --daddr or --file: bytes (default one page).")
@stack_options
@fs_device_option
@chain_options
@click.option("--poison", metavar="COPY", help="Drill on a copy: write a recognisable pattern over the damaged "
                                               "bytes of COPY (a copy of TARGET) and append them to COPY.badblocks.")
@click.option("--trace", is_flag=True, help="Print the call path (as the kernel walks it) above the decisions; JSON "
                                          "always carries it.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default=None,
              help="table: the call path and the decisions (default on a terminal); json otherwise.")
@click.pass_context
def command(ctx, spec, **o):
    """What would the kernel do about this failure? The whole chain, each hop, a decision per owner.

    \b
    memory_failure -> pmem pagemap -> dax holder -> XFS notify_failure -> rmap -> per owner:
    kill-mappers, invalidate-mappings, rewrite-cached-page, report-writeback-error,
    shutdown-filesystem, restore-from-backup (written file data), repair-filesystem (a directory's or
    symlink's blocks), reallocate-space (unwritten extents) or none. Nothing on TARGET is touched; --act acts on the
    live system where TARGET is mounted, --poison on a copy.

    \b
    Exit status: as locate (0 nothing in use, 4 file data, 8 metadata), 1 when an action failed.
    """
    from fsdaxctl.session import Session

    flags = check_chain_options(o)
    spec = with_stack(spec, o)
    if o.get("fs_device", "data") != "data":
        ctx.exit(_other_device(spec, o, flags))
    if o["act"] and o["poison"]:
        raise UsageError("--poison drills on a copy; --act acts on the live system: one at a time")
    event, inputs = _inputs(spec, o)
    with Session.open(spec) as session:
        report = session.inject(event, inputs, flags, chain_mapping(session, o))
        _write(report, o)
        status = report.status
        if o["poison"]:
            from fsdaxctl.engine.act import poison_copy

            for line in poison_copy(report.target, o["poison"], session.fs, report.answer):
                click.echo(f"fsdaxctl: {line}", err=True)
        if o["act"]:
            status |= run_act(session, report, event, flags, o, report.outcomes)
    ctx.exit(status)


def _write(report, o) -> None:
    from fsdaxctl.render import default_format

    warn(report.warnings)
    fmt = o["fmt"] or default_format(interactive="table", piped="json")
    write_outcomes(sys.stdout, fmt, report.target, report.outcomes, report.mapping, o["trace"])


def _inputs(spec, o):
    """(event, Inputs) for the one event the options give; every problem is one UsageError line."""
    from fsdaxctl.commands.common import sub_sector_note
    from fsdaxctl.inputs import Parsed
    from fsdaxctl.session import Inputs, block_size
    from fsdaxctl.units import SECTOR

    given = [k for k in ("pfn", "phys", "sector", "daddr", "file_path") if o[k] is not None]
    if len(given) != 1:
        raise UsageError("give exactly one event: --pfn, --phys, --sector, --daddr or --file")
    kind = given[0]
    block = block_size(spec)
    length, count = _event_size(o, kind, block)
    parsed, queries = Parsed(), []
    if length is not None and length < SECTOR:
        parsed.notes.append(sub_sector_note("--length", length))
    event = _EVENTS[kind](o, parsed, queries, length, count, block)
    return event, Inputs(parsed, queries)


def _event_size(o: dict, kind: str, block) -> tuple[int | None, int | None]:
    """(--length in bytes, --count in sectors) as the event's kind allows them."""
    from fsdaxctl.units import SECTOR, parse_size

    length = parse_size(o["length"], "--length", block) if o["length"] is not None else None
    if length is not None and (length <= 0 or kind not in ("daddr", "file_path")):
        raise UsageError("--length must be positive" if length <= 0 else
                         "--length goes with --daddr or --file (--sector takes --count; a pfn is one page)")
    count = None
    if o["count"] is not None:
        if kind not in ("sector", "daddr"):
            raise UsageError("--count goes with --sector or --daddr (512-byte sectors)")
        if length is not None:
            raise UsageError("give --length or --count, not both")
        count = parse_size(o["count"], "--count", block)
        if count <= 0:
            raise UsageError("--count must be positive")
        length = count * SECTOR if kind == "daddr" else None
    return length, count


def _pfn_event(o, parsed, queries, length, count, block) -> dict:
    from fsdaxctl.inputs import pfn_extent
    from fsdaxctl.units import parse_size

    pfn = parse_size(o["pfn"], "--pfn")
    parsed.extents.append(pfn_extent(pfn, "--pfn"))
    return {"kind": "pfn", "pfn": pfn}


def _phys_event(o, parsed, queries, length, count, block) -> dict:
    from fsdaxctl.inputs import phys_extent
    from fsdaxctl.units import parse_size

    addr = parse_size(o["phys"], "--phys")
    parsed.extents.append(phys_extent(addr, "--phys"))
    return {"kind": "phys", "address": addr}


def _sector_event(o, parsed, queries, length, count, block) -> dict:
    from fsdaxctl.pipeline import target_extent
    from fsdaxctl.stack import BLOCK, Extent, Space
    from fsdaxctl.units import SECTOR, parse_size

    sector, count = parse_size(o["sector"], "--sector"), count or 1
    dev = o["device_name"]
    if dev:
        ext = Extent(Space(BLOCK, dev), sector * SECTOR, count * SECTOR, "--sector",
                     f"sector {sector}, {count} sector(s) of {dev}")
    else:
        ext = target_extent(sector * SECTOR, count * SECTOR, "--sector")
    parsed.extents.append(ext)
    return {"kind": "sector", "sector": sector, "count": count, "device": dev}


def _daddr_event(o, parsed, queries, length, count, block) -> dict:
    from fsdaxctl.units import parse_size
    from fsdaxctl.xfs import where

    d = parse_size(o["daddr"], "--daddr")
    queries.append(lambda fs: ([where.daddr_extent(fs, d, length or 4096)], []))
    return {"kind": "daddr", "daddr": d}


def _file_event(o, parsed, queries, length, count, block) -> dict:
    from fsdaxctl import pipeline
    from fsdaxctl.units import parse_size

    off = parse_size(o["file_offset"], "--file-offset", block)
    n = length or 4096
    queries.append(lambda fs: pipeline.file_extents(fs, o["file_path"], off, n))
    return {"kind": "file", "path": o["file_path"], "file_offset": off, "length": n}


_EVENTS = {"pfn": _pfn_event, "phys": _phys_event, "sector": _sector_event, "daddr": _daddr_event,
           "file_path": _file_event}


def write_outcomes(out, fmt, target, outcomes, mapping, trace: bool = True) -> None:
    import json

    from fsdaxctl.render import printable

    if fmt == "json":
        json.dump({"source": target, "mapping": mapping.why, "mount": mapping.mount,
                   "outcomes": [oc.to_dict() for oc in outcomes]}, out, ensure_ascii=False)
        out.write("\n")
        return
    from fsdaxctl import style
    from fsdaxctl.render import fit_table

    colour = style.enabled(out)
    for i, oc in enumerate(outcomes):
        if i:
            out.write("\n")
        if trace:
            for depth, text in oc.trace:
                out.write("  " * depth + printable(text) + "\n")
        else:
            out.write(f"{printable(oc.event.get('origin', ''))}: {oc.result} (--trace for the call path)\n")
        rows = []
        for d in oc.decisions:
            what = ", ".join(printable(p) for p in d.paths) or (f"inode {d.inode}" if d.inode else d.owner)
            extra = []
            if d.pgcnt is not None and d.action in ("kill-mappers", "invalidate-mappings"):
                extra.append(f"pages {d.pgoff}..{d.pgoff + max(d.pgcnt, 1) - 1}")
            if d.when:
                extra.append(f"when: {d.when}")
            if d.mappers is not None:
                extra.append("mappers: " + (", ".join(f"{m['pid']} ({printable(m.get('comm', ''))})"
                                                      for m in d.mappers) or "none now"))
            if d.shutdown:
                extra.append(d.shutdown)
            if d.beyond_kernel:
                extra.append("beyond the merged kernel")
            rows.append([style.kind(d.action, d.impact or ("none" if d.action == "none" else d.owner), colour), what,
                         "; ".join(extra), printable(d.reason)])
        out.write("\n" + fit_table(rows, ["DECISION", "OWNER", "DETAIL", "WHY"], style.width(out),
                                    wrap_cols=("OWNER", "DETAIL", "WHY")) + "\n")
    if mapping.why:
        out.write(f"\nmapping: {printable(mapping.why)}\n")


def _other_device(spec, o, flags) -> int:
    """--fs-device log|rt: --sector/--count (512-byte sectors) or --daddr/--length on that device of the
    filesystem, through xfs_dax_notify_failure's branch for that device (fsdaxctl.engine.devices)."""
    from fsdaxctl.session import Session
    from fsdaxctl.units import parse_size

    device = o["fs_device"]
    if o["act"] or o["poison"] or o["file_path"] or o["pfn"] or o["phys"] or o["device_name"]:
        raise UsageError(f"--fs-device {device} takes --sector [--count] or --daddr [--length] on that device "
                         "(no --pfn/--phys/--file/--device, --act or --poison)")
    if (o["sector"] is None) == (o["daddr"] is None):
        raise UsageError(f"--fs-device {device}: give --sector or --daddr on the {device} device")
    first = parse_size(o["sector"] if o["sector"] is not None else o["daddr"], "--sector/--daddr")
    if o["length"] is not None:
        length = parse_size(o["length"], "--length")
    else:
        length = parse_size(o["count"], "--count") * 512 if o["count"] is not None else 512
    if length <= 0:
        raise UsageError("the length must be positive")
    event = {"kind": "sector" if o["sector"] is not None else "daddr", "device": device, "offset": first * 512,
             "length": length, "origin": f"--fs-device {device}"}
    with Session.open(spec) as session:
        report = session.inject_device(device, first * 512, length, flags, event, chain_mapping(session, o))
        _write(report, o)
        return report.status
