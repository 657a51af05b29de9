"""fsdaxctl badblocks: read error lists and logs, print the damaged ranges they describe, in bytes."""

from __future__ import annotations

import json
import sys

import click

from fsdaxctl.commands.common import build_inputs, input_options, warn, with_stack
from fsdaxctl.errors import UsageError


@click.command("badblocks")
@click.argument("sources", nargs=-1, metavar="[KIND:]SOURCE...")
@input_options
@click.option("--on", "target", metavar="TARGET",
              help="Follow the ranges down to the filesystem on TARGET (image or device): print filesystem bytes.")
@click.option("--logdev", metavar="[NAME=]FILE", help="With --on: the filesystem's external log device (as for "
                                                        "locate): its dirty log is replayed from there.")
@click.option("--rtdev", metavar="[NAME=]FILE", help="With --on: the filesystem's realtime device (as for locate).")
@click.option("--format", "fmt", type=click.Choice(["ranges", "table", "json"]), default=None,
              help="ranges: 'OFFSET LENGTH' lines (bytes), merged and sorted, one block per space (default when "
                   "piped); table (default on a terminal); json: every extent with where it came from.")
@click.pass_context
def command(ctx, sources, target, fmt, logdev, rtdev, **inputs):
    """Normalise damage reports: sysfs/ndctl badblocks, ddrescue mapfiles, 'badblocks -o' lists, kernel logs.

    \b
    SOURCE kinds are detected, or given as KIND:FILE (sysfs, ndctl, ddrescue, e2fs, kmsg); '-' is stdin.
    Without --on, ranges stay in the space the source counts in (a region, a block device, physical
    addresses); with --on TARGET they are followed through the device stack to the filesystem's bytes.
    """
    from fsdaxctl.render import default_format

    inputs["inputs"] = tuple(inputs["inputs"]) + tuple(sources)
    if not any(inputs[k] for k in ("inputs", "badblocks", "ddrescue", "e2fs", "ndctl_json", "kmsg", "phys", "pfn",
                                   "daddr", "fsblock", "inodes", "file_path")) and inputs["ranges_file"] is None:
        raise UsageError("give at least one SOURCE: a badblocks list, ndctl JSON, ddrescue mapfile, 'badblocks -o' "
                         "output or kernel log (or '-' for stdin)")
    if target is None:
        given = [NEEDS_ON[k] for k in NEEDS_ON if inputs.get(k) not in (None, (), "", "0", False)]
        if given:
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} TARGET: give --on TARGET "
                             "(see 'fsdaxctl badblocks --help')")
    from fsdaxctl.session import Spec, input_warnings

    if target is None and (logdev or rtdev):
        raise UsageError("--logdev and --rtdev go with --on TARGET")
    spec = with_stack(Spec(target, logdev=logdev, rtdev=rtdev), inputs) if target is not None else None
    plan = build_inputs(spec, inputs)
    warnings = input_warnings(plan.parsed)
    if plan.parsed.ignored:
        warnings.append(f"{plan.parsed.ignored} line(s) were not error reports and were ignored")
    rows = _rows(plan, spec, warnings)
    warn(warnings)
    _write(sys.stdout, fmt or default_format(interactive="table", piped="ranges"), rows, target)
    ctx.exit(0)


def _rows(plan, spec, warnings: list[str]) -> list[tuple]:
    """(space, offset, length, origin, note) of every range: as the sources count, or on the filesystem."""
    if spec is None:
        rows = [(str(e.space), e.offset, e.length, e.origin, e.note) for e in plan.parsed.extents]
        return rows + [("inode", r.ino, 0, r.origin, r.note) for r in plan.parsed.inodes]
    from fsdaxctl.pipeline import dropped_paths, fs_paths
    from fsdaxctl.session import Session

    with Session.open(spec) as session:
        answer = session.route(plan)
        warnings[:0] = list(session.warnings)
        warnings += answer.warnings
        rows = [("filesystem", p[-1].offset, p[-1].length, r.extent.origin, r.extent.note)
                for r, p in fs_paths(answer.routes)]
        for r, p in dropped_paths(answer.routes):
            d = p[-1]
            warnings.append(f"{r.extent.origin}: {d.length} bytes at byte {d.offset} of {d.space} do not reach "
                            f"the filesystem: {d.kind}: {d.reason}")
    return rows


def _write(out, fmt: str, rows: list[tuple], target) -> None:
    if fmt == "json":
        json.dump([{"space": s, "offset": o, "length": n, "origin": w, "note": t} for s, o, n, w, t in rows], out,
                  ensure_ascii=False)
        out.write("\n")
    elif fmt == "table":
        from fsdaxctl import style
        from fsdaxctl.render import fit_table, printable

        out.write(fit_table([(s, o, n, printable(w), printable(t)) for s, o, n, w, t in rows],
                            ["SPACE", "OFFSET", "LENGTH", "FROM", "AS GIVEN"], style.width(out),
                            wrap_cols=("FROM", "AS GIVEN")) + "\n")
    else:
        from fsdaxctl.ranges import merge_ranges

        spaces: dict[str, list] = {}
        for s, o, n, _, _ in rows:
            spaces.setdefault(s, []).append((o, n))
        for s, ranges in spaces.items():
            if len(spaces) > 1 or target is None:
                out.write(f"# {s}\n")
            out.write("".join(f"{o} {n}\n" for o, n in merge_ranges(ranges)))


# Options shared with `locate` that only mean something once there is a TARGET to follow the ranges down to.
NEEDS_ON = {"offset": "--offset", "ranges_file": "--ranges", "count": "--count", "daddr": "--daddr",
            "fsblock": "--fsblock", "agno": "--agno", "agbno": "--agbno", "inodes": "--inode", "file_path": "--file",
            "file_offset": "--file-offset", "device_name": "--device", "partition": "--partition",
            "dm_tables": "--dm-table", "md": "--md", "sysfs_root": "--sysfs-root"}
for _param in command.params:
    if _param.name in NEEDS_ON and isinstance(_param, click.Option):
        _param.help = f"[needs --on] {_param.help or ''}".rstrip()
