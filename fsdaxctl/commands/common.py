"""Options and steps shared by the commands."""

from __future__ import annotations

import functools
import sys

import click

from fsdaxctl.engine.flags import NAMES as FLAG_NAMES
from fsdaxctl.errors import UsageError
from fsdaxctl.render import FORMATS


def target_options(f):
    """TARGET (an image, a block device, or a mounted XFS's mount point) or --sample (the small XFS image shipped
    with fsdaxctl)."""

    @click.argument("target", required=False, metavar="TARGET")
    @click.option("--sample", is_flag=True,
                  help="Use the sample XFS image bundled with fsdaxctl as TARGET (64 MiB, unpacked on first use "
                       "into $XDG_CACHE_HOME/fsdaxctl, default ~/.cache/fsdaxctl, else $TMPDIR/fsdaxctl-UID; "
                       "the path is printed then).")
    @click.option("--no-replay", is_flag=True,
                  help="A dirty log is replayed in memory by default (answers as the kernel will after mounting; "
                       "nothing is written): show the disk as it is instead.")
    @click.option("--logdev", metavar="[NAME=]FILE",
                  help="The filesystem's external log device (mkfs -l logdev=): an image or block device; NAME is "
                       "what the machine calls it (pmem2), so that damage reports naming it reach it (a block "
                       "device's own name by default).")
    @click.option("--rtdev", metavar="[NAME=]FILE",
                  help="The filesystem's realtime device (mkfs -r rtdev=): an image or block device; NAME as for "
                       "--logdev (pmem1).")
    @click.option("--offline", is_flag=True,
                  help="TARGET is mounted: read the disk instead of asking the running kernel (the disk may lag "
                       "the kernel; where the two disagree a warning says so and exit status bit 1 is set).")
    @click.option("--fs-relative", is_flag=True,
                  help="Paths from the filesystem's root, not the machine's (a mounted TARGET's paths include "
                       "its mount point by default).")
    @functools.wraps(f)
    def wrapper(*args, target, sample, no_replay, logdev=None, rtdev=None, offline=False, fs_relative=False, **kw):
        from fsdaxctl.session import Spec

        if sample and target:
            raise UsageError("give TARGET or --sample, not both")
        if sample:
            from fsdaxctl.sample import sample_image

            target = sample_image(announce=lambda text: click.echo(f"fsdaxctl: {text}", err=True))
        elif not target:
            raise UsageError("missing TARGET: an XFS image, block device or mount point (or --sample)")
        return f(*args, spec=Spec(target, replay=not no_replay, live=not offline, fs_relative=fs_relative,
                                  logdev=logdev, rtdev=rtdev), **kw)

    return wrapper


def fs_device_option(f):
    """Which of the filesystem's devices --offset/--ranges (and fsmap) count bytes on (fsdaxctl.xfs.devices)."""
    return click.option(
        "--fs-device", "fs_device", type=click.Choice(["data", "log", "rt"]), default="data", show_default=True,
        help="The filesystem device the byte ranges are on: data (TARGET), log (--logdev) or rt (--rtdev).")(f)


def format_option(piped_default: str = "json"):
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=None,
        help=f"Output format (default: table on a terminal, {piped_default} otherwise).")


def warn(lines) -> None:
    from fsdaxctl.style import enabled, warning_prefix

    prefix = None
    for line in lines:
        prefix = prefix or warning_prefix(sys.stderr)
        click.echo(f"{prefix} {line}", err=True, color=enabled(sys.stderr))


def source_option(f):
    return click.option(
        "--source", type=click.Choice(["rmapbt", "walk", "bnobt"]), default=None,
        help="Where owners come from: the rmapbt (default when there is one); a walk of all metadata "
             "(default without rmapbt); or bnobt: free space only, the rest 'unknown' (the kernel's view).")(f)


def verify_option(f):
    return click.option("--verify-rmap", is_flag=True,
                        help="Also walk all metadata and report every disagreement with the rmapbt.")(f)


