"""Second witnesses for every owner answer: a forensic answer is only as good as the structures that agree on it.

- `Sharing`: the refcountbt says which blocks of a data record are shared; pieces are cut where that changes.
- `FreeSpace`: a byte is `free` only when no owner claims it *and* the bnobt lists it free *and* the cntbt
  holds the same extent. Used space nobody claims is `unknown`; a bnobt extent an owner claims is a conflict.
- `resolve_conflicts`: two claims on one byte that cannot both be right (anything but two sharers of a
  reflinked data block) become one `unknown` piece listing both claims, never one picked silently.
"""

from __future__ import annotations

import heapq

from fsdaxctl.errors import FsdaxError
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.btree import Unreadable
from fsdaxctl.xfs.piece import FILE, FREE, UNKNOWN, Piece, clip, describe

_WHOLE_CNTBT = 64  # more free extents than this in one query: read the whole cntbt once instead of a path each


class Sharing:
    """The refcountbt's shared extents of agbnos [lo, hi] in one AG, read once the first data-fork record shows
    up. Records come sorted by start, so shared extents ending before one record never meet a later one: one
    forward cursor serves the AG."""

    def __init__(self, omap, agno: int, lo: int, hi: int):
        self.omap, self.agno, self.lo, self.hi = omap, agno, lo, hi
        self.starts: list | None = None
        self.lasts: list = []
        self.unreadable = False  # part of the tree could not be read: "not shared" is then unknown (None)
        self.j = 0

    def _read(self) -> None:
        fs, agno = self.omap.fs, self.agno
        starts, lasts = [], []
        for rec in btree.Ag(fs, agno).refcountbt.records(self.lo, self.hi):
            if type(rec) is Unreadable:
                self.omap._note(f"cannot tell which blocks are shared: {rec.error}")
                self.unreadable = True
            elif rec[2] >= 2:
                if lasts and lasts[-1] + 1 == rec[0]:  # refcounts 2 then 3: one shared span
                    lasts[-1] = rec[0] + rec[1] - 1
                else:
                    starts.append(rec[0])
                    lasts.append(rec[0] + rec[1] - 1)
        self.starts, self.lasts = starts, lasts

    def may_split(self, start: int, end: int) -> bool:
        """Could agbnos [start, end) need cutting (or `shared: null`)? The cheap test before `split`."""
        if self.starts is None:
            self._read()
        starts, lasts, n, j = self.starts, self.lasts, len(self.starts), self.j
        while j < n and lasts[j] < start:
            j += 1
        self.j = j
        return self.unreadable or (j < n and starts[j] < end)

    def split(self, p: Piece, start: int, end: int) -> list[Piece]:
        """p (agbnos [start, end)) as pieces each shared for every byte or for none: finer than GETFSMAP's
        flag on the whole record. Parts outside [lo, hi] are dropped (the tree was read for those only)."""
        if self.starts is None:
            self._read()
        starts, lasts, n = self.starts, self.lasts, len(self.starts)
        while self.j < n and lasts[self.j] < start:
            self.j += 1
        j = self.j
        unshared = None if self.unreadable else False
        if j >= n or starts[j] >= end:
            return [p._replace(shared=None) if self.unreadable else p]
        bl, out, cur = self.omap.geo.blocklog, [], start
        while cur < end:
            while j < n and lasts[j] < cur:  # only a damaged tree overlaps itself
                j += 1
            if j < n and starts[j] <= cur:
                stop, is_shared = min(lasts[j] + 1, end), True
                j += 1
            else:
                stop, is_shared = (min(starts[j], end) if j < n else end), unshared
            if stop > self.lo and cur <= self.hi:
                out.append(clip(p, p.offset + ((cur - start) << bl), p.offset + ((stop - start) << bl))
                           ._replace(shared=is_shared))
            cur = stop
        return out


