"""Who owns these bytes? The offline twin of the kernel's GETFSMAP (fs/xfs/xfs_fsmap.c) for the data device.

For a byte range: split it into AGs, query each AG's rmapbt over the agbnos it touches (only the blocks on the
path are read), report the gaps between records as free space, mark data-fork pieces `shared` from the
refcountbt, and clip every piece to the query. Without rmapbt, free space comes from the bnobt and the rest
is `unknown`, as the kernel does. Bytes past the end of the filesystem are `outside-filesystem`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from fsdaxctl.errors import FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.btree import Unreadable

# Owner kinds: GETFSMAP's owners, spelled as DESIGN.md's contract says.
FILE = "file"
FREE = "free"
UNKNOWN = "unknown"
OUTSIDE = "outside-filesystem"
SPECIAL_OWNERS = {
    f.XFS_RMAP_OWN_FS: "static-fs-metadata",
    f.XFS_RMAP_OWN_LOG: "log",
    f.XFS_RMAP_OWN_AG: "per-ag-metadata",
    f.XFS_RMAP_OWN_INOBT: "inode-btree",
    f.XFS_RMAP_OWN_INODES: "inodes",
    f.XFS_RMAP_OWN_REFC: "refcount-btree",
    f.XFS_RMAP_OWN_COW: "cow-staging",
    f.XFS_RMAP_OWN_UNKNOWN: UNKNOWN,
}
OWNER_KINDS = (FILE, FREE, "static-fs-metadata", "log", "per-ag-metadata", "inode-btree", "inodes",
               "refcount-btree", "cow-staging", UNKNOWN, "defective", OUTSIDE)
NOT_IN_USE = frozenset({FREE, OUTSIDE})


@dataclass(slots=True)
class Piece:
    """The part of a query range that one owner covers, clipped to the query. Bytes throughout."""
    offset: int
    length: int
    owner: str
    agno: int | None = None
    inode: int | None = None
    fork: str | None = None
    file_offset: int | None = None
    extent_map: bool = False
    unwritten: bool = False
    shared: bool | None = False  # None: the refcountbt could not be read
    paths: list = field(default_factory=list)
    detail: dict | None = None

    def sort_key(self):
        return (self.offset, -1 if self.inode is None else self.inode,
                self.fork or "", self.extent_map, self.file_offset or 0)

    def to_dict(self) -> dict:
        """The JSON piece of DESIGN.md's contract."""
        d = {"offset": self.offset, "length": self.length, "owner": self.owner}
        if self.owner == FILE:
            d["inode"] = self.inode
            d["fork"] = self.fork
            if not self.extent_map:
                d["file_offset"] = self.file_offset
            d["extent_map"] = self.extent_map
            d["unwritten"] = self.unwritten
            d["shared"] = self.shared
            d["paths"] = list(self.paths)
        if self.detail:
            d["detail"] = self.detail
        return d


