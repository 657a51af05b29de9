"""One owner's part of a query range (a Piece), the owner kinds, and piece arithmetic: the shape every owner
source produces and every consumer (detail, engine, renderer) reads."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from fsdaxctl.errors import Problems
from fsdaxctl.parsers import xfs as f

# Owner kinds: GETFSMAP's owners, spelled as README.md's JSON contract says.
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
OWN_UNKNOWN_DETAIL = {"why": "the rmapbt record's owner is XFS_RMAP_OWN_UNKNOWN: the filesystem itself does not "
                             "know it"}
# Used space no owner record claims and the bnobt does not call free: its detail's "why" starts so. Where an
# unfinished intent in the log gives it an owner or frees it at mount, the replay's operation fills it
# (UNCLAIMED_YET).
UNCLAIMED_WHY = "no owner in "
UNCLAIMED_YET = {"why": UNCLAIMED_WHY + "the rmapbt yet: an unfinished intent in the log settles it at mount"}


def unclaimed(p) -> bool:
    return p.owner == UNKNOWN and bool(p.detail) and p.detail.get("why", "").startswith(UNCLAIMED_WHY)


# The detail of used space whose owner is unknown because there is no rmapbt. One shared object: its identity
# marks these gaps, which the kernel reports joined across AG boundaries.
NO_RMAP_GAP = {"reason": "no rmapbt"}


class Piece(NamedTuple):
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
    paths: tuple = ()
    detail: dict | None = None
    impact: str | None = None  # set by fsdaxctl.xfs.detail: none, file-data, file-map, directory, ...
    device: str | None = None  # which of the filesystem's devices: data, log, rt (None: data, the only one)

    def sort_key(self):
        return (self.offset, -1 if self.inode is None else self.inode,
                self.fork or "", self.extent_map, self.file_offset or 0)

    def to_dict(self) -> dict:
        """The JSON piece of README.md's contract ("JSON")."""
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
        if self.impact:
            d["impact"] = self.impact
        if self.device:
            d["device"] = self.device
        return d



class OwnerSource(Protocol):
    """What every owner source provides (the on-disk OwnerMap, the live kernel's LiveOwnerMap, a log device's
    map): pieces of any byte range of its device in device order, every answer through AnswerCheck."""

    source: str  # "rmapbt", "walk", "bnobt", "kernel", ...
    problems: Problems  # what could not be read, one line each, once (fsdaxctl.errors)

    def prepare(self, ranges) -> None:
        """Get ready for these (offset, length) ranges (the metadata walk reads what they need, once)."""

    def pieces(self, offset: int, length: int) -> list[Piece]:
        """Every owner of bytes [offset, offset + length), sorted by offset then inode."""

    def iter_batches(self, offset: int, length: int):
        """The same pieces as lists in device order: a dump streams them."""


def clip(p: Piece, qstart: int, qend: int) -> Piece:
    """p cut to bytes [qstart, qend); a file offset moves with the start."""
    end = p.offset + p.length
    if p.offset >= qstart and end <= qend:
        return p
    s, e = max(p.offset, qstart), min(end, qend)
    fo = p.file_offset
    return p._replace(offset=s, length=e - s, file_offset=None if fo is None else fo + (s - p.offset))


def query_order(pieces: list[Piece], offset: int) -> list[Piece]:
    """One range's pieces, cut from a longer query's (in device order), in the order the range's own query
    gives: those that start at its start (records begun before it, all clipped there) first, in key order;
    the rest as they came."""
    if len(pieces) < 2:
        return pieces
    head = sorted((p for p in pieces if p.offset == offset), key=Piece.sort_key)
    return head + [p for p in pieces if p.offset != offset]


def as_records(pieces: list[Piece]) -> list[Piece]:
    """The pieces as the kernel's rmap query hands them to its callbacks: one per record, the parts a record
    was cut into where sharing changes joined again (`shared` when any part is, as GETFSMAP flags a record).
    The engine needs this: the kernel computes pgoff/pgcnt once per record, and with blocks smaller than a
    page the pages of two parts do not add up to the pages of the whole."""
    out: list[Piece] = []
    last: dict[tuple, int] = {}  # (inode, fork, unwritten) -> index in out of its latest data piece
    for p in pieces:
        key = (p.inode, p.fork, p.unwritten)
        i = last.get(key)
        if p.owner == FILE and not p.extent_map and i is not None:
            q = out[i]
            if q.offset + q.length == p.offset and q.file_offset + q.length == p.file_offset:
                shared = True if (q.shared or p.shared) else (None if None in (q.shared, p.shared) else False)
                out[i] = q._replace(length=q.length + p.length, shared=shared)
                continue
        if p.owner == FILE and not p.extent_map:
            last[key] = len(out)
        out.append(p)
    return out