class FreeSpace:
    """The bnobt's free extents of agbnos [lo, hi] in one AG (read on first need), each confirmed by the
    cntbt. Gaps between owner records and records themselves come in ascending order: forward cursors."""

    def __init__(self, omap, agno: int, lo: int, hi: int):
        self.omap, self.agno, self.lo, self.hi = omap, agno, lo, hi
        self._extents: list | None = None  # (start, end, problem detail or None), sorted by start
        self.i = self.k = 0
        self._cnt: set | None = None  # the whole cntbt as (start, length), when read whole
        self._cnt_error: FsdaxError | None = None

    @property
    def extents(self) -> list:
        if self._extents is None:
            self._extents = self._read()
        return self._extents

    def _read(self) -> list:
        fs, agno = self.omap.fs, self.agno
        out = []
        try:
            for rec in btree.Ag(fs, agno).bnobt.records(self.lo, self.hi):
                if type(rec) is Unreadable:
                    self.omap._note(f"cannot tell which blocks are free: {rec.error}")
                    out.append((rec.first, rec.last + 1,
                                {"error": f"no owner, and the bnobt could not be read here: {rec.error}"}))
                else:
                    out.append((rec[0], rec[0] + rec[1], None))
        except FsdaxError as e:
            self.omap._note(f"cannot tell which blocks are free: {e}")
            out = [(self.lo, self.hi + 1, {"error": f"no owner, and the bnobt could not be read: {e}"})]
        out.sort(key=lambda x: x[0])
        if sum(1 for x in out if x[2] is None) > _WHOLE_CNTBT:
            self._read_cntbt()
        return [(s, e, bad or self._cntbt_disagrees(s, e - s)) for s, e, bad in out]

    # --- the cntbt must list every bnobt extent ---
    def _read_cntbt(self) -> None:
        fs, agno = self.omap.fs, self.agno
        cntbt = btree.Ag(fs, agno).cntbt
        self._cnt = set()
        errors: list[FsdaxError] = []
        for agbno, level in cntbt.blocks(errors).items():
            if level == 0:
                try:
                    node = btree.read_node(fs, btree.CNTBT, agno, agbno, 0, root=agbno == cntbt.root)
                    self._cnt.update(node.items)
                except FsdaxError as e:
                    errors.append(e)
        if errors:
            self._cnt_error = errors[0]

    def _cntbt_disagrees(self, start: int, length: int) -> dict | None:
        fs, agno = self.omap.fs, self.agno
        if self._cnt is not None:
            found = (start, length) in self._cnt
            error = self._cnt_error
        else:
            try:
                rec = btree.Ag(fs, agno).cntbt.lookup_le((length, start))
                found, error = rec is not None and tuple(rec[:2]) == (start, length), None
            except FsdaxError as e:
                found, error = False, e
        if found:
            return None
        if error is not None:
            self.omap._note(f"cannot confirm free space in the cntbt: {error}")
            return {"error": f"the bnobt lists agbno {start}+{length} as free; the cntbt could not be read "
                             f"to confirm it: {error}"}
        msg = f"AG {agno}: the bnobt lists agbno {start}+{length} as free, the cntbt does not"
        self.omap._note(msg)
        return {"conflict": [f"bnobt: agbno {start}+{length} is free", "cntbt: no such free extent"]}

    # --- answers ---
    def gap(self, a: int, b: int) -> list[Piece]:
        """Pieces for agbnos [a, b) that no owner record covers: free where both free-space trees say so,
        else unknown with the reason."""
        ext, omap, agno = self.extents, self.omap, self.agno
        while self.i < len(ext) and ext[self.i][1] <= a:
            self.i += 1
        out, cursor, j = [], a, self.i
        while cursor < b:
            while j < len(ext) and ext[j][1] <= cursor:  # damaged trees can overlap: skip what is behind
                j += 1
            if j < len(ext) and ext[j][0] <= cursor:
                _, end, bad = ext[j]
                stop = min(end, b)
                out.append(omap.run(agno, cursor, stop - cursor, UNKNOWN if bad else FREE, bad))
                cursor = stop
                continue
            stop = min(b, ext[j][0]) if j < len(ext) else b
            out += omap.unclaimed(agno, cursor, stop - cursor)
            cursor = stop
        return out

    def claimed(self, start: int, end: int) -> list[Piece]:
        """The bnobt's free extents inside an owner record's agbnos [start, end), as `free` claims that
        `resolve_conflicts` turns into conflicts. Record starts ascend, so the cursor only moves forward."""
        ext = self.extents
        while self.k < len(ext) and ext[self.k][1] <= start:
            self.k += 1
        out, k = [], self.k
        while k < len(ext) and ext[k][0] < end:
            s, e, bad = ext[k]
            if bad is None and e > start:
                a, z = max(s, start, self.lo), min(e, end, self.hi + 1)
                if a < z:
                    out.append(self.omap.run(self.agno, a, z - a, FREE,
                                             {"claim": f"bnobt: agbno {s}+{e - s} is free"}))
            k += 1
        return out


