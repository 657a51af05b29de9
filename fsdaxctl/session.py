"""The application layer: what the command line asked, as typed values, in; typed reports out.

A command turns its options into a Spec (what to open) and Inputs (where the damage is), opens a Session, makes
one call (`locate`, `inject`, `dump`, ...) and renders the report it gets back, exiting with the report's
status. Nothing here knows click or how a report is drawn; what lies below (pipeline, owner sources, detail,
the engine) is reached from here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsdaxctl.errors import Problems, UsageError
from fsdaxctl.pipeline import (TARGET, Answer, Inputs, Spec, dropped_inputs, fs_paths, open_target, range_extent,
                               routed_device_extents)
from fsdaxctl.policy import exit_status, outcome_status

__all__ = ["Spec", "Inputs", "Session", "LocateOptions", "LocateReport", "InjectReport", "block_size"]


@dataclass(frozen=True)
class LocateOptions:
    device: str = "data"          # which of the filesystem's devices plain byte ranges are on (data, log, rt)
    explain: bool = False         # every hop of every input (the trace) and the stack
    detail: bool = True           # paths, structure detail and impact (--no-detail: owners only)
    source: str | None = None     # rmapbt, walk or bnobt (None: the filesystem's best)
    verify_rmap: bool = False     # also walk all metadata and report every disagreement with the rmapbt
    progress: object = None       # progress(done, total) for long walks, or None
    ranges_progress: object = None  # ranges_progress(done, finished=False) as a streamed list is answered


@dataclass
class LocateReport:
    target: str
    filesystem: dict
    results: list                 # locate.Result, in input order (a stream: an iterator, consumed once)
    warnings: Problems            # everything that makes the answer doubtful or incomplete, once each
    dropped: list[dict] = field(default_factory=list)  # inputs (or parts) that never reached the filesystem
    stack: dict | None = None     # --explain: the layers between the inputs and the filesystem
    bits: int = 0                 # exit bits beyond the owners': dropped metadata (8), inputs not looked at (1)
    file_types: dict | None = None  # without detail: inode -> type, for the impact rule
    answer: Answer | None = None  # the routing, for --act
    omap: object = None           # the owner source that answered, for --act

    @property
    def status(self) -> int:
        """The exit status: a streamed report's is whole once its results have been consumed."""
        owners = exit_status(self.results, self.file_types) if isinstance(self.results, list) else 0
        return owners | self.bits


@dataclass
class InjectReport:
    target: str
    outcomes: list                # engine.chain.Outcome, one per routed input
    mapping: object               # engine Mapping: how file pages are mapped (and why)
    warnings: Problems
    answer: Answer | None = None
    omap: object = None

    @property
    def status(self) -> int:
        return outcome_status(self.outcomes)


def block_size(spec: Spec):
    """The `b` suffix's unit (units.parse_size): a callable that reads TARGET's block size the first time a size
    uses it (the superblock only: no log replay, no live kernel)."""
    import dataclasses

    cache: list[int] = []

    def get() -> int:
        if not cache:
            fs, _ = open_target(dataclasses.replace(spec, replay=False, live=False))
            with fs:
                cache.append(fs.geo.blocksize)
        return cache[0]

    return get