def describe(p: Piece) -> str:
    """One owner claim in words, for conflict details: "inode 131 data fork at file offset 8192"."""
    if p.owner != FILE:
        return p.owner
    if p.extent_map:
        return f"inode {p.inode} {p.fork} fork extent map (bmbt) block"
    return f"inode {p.inode} {p.fork} fork at file offset {p.file_offset}"


def _same_claim(a: Piece, b: Piece) -> bool:
    """The same owner mapping the same bytes: same owner, inode, fork, kind and file offset for each byte (one
    file may map a block at two file offsets: those are two claims)."""
    if (a.owner, a.inode, a.fork, a.extent_map) != (b.owner, b.inode, b.fork, b.extent_map):
        return False
    if a.file_offset is None or b.file_offset is None:
        return a.file_offset == b.file_offset
    return a.file_offset - a.offset == b.file_offset - b.offset


class AnswerCheck:
    """The invariants of every answer, checked in one place as pieces stream out: positive lengths, inside
    the query, in device order, every byte covered, no owner claiming a byte twice (the same mapping; one
    file may map a block at two offsets). A breach is a bug: the offending bytes come out `unknown` with an
    `internal error` (exit bit 1) and `note` is told, rather than an impossible map being printed."""

    def __init__(self, qstart: int, qend: int, note):
        self.qstart, self.qend, self.note = qstart, qend, note
        self.last = qstart  # offset of the previous piece
        self.covered = qstart  # every byte before this is covered
        self.open: list[Piece] = []  # pieces a later piece may still overlap (they end after `last`)

    def _bug(self, p: Piece, what: str) -> Piece:
        msg = f"internal error (a bug in fsdaxctl, please report it): {what} at bytes {p.offset}+{p.length}"
        self.note(msg)
        return Piece(p.offset, p.length, UNKNOWN, p.agno, detail={"error": msg})

    def batch(self, pieces: list[Piece]) -> list[Piece]:
        out = []
        qend = self.qend
        for p in pieces:
            end = p.offset + p.length
            # The common case, checked first: the piece starts where coverage ends. Nothing before it can
            # overlap it or anything after it, so only it stays open.
            if p.offset == self.covered and p.length > 0 and end <= qend:
                self.open = [p]
                self.last, self.covered = p.offset, end
                out.append(p)
                continue
            out += self._check(p, end)
        return out

    def _check(self, p: Piece, end: int) -> list[Piece]:
        """The rest: clipping, order, gaps, and a piece overlapping open ones (reflinked data, conflicts)."""
        out = []
        if p.length <= 0 or p.offset < self.qstart or end > self.qend:
            s, e = max(p.offset, self.qstart), min(end, self.qend)
            self._bug(p, "a piece of no length or outside the query")
            if e <= s:
                return out
            p, end = clip(p, s, e), e
        if p.offset < self.last:
            p = self._bug(p, "a piece out of device order")
        if p.offset > self.covered:
            out.append(self._bug(Piece(self.covered, p.offset - self.covered, UNKNOWN, p.agno),
                                 "bytes no piece covers"))
        self.open = [h for h in self.open if h.offset + h.length > p.offset]
        if p.owner not in (UNKNOWN, FREE) and any(_same_claim(h, p) for h in self.open):
            p = self._bug(p, "an owner claiming the same bytes twice")
        self.open.append(p)
        self.last, self.covered = p.offset, max(self.covered, end)
        out.append(p)
        return out

    def finish(self) -> list[Piece]:
        if self.covered < self.qend:
            return [self._bug(Piece(self.covered, self.qend - self.covered, UNKNOWN), "bytes no piece covers")]
        return []


def device_batches(offset: int, length: int, size: int, device: str, inside, note) -> list[list[Piece]]:
    """The batches of a device whose owners fit in one list: `inside(lo, hi)` the pieces of [lo, hi) within
    its `size` bytes, `outside-filesystem` past them; checked by AnswerCheck (`note` hears what it finds)."""
    check = AnswerCheck(offset, offset + length, note)
    end = offset + length
    out = inside(offset, min(end, size)) if offset < size else []
    if end > size:
        start = max(offset, size)
        out.append(Piece(start, end - start, OUTSIDE, device=device))
    batches = [check.batch(out)]
    tail = check.finish()
    return batches + [tail] if tail else batches


def minus(pieces, holes, cut) -> list:
    """The pieces ((offset, length, ...) tuples) with the sorted, disjoint (start, end) `holes` taken out;
    `cut(piece, start, end)` makes the part of a piece that is left."""
    out = []
    for p in pieces:
        cur, end = p[0], p[0] + p[1]
        for x, y in holes:
            if y <= cur or x >= end:
                continue
            if x > cur:
                out.append(cut(p, cur, x))
            cur = max(cur, y)
        if cur < end:
            out.append(cut(p, cur, end))
    return out
