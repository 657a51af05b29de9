"""`locate`: the owners of every byte of each query range, and what that means for the exit status."""

from __future__ import annotations

from dataclasses import dataclass

from fsdaxctl import policy
from fsdaxctl.ranges import Range
from fsdaxctl.xfs.owners import OwnerMap, Piece


@dataclass
class Result:
    offset: int
    length: int
    owners: list[Piece]
    input: dict | None = None   # where the range came from, when not a plain --offset/--ranges on the filesystem
    trace: list | None = None   # every hop from the input to these filesystem bytes (--explain)
    recoverable: str = ""       # a good copy exists (raid1 mirror): the owners are listed, not counted as lost
    source: str = ""            # who answered: "kernel" (a mounted target's GETFSMAP) or "disk"

    @property
    def summary(self) -> str:
        """What the range hit, in words (fsdaxctl.policy)."""
        return policy.summary(self.owners)

    @property
    def advice(self) -> str:
        """What to do about it, once the owners are described (fsdaxctl.policy); "" before."""
        return policy.advice(self.owners) if any(p.impact for p in self.owners) else ""


def locate(omap: OwnerMap, ranges: list[Range]) -> list[Result]:
    """Resolve every range; results come back in input order.

    The ranges are resolved in device order, and ranges close together (closer than the owner map's
    `cluster_gap`) are answered from one query over their span, cut per range: one pass over the btree
    blocks they share, whatever order the list came in. The cut answer is the range's own query's answer.
    Ranges cut from kept chunks (a long list, xfs.dense) are answered first and take no part in the others'
    spans. The warnings are those of the queries made: a span query also reports damage it read between its
    ranges, which their own queries would not have read.
    """
    results: list[Result | None] = [None] * len(ranges)
    for i, owners in _from_chunks(omap, ranges).items():
        results[i] = Result(ranges[i].offset, ranges[i].length, owners)
    order = sorted((i for i, r in enumerate(results) if r is None), key=lambda i: ranges[i].offset)
    gap = getattr(omap, "cluster_gap", 0)
    for cluster in _clusters(order, ranges, gap):
        if len(cluster) == 1:
            r = ranges[cluster[0]]
            results[cluster[0]] = Result(r.offset, r.length, omap.pieces(r.offset, r.length))
            continue
        lo = ranges[cluster[0]].offset
        hi = max(ranges[i].end for i in cluster)
        cut = _cut(omap.iter_batches(lo, hi - lo), [ranges[i] for i in cluster], getattr(omap, "geo", None))
        for i, owners in zip(cluster, cut):
            results[i] = Result(ranges[i].offset, ranges[i].length, owners)
    return results


def _from_chunks(omap, ranges: list[Range]) -> dict:
    """index -> pieces of the ranges answered from whole chunks read for many ranges (xfs.dense). Not for a few
    ranges, nor in the first call with many (a streamed list's first window): numpy's import (0.1-0.2 s) would
    come before the first line, or for nothing."""
    chunks = getattr(omap, "chunks", None)
    if chunks is None and len(ranges) >= getattr(omap, "dense_after", 0) > 0:
        omap.many_calls += 1
        if omap.many_calls > 1:
            from fsdaxctl.xfs.dense import chunks_of

            chunks = chunks_of(omap)
    return chunks.cut(ranges) if chunks else {}


def _clusters(order: list[int], ranges: list[Range], gap: int):
    """Runs of the sorted ranges in which each starts within `gap` bytes of the furthest end before it."""
    cluster, reach = [], -1
    for i in order:
        r = ranges[i]
        if cluster and r.offset > reach + gap:
            yield cluster
            cluster, reach = [], -1
        cluster.append(i)
        reach = max(reach, r.end)
    if cluster:
        yield cluster


def _cut(batches, rs: list[Range], geo=None):
    """Each range's pieces, from the pieces of one query over all of them (ranges by offset): every piece that
    overlaps the range, clipped to it; those that then start at the range's start first, in key order, as
    the range's own query puts them (the rest keep the stream's device order). A piece that spans AGs (the
    no-rmapbt unknown run the kernel joins across them) cut to start in a later AG is that AG's, as there."""
    from fsdaxctl.xfs.piece import clip, query_order

    def cut(p, r):
        q = clip(p, r.offset, r.end)
        if q is not p and q.offset != p.offset and p.agno is not None and geo is not None and q.offset < geo.size:
            q = q._replace(agno=geo.byte_to_ag(q.offset)[0])
        return q

    src = (p for batch in batches for p in batch)  # device order
    live: list = []  # pulled pieces that may still reach this range or a later one
    more = True
    for r in rs:
        while more and (not live or live[-1].offset < r.end):
            p = next(src, None)
            if p is None:
                more = False
            else:
                live.append(p)
        live = [p for p in live if p.offset + p.length > r.offset]  # later ranges start no earlier
        yield query_order([cut(p, r) for p in live if p.offset < r.end], r.offset)


def describe_results(fs, results: list[Result], describer=None) -> list[str]:
    """Name every owner exactly (paths, which structure, impact) in place; return what could not be read.
    A `describer` (xfs.detail.Describer) kept across calls keeps what it has read (a streamed list)."""
    from fsdaxctl.xfs.detail import Describer

    describer = describer or Describer(fs)
    described = iter(describer.describe([p for r in results for p in r.owners]))
    for r in results:
        r.owners = [next(described) for _ in r.owners]
    return describer.problems + describer.resolver.problems


def locate_routes(omap: OwnerMap, routes, explain: bool) -> list[Result]:
    """Results for every path of every routed input that reached the filesystem, in input order."""
    from fsdaxctl.pipeline import fs_paths

    paths = list(fs_paths(routes))
    ranges = [Range(path[-1].offset, path[-1].length, route.extent.origin) for route, path in paths]
    results = locate(omap, ranges)
    for res, (route, path) in zip(results, paths):
        e = route.extent
        res.input = {"origin": e.origin, "space": str(e.space), "offset": e.offset, "length": e.length}
        if e.note:
            res.input["note"] = e.note
        if getattr(omap, "device", None):  # a filesystem with a log or realtime device of its own
            res.input["device"] = omap.device
        res.recoverable = route.recoverable(path)
        if explain:
            res.trace = [h.to_dict() for h in path]
    return results


def locate_on_device(omap, extents) -> list[Result]:
    """Results for byte ranges given directly on one of the filesystem's other devices (--fs-device log|rt):
    no stack lies between them and the filesystem."""
    ranges = [Range(e.offset, e.length, e.origin) for e in extents]
    results = locate(omap, ranges)
    for res, e in zip(results, extents):
        res.input = {"origin": e.origin, "space": f"filesystem {omap.device} device", "offset": e.offset,
                     "length": e.length, "device": omap.device}
    return results