class Session:
    """One filesystem opened read-only as a Spec says (its device, layout and filesystem built once), and the
    questions a command asks of it."""

    def __init__(self, spec: Spec, fs, layout):
        self.spec = spec
        self.fs = fs
        self.layout = layout

    @classmethod
    def open(cls, spec: Spec) -> Session:
        fs, layout = open_target(spec)
        return cls(spec, fs, layout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.fs.close()

    @property
    def warnings(self) -> list[str]:
        """What makes every answer from this filesystem doubtful (a mount, a dirty log, a repaired table)."""
        return self.fs.warnings

    @property
    def filesystem(self) -> dict:
        from fsdaxctl.xfs.fs import filesystem_info

        return filesystem_info(self.fs)

    # --- building blocks ---
    def owner_map(self, device: str = "data", *, source: str | None = None, progress=None):
        """The owner source for one of the filesystem's devices (fsdaxctl.xfs.devices.owner_map)."""
        from fsdaxctl.xfs.devices import owner_map

        if source == "rmapbt" and not self.fs.has_rmapbt:
            raise UsageError("--source rmapbt: this filesystem has no rmapbt")
        if device != "data" and source:
            raise UsageError(f"--source and --verify-rmap are about the data device, not --fs-device {device}")
        return owner_map(self.fs, device, source=source, progress=progress)

    def device_limit(self, device: str = "data") -> int:
        """Where one of the filesystem's devices ends: its file, or its filesystem size if that is larger (a
        truncated image still has its filesystem's bytes)."""
        from fsdaxctl.xfs import devices

        return max(devices.device_file(self.fs, device).size, devices.device_size(self.fs, device))

    def route(self, inputs: Inputs) -> Answer:
        """Every input through the device stack to filesystem bytes (fsdaxctl.pipeline.route)."""
        from fsdaxctl.pipeline import route

        return route(self.spec, self.fs, self.layout, inputs)

    def verify_rmap(self, ranges=None, progress=None) -> list[str]:
        """Every disagreement between the rmapbt and a walk of all metadata in the AGs these ranges touch."""
        from fsdaxctl.xfs.walk import verify_rmap

        if not self.fs.has_rmapbt:
            raise UsageError("--verify-rmap: this filesystem has no rmapbt to verify")
        agnos = None if ranges is None else self.fs.geo.agnos_touched(ranges)
        return [f"rmapbt check: {line}" for line in verify_rmap(self.fs, agnos, progress)]

    # --- questions ---
    def locate(self, inputs: Inputs, opts: LocateOptions = LocateOptions()) -> LocateReport:
        """Every owner of every input's bytes, described, with what was dropped on the way and what is doubtful.
        Inputs with a `stream` are answered a window at a time as the results are consumed."""
        if opts.device != "data":
            return self._locate_on_device(inputs, opts)
        if inputs.stream is not None:
            walk = opts.source == "walk" or (opts.source is None and not self.fs.has_rmapbt)
            if not walk or getattr(self.fs, "live", None) is not None:
                return self._locate_stream(inputs, opts)
            # The metadata walk reads every inode once for all the ranges it is given: it needs them all first.
            inputs.parsed.extents += map(range_extent, inputs.stream)
            inputs = Inputs(inputs.parsed, inputs.fs_queries)
        from fsdaxctl.locate import locate_routes

        answer = self.route(inputs)
        warnings = Problems(self.warnings + input_warnings(inputs.parsed) + answer.warnings)
        ranges = [(p[-1].offset, p[-1].length) for _, p in fs_paths(answer.routes)]
        omap = self.owner_map(source=opts.source, progress=opts.progress)
        omap.prepare(ranges)
        results = locate_routes(omap, answer.routes, opts.explain)
        for r in results:
            r.source = "kernel" if omap.source == "kernel" else "disk"
        warnings += omap.problems
        others = answer.device_extents + routed_device_extents(answer.routes)
        results = _in_order(results, _ranks(answer.routes), self._on_devices(others, warnings))
        report = LocateReport(str(self.spec), self.filesystem, results, warnings, answer=answer, omap=omap)
        self._finish(report, ranges, opts)
        report.dropped, drop, skipped = dropped_inputs(answer.routes, opts.explain)
        report.bits |= drop
        report.warnings += skipped
        if opts.explain:
            report.stack = answer.stack.describe()
        elif answer.plain:
            for r in results:  # bytes on the filesystem itself: the query is the answer's offset
                r.input = None
        return report

    def _on_devices(self, extents, warnings: Problems) -> list[tuple[int, object]]:
        """(rank, result) for bytes on the realtime or log device (a realtime file's --file, a ranges file's
        'rt ...' and 'log ...' lines): each device's owner map, no stack."""
        from fsdaxctl.locate import locate_on_device
        from fsdaxctl.stack import DEVICE_KINDS

        out = []
        for kind, device in DEVICE_KINDS.items():
            exts = [e for e in extents if e.space.kind == kind]
            if not exts:
                continue
            omap, limit = self.owner_map(device), self.device_limit(device)
            for e in exts:
                if e.offset + e.length > limit:
                    raise UsageError(f"{e.origin}: bytes {e.offset}..{e.offset + e.length - 1} run past the end of "
                                     f"the {device} device ({limit} bytes)")
            for r, e in zip(locate_on_device(omap, exts), exts):
                r.source = "disk"
                r.input["note"] = e.note
                out.append((e.rank, r))
            warnings += omap.problems
        return out

    def _finish(self, report: LocateReport, ranges, opts: LocateOptions) -> None:
        """Detail (or, without it, the inode types the impact rule needs) and the checks that were asked for."""
        if opts.detail:
            from fsdaxctl.locate import describe_results

            report.warnings += describe_results(self.fs, report.results)
        else:
            report.file_types = self._file_types(report.results)
        checked = self.verify_rmap(ranges, opts.progress) if opts.verify_rmap else []
        if report.omap.source != "kernel":  # the disk answered a mounted target (--offline): check with the kernel
            checked += _live_check(self.fs, report.results)
        report.warnings += checked
        report.bits |= 1 if checked else 0

    STREAM_WINDOW = 4096  # ranges answered together: sorted by offset so neighbours share btree blocks

    def _locate_stream(self, inputs: Inputs, opts: LocateOptions) -> LocateReport:
        """A ranges list too long to hold: the stack is built once, then each window of ranges is routed,
        answered, described and handed on in input order; memory is bounded by the window."""
        import itertools

        if opts.explain or opts.verify_rmap:
            raise UsageError("internal: a streamed ranges list is answered without --explain or --verify-rmap")
        answer = self.route(inputs)
        warnings = Problems(self.warnings + input_warnings(inputs.parsed) + answer.warnings)
        omap = self.owner_map(source=opts.source, progress=opts.progress)
        report = LocateReport(str(self.spec), self.filesystem, [], warnings, answer=answer, omap=omap)
        stream = self._stream(report, inputs, opts)
        first = list(itertools.islice(stream, 1))  # the first window answered now: its errors come before any output
        report.results = itertools.chain(first, stream)
        return report

    def _stream(self, report: LocateReport, inputs: Inputs, opts: LocateOptions):
        from fsdaxctl.xfs.detail import Describer

        describer = Describer(self.fs) if opts.detail else None
        done = [0]  # ranges answered so far (the windows count them)
        try:
            yield from self._windows(report, inputs, opts, describer, done)
        finally:  # a bad line or a closed pipe ends the status line too, before its own message
            if opts.ranges_progress:
                opts.ranges_progress(done[0], finished=True)
        report.warnings += inputs.parsed.notes  # what the stream noticed on its way (sub-sector lengths)

    def _windows(self, report: LocateReport, inputs: Inputs, opts: LocateOptions, describer, done: list):
        import itertools

        from fsdaxctl.locate import describe_results, locate
        from fsdaxctl.pipeline import plain_ranges

        answer, omap = report.answer, report.omap
        source = "kernel" if omap.source == "kernel" else "disk"
        types: dict = {}  # inode types read for earlier windows (--no-detail)
        extents = iter(inputs.stream)
        while window := list(itertools.islice(extents, self.STREAM_WINDOW)):
            ranges = plain_ranges(self.spec, answer, self.layout, window)
            if ranges is not None:  # TARGET is the filesystem: no routes to keep, nothing dropped
                omap.prepare([(r.offset, r.length) for r in ranges])
                results, ranks, others, skipped = locate(omap, ranges), None, [], []
            else:
                results, ranks, others, skipped = self._routed_window(report, window)
            if describer is not None:
                report.warnings += describe_results(self.fs, results, describer)
            report.bits |= exit_status(results, None if describer else self._file_types(results, types))
            report.warnings += skipped + answer.warnings + omap.problems
            for r in results:
                r.source = source
            yield from _in_order(results, ranks, self._on_devices(others, report.warnings))
            done[0] += len(window)
            if opts.ranges_progress:
                opts.ranges_progress(done[0])

    def _routed_window(self, report: LocateReport, window: list) -> tuple[list, list, list, list]:
        """(results, the input rank of each, the extents on the realtime or log device, warnings about inputs
        skipped) of a streamed window that needs the stack."""
        from fsdaxctl.locate import locate_routes
        from fsdaxctl.pipeline import route_more
        from fsdaxctl.stack import DEVICE_KINDS

        answer, omap = report.answer, report.omap
        window = [range_extent(r, i) for i, r in enumerate(window)]
        others = [e for e in window if e.space.kind in DEVICE_KINDS]
        here = [e for e in window if e.space.kind not in DEVICE_KINDS]
        routes = route_more(self.spec, answer, self.layout, here)
        omap.prepare([(p[-1].offset, p[-1].length) for _, p in fs_paths(routes)])
        results = locate_routes(omap, routes, False)
        dropped, drop, skipped = dropped_inputs(routes, False)
        report.dropped += dropped
        report.bits |= drop
        if answer.plain:
            for r in results:
                r.input = None
        return results, _ranks(routes), others + routed_device_extents(routes), skipped

    def _file_types(self, results, known: dict | None = None) -> dict:
        """Without detail the impact rule still needs each data-fork owner's inode type (one inode read each;
        `known`: those read for a streamed list's earlier windows)."""
        from fsdaxctl.xfs.detail import file_types

        return file_types(self.fs, {p.inode for r in results for p in r.owners
                                    if p.owner == "file" and p.fork == "data" and not p.extent_map}, known)

    def _locate_on_device(self, inputs: Inputs, opts: LocateOptions) -> LocateReport:
        """--fs-device log|rt: byte ranges on that device of the filesystem, answered directly (no stack lies
        between them and the filesystem)."""
        from fsdaxctl.locate import describe_results, locate_on_device

        device, extents = opts.device, inputs.parsed.extents
        if inputs.fs_queries or inputs.parsed.inodes or any(e.space.kind != TARGET for e in extents):
            raise UsageError(f"--fs-device {device} takes byte ranges (--offset/--length, --ranges) on that device, "
                             "not damage reports, filesystem places or --act")
        omap = self.owner_map(device)
        limit = self.device_limit(device)
        for e in extents:
            if e.offset + e.length > limit:
                raise UsageError(f"{e.origin}: bytes {e.offset}..{e.offset + e.length - 1} run past the end of the "
                                 f"{device} device ({limit} bytes)")
        results = locate_on_device(omap, extents)
        warnings = Problems(self.warnings + input_warnings(inputs.parsed) + omap.problems)
        if opts.detail:
            warnings += describe_results(self.fs, results)
        return LocateReport(str(self.spec), self.filesystem, results, warnings, bits=1 if omap.problems else 0,
                            omap=omap)

    def dump(self, lo: int, hi: int | None, *, device: str = "data", source: str | None = None, progress=None):
        """(owner source, lo, hi) for a dump of [lo, hi) on one device, clipped to it; the batches come from
        `omap.iter_batches(lo, hi - lo)`."""
        limit = self.device_limit(device)
        hi = limit if hi is None else min(hi, limit)  # bytes past the device do not exist: nothing to list there
        if lo >= limit:
            raise UsageError(f"--start {lo} is past the end of {self.spec} ({limit} bytes)")
        if hi <= lo:
            raise UsageError(f"--end ({hi}) must be past --start ({lo})")
        omap = self.owner_map(device, source=source, progress=progress)
        omap.prepare([(lo, hi - lo)])
        return omap, lo, hi

    def mapping(self, forced: str | None, label: str):
        """How file pages are mapped: forced (--assume-dax/--mapping), else asked of the mount (offline: DAX)."""
        from fsdaxctl.engine.act import live_mapping

        return live_mapping(self.fs, forced, label)

    def inject(self, event: dict, inputs: Inputs, flags: int, mapping) -> InjectReport:
        """The kernel's memory-failure chain for one event, every hop and a decision per owner."""
        from fsdaxctl.engine import chain

        from fsdaxctl.stack import DEVICE_KINDS

        answer = self.route(inputs)
        omap = self.owner_map()  # a mounted target: the running kernel's GETFSMAP (fsdaxctl.live)
        outcomes = chain.run(answer, omap, event, flags, mapping)
        for e in answer.device_extents:  # a realtime file's --file: its bytes on the realtime device
            outcomes.append(self.inject_device(DEVICE_KINDS[e.space.kind], e.offset, e.length, flags,
                                               dict(event, origin=e.origin), mapping).outcomes[0])
        warnings = Problems(self.warnings + list(inputs.parsed.notes) + answer.warnings
                            + [n for oc in outcomes for n in oc.notes] + omap.problems)
        return InjectReport(str(self.spec), outcomes, mapping, warnings, answer, omap)

    def inject_device(self, device: str, offset: int, length: int, flags: int, event: dict,
                      mapping) -> InjectReport:
        """A failure on the log or realtime device: xfs_dax_notify_failure's branch for it (engine.devices)."""
        from fsdaxctl.engine import devices as engine

        if device == "data":
            raise UsageError("--fs-device data is the default path")
        run = engine.notify_logdev_failure if device == "log" else engine.notify_rtdev_failure
        outcome = run(self.fs, offset, length, flags, event, mapping)
        return InjectReport(str(self.spec), [outcome], mapping, Problems(self.warnings + outcome.notes))


def _ranks(routes) -> list[int]:
    """The input rank of each data-device result of these routes (one per path that reached the filesystem)."""
    return [route.extent.rank for route, _ in fs_paths(routes)]


def _in_order(results, ranks, others) -> list:
    """The data device's results (in input order; `ranks`: the input rank of each) and (rank, result) pairs of
    the other devices, merged back into input order."""
    if not others:
        return results
    ranked = list(zip(ranks, results)) + others
    return [r for _, r in sorted(ranked, key=lambda x: x[0])]


def input_warnings(parsed, cap: int = 20) -> list[str]:
    """The inputs' notes and skipped lines (the first `cap` of them, then how many more) as warnings."""
    skipped = Problems(f"{where}: skipped: {why}" for where, why in parsed.skipped)
    return list(parsed.notes) + skipped.lines(cap, "more skipped input lines")


def _live_check(fs, results) -> list[str]:
    """Mounted here: the kernel's GETFSMAP is the live truth; say where the disk's answer differs from it."""
    from fsdaxctl.device import mount_points

    mounts = mount_points(fs.dev)
    if not mounts or len(results) > 10000:
        return []
    from fsdaxctl.engine.live import stale_ranges
    from fsdaxctl.errors import FsdaxError

    mount = mounts[0][0]
    items = [(r.offset, r.length, {p.inode for p in r.owners if p.owner == "file" and p.fork == "data" and
                                   not p.extent_map}) for r in results]
    try:
        stale = stale_ranges(mount, items)
    except FsdaxError:
        return []  # not ours to ask (permissions, not XFS, shut down): the mount warning stands

    def files(inos):
        return f"file data of inode(s) {', '.join(map(str, sorted(inos)))}" if inos else "no file data"

    return [f"bytes {off}+{n}: the mounted filesystem's kernel says {files(kernel)}, the disk (--offline) says "
            f"{files(ours)}: its newest changes are still in the log (fsfreeze -f/-u "
            f"{mount} writes them back)" for off, n, kernel, ours in stale]