def progress_printer(label: str):
    """A progress callback for long walks: a bar on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    state = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    return progress


def ranges_progress(ranges_file):
    """A status line for a long ranges list (stderr on a terminal, while stdout goes elsewhere): ranges
    answered, the list's length in lines when it is a file, the rate and the time left; ended by a newline
    however the list ends (an error's line comes after it). None where it would not show."""
    import os
    import time

    if not sys.stderr.isatty() or sys.stdout.isatty() or ranges_file is None:
        return None
    total = None
    try:
        if os.path.isfile(ranges_file.name):
            with open(ranges_file.name, "rb") as fh:  # lines, not ranges: comments count too (an upper bound)
                total = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except (OSError, AttributeError, TypeError):
        total = None
    t0 = time.monotonic()

    def progress(done: int, finished: bool = False) -> None:
        rate = done / max(time.monotonic() - t0, 1e-3)
        if finished:  # the count of ranges, not of lines (comments and blank lines are not ranges)
            sys.stderr.write(f"\rranges answered: {done:,}, {rate:,.0f}/s\033[K\n")
        else:
            of = f" (the list has {total:,} lines)" if total else ""
            left = f", about {max(0, total - done) / rate:.0f} s left" if total and rate else ""
            sys.stderr.write(f"\rranges answered: {done:,}{of}, {rate:,.0f}/s{left}\033[K")
        sys.stderr.flush()

    return progress


def input_options(f):
    """Every way to say where the damage is (issue 4): byte ranges on TARGET, error lists, kernel logs,
    physical addresses, filesystem-relative places; and the layers between them and the filesystem."""
    opts = [
        click.option("--offset", help="Start of the damaged range, bytes on TARGET (suffixes: 8b filesystem blocks, "
                                      "512s sectors, 4k, 1m, 2g)."),
        click.option("--length", help="Length for --offset, --daddr, --fsblock, --agbno, --phys, --file-offset "
                                      "(default: a sector; a block for blocks; a page for --phys/--pfn)."),
        click.option("--count", help="Instead of --length, in the address's own unit: sectors after --daddr, "
                                     "filesystem blocks after --fsblock or --agno/--agbno."),
        click.option("--ranges", "ranges_file", type=click.File("rb"),
                     help="File of 'OFFSET LENGTH' lines on TARGET ('-' for stdin; '#' comments)."),
        click.option("--badblocks", "badblocks", multiple=True, metavar="[DEV=]FILE",
                     help="A badblocks list ('SECTOR COUNT' lines, 512-byte sectors: /sys/block/pmemN/badblocks, "
                          "/sys/bus/nd/devices/regionN/badblocks or a copy). Counts from DEV, or as its sysfs path "
                          "says, or from TARGET."),
        click.option("--ndctl-json", "ndctl_json", multiple=True, metavar="FILE",
                     help="Output of 'ndctl list --media-errors' (namespaces and/or regions)."),
        click.option("--ddrescue", "ddrescue", multiple=True, metavar="[DEV=]FILE", help="A GNU ddrescue mapfile."),
        click.option("--ddrescue-damaged", default="-*/?", show_default=True,
                     help="ddrescue status characters that count as damaged."),
        click.option("--e2fs-badblocks", "e2fs", multiple=True, metavar="[DEV=]FILE",
                     help="Output of 'badblocks -o' (block numbers in units of --block-size)."),
        click.option("--block-size", default="1024", show_default=True,
                     help="Block size 'badblocks -b' was run with (for --e2fs-badblocks)."),
        click.option("--kmsg", multiple=True, metavar="FILE|-",
                     help="Kernel log (dmesg, journalctl -k, kern.log): memory failures, medium errors, XFS "
                          "I/O and corruption reports. Other lines are counted and ignored."),
        click.option("--buffer-block-size", default="4096", show_default=True,
                     help="Block size of 'Buffer I/O error ... logical block N' lines (the message has none)."),
        click.option("--input", "inputs", multiple=True, metavar="[KIND:]FILE",
                     help="Any of the above, kind detected (or given: sysfs, ndctl, ddrescue, e2fs, kmsg)."),
        click.option("--phys", multiple=True, metavar="ADDR",
                     help="A system physical address (machine-check log): its 4 KiB page, through the nd region."),
        click.option("--pfn", multiple=True, metavar="PFN",
                     help="A page frame number ('Memory failure: 0x...'): that 4 KiB page."),
        click.option("--daddr", multiple=True, metavar="N", help="XFS daddr (512-byte units on the filesystem)."),
        click.option("--fsblock", multiple=True, metavar="N",
                     help="XFS fsblock (segmented: agno << agblklog | agbno)."),
        click.option("--agno", type=int, help="With --agbno: a block by AG."),
        click.option("--agbno", type=int, help="With --agno: a block by AG."),
        click.option("--inode", "inodes", multiple=True, metavar="INO", help="Where is this inode? Its bytes."),
        click.option("--file", "file_path", metavar="PATH",
                     help="The reverse question: which device bytes hold PATH (from the filesystem root) "
                          "[--file-offset, --length], and who else shares them."),
        click.option("--file-offset", default="0", help="With --file: start of the file range (default 0)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return stack_options(f)


def stack_options(f):
    """What lies between the reported device and the filesystem: TARGET's name, its partition, sysfs, dm, md."""
    opts = [
        click.option("--device", "device_name", metavar="NAME",
                     help="What the machine calls TARGET (pmem0, sdb): needed when inputs name several devices."),
        click.option("--partition", type=int, metavar="N", help="Use partition N of TARGET (default: the XFS one)."),
        click.option("--sysfs-root", metavar="DIR",
                     help="Read the nd/block layout from DIR instead of /sys (a copy of another machine's sysfs)."),
        click.option("--dm-table", "dm_tables", multiple=True, metavar="[NAME=]FILE",
                     help="'dmsetup table' output: linear, striped and crypt segments are followed."),
        click.option("--md", "md", multiple=True, metavar="SPEC",
                     help="An md array: 'md0 raid0 chunk=512k sdb1@1m sdc1@1m' (members in slot order, "
                          "@data offset, +size) or 'sysfs:md0'."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def with_stack(spec, o: dict):
    """The Spec with stack_options' values: TARGET's name, its partition, sysfs, dm tables, md arrays."""
    import dataclasses

    return dataclasses.replace(spec, device=o["device_name"], partition=o["partition"], sysfs_root=o["sysfs_root"],
                               dm_tables=tuple(o["dm_tables"]), md=tuple(o["md"]))


def _dev_file(spec: str) -> tuple[str | None, str]:
    """'sdb=FILE' -> ('sdb', 'FILE'); a plain path stays a path (kind prefixes are left to inputs.load)."""
    import os

    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and not os.path.exists(spec):
        return name, path
    return None, spec


def build_inputs(spec, o: dict, *, need_input: bool = True, stream: bool = False):
    """The session's Inputs from input_options' values (`o`); every problem is one UsageError line. With
    `stream`, a --ranges list that is the only input is read as it is answered (Inputs.stream)."""
    from fsdaxctl.inputs import Parsed, pfn_extent, phys_extent
    from fsdaxctl.session import Inputs, block_size
    from fsdaxctl.units import parse_size

    parsed = Parsed()
    block = block_size(spec) if spec else None
    o["_block"] = block
    length = parse_size(o["length"], "--length", block) if o["length"] is not None else None
    if length is not None and length <= 0 and o["offset"] is None:
        raise UsageError(f"--length: the length must be positive, not {length}")
    _check_count(o, length)
    stream = stream and not any(o[opt] for opt, _ in _SOURCES) and not any(
        o[k] for k in ("phys", "pfn", "daddr", "fsblock", "inodes", "file_path")) and o["agbno"] is None
    ranges = _target_ranges(o, parsed, block, length, stream)
    _report_sources(o, parsed)
    for text in o["phys"]:
        parsed.extents.append(phys_extent(parse_size(text, "--phys"), "--phys", length))
    for text in o["pfn"]:
        parsed.extents.append(pfn_extent(parse_size(text, "--pfn"), "--pfn"))
    queries = _fs_queries(o, length)
    if (o["agno"] is None) != (o["agbno"] is None):
        raise UsageError("--agno and --agbno go together")
    if need_input and not parsed.extents and not parsed.inodes and not queries and ranges is None:
        _nothing_to_locate(o, parsed)
    return Inputs(parsed, queries, ranges)


_SOURCES = (("badblocks", "sysfs"), ("ddrescue", "ddrescue"), ("e2fs", "e2fs"), ("ndctl_json", "ndctl"),
            ("kmsg", "kmsg"), ("inputs", None))


def _target_ranges(o: dict, parsed, block: int | None, length: int | None, stream: bool):
    """--ranges and --offset/--length: bytes on TARGET, with a note for ranges shorter than a sector. With
    `stream`, the --ranges list is returned as an iterator of ranges, read as it is consumed (else None)."""
    from fsdaxctl.pipeline import range_extent, target_extent
    from fsdaxctl.ranges import make_range
    from fsdaxctl.units import SECTOR, parse_size

    short: list = []
    ranges = None
    if o["ranges_file"] is not None:
        ranges = _ranges_file(o["ranges_file"], block, parsed.notes)
        if not stream:
            parsed.extents += map(range_extent, ranges)
            ranges = None
    if o["offset"] is not None:
        r = make_range(parse_size(o["offset"], "--offset", block), SECTOR if length is None else length,
                       "--offset/--length")
        parsed.extents.append(target_extent(r.offset, r.length, r.where))
        if r.length < SECTOR:
            short.append(r)
    elif o["length"] is not None and not any(o[k] for k in ("daddr", "fsblock", "phys", "file_path")) \
            and o["agbno"] is None:
        raise UsageError("--length goes with --offset, --daddr, --fsblock, --agbno, --phys or --file")
    if short:
        parsed.notes.append(sub_sector_note(short[0].where, short[0].length, len(short)))
    elif length is not None and 0 < length < SECTOR:
        parsed.notes.append(sub_sector_note("--length", length))
    return ranges


def _ranges_file(fh, block, notes: list[str]):
    """The ranges of a --ranges list (ranges.Range), one at a time as it is read; once it ends, a note in
    `notes` if some were shorter than a sector."""
    from fsdaxctl.ranges import iter_ranges
    from fsdaxctl.units import SECTOR

    name = getattr(fh, "name", "<stdin>")
    name = "stdin" if name in ("<stdin>", "-") else name
    first, short = None, 0
    for r in iter_ranges(fh, name, block):
        if r.length < SECTOR:
            first, short = first or r, short + 1
        yield r
    if short:
        notes.append(sub_sector_note(first.where, first.length, short))


def _report_sources(o: dict, parsed) -> None:
    """The damage reports (--badblocks, --ddrescue, --e2fs-badblocks, --ndctl-json, --kmsg, plain inputs)."""
    from fsdaxctl.inputs.load import load
    from fsdaxctl.stack import BLOCK, Space
    from fsdaxctl.units import parse_size

    block_size = _power_of_two(parse_size(o["block_size"], "--block-size"), "--block-size")
    buffer_bs = _power_of_two(parse_size(o["buffer_block_size"], "--buffer-block-size"), "--buffer-block-size")
    damaged = set(o["ddrescue_damaged"])
    if not damaged <= set("-*/?+"):
        raise UsageError(f"--ddrescue-damaged: unknown status character(s) {''.join(damaged - set('-*/?+'))!r}")
    stdin_users = [opt for opt, _ in _SOURCES for spec in o[opt] if spec.rpartition(":")[2].rpartition("=")[2] == "-"]
    if len(stdin_users) + (getattr(o["ranges_file"], "name", "") in ("<stdin>", "-")) > 1:
        raise UsageError("only one input can be read from stdin ('-')")
    for opt, kind in _SOURCES:
        for spec in o[opt]:
            dev, path = _dev_file(spec) if opt not in ("ndctl_json", "kmsg") else (None, spec)
            parsed.extend(load(path, kind=kind, space=Space(BLOCK, dev) if dev else None, block_size=block_size,
                               buffer_block_size=buffer_bs, damaged=damaged))


def _nothing_to_locate(o: dict, parsed) -> None:
    """No input at all is a usage error; an empty list or a log without reports is the healthy answer."""
    if parsed.skipped:
        where, why = parsed.skipped[0]
        raise UsageError(f"nothing usable in the input: {len(parsed.skipped)} line(s) skipped (first: {where}: "
                         f"{why})")
    if not any(o[opt] for opt, _ in _SOURCES) and o["ranges_file"] is None:
        raise UsageError("nothing to locate: give --offset, --ranges, --badblocks, --ndctl-json, --kmsg, "
                         "--phys, --pfn, --daddr, --fsblock, --agno/--agbno, --inode or --file (see --help)")
    parsed.notes.append("no damage reported in the input" + (f" ({parsed.ignored} log line(s), none a damage "
                                                             "report)" if parsed.ignored else ""))


def sub_sector_note(where: str, length: int, n: int = 1) -> str:
    """Media errors come in whole 512-byte sectors: a shorter length is most likely a unit typed wrong."""
    more = f" (and {n - 1} more range(s) like it)" if n > 1 else ""
    return (f"{where}: a length of {length} byte(s) is less than one 512-byte sector{more}: media errors are "
            f"whole sectors; did you mean {length}s (sectors) or {length}b (filesystem blocks)?")


def _check_count(o: dict, length) -> None:
    if o.get("count") is None:
        return
    if length is not None:
        raise UsageError("give --length or --count, not both")
    if not (o["daddr"] or o["fsblock"] or o["agbno"] is not None):
        raise UsageError("--count goes with --daddr (sectors), --fsblock or --agno/--agbno (blocks); "
                         "use --length for bytes")


def _count(o: dict, what: str) -> int | None:
    from fsdaxctl.units import parse_size

    if o.get("count") is None:
        return None
    n = parse_size(o["count"], "--count", o.get("_block"))
    if n <= 0:
        raise UsageError(f"--count must be positive, not {n}")
    return n


def _power_of_two(n: int, what: str) -> int:
    if n < 512 or n & (n - 1):
        raise UsageError(f"{what}: {n} is not a power of two of at least 512")
    return n


def _fs_queries(o: dict, length):
    """Filesystem-relative places need the filesystem's geometry: deferred until it is open."""
    from fsdaxctl import pipeline
    from fsdaxctl.units import SECTOR, parse_size
    from fsdaxctl.xfs import where

    queries = []
    count = _count(o, "--count")
    sectors = length if count is None else count * SECTOR
    for text in o["daddr"]:
        d = parse_size(text, "--daddr")
        queries.append(lambda fs, d=d: ([where.daddr_extent(fs, d, sectors)], []))

    def blocks(fs):
        return length if count is None else count * fs.geo.blocksize

    for text in o["fsblock"]:
        b = parse_size(text, "--fsblock")
        queries.append(lambda fs, b=b: ([where.fsblock_extent(fs, b, blocks(fs))], []))
    if o["agno"] is not None and o["agbno"] is not None:
        a, b = o["agno"], o["agbno"]
        if a < 0 or b < 0:
            raise UsageError("--agno/--agbno must not be negative")
        queries.append(lambda fs: ([where.agbno_extent(fs, a, b, blocks(fs))], []))
    for text in o["inodes"]:
        ino = parse_size(text, "--inode")
        queries.append(lambda fs, ino=ino: ([where.inode_extent(fs, ino)], []))
    if o["file_path"]:
        off = parse_size(o["file_offset"], "--file-offset", o.get("_block"))
        n = length or 4096  # one page: the unit memory failure works in
        queries.append(lambda fs: pipeline.file_extents(fs, o["file_path"], off, n))
    elif o["file_offset"] != "0":
        raise UsageError("--file-offset goes with --file")
    return queries


def chain_options(f):
    """The corruption-chain engine's options, shared by inject and locate: flags, the mapping, --act."""
    opts = [
        click.option("--flags", "flags_spec", default="",
                     help=f"mf_flags, comma separated: {', '.join(FLAG_NAMES)} (or the kernel's MF_* names)."),
        click.option("--mapping", type=click.Choice(["auto", "dax", "page-cache"]), default="auto",
                     show_default=True,
                     help="How file pages are mapped: auto asks the mount (an image or unmounted device: as DAX)."),
        click.option("--assume-dax", is_flag=True,
                     help="Treat every mapping as DAX (rehearsals on machines without pmem)."),
        click.option("--act", is_flag=True, help="Carry the decisions out on the live system (after a dry run and "
                                                 "confirmation): SIGBUS to mappers, XFS shutdown, --exec."),
        click.option("--rewrite-cached", is_flag=True,
                     help="With --act: also carry out rewrite-cached-page (write resident page-cache contents back "
                          "over the bad media). Beyond the merged kernel, so never implied."),
        click.option("--yes", is_flag=True, help="With --act: do not ask for confirmation."),
        click.option("--signal", "sig", default="SIGBUS", show_default=True,
                     help="With --act: the signal for mappers."),
        click.option("--exec", "exec_cmd", metavar="CMD",
                     help="With --act: run CMD (split like a shell would, never through one) once per decision, "
                          "the decision as JSON on stdin."),
        click.option("--action-log", type=click.File("a"), default=None,
                     help="With --act: append one JSON line per action here (default: stderr)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def check_chain_options(o: dict) -> int:
    """The mf_flags; usage errors before any work is done."""
    from fsdaxctl.engine.flags import parse_flags

    if not o["act"] and (o["exec_cmd"] or o["yes"] or o["rewrite_cached"] or o["action_log"]):
        raise UsageError("--exec, --yes, --rewrite-cached and --action-log go with --act")
    return parse_flags(o["flags_spec"])


def chain_mapping(session, o: dict):
    """How file pages are mapped: forced by --assume-dax/--mapping, else asked of the mount (offline: DAX)."""
    from fsdaxctl.engine.chain import DAX, PAGE_CACHE

    forced = DAX if o["assume_dax"] or o["mapping"] == "dax" else PAGE_CACHE if o["mapping"] == "page-cache" else None
    return session.mapping(forced, "--assume-dax" if o["assume_dax"] else f"--mapping {o['mapping']}")


def run_act(session, report, event: dict, flags: int, o: dict, outcomes=None) -> int:
    """--act: walk the chain (unless done), show the dry run, confirm, walk again, act. Returns exit bits."""
    from fsdaxctl.engine import chain
    from fsdaxctl.engine.act import act
    from fsdaxctl.pipeline import fs_paths

    answer, omap = report.answer, report.omap
    mapping = chain_mapping(session, o)
    if outcomes is None:
        outcomes = chain.run(answer, omap, event, flags, mapping)
    ranges = [(p[-1].offset, p[-1].length) for _, p in fs_paths(answer.routes)]
    return act(outcomes, mapping, rerun=lambda: chain.run(answer, omap, event, flags, chain_mapping(session, o)),
               yes=o["yes"], sig=o["sig"], exec_cmd=o["exec_cmd"], log=o["action_log"], rewrite=o["rewrite_cached"],
               ranges=ranges, confirm=lambda q: click.confirm(q, err=True))
