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

    The ranges are resolved in device order so that neighbouring queries share the btree blocks they read
    (one pass over the tree, whatever order the list came in).
    """
    results: list[Result | None] = [None] * len(ranges)
    for i in sorted(range(len(ranges)), key=lambda i: ranges[i].offset):
        r = ranges[i]
        results[i] = Result(r.offset, r.length, omap.pieces(r.offset, r.length))
    return results


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
