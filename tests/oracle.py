"""Expected pieces, from the kernel's GETFSMAP records alone (never from fsdaxctl's code).

The kernel reports whole records, not clipped to the query; clipping is plain arithmetic done here. `shared`
is exact: a data-fork record is cut where its blocks go from mapped once to mapped by two or more data-fork
records in the kernel's full map and back, so `shared` holds for every byte of a piece or for none. The
kernel's own SHARED flag is per whole record (some block of it is shared); it is checked for consistency.
"""

from __future__ import annotations

import bisect

from tests import kernel as K


def rec_of(d) -> K.FsmapRec:
    return d if isinstance(d, K.FsmapRec) else K.FsmapRec(**d)


class KernelMap:
    def __init__(self, records, blocksize: int, fs_size: int, mapped: dict | None = None):
        self.recs = sorted((rec_of(r) for r in records), key=lambda r: (r.physical, r.owner, r.offset))
        self.starts = [r.physical for r in self.recs]
        self.maxlen = max((r.length for r in self.recs), default=0)
        self.blocksize = blocksize
        self.fs_size = fs_size
        # Reference counts per block from data-fork mappings (what the refcountbt records).
        if mapped is not None:  # a partial (keyed) answer: take block sharing from the full map
            self.mapped = mapped
            return
        self.mapped: dict[int, int] = {}
        for r in self.recs:
            if self.is_data(r):
                for b in range(r.physical // blocksize, (r.physical + r.length) // blocksize):
                    self.mapped[b] = self.mapped.get(b, 0) + 1
        for r in self.recs:
            if r.flags & K.FMR_OF_SHARED:
                assert self.is_data(r) and any(
                    self.mapped[b] >= 2 for b in range(r.physical // blocksize, (r.physical + r.length) // blocksize)
                ), f"kernel SHARED flag on a record with no block mapped twice: {r}"

    @staticmethod
    def is_data(r) -> bool:
        return not (r.flags & (K.FMR_OF_SPECIAL_OWNER | K.FMR_OF_ATTR_FORK | K.FMR_OF_EXTENT_MAP)) \
            and K.owner_name(r) == "file"

    def covered_end(self) -> int:
        return max((r.physical + r.length for r in self.recs), default=0)

    def pieces(self, start: int, length: int) -> list[tuple]:
        end = start + length
        out = []
        i = bisect.bisect_left(self.starts, start - self.maxlen)
        for r in self.recs[i:]:
            if r.physical >= end:
                break
            lo, hi = max(start, r.physical), min(end, r.physical + r.length)
            if lo >= hi:
                continue
            out += self.split(r, lo, hi)
        if end > self.fs_size:
            lo = max(start, self.fs_size)
            out.append((lo, end - lo, "outside-filesystem", None, None, None, False, False, False))
        return sorted(out, key=sort_key)

    def split(self, r, lo: int, hi: int) -> list[tuple]:
        """The record's bytes [lo, hi) as pieces, cut at the block boundaries where sharing changes."""
        if not self.is_data(r):
            return [self.piece(r, lo, hi)]
        bs = self.blocksize
        cuts = [lo]
        for b in range(lo // bs + 1, (hi - 1) // bs + 1):
            if (self.mapped.get(b, 0) >= 2) != (self.mapped.get(b - 1, 0) >= 2):
                cuts.append(b * bs)
        cuts.append(hi)
        return [self.piece(r, a, z) for a, z in zip(cuts, cuts[1:])]

    def piece(self, r, lo, hi) -> tuple:
        owner = K.owner_name(r)
        if owner != "file":
            return (lo, hi - lo, owner, None, None, None, False, False, False)
        extent_map = bool(r.flags & K.FMR_OF_EXTENT_MAP)
        shared = self.is_data(r) and any(self.mapped.get(b, 0) >= 2
                                         for b in range(lo // self.blocksize, (hi - 1) // self.blocksize + 1))
        return (lo, hi - lo, "file", r.owner, "attr" if r.flags & K.FMR_OF_ATTR_FORK else "data",
                None if extent_map else r.offset + (lo - r.physical), extent_map,
                bool(r.flags & K.FMR_OF_PREALLOC), shared)


def sort_key(t):
    return (t[0], -1 if t[3] is None else t[3], t[4] or "", t[6], t[5] or 0)


def ours(pieces) -> list[tuple]:
    """fsdaxctl's pieces (JSON dicts or Piece objects) as the same tuples."""
    out = []
    for p in pieces:
        d = p if isinstance(p, dict) else p.to_dict()
        if d["owner"] == "file":
            out.append((d["offset"], d["length"], "file", d["inode"], d["fork"], d.get("file_offset"),
                        d["extent_map"], d["unwritten"], d["shared"]))
        else:
            out.append((d["offset"], d["length"], d["owner"], None, None, None, False, False, False))
    return sorted(out, key=sort_key)


def overlaps(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where two lists of [start, end) spans meet (each list may overlap itself)."""
    out, j = [], 0
    b = sorted(b)
    for s, e in sorted(a):
        while j < len(b) and b[j][1] <= s:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            out.append((max(s, b[k][0]), min(e, b[k][1])))
            k += 1
    return out
