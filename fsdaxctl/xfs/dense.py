"""Many ranges over the same blocks (a long ranges list): whole chunks of an AG answered by one exact query each,
kept as numpy columns, and cut per range.

A chunk is `CHUNK_BLOCKS` blocks of one AG. Once `OwnerMap.dense_after` ranges have fallen inside one (counted
over a streamed list's windows), its pieces come from one `OwnerMap.quiet_pieces` query over it and are kept;
each range inside it is cut from them (searchsorted over the starts and the running maximum of the ends) as
`fsdaxctl.locate._cut` cuts a cluster's span (`piece.query_order`). A chunk whose query notes anything
(damage, conflicts, used space nobody owns) or holds a piece the columns do not carry is never kept: its
ranges keep their own queries, and so their warnings. This module (and numpy) is imported only for many ranges.
"""

from __future__ import annotations

import itertools
import operator

import numpy as np

from fsdaxctl.xfs.owners import OwnerMap
from fsdaxctl.xfs.piece import OWNER_KINDS, Piece, query_order

CHUNK_BLOCKS = 1 << 12  # blocks of one AG read whole at a time: 16 MiB of 4 KiB blocks
BUDGET = 48 << 20  # bytes of columns kept (22-30 a piece); past it, further chunks' ranges are queried alone
MAX_CANDIDATES = 64  # pieces looked at for one range; more (a long piece overlapping many): its own query
_COUNTED = 1 << 16  # undecided chunks counted at once (about 100 bytes each)

_FORKS = (None, "data", "attr")
_SHARED = (False, True, None)
_NEW = tuple.__new__
_INT = {int, type(None)}
_FLAG = {bool, type(None)}


# A piece's fields that are not numbers, as one small integer: code -> (owner, fork, extent_map, unwritten,
# shared, inode is None, file_offset is None), and back.
_DECODE = dict(enumerate((o, fk, em, uw, sh, ni, nf) for o in OWNER_KINDS for fk in _FORKS for em in (False, True)
                         for uw in (False, True) for sh in _SHARED for ni in (False, True) for nf in (False, True)))
_ENCODE = {v: k for k, v in _DECODE.items()}


def chunks_of(omap):
    """The chunk cache of an owner map that can use one (an rmapbt on disk, no log intents to apply), or None."""
    if omap.chunks is None:
        replay = getattr(omap.fs, "replay", None)
        ok = type(omap) is OwnerMap and omap.source == "rmapbt" and not (replay is not None and replay.effects)
        omap.chunks = Chunks(omap) if ok else False
    return omap.chunks or None