class OwnerMap:
    """Owners of byte ranges on one XFS filesystem. Keeps a list of what could not be read."""

    def __init__(self, fs):
        self.fs = fs
        self.geo = fs.geo
        self.problems: list[str] = []  # one line per unreadable structure, reported once each
        self._seen_problems: set[str] = set()
        self._bad_ag: dict[int, FsdaxError] = {}
        if not fs.has_rmapbt:
            self._note("no reverse-mapping btree (rmapbt): used space is reported as 'unknown'; "
                       "only free space is resolved")

    def _note(self, text: str) -> None:
        if text not in self._seen_problems:
            self._seen_problems.add(text)
            self.problems.append(text)

    # --- public ---
    def pieces(self, offset: int, length: int) -> list[Piece]:
        """Every owner of bytes [offset, offset+length), sorted by offset then inode."""
        out = list(self.iter_pieces(offset, length))
        out.sort(key=Piece.sort_key)
        return out

    def iter_pieces(self, offset: int, length: int):
        """The same pieces, streamed AG by AG (for whole-device dumps); sorted within each AG."""
        geo = self.geo
        end = offset + length
        fs_end = geo.size
        if offset < fs_end:
            in_end = min(end, fs_end)
            first_ag, lo = geo.byte_to_ag(offset)
            last_ag, hi = geo.byte_to_ag(in_end - 1)
            for agno in range(first_ag, last_ag + 1):
                ag_lo = lo if agno == first_ag else 0
                ag_hi = hi if agno == last_ag else geo.ag_length(agno) - 1
                ag_pieces = [self._clip(m, offset, in_end) for m in self._ag_map(agno, ag_lo, ag_hi)]
                ag_pieces.sort(key=Piece.sort_key)
                yield from ag_pieces
        if end > fs_end:
            start = max(offset, fs_end)
            yield Piece(start, end - start, OUTSIDE)

    # --- per AG, in agbno units ---
    def _ag_map(self, agno: int, lo: int, hi: int):
        """Yield (agbno, blockcount, owner kind, extra) for everything in AG agno meeting [lo, hi]."""
        try:
            hdr = self.fs.ag(agno)
        except FsdaxError as e:
            self._note(str(e))
            yield _Run(agno, lo, hi - lo + 1, UNKNOWN, detail={"error": str(e)})
            return
        if self.fs.has_rmapbt:
            records = btree.query(self.fs, btree.RMAPBT, agno, hdr.agf.agf_rmap_root,
                                  hdr.agf.agf_rmap_level, lo, hi)
            used = self._rmap_runs(agno, records, lo, hi)
            yield from _with_gaps(agno, used, lo, hi, FREE, None)
        else:
            records = btree.query(self.fs, btree.BNOBT, agno, hdr.agf.agf_bno_root,
                                  hdr.agf.agf_bno_level, lo, hi)
            free = self._free_runs(agno, records)
            yield from _with_gaps(agno, free, lo, hi, UNKNOWN, {"reason": "no rmapbt"})

    def _rmap_runs(self, agno, records, lo, hi):
        shared = None  # refcount records fetched only when a data-fork record shows up
        for rec in records:
            if type(rec) is Unreadable:
                yield self._unreadable(agno, rec)
                continue
            start, count, owner, offset = rec
            if owner >= 0:
                attr = bool(offset & f.XFS_RMAP_OFF_ATTR_FORK)
                bmbt = bool(offset & f.XFS_RMAP_OFF_BMBT_BLOCK)
                is_shared = False
                if not attr and not bmbt and self.fs.has_reflink:
                    if shared is None:
                        shared = self._shared_extents(agno, lo, hi)
                    is_shared = shared.overlaps(start, start + count - 1)
                yield _Run(agno, start, count, FILE, inode=owner, attr=attr, bmbt=bmbt,
                           unwritten=bool(offset & f.XFS_RMAP_OFF_UNWRITTEN),
                           file_block=offset & f.XFS_RMAP_OFF_MASK, shared=is_shared)
            else:
                kind = SPECIAL_OWNERS.get(owner)
                if kind is None:
                    self._note(f"rmapbt record in AG {agno} at agbno {start} has an invalid owner {owner}")
                    yield _Run(agno, start, count, UNKNOWN, detail={"error": f"invalid rmap owner {owner}"})
                else:
                    yield _Run(agno, start, count, kind)

    def _free_runs(self, agno, records):
        for rec in records:
            if type(rec) is Unreadable:
                yield self._unreadable(agno, rec)
            else:
                yield _Run(agno, rec[0], rec[1], FREE)

    def _unreadable(self, agno: int, bad: Unreadable) -> "_Run":
        self._note(str(bad.error))
        return _Run(agno, bad.first, bad.last - bad.first + 1, UNKNOWN, detail={"error": str(bad.error)})

    def _shared_extents(self, agno: int, lo: int, hi: int) -> "_Intervals":
        agf = self.fs.ag(agno).agf
        starts, lasts, unreadable = [], [], False
        for rec in btree.query(self.fs, btree.REFCOUNTBT, agno, agf.agf_refcount_root,
                               agf.agf_refcount_level, lo, hi):
            if type(rec) is Unreadable:
                self._note(f"cannot tell which blocks are shared: {rec.error}")
                unreadable = True
                continue
            if rec[2] >= 2:
                starts.append(rec[0])
                lasts.append(rec[0] + rec[1] - 1)
        return _Intervals(starts, lasts, unreadable)

    # --- bytes ---
    def _clip(self, run: "_Run", qstart: int, qend: int) -> Piece:
        geo = self.geo
        rstart = geo.ag_to_byte(run.agno, run.agbno)
        rend = rstart + (run.count << geo.blocklog)
        start, end = max(rstart, qstart), min(rend, qend)
        p = Piece(start, end - start, run.kind, agno=run.agno, detail=run.detail)
        if run.kind == FILE:
            p.inode = run.inode
            p.fork = "attr" if run.attr else "data"
            p.extent_map = run.bmbt
            p.unwritten = run.unwritten
            p.shared = run.shared
            if not run.bmbt:
                p.file_offset = (run.file_block << geo.blocklog) + (start - rstart)
        return p


@dataclass(slots=True)
class _Run:
    agno: int
    agbno: int
    count: int
    kind: str
    inode: int | None = None
    attr: bool = False
    bmbt: bool = False
    unwritten: bool = False
    file_block: int = 0
    shared: bool | None = False
    detail: dict | None = None


class _Intervals:
    """Sorted, non-overlapping [start, last] agbno intervals (the refcountbt's shared extents)."""

    def __init__(self, starts, lasts, unreadable):
        self.starts, self.lasts, self.unreadable = starts, lasts, unreadable

    def overlaps(self, first: int, last: int) -> bool | None:
        i = bisect.bisect_right(self.starts, last) - 1
        if i >= 0 and self.lasts[i] >= first:
            return True
        return None if self.unreadable else False


def _with_gaps(agno, runs, lo, hi, gap_kind, gap_detail):
    """Yield runs (sorted by start, possibly overlapping) and a `gap_kind` run for every gap in [lo, hi]."""
    cursor = lo
    for run in runs:
        if run.agbno > cursor:
            gap_end = min(run.agbno - 1, hi)
            if gap_end >= cursor:
                yield _Run(agno, cursor, gap_end - cursor + 1, gap_kind, detail=gap_detail)
        yield run
        cursor = max(cursor, run.agbno + run.count)
    if cursor <= hi:
        yield _Run(agno, cursor, hi - cursor + 1, gap_kind, detail=gap_detail)
