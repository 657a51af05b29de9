"""The realtime device's owners.

A classic realtime device (no metadata directory: one rt bitmap, no rt groups, no rt rmap btree) holds only
the data of realtime files. Its owners are found as xfs_repair and xfs_db's blockget find them: every inode's
data fork is walked, and a realtime inode's extents count realtime blocks (byte = rtblock << blocklog); free
space is the rt bitmap (inode sb_rbmino: one bit per realtime extent of sb_rextsize blocks, set = free, in
32-bit words of the writing host's byte order: little-endian, as every Linux XFS the kernel supports on x86
and arm64 writes it). Bytes the bitmap calls used that no file maps are `unknown`; a file extent the bitmap
calls free is a conflict, `unknown` with both claims. The kernel's own GETFSMAP of such a device knows less:
free space and `unknown`.

Realtime groups (metadir, 6.13) and zoned devices (6.15), whose rt rmap btrees name owners exactly, are not
mapped yet: a one-line error says so, never a guess.
"""

from __future__ import annotations

import bisect

from fsdaxctl.errors import FsdaxError, Problems, UnsupportedError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.piece import FILE, FREE, UNKNOWN, Piece, device_batches

RT = "rt"


def rt_owner_map(fs, progress=None):
    from fsdaxctl.xfs.devices import device_file
    from fsdaxctl.xfs.metadir import has_metadir

    device_file(fs, RT)  # a one-line error unless --rtdev was given
    if has_metadir(fs):
        raise UnsupportedError("the owners of a realtime device with realtime groups (rt bitmap and rt rmap btree "
                               "per group) are not mapped by fsdaxctl yet", structure="realtime device")
    return RtOwnerMap(fs, progress)


class RtOwnerMap:
    """Owners on a classic realtime device; the OwnerSource protocol (fsdaxctl.xfs.piece)."""

    device = RT
    source = "walk"

    def __init__(self, fs, progress=None):
        self.fs = fs
        self.geo = fs.geo
        self.progress = progress
        self.problems = Problems()
        self.size = fs.sb.sb_rblocks << fs.geo.blocklog
        self._files: list[tuple] | None = None  # (start byte, end byte, inode, file offset, unwritten), sorted
        self._free: list[tuple[int, int]] | None = None  # free byte runs from the bitmap, sorted
        self._free_starts: list[int] = []

    def prepare(self, ranges) -> None:
        if self._files is None:
            self._files = _realtime_extents(self.fs, self.problems, self.progress)
            self._free = _bitmap_free(self.fs, self.problems)
            self._free_starts = [s for s, _ in self._free] if self._free is not None else []

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def iter_batches(self, offset: int, length: int):
        self.prepare(None)
        return iter(device_batches(offset, length, self.size, RT, self._owned, self.problems.append))

    # --- one query ---
    def _owned(self, lo: int, hi: int) -> list[Piece]:
        """Pieces of [lo, hi): file extents, and between them what the bitmap says."""
        files = self._files
        i = max(0, bisect.bisect_right([r[0] for r in files], lo) - 1) if files else 0
        out, cursor = [], lo
        while i < len(files) and files[i][0] < hi:
            s, e, ino, foff, unwritten = files[i]
            i += 1
            if e <= lo:
                continue
            s2, e2 = max(s, cursor), min(e, hi)
            if s2 > cursor:
                out += self._gap(cursor, s2)
            if e2 > s2:
                out += self._file(s, s2, e2, ino, foff, unwritten)
                cursor = e2
        if cursor < hi:
            out += self._gap(cursor, hi)
        return out

    def _file(self, s: int, s2: int, e2: int, ino: int, foff: int, unwritten: bool) -> list[Piece]:
        piece = Piece(s2, e2 - s2, FILE, None, ino, "data", foff + (s2 - s), False, unwritten, False, device=RT)
        claimed = self._free_parts(s2, e2)
        if not claimed:
            return [piece]
        out, cur = [], s2
        for a, b in claimed:  # the bitmap calls part of a file's extent free: two claims, neither trusted
            if a > cur:
                out.append(_cut(piece, cur, a))
            out.append(Piece(a, b - a, UNKNOWN, None, device=RT, detail={
                "error": f"conflict: inode {ino} maps these realtime blocks, the rt bitmap calls them free"}))
            cur = b
        if cur < e2:
            out.append(_cut(piece, cur, e2))
        self.problems.append(f"realtime bytes {s2}..{e2 - 1}: inode {ino} maps blocks the rt bitmap calls free")
        return out

    def _gap(self, a: int, b: int) -> list[Piece]:
        """Bytes no file maps: free where the bitmap says so, else used by nobody known."""
        if self._free is None:
            return [Piece(a, b - a, UNKNOWN, None, device=RT, detail={"error": "the rt bitmap could not be read"})]
        out, cur = [], a
        for fa, fb in self._free_parts(a, b):
            if fa > cur:
                out.append(_unclaimed(cur, fa))
            out.append(Piece(fa, fb - fa, FREE, None, device=RT))
            cur = fb
        if cur < b:
            out.append(_unclaimed(cur, b))
        return out

    def _free_parts(self, a: int, b: int) -> list[tuple[int, int]]:
        if not self._free:
            return []
        j = max(0, bisect.bisect_right(self._free_starts, a) - 1)
        out = []
        while j < len(self._free) and self._free[j][0] < b:
            s, e = self._free[j]
            if e > a:
                out.append((max(s, a), min(e, b)))
            j += 1
        return out