class Chunks:
    """The kept chunks of one owner map: per AG, the columns of every kept chunk in device order."""

    def __init__(self, omap):
        self.omap, self.geo = omap, omap.geo
        self.per_ag = -(-self.geo.agblocks // CHUNK_BLOCKS)
        self.hits: dict[int, int] = {}  # chunk -> ranges met in it, while undecided
        self.state: dict[int, bool] = {}  # chunk -> kept (True) or never to be (False)
        self.kept = np.zeros(0, dtype=np.int64)  # the kept chunks, sorted
        self.cols: dict[int, tuple] = {}  # agno -> the AG's kept columns joined, with the ends' running maximum
        self.nbytes = 0

    def cut(self, ranges) -> dict:
        """index -> pieces of every range that lies inside a kept chunk (chunks that became worth keeping with
        these ranges are read first)."""
        geo, bl = self.geo, self.geo.blocklog
        off = np.fromiter((r.offset for r in ranges), dtype=np.int64, count=len(ranges))
        end = off + np.fromiter((r.length for r in ranges), dtype=np.int64, count=len(ranges))
        first, last = off >> bl, (np.minimum(end, geo.size) - 1) >> bl
        agno, agbno = first // geo.agblocks, first % geo.agblocks
        chunk = agno * self.per_ag + agbno // CHUNK_BLOCKS
        inside = (end <= geo.size) & (last // geo.agblocks == agno) & \
                 ((last % geo.agblocks) // CHUNK_BLOCKS == agbno // CHUNK_BLOCKS) & \
                 (agno < self.omap.fs.readable_agcount)
        self._count(chunk[inside])
        kept = inside & np.isin(chunk, self.kept)
        out: dict = {}
        for a in np.unique(agno[kept]).tolist():
            sel = np.flatnonzero(kept & (agno == a))
            out.update(self._cut_ag(a, sel, off[sel], end[sel]))
        return out

    # --- reading chunks whole ---
    def _count(self, chunks) -> None:
        """Count the ranges met in undecided chunks; read those that reach `OwnerMap.dense_after` whole."""
        after, hits, due = self.omap.dense_after, self.hits, []
        for c, n in zip(*(a.tolist() for a in np.unique(chunks, return_counts=True))):
            if c not in self.state:
                hits[c] = hits.get(c, 0) + n
                if hits[c] >= after:
                    due.append(c)
        if len(hits) > _COUNTED:  # scattered over a huge filesystem: start counting again, memory stays flat
            hits.clear()
        if due:
            self._keep(due)

    def _keep(self, chunks: list) -> None:
        new: dict[int, list] = {}  # agno -> columns of the chunks read now
        for c in chunks:
            if self.nbytes >= BUDGET:
                break
            self.hits.pop(c, None)
            a, k = divmod(c, self.per_ag)
            lo = k * CHUNK_BLOCKS
            n = min(CHUNK_BLOCKS, self.geo.ag_length(a) - lo)
            cols = _columns(self.omap.quiet_pieces(self.geo.ag_to_byte(a, lo), n << self.geo.blocklog),
                            self.geo.ag_to_byte(a, 0), a, self.geo.blocklog) if n > 0 else None
            self.state[c] = cols is not None
            if cols is not None:
                new.setdefault(a, []).append(cols)
                self.nbytes += sum(c.nbytes for c in cols) + cols[1].nbytes  # and the ends' running maximum
        for a, parts in new.items():
            self._join(a, parts)
        self.kept = np.array(sorted(c for c, ok in self.state.items() if ok), dtype=np.int64)

    def _join(self, agno: int, parts: list) -> None:
        """The AG's columns with new chunks' put in place: chunks in device order, each in its query's order
        (a stable sort by chunk keeps it), and the running maximum of the ends again."""
        if agno in self.cols:
            parts = [self.cols[agno][:5]] + parts
        cols = [np.concatenate(c) for c in zip(*parts)]
        order = np.argsort(cols[0] // CHUNK_BLOCKS, kind="stable")
        cols = [c[order] for c in cols]
        self.cols[agno] = tuple(cols) + (np.maximum.accumulate(cols[1]),)

    # --- cutting ---
    def _cut_ag(self, agno: int, sel, off, end):
        """Pieces of the ranges `sel` (offsets `off`, ends `end`), all in kept chunks of AG agno."""
        starts, ends, codes, inodes, fofs, reach = self.cols[agno]
        bl = self.geo.blocklog
        base = self.geo.ag_to_byte(agno, 0)
        lo_blk = (off - base) >> bl  # the first block each range touches: pieces must end after it
        lo = np.searchsorted(reach, lo_blk, side="right")
        hi = np.searchsorted(starts, (end - base + (1 << bl) - 1) >> bl, side="left")
        n = np.maximum(hi - lo, 0)
        ok = n <= MAX_CANDIDATES
        sel, off, end, lo_blk, lo, n = sel[ok], off[ok], end[ok], lo_blk[ok], lo[ok], n[ok]
        which = np.repeat(np.arange(len(sel)), n)  # the range each candidate is for
        idx = np.arange(len(which)) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        keep = ends[idx] > lo_blk[which]
        idx, which = idx[keep], which[keep]
        pieces = _pieces(agno, base, bl, (starts[idx], ends[idx], codes[idx], inodes[idx], fofs[idx]),
                         off[which], end[which])
        out, k = {}, 0
        for i, a, m in zip(sel.tolist(), off.tolist(), np.bincount(which, minlength=len(sel)).tolist()):
            if m:  # always, in a chunk whose query passed AnswerCheck
                out[i] = query_order(pieces[k:k + m], a)
                k += m
        return out


def _pieces(agno: int, base: int, bl: int, cols, a, z) -> list[Piece]:
    """Pieces from columns (blocks from the AG's start), each cut to its range [a, z) as `piece.clip` cuts it."""
    starts, ends, codes, inodes, fofs = cols
    start = base + (starts.astype(np.int64) << bl)
    s = np.maximum(start, a)
    e = np.minimum(base + (ends.astype(np.int64) << bl), z)
    fo = fofs.astype(np.int64) + (s - start)
    return [_NEW(Piece, (st, ln, o, agno, None if ni else ino, fk, None if nf else f, em, uw, sh, (), None, None,
                         None))
            for st, ln, (o, fk, em, uw, sh, ni, nf), ino, f in
            zip(s.tolist(), (e - s).tolist(), map(_DECODE.__getitem__, codes.tolist()), inodes.tolist(), fo.tolist())]


def _columns(pieces, base: int, agno: int, bl: int):
    """(starts, ends, codes, inodes, file offsets) of a chunk's pieces (blocks from the AG's start), or None
    when a piece carries what the columns do not (detail, paths, another AG, a part of a block)."""
    if not pieces:
        return None
    cols = list(zip(*pieces))
    types = [set(map(type, c)) for c in cols[4:10]]  # bool is not int here: JSON spells them apart
    plain = (set(cols[3]) == {agno} and set(cols[10]) == {()} and set(cols[11]) == set(cols[12]) == set(cols[13])
             == {None} and set(cols[2]) <= set(OWNER_KINDS) and set(cols[5]) <= set(_FORKS)
             and types[0] <= _INT and types[2] <= _INT and types[3] == types[4] == {bool} and types[5] <= _FLAG)
    if not plain:
        return None
    none = itertools.repeat(None)
    codes = [_ENCODE[t] for t in zip(cols[2], cols[5], cols[7], cols[8], cols[9], map(operator.is_, cols[4], none),
                                     map(operator.is_, cols[6], none))]
    try:
        offs = np.array(cols[0], dtype=np.int64) - base
        lens = np.array(cols[1], dtype=np.int64)
        inodes = np.array([i or 0 for i in cols[4]], dtype=np.int64)
        fofs = np.array([fo or 0 for fo in cols[6]], dtype=np.int64)
    except OverflowError:
        return None
    if ((offs | lens) & ((1 << bl) - 1)).any() or (lens <= 0).any():
        return None
    return ((offs >> bl).astype(np.uint32), ((offs + lens) >> bl).astype(np.uint32), np.array(codes, np.uint16),
            _narrow(inodes), _narrow(fofs))


def _narrow(col):
    """A column in 32 bits when its values fit (most inode numbers and file offsets): half the memory."""
    return col.astype(np.uint32) if col.min() >= 0 and col.max() < 1 << 32 else col
