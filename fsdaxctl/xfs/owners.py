"""Who owns these bytes? The offline twin of the kernel's GETFSMAP (fs/xfs/xfs_fsmap.c) for the data device.

For a byte range: split it into AGs, query each AG's rmapbt over the agbnos it touches (only the blocks on the
path are read), report the gaps between records as free space, mark data-fork pieces `shared` from the
refcountbt, and clip every piece to the query. Without rmapbt, free space comes from the bnobt and the rest
is `unknown`, as the kernel does. Bytes past the end of the filesystem are `outside-filesystem`.

Pieces stream out in device order: rmapbt records come in key order (start, then owner), so only the pieces
clipped to the very start of the query need sorting. A whole-device dump therefore runs in constant memory.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.btree import Unreadable
from fsdaxctl.xfs.piece import (FILE, FREE, AnswerCheck, NO_RMAP_GAP, NOT_IN_USE, OUTSIDE, OWN_UNKNOWN_DETAIL, OWNER_KINDS,  # noqa: F401
                                SPECIAL_OWNERS, UNCLAIMED_WHY, UNCLAIMED_YET, UNKNOWN, Piece, as_records)
from fsdaxctl.xfs.piece import clip as _clip
from fsdaxctl.xfs.piece import minus
from fsdaxctl.xfs.witness import FreeSpace, Sharing, resolve_conflicts, sorted_release

_CONFLICTS_LISTED = 20  # conflict warnings spelled out; a damaged tree can make thousands
_OFF_FLAGS_SHIFT = 61  # rm_offset bits 61..63: UNWRITTEN, BMBT_BLOCK, ATTR_FORK
_MASK = f.XFS_RMAP_OFF_MASK


class OwnerMap:
    """Owners of byte ranges on one XFS filesystem. Keeps a list of what could not be read."""

    # Ranges inside one chunk of an AG (xfs.dense) before it is read whole and they are cut from it: about what
    # its query costs in single queries (0: never).
    dense_after = 24

    def __init__(self, fs, *, source: str | None = None, progress=None):
        """source: "rmapbt" (the default when the filesystem has one), "walk" (synthesize the records by
        walking all metadata: the default without rmapbt), or "bnobt" (no walk: free space from the bnobt,
        the rest `unknown`, as the kernel's GETFSMAP reports a filesystem without rmapbt)."""
        self.fs = fs
        self.geo = fs.geo
        self.source = source or ("rmapbt" if fs.has_rmapbt else "walk")
        if self.source == "rmapbt" and not fs.has_rmapbt:
            raise ValueError("this filesystem has no rmapbt")
        self.rmapbt = self.source != "bnobt"  # records (real or synthesized) rather than free-space gaps
        self.reflink = fs.has_reflink
        self.progress = progress
        # Ranges this close are answered from one query over their span (fsdaxctl.locate): a few records
        # between them cost less than a query of their own. Not for the walk, which reads only what is asked.
        self.cluster_gap = 256 << 10 if self.source != "walk" else 0
        self.chunks = None  # xfs.dense.Chunks from the second call with that many ranges (False: not for this map)
        self.many_calls = 0  # calls with that many ranges (fsdaxctl.locate)
        self.problems = Problems()  # one line per unreadable structure, reported once each
        self._settled: list | None = None  # see _settled_at_mount
        self._walked: dict[int, tuple] = {}  # agno -> (records, starts, longest, windows answered: None = all)
        if self.source == "bnobt":
            self._note(("--source bnobt: the rmapbt is not used" if fs.has_rmapbt else
                        "no reverse-mapping btree (rmapbt)") + ": used space is reported as 'unknown'; "
                       "only free space is resolved")

    def prepare(self, ranges) -> None:
        """Walk the metadata once for every AG these (offset, length) ranges touch (source "walk")."""
        if self.source != "walk":
            return
        from fsdaxctl.xfs.walk import MetadataWalk, covers, windows_of

        # Only the blocks asked (and what the rmapbt would merge with them) are kept: memory stays flat.
        readable = self.fs.readable_agcount
        windows = {agno: ws for agno, ws in windows_of(self.geo, ranges).items() if agno < readable and not (
            agno in self._walked and all(covers(self._walked[agno][3], lo, hi) for lo, hi in ws))}
        if not windows:
            return
        for agno, ws in windows.items():  # an AG walked before for other blocks: keep answering those too
            if agno in self._walked and self._walked[agno][3] is not None:
                ws += self._walked[agno][3]
        walk = MetadataWalk(self.fs, set(windows), self.progress, windows=windows)
        for agno, recs in walk.run().items():
            self._walked[agno] = (recs, [r[0] for r in recs], max((r[1] for r in recs), default=1),
                                  walk.covered.get(agno))
        self.problems += walk.problems

    def _note(self, text: str) -> None:
        self.problems.append(text)

    # --- public ---
    def pieces(self, offset: int, length: int) -> list[Piece]:
        """Every owner of bytes [offset, offset+length), sorted by offset then inode."""
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def quiet_pieces(self, offset: int, length: int) -> list[Piece] | None:
        """The pieces of [offset, offset+length) when reading them notes nothing (no damage, conflict or
        unowned used space), else None and nothing noted: a chunk read ahead for many ranges (xfs.dense) may
        not add warnings that their own queries would not."""
        kept, conflicts = self.problems, getattr(self, "_conflicts", 0)
        self.problems = Problems()
        try:
            pieces = self.pieces(offset, length)
            return None if self.problems else pieces
        finally:
            self.problems, self._conflicts = kept, conflicts

    def iter_batches(self, offset: int, length: int):
        """The same pieces as lists, in device order: a dump consumes them a leaf at a time. Every answer
        passes the invariants of `AnswerCheck` on its way out."""
        check = AnswerCheck(offset, offset + length, self._note)
        replay = getattr(self.fs, "replay", None)  # log replayed in memory: what the mount will finish
        effects = replay.effects if replay is not None else ()
        batches = self._ordered_batches(offset, length)
        if effects:
            from fsdaxctl.xfs.logrecover import EffectIndex, effects_on, op_spans, overlay_pieces

            effects = effects_on(effects, "data", self.source)
            index = EffectIndex(effects)
            batches = (overlay_pieces(b, index, self.geo, self._refcounts)
                       for b in _together(batches, op_spans(effects)))
        for batch in batches:
            yield check.batch(batch)
        tail = check.finish()
        if tail:
            yield tail

    def _ordered_batches(self, offset: int, length: int):
        stream = self._stream(offset, offset + length)
        if not self.rmapbt:
            stream = ([p] for p in _join_gaps(p for batch in stream for p in batch))
        else:
            stream = resolve_conflicts(stream, self._conflict)
        # Records that began before the query are all clipped to its start: order those ties by inode.
        head = []
        for batch in stream:
            n = 0
            while n < len(batch) and batch[n].offset == offset:
                n += 1
            head += batch[:n]
            if n < len(batch):
                head.sort(key=Piece.sort_key)
                yield head + batch[n:]
                yield from stream
                return
        head.sort(key=Piece.sort_key)
        yield head

    def _stream(self, qstart: int, qend: int):
        geo = self.geo
        fs_end = geo.size
        if qstart < fs_end:
            in_end = min(qend, fs_end)
            first_ag, lo = geo.byte_to_ag(qstart)
            last_ag, hi = geo.byte_to_ag(in_end - 1)
            readable = self.fs.readable_agcount
            for agno in range(first_ag, last_ag + 1):
                ag_lo = lo if agno == first_ag else 0
                ag_hi = hi if agno == last_ag else geo.ag_length(agno) - 1
                if agno >= readable:
                    # The AG headers are past the end of a truncated image: nothing from here on can be read.
                    start = max(qstart, geo.ag_to_byte(agno, 0))
                    msg = (f"AG {agno} and after lie past the end of the device ({self.fs.dev.size} bytes): "
                           "the image is truncated")
                    self._note(msg)
                    yield [Piece(start, in_end - start, UNKNOWN, agno, detail={"error": msg})]
                    break
                yield from self._ag_pieces(agno, ag_lo, ag_hi, qstart, in_end)
        if qend > fs_end:
            yield geo.beyond(max(qstart, fs_end), qend)

    # --- one AG ---
    def _ag_pieces(self, agno: int, lo: int, hi: int, qstart: int, qend: int):
        """Lists of pieces, in device order, for agbnos [lo, hi] of AG agno clipped to bytes [qstart, qend)."""
        try:
            self.fs.agf(agno)  # the AG's roots: an unreadable AGF makes the whole AG unknown
        except FsdaxError as e:
            self._note(str(e))
            yield [self._run(agno, lo, hi - lo + 1, UNKNOWN, qstart, qend, {"error": str(e)})]
            return
        if self.source == "walk":
            from fsdaxctl.xfs.walk import covers

            if agno not in self._walked or not covers(self._walked[agno][3], lo, hi):
                self.prepare([(self.geo.ag_to_byte(agno, lo), (hi - lo + 1) << self.geo.blocklog)])
            recs, starts, longest, _ = self._walked[agno]
            first = bisect.bisect_left(starts, lo - longest + 1)
            last = bisect.bisect_right(starts, hi)
            batch = [r for r in recs[first:last] if r[0] + r[1] > lo]
            yield from self._rmap_pieces(agno, [batch], lo, hi, qstart, qend)
        elif self.rmapbt:
            batches = btree.Ag(self.fs, agno).rmapbt.query(lo, hi)
            yield from self._rmap_pieces(agno, batches, lo, hi, qstart, qend)
        else:
            batches = btree.Ag(self.fs, agno).bnobt.query(lo, hi)
            yield from self._bnobt_pieces(agno, batches, lo, hi, qstart, qend)

    def _rmap_pieces(self, agno, batches, lo, hi, qstart, qend):
        """rmapbt records -> pieces, with the gaps between them as free space. The hot loop of a dump.

        Pieces are built unclipped; only an AG the query does not cover whole needs the clipping pass. The
        parts of a shared-split record after its first piece are held back until every record starting
        before them has been written, so the stream stays in device order.
        """
        bl = self.geo.blocklog
        base = self.geo.ag_to_byte(agno, 0)
        edge = not (base >= qstart and base + (self.geo.ag_length(agno) << bl) <= qend)
        new = tuple.__new__
        sharing = Sharing(self, agno, lo, hi) if self.reflink else None
        held: list = []  # heap of (sort key, sequence, piece): split-off parts of shared records
        seq = itertools.count()
        cursor = lo  # first agbno not yet covered by a record or a gap
        free = FreeSpace(self, agno, lo, hi)  # the second witness of every gap and every record
        fstarts = [x[0] for x in free.extents]
        fends = [x[1] for x in free.extents]
        nfree, k = len(fstarts), 0
        for batch in batches:
            out = []
            if type(batch) is Unreadable:
                out += sorted_release(held)
                if batch.first > cursor:  # what lies before the unreadable span is still known
                    out += free.gap(cursor, batch.first)
                out += self._unreadable(agno, batch, cursor, qstart, qend)
                cursor = max(cursor, batch.last + 1)
                yield [_clip(p, qstart, qend) for p in out] if edge else out
                continue
            for start, count, owner, off in batch:
                if start > cursor:
                    out += sorted_release(held)
                    out += free.gap(cursor, start)
                end = start + count
                if end > cursor:
                    cursor = end
                if owner < 0:
                    piece = self._special_piece(agno, base + (start << bl), count << bl, owner, start)
                else:
                    flags = off >> _OFF_FLAGS_SHIFT
                    bmbt = flags & 2  # attr fork or bmbt block: never shared; a bmbt block has no file offset
                    piece = new(Piece, (base + (start << bl), count << bl, FILE, agno, owner,
                                        "attr" if flags & 4 else "data", None if bmbt else (off & _MASK) << bl,
                                        bool(bmbt), bool(flags & 1), False, (), None, None, None))
                    if sharing is not None and not flags & 6 and sharing.may_split(start, end):
                        first, *rest = sharing.split(piece, start, end)
                        piece = first
                        for p in rest:
                            heapq.heappush(held, (p.sort_key(), next(seq), p))
                while k < nfree and fends[k] <= start:  # the bnobt's extents this record could meet (inline:
                    k += 1  # a dump runs this a million times; free.claimed is the slow, rare path)
                if k < nfree and fstarts[k] < end:
                    free.k = k
                    for p in free.claimed(start, end):  # the bnobt calls part of this record free: a conflict
                        heapq.heappush(held, (p.sort_key(), next(seq), p))
                if held and held[0][0] < piece.sort_key():
                    out += sorted_release(held, piece.sort_key())
                out.append(piece)
            yield [_clip(p, qstart, qend) for p in out] if edge else out
        tail = sorted_release(held)
        if cursor <= hi:
            tail += free.gap(cursor, hi + 1)
        yield [_clip(p, qstart, qend) for p in tail]

    def _refcounts(self, start: int, end: int) -> list[tuple[int, int, int | None]]:
        """(start, end, count) runs of bytes [start, end) from the refcount btree (1 where it has no record;
        None where it cannot be read): what a refcount intent finished at mount starts from."""
        if not self.reflink:
            return [(start, end, 1)]
        geo, bl, out = self.geo, self.geo.blocklog, []
        agno, lo = geo.byte_to_ag(start)
        _, hi = geo.byte_to_ag(end - 1)
        base, cur = geo.ag_to_byte(agno, 0), start
        for rec in btree.Ag(self.fs, agno).refcountbt.records(lo, hi):
            if type(rec) is Unreadable:
                return [(start, end, None)]
            s, t = max(start, base + (rec[0] << bl)), min(end, base + ((rec[0] + rec[1]) << bl))
            if rec[0] & f.XFS_REFC_COWFLAG or s >= t:
                continue
            if s > cur:
                out.append((cur, s, 1))
            out.append((s, t, rec[2]))
            cur = t
        if cur < end:
            out.append((cur, end, 1))
        return out

    def _special_piece(self, agno: int, offset: int, length: int, owner: int, agbno: int) -> Piece:
        kind = SPECIAL_OWNERS.get(owner)
        detail = None
        if kind == UNKNOWN:  # XFS_RMAP_OWN_UNKNOWN: a record that says its owner is not known
            detail = OWN_UNKNOWN_DETAIL
        elif kind is None:
            kind = UNKNOWN
            detail = {"error": f"rmapbt record in AG {agno} at agbno {agbno} has an invalid owner {owner}"}
            self._note(detail["error"])
        return Piece(offset, length, kind, agno, detail=detail)

    def _bnobt_pieces(self, agno, batches, lo, hi, qstart, qend):
        """No rmapbt: free extents from the bnobt, `unknown` between them."""
        cursor = lo
        for batch in batches:
            out = []
            if type(batch) is Unreadable:
                if batch.first > cursor:
                    out.append(self._run(agno, cursor, batch.first - cursor, UNKNOWN, qstart, qend, NO_RMAP_GAP))
                out += self._unreadable(agno, batch, cursor, qstart, qend)
                cursor = max(cursor, batch.last + 1)
            else:
                for start, count in batch:
                    if start > cursor:
                        out.append(self._run(agno, cursor, start - cursor, UNKNOWN, qstart, qend, NO_RMAP_GAP))
                    out.append(self._run(agno, start, count, FREE, qstart, qend))
                    cursor = max(cursor, start + count)
            yield out
        if cursor <= hi:
            yield [self._run(agno, cursor, hi - cursor + 1, UNKNOWN, qstart, qend, NO_RMAP_GAP)]

    def _conflict(self, p: Piece) -> None:
        """A warning for each of the first conflicts; the rest are counted once (each piece says its claims)."""
        self._conflicts = getattr(self, "_conflicts", 0) + 1
        if self._conflicts <= _CONFLICTS_LISTED:
            self._note(f"conflicting claims on bytes {p.offset}+{p.length}: {'; '.join(p.detail['conflict'])}: "
                       "reported as unknown")
        elif self._conflicts == _CONFLICTS_LISTED + 1:
            self._note(f"more than {_CONFLICTS_LISTED} conflicting claims: every such piece is unknown and lists "
                       "its claims in detail.conflict")

    def unclaimed(self, agno: int, agbno: int, count: int) -> list[Piece]:
        """Pieces for `count` used blocks from agbno that no owner claims: unknown, and noted, except where an
        unfinished intent in the log gives them an owner or frees them at mount (the replay's operation then
        fills them)."""
        p = self.run(agno, agbno, count, UNKNOWN)
        settled = [(max(s, p.offset), min(t, p.offset + p.length)) for s, t in self._settled_at_mount()
                   if s < p.offset + p.length and t > p.offset]
        out = [_clip(p, s, t)._replace(detail=UNCLAIMED_YET) for s, t in settled]
        rest = minus([p], settled, _clip)
        if rest:
            detail = self.unclaimed_detail()
            out += [q._replace(detail=detail) for q in rest]
        return sorted(out, key=lambda q: q.offset)

    def _settled_at_mount(self) -> list[tuple[int, int]]:
        """Data-device bytes (merged, sorted) an unfinished intent in the replayed log gives an owner (map) or
        frees (extent free, a refcount decrease from 1)."""
        if self._settled is None:
            from fsdaxctl.ranges import merge_spans
            from fsdaxctl.xfs.logrecover import effects_on

            replay = getattr(self.fs, "replay", None)
            effects = effects_on(replay.effects, "data", self.source) if replay is not None else ()
            spans = [(e.start, e.end) for e in effects if e.kind in ("map", "free")]
            for e in effects:  # a decrease frees what only one file held
                if e.kind == "refcount" and e.value < 0 and e.end <= self.geo.size:
                    spans += [(a, b) for a, b, count in self._refcounts(e.start, e.end) if count == 1]
            self._settled = merge_spans(spans)
        return self._settled

    def unclaimed_detail(self) -> dict:
        """The detail of used space that no owner claims: the bnobt does not list it as free."""
        by = "the rmapbt" if self.source == "rmapbt" else "the metadata walk"
        why = f"{UNCLAIMED_WHY}{by}, and the bnobt does not list it as free"
        if self.problems:
            why += " (some metadata could not be read: see the warnings)"
        self._note(f"used space without an owner in {by}: reported as unknown")
        return {"why": why}

    def _unreadable(self, agno: int, bad: Unreadable, cursor: int, qstart: int, qend: int) -> list[Piece]:
        """An `unknown` piece for what an unreadable subtree covered beyond what is already known (from
        `cursor` on, so pieces stay in device order); the problem is noted either way."""
        self._note(str(bad.error))
        first = max(bad.first, cursor)
        if first > bad.last:
            return []
        return [self._run(agno, first, bad.last - first + 1, UNKNOWN, qstart, qend, {"error": str(bad.error)})]

    def _run(self, agno, agbno, count, kind, qstart, qend, detail=None) -> Piece:
        """A piece for `count` blocks from agbno, cut to the query."""
        return _clip(self.run(agno, agbno, count, kind, detail), qstart, qend)

    def run(self, agno, agbno, count, kind, detail=None) -> Piece:
        """A piece for `count` blocks from agbno."""
        return Piece(self.geo.ag_to_byte(agno, agbno), count << self.geo.blocklog, kind, agno, detail=detail)

def _together(batches, spans):
    """Batches (pieces in device order) with those that meet or touch one of `spans` joined into one, up to the
    span's end: every owner of bytes an operation changes is then in the same batch, and so are the pieces
    just before and after it, which a mapping it adds may join (as the kernel merges rmap records)."""
    spans = sorted(spans)
    held: list = []
    reach = -1
    for batch in batches:
        if held and batch and batch[0].offset > reach:
            yield held
            held = []
        end = max((p.offset + p.length for p in batch), default=0)  # a long piece may end after the last
        ends = [e for s, e in spans if batch and s <= end and e >= batch[0].offset]
        if ends or held:
            held += batch
            reach = max([reach] + ends)
        else:
            yield batch
    if held:
        yield held


def _join_gaps(stream):
    """Join no-rmapbt `unknown` gaps that touch, as the kernel does across AG boundaries. Within an AG two
    such gaps are always separated by a free extent, so touching gaps meet only at an AG boundary."""
    pending = None
    for p in stream:
        if pending is not None:
            if p.detail is NO_RMAP_GAP and p.offset == pending.offset + pending.length:
                pending = pending._replace(length=pending.length + p.length)
                continue
            yield pending
            pending = None
        if p.detail is NO_RMAP_GAP:
            pending = p
        else:
            yield p
    if pending is not None:
        yield pending