def _cut(p: Piece, a: int, b: int) -> Piece:
    return p._replace(offset=a, length=b - a, file_offset=p.file_offset + (a - p.offset))


def _unclaimed(a: int, b: int) -> Piece:
    return Piece(a, b - a, UNKNOWN, None, device=RT,
                 detail={"error": "used in the rt bitmap, but no realtime file maps these blocks"})


def _realtime_extents(fs, problems: Problems, progress=None) -> list[tuple]:
    """(start byte, end byte, inode, file offset, unwritten) of every realtime file's data extent, sorted: every
    inode chunk of every AG is read (the inobt gives them) and every realtime inode's data fork decoded."""
    from fsdaxctl.xfs import btree
    from fsdaxctl.xfs.inode import IN_USE, bmap, chunk_slot_states, read_inode

    geo, bl, out = fs.geo, fs.geo.blocklog, []
    for agno in range(fs.readable_agcount):
        if progress:
            progress(agno, fs.readable_agcount)
        try:
            recs = list(btree.Ag(fs, agno).inobt.records(0, 0xFFFFFFFF))
        except FsdaxError as e:
            problems.append(f"realtime files in AG {agno} not found: {e}", e)
            continue
        for rec in recs:
            if type(rec) is btree.Unreadable:
                problems.append(f"realtime files in part of AG {agno} not found: {rec.error}", rec.error)
                continue
            for slot, state in enumerate(chunk_slot_states(fs, rec)):
                if state != IN_USE:
                    continue
                agino = rec[0] + slot
                ino = geo.ag_to_ino(agno, agino >> geo.inopblog, agino & ((1 << geo.inopblog) - 1))
                try:
                    inode = read_inode(fs, ino)
                    if not inode.core.di_flags & f.XFS_DIFLAG_REALTIME:
                        continue
                    extents = bmap(fs, inode, "data")
                except FsdaxError as e:
                    problems.append(f"inode {ino}: its realtime extents (if any) not read: {e}", e, ino=ino)
                    continue
                out += [(x.startblock << bl, (x.startblock + x.blockcount) << bl, ino, x.startoff << bl,
                         x.unwritten) for x in extents if x.blockcount]
    if progress:
        progress(fs.readable_agcount, fs.readable_agcount)
    return sorted(out)


def _bitmap_free(fs, problems: Problems) -> list[tuple[int, int]] | None:
    """Free byte runs of the realtime device from the classic rt bitmap, or None if it cannot be read."""
    from fsdaxctl.xfs.inode import bmap, read_inode

    sb, geo = fs.sb, fs.geo
    try:
        inode = read_inode(fs, sb.sb_rbmino)
        data = bytearray(sb.sb_rbmblocks << geo.blocklog)
        for x in bmap(fs, inode, "data"):
            if x.startoff >= sb.sb_rbmblocks:
                continue
            n = min(x.blockcount, sb.sb_rbmblocks - x.startoff)
            agno, agbno = geo.fsb_to_ag(x.startblock)
            data[x.startoff << geo.blocklog:(x.startoff + n) << geo.blocklog] = fs.read_fs_blocks(
                agno, agbno, n, f"rt bitmap block {x.startoff}")
    except FsdaxError as e:
        problems.append(f"the rt bitmap (inode {sb.sb_rbmino}) cannot be read: {e}", e)
        return None
    import numpy as np  # only here: the classic rt bitmap can hold millions of bits

    # Little-endian 32-bit words, bit 0 first: one little-endian bit string, one bit per realtime extent.
    bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8), bitorder="little")[:sb.sb_rextents].astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], bits, [0]))))  # where free runs start and end
    unit = sb.sb_rextsize << geo.blocklog
    return [(int(a) * unit, int(b) * unit) for a, b in zip(edges[::2], edges[1::2])]