# --- conflicts ---------------------------------------------------------------------------------------------

def _compatible(a: Piece, b: Piece) -> bool:
    """May two pieces cover the same byte? Reflinked data, yes; an `unknown` piece (it says nothing), yes."""
    for p in (a, b):
        if p.owner == UNKNOWN and not (p.detail and "conflict" in p.detail):
            return True
    return (a.owner == b.owner == FILE and a.fork == b.fork == "data" and not a.extent_map and not b.extent_map
            and a.shared is not False and b.shared is not False)


def _cut(p: Piece, a: int, b: int) -> list[Piece]:
    """p without bytes [a, b): zero, one or two pieces (a file offset moves with the start)."""
    out = []
    end = p.offset + p.length
    if p.offset < a:
        out.append(p._replace(length=a - p.offset))
    if end > b:
        fo = p.file_offset
        out.append(p._replace(offset=b, length=end - b, file_offset=None if fo is None else fo + (b - p.offset)))
    return out


def _claims(p: Piece) -> list[str]:
    if p.owner == UNKNOWN and p.detail and "conflict" in p.detail:
        return list(p.detail["conflict"])
    if p.detail and "claim" in p.detail:
        return [p.detail["claim"]]
    return [describe(p)]


def _settle(held: list[Piece], p: Piece) -> list[Piece]:
    """held + p, every incompatible overlap of p with a held piece replaced by a conflict piece naming all the
    claims on those bytes. One pass: the held pieces were settled among themselves already."""
    pend = p.offset + p.length
    out, overlaps = [], []
    for h in held:
        a, b = max(h.offset, p.offset), min(h.offset + h.length, pend)
        if a >= b or _compatible(h, p):
            out.append(h)
            continue
        overlaps.append((a, b, _claims(h)))
        out += _cut(h, a, b)
    if not overlaps:
        return held + [p]
    rest = [p]
    for a, b, claims in _merged(overlaps):
        rest = [q for r in rest for q in _cut(r, a, b)]
        out.append(Piece(a, b - a, UNKNOWN, p.agno, detail={"conflict": list(dict.fromkeys(claims + _claims(p)))}))
    return sorted(out + rest, key=Piece.sort_key)


def _merged(spans: list[tuple[int, int, list]]) -> list[tuple[int, int, list]]:
    """Overlapping [a, b) spans joined, their claims together."""
    out: list = []
    for a, b, claims in sorted(spans, key=lambda x: x[0]):
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b), out[-1][2] + claims)
        else:
            out.append((a, b, list(claims)))
    return out


def resolve_conflicts(batches, on_conflict):
    """Pass pieces (lists, in device order) through, holding back each until no later piece can overlap it;
    overlaps that cannot both be right are settled into conflict pieces (`on_conflict(piece)` is told).
    A piece is held only while a later one could still start inside it: memory stays at the overlap depth."""
    held: list[Piece] = []
    held_end = -1
    settled = False  # cut pieces may now stand out of order: sort before release
    for batch in batches:
        out = []
        for p in batch:
            if p.offset >= held_end:
                out += sorted(held, key=Piece.sort_key) if settled else held
                held, held_end, settled = [p], p.offset + p.length, False
                continue
            if all(_compatible(h, p) for h in held if h.offset + h.length > p.offset):
                held.append(p)
            else:
                held, settled = _settle(held, p), True
                for q in held:
                    if q.owner == UNKNOWN and q.detail and "conflict" in q.detail:
                        on_conflict(q)
            held_end = max(held_end, p.offset + p.length)
        if out:
            yield out
    if held:
        yield sorted(held, key=Piece.sort_key)


def sorted_release(heap: list, before=None) -> list[Piece]:
    """Held-back pieces from a heap of (sort key, sequence, piece), in order: all of them, or those whose
    sort key is below `before`."""
    out = []
    while heap and (before is None or heap[0][0] < before):
        out.append(heapq.heappop(heap)[2])
    return out
