"""Owners of a mounted filesystem's bytes, from its running kernel (FS_IOC_GETFSMAP): what the kernel would
act on now, whatever the disk says. Same pieces, same order and the same exact `shared` as the on-disk reader
(`fsdaxctl.xfs.owners.OwnerMap`), so everything downstream (detail, engine, renderer) works unchanged.

`shared` is exact here too: every sharer of a block maps that very block, so all of them are among the
records GETFSMAP returns for the query's bytes; a data piece is cut where the number of data records covering
its blocks goes from one to two or more and back.
"""

from __future__ import annotations

from fsdaxctl.errors import Problems
from fsdaxctl.live.fsmap import (FMR_OF_ATTR_FORK, FMR_OF_EXTENT_MAP, FMR_OF_NOT_DATA, FMR_OF_PREALLOC,
                                 FMR_OF_SPECIAL_OWNER, SPECIAL_OWNERS, LiveError, getfsmap)
from fsdaxctl.xfs.piece import FILE, UNKNOWN, AnswerCheck, Piece, clip

NO_RMAP = {"reason": "no rmapbt: the kernel does not know the owners of used space"}


class LiveOwnerMap:
    """The kernel's owner map of the filesystem mounted at `mount_point` (geometry `geo`)."""

    source = "kernel"
    rmapbt = True

    def __init__(self, mount_point: str, geo, *, has_rmapbt: bool = True):
        self.mount_point = mount_point
        self.geo = geo
        self.has_rmapbt = has_rmapbt
        self.problems = Problems()

    def _note(self, text: str) -> None:
        self.problems.append(text)

    def prepare(self, ranges) -> None:
        """Nothing to prepare: the kernel answers each range directly."""

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def iter_batches(self, offset: int, length: int):
        check = AnswerCheck(offset, offset + length, self._note)
        yield check.batch(self._pieces(offset, offset + length))
        tail = check.finish()
        if tail:
            yield tail

    def _pieces(self, qstart: int, qend: int) -> list[Piece]:
        size = self.geo.size
        out: list[Piece] = []
        if qstart < size:
            end = min(qend, size)
            try:
                recs = list(getfsmap(self.mount_point, qstart, end))
            except LiveError as e:
                self._note(str(e))
                return [Piece(qstart, qend - qstart, UNKNOWN, detail={"error": str(e)})]
            out = self._from_records(recs, qstart, end)
        if qend > size:
            out += self.geo.beyond(max(qstart, size), qend)
        return out

    def _from_records(self, recs, qstart: int, qend: int) -> list[Piece]:
        bs = self.geo.blocksize
        sharers: dict[int, int] = {}  # block -> data records mapping it
        for r in recs:
            if not r.flags & FMR_OF_NOT_DATA:
                for b in range(max(r.physical, qstart) // bs, (min(r.physical + r.length, qend) - 1) // bs + 1):
                    sharers[b] = sharers.get(b, 0) + 1
        out = []
        for r in recs:
            lo, hi = max(r.physical, qstart), min(r.physical + r.length, qend)
            if lo >= hi:
                continue
            p = clip(self._piece(r), lo, hi)
            if p.owner == FILE and p.fork == "data" and not p.extent_map:
                out += _split(p, sharers, bs)
            else:
                out.append(p)
        out.sort(key=Piece.sort_key)
        return out

    def _piece(self, r) -> Piece:
        agno = self.geo.byte_to_ag(r.physical)[0] if r.physical < self.geo.size else None
        if r.flags & FMR_OF_SPECIAL_OWNER:
            kind = SPECIAL_OWNERS.get(r.owner, UNKNOWN)
            detail = NO_RMAP if kind == UNKNOWN and not self.has_rmapbt else None
            return Piece(r.physical, r.length, kind, agno, detail=detail)
        extent_map = bool(r.flags & FMR_OF_EXTENT_MAP)
        return Piece(r.physical, r.length, FILE, agno, r.owner, "attr" if r.flags & FMR_OF_ATTR_FORK else "data",
                     None if extent_map else r.offset, extent_map, bool(r.flags & FMR_OF_PREALLOC), False)


def _split(p: Piece, sharers: dict[int, int], bs: int) -> list[Piece]:
    """A data piece cut where sharing changes, `shared` exact for every byte of each part."""
    out, cur, end = [], p.offset, p.offset + p.length
    while cur < end:
        shared = sharers.get(cur // bs, 0) >= 2
        nxt = (cur // bs + 1) * bs
        while nxt < end and (sharers.get(nxt // bs, 0) >= 2) == shared:
            nxt += bs
        stop = min(nxt, end)
        out.append(clip(p, cur, stop)._replace(shared=shared))
        cur = stop
    return out
