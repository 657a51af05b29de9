"""The no-rmapbt metadata walk with numpy: whole inode chunks and bmbt leaves decoded as arrays.

Same records, same problems as the per-record walk (fsdaxctl.xfs.walk.MetadataWalk.run_exact), which stays the
reference: an inode is decoded here only when everything about it is as it should be (magic, CRC, di_ino, fork
offset, extent counts that fit the fork, every extent inside its AG, every bmbt block verified); any inode that
fails any check is handed, whole, to the per-record code, which reports it exactly as before.

Memory: records are filtered to the AGs asked right after decoding, and with `windows` to the blocks near the
query: those meeting [A, B], each window widened by MARGIN blocks either side. Why the merged records that meet a
window are then exactly the whole walk's: walk._merge joins a record to the one just before it in sort order
(start, owner, offset) by a test on those two alone. Take a merged record m (from the kept records) that meets
a window and has A < m.start and m.end <= B. Any record sorting between two of its parts starts inside (A, B],
so it was kept: its parts are neighbours in the whole walk too. A record that could join m on the left ends at
m.start > A, one on the right starts at m.end <= B: either was kept, and was not joined. So m is a merged record
of the whole walk; and every merged record of the whole walk that meets the window has a part meeting it, which
was kept. When some merged record meeting a window does not lie inside (A, B], the AG is walked again whole.

Record order: the per-record walk sorts its records by (start, owner, offset) with a stable sort, so records
with equal keys stay in the order they were found. Equal keys with different lengths can only come from one
fork of one inode (the owner is the inode, the offset carries the fork), and here too each fork's extents are
kept in file order, and np.lexsort is stable.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from fsdaxctl.device import Device
from fsdaxctl.errors import FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.inode import XFS_BMAP_MAXLEVELS, XFS_INODES_PER_CHUNK, chunk_slot_states
from fsdaxctl.xfs.verify import crc32c

MARGIN = 1 << 16  # blocks kept either side of a query window (256 MiB at 4 KiB blocks)
READ_BYTES = 4 << 20  # inode bytes decoded per batch
LEAF_BYTES = 8 << 20  # bmbt leaf bytes decoded per batch

_U64 = np.uint64
_STARTOFF_MASK = _U64((1 << 54) - 1)
_COUNT_MASK = _U64((1 << 21) - 1)
_OFF_MASK = _U64(f.XFS_RMAP_OFF_MASK)
_OFF_FLAGS = _U64(((1 << 64) - 1) & ~f.XFS_RMAP_OFF_MASK)
_BMBT_FLAG = _U64(f.XFS_RMAP_OFF_BMBT_BLOCK)
_ATTR_FLAG = _U64(f.XFS_RMAP_OFF_ATTR_FORK)
_CORE = f.XFS_DINODE_CORE_SIZE
_ICRC = f.XFS_DINODE_CRC_OFF
_BCRC = f.XFS_BTREE_LBLOCK_CRC_OFF
_BHDR = f.XFS_BTREE_LBLOCK_CRC_LEN
_NREXT64 = f.XFS_DIFLAG2_NREXT64


def _fields_dtype(decl, names, itemsize: int) -> np.dtype:
    """A numpy dtype reading the named big-endian integer fields of a construct declaration (parsers/xfs.py),
    one row `itemsize` bytes."""
    where, off = {}, 0
    for sc in decl.subcons:
        where[sc.name] = (off, sc.sizeof())
        off += sc.sizeof()
    return np.dtype({"names": list(names), "formats": [f">u{where[n][1]}" for n in names],
                     "offsets": [where[n][0] for n in names], "itemsize": itemsize})


_CORE_FIELDS = ("di_magic", "di_format", "di_big_nextents", "di_nextents", "di_anextents", "di_forkoff",
                "di_aformat", "di_flags", "di_flags2", "di_ino")
_LBLOCK_FIELDS = ("bb_magic", "bb_level", "bb_numrecs", "bb_blkno", "bb_owner")


class _Fallback(Exception):
    """This inode needs the per-record code."""


def _crcs(rows: np.ndarray, crc_off: int) -> np.ndarray:
    """(stored, computed) CRC32c of every row (an inode or a block), the CRC field taken as zero (zeroed in
    place: the callers own `rows`)."""
    n, size = rows.shape
    stored = rows[:, crc_off:crc_off + 4].copy().view("<u4").ravel()
    rows[:, crc_off:crc_off + 4] = 0
    mv = memoryview(rows.reshape(-1))
    total = n * size
    computed = np.fromiter(map(crc32c, map(mv.__getitem__, map(slice, range(0, total, size),
                                                                range(size, total + size, size)))), np.uint32, n)
    return stored, computed


def _ranges(counts: np.ndarray):
    """(i, k) for every k < counts[i], in order: the elements of runs of counts[i] items."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    which = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return which, within


class _Keep:
    """Which decoded records to keep: those in the AGs asked and, for an AG asked only in `windows`, those that
    meet the windows widened by `margin` blocks either side."""

    def __init__(self, geo, agnos, windows, margin):
        self.agcount = geo.agcount
        self.asked = np.zeros(geo.agcount + 1, bool)  # the last entry: extents outside the filesystem
        self.asked[sorted(agnos)] = True
        self.wide: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # agno -> widened windows (A, B), inclusive
        self.asked_windows: dict[int, list[tuple[int, int]]] = {}
        for agno in sorted(agnos):
            ws = (windows or {}).get(agno)
            if not ws:
                continue
            aglen = geo.ag_length(agno)
            asked = _union(ws)
            if asked[0][0] <= 0 and asked[0][1] >= aglen - 1:
                continue  # the whole AG
            self.asked_windows[agno] = asked  # only the merged records meeting these are given back
            wide = _union((lo - margin, hi + margin) for lo, hi in ws)
            if wide[0][0] <= 0 and wide[0][1] >= aglen - 1:
                continue  # everything in the AG is kept
            self.wide[agno] = (np.array([w[0] for w in wide], np.int64), np.array([w[1] for w in wide], np.int64))

    def mask(self, agno: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        keep = self.asked[np.minimum(agno, self.agcount)]
        for a, (lo, hi) in self.wide.items():
            sel = np.flatnonzero(keep & (agno == a))
            if len(sel):
                i = np.searchsorted(hi, start[sel], "left")  # the first window ending at or after the start
                inside = i < len(hi)
                inside[inside] = lo[i[inside]] < end[sel][inside]
                keep[sel] = inside
        return keep


def _union(intervals) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


class _Records:
    """Columns of synthesized records (agno, start, count, owner, offset) as lists of array segments."""

    def __init__(self):
        self.segments: list[tuple] = []

    def add(self, keep: _Keep, agno, start, count, owner, off) -> None:
        m = keep.mask(agno, start, start + count)
        if m.all():
            self.segments.append((agno, start, count, owner, off))
        elif m.any():
            self.segments.append((agno[m], start[m], count[m], owner[m], off[m]))


class _InodeWalk:
    def __init__(self, walk, keep: _Keep):
        self.walk = walk
        self.fs, self.geo = walk.fs, walk.geo
        self.keep = keep
        self.out = _Records()
        self.own_inodes: dict[int, np.ndarray] = {}
        geo = self.geo
        self.aglen = np.array([geo.ag_length(a) for a in range(geo.agcount)], np.int64)
        self.core_dt = _fields_dtype(f.xfs_dinode_core, _CORE_FIELDS, geo.inodesize)
        self.block_dt = _fields_dtype(f.xfs_btree_lblock, _LBLOCK_FIELDS, geo.blocksize)

    # --- extents -> records ---
    def _extents(self, l0, l1):
        """Where decoded extents lie: (bad, agno, agbno, count); `bad`: empty or leaving its AG (the per-record
        code reports those)."""
        geo = self.geo
        fsb = ((l0 & _U64(0x1FF)) << _U64(43)) | (l1 >> _U64(21))
        agno = (fsb >> _U64(geo.agblklog)).astype(np.int64)
        agbno = (fsb & _U64((1 << geo.agblklog) - 1)).astype(np.int64)
        count = (l1 & _COUNT_MASK).astype(np.int64)
        bad = (count == 0) | (agno >= geo.agcount) | (agbno + count > self.aglen[np.minimum(agno, geo.agcount - 1)])
        return bad, agno, agbno, count

    def _keep_extents(self, sel, agno, agbno, count, owner, flag, l0) -> None:
        """The selected extents that the query keeps, as records (the file offset decoded for those only)."""
        sel &= self.keep.mask(agno, agbno, agbno + count)
        if not sel.any():
            return
        l0 = l0[sel]
        off = flag[sel] if isinstance(flag, np.ndarray) else flag
        off = off | ((l0 >> _U64(9)) & _STARTOFF_MASK) | ((l0 >> _U64(63)) << _U64(61))
        owner = owner[0][owner[1][sel]]  # (inode numbers, row of each extent)
        self.out.segments.append((agno[sel], agbno[sel], count[sel], owner, off))

    # --- inode chunks ---
    def run(self) -> None:
        walk, geo, fs = self.walk, self.geo, self.fs
        chunks = list(walk._chunks())
        total = len(chunks)
        isize = geo.inodesize
        if total:
            agno_c = np.fromiter((a for a, _ in chunks), np.int64, total)
            startino_c = np.fromiter((r[0] for _, r in chunks), np.int64, total)
            holemask_c = (np.fromiter((r[1] for _, r in chunks), np.int64, total) if fs.has_sparse_inodes
                          else np.zeros(total, np.int64))
            free_c = np.fromiter((r[4] for _, r in chunks), np.uint64, total)
            slot = np.arange(XFS_INODES_PER_CHUNK)
            present = ((holemask_c[:, None] >> (slot // 4)) & 1) == 0
            in_use = present & (((free_c[:, None] >> slot.astype(np.uint64)) & _U64(1)) == 0)
            # OWN_INODES: the blocks holding the chunks' allocated inodes (a block may hold several chunks).
            blocks = ((startino_c[:, None] + slot) * isize) >> geo.blocklog
            for agno in walk.agnos:
                sel = present & (agno_c == agno)[:, None]
                self.own_inodes[agno] = np.unique(blocks[sel])
            per_batch = max(1, READ_BYTES // (XFS_INODES_PER_CHUNK * isize))
            for b0 in range(0, total, per_batch):
                if walk.progress:
                    walk.progress(b0, total)
                b1 = min(total, b0 + per_batch)
                self._batch(chunks[b0:b1], agno_c[b0:b1], startino_c[b0:b1], in_use[b0:b1])
        if walk.progress:
            walk.progress(total, total)

    def _read(self, agno_c, startino_c, wanted) -> tuple[bytearray, np.ndarray]:
        """The bytes of the wanted chunks (one read per run of adjacent chunks) and which could be read."""
        geo, dev = self.geo, self.fs.dev
        csize = XFS_INODES_PER_CHUNK * geo.inodesize
        n = len(agno_c)
        buf = bytearray(n * csize)
        mv = memoryview(buf)
        ok = np.zeros(n, bool)
        base = ((agno_c * geo.agblocks << geo.blocklog) + startino_c * geo.inodesize).tolist()
        # A plain image or device: straight into the buffer (Device.pread checks nothing more than the length).
        direct = type(dev) is Device and not dev.direct
        i = 0
        while i < n:
            if not wanted[i]:
                i += 1
                continue
            j = i + 1
            while j < n and wanted[j] and base[j] == base[j - 1] + csize:
                j += 1
            size = (j - i) * csize
            if direct and base[i] + size <= dev.size:
                try:
                    if os.preadv(dev.fd, [mv[i * csize:j * csize]], base[i]) == size:
                        ok[i:j] = True
                        i = j
                        continue
                except OSError:
                    pass
            try:
                mv[i * csize:j * csize] = dev.pread(base[i], size, "inode chunks")
                ok[i:j] = True
            except FsdaxError:  # some chunk of the run is cut short: each on its own (the rest as before)
                for k in range(i, j):
                    try:
                        mv[k * csize:(k + 1) * csize] = dev.pread(base[k], csize, "inode chunk")
                        ok[k] = True
                    except FsdaxError:
                        pass
            i = j
        return buf, ok

    def _batch(self, chunks, agno_c, startino_c, in_use) -> None:
        geo = self.geo
        wanted = in_use.any(axis=1)
        buf, read_ok = self._read(agno_c, startino_c, wanted)
        rows = np.flatnonzero((in_use & read_ok[:, None]).ravel())  # in-use inodes, as rows of the batch
        chunk_of = rows // XFS_INODES_PER_CHUNK
        exact = np.zeros(len(rows), bool)
        stored_crc = None
        if len(rows):
            ino = ((agno_c[chunk_of] << (geo.agblklog + geo.inopblog))
                   | (startino_c[chunk_of] + rows % XFS_INODES_PER_CHUNK))
            every = np.frombuffer(buf, np.uint8).reshape(-1, geo.inodesize)
            stored_crc = every[:, _ICRC:_ICRC + 4].copy()  # put back for the per-record code (see below)
            c = self._cores(buf, every, stored_crc, rows, ino)
            exact = c.exact
            self._extent_forks(every, rows, ino, c)
            self._bmbt_forks(every, rows, ino, c)
            self._keep_extents(~exact[c.ext_row], c.e_agno, c.e_agbno, c.e_count, (ino, c.ext_row), c.flag, c.l0)
        self._exact_inodes(chunks, wanted, read_ok, buf, rows, chunk_of, exact, stored_crc)

    def _cores(self, buf, every, stored_crc, rows, ino):
        """The inode cores of a batch checked and decoded as arrays: `exact` marks those the per-record code
        must read (any check failed)."""
        isize = self.geo.inodesize
        every[:, _ICRC:_ICRC + 4] = 0
        mv = memoryview(buf)
        first = (rows * isize).tolist()
        computed = np.fromiter(map(crc32c, map(mv.__getitem__, map(slice, first, (o + isize for o in first)))),
                               np.uint32, len(rows))
        stored = stored_crc.view("<u4").ravel()[rows]
        core = every.view(self.core_dt)[:, 0]
        c = SimpleNamespace()
        c.forkoff = core["di_forkoff"][rows].astype(np.int64)
        c.ok = ((core["di_magic"][rows] == f.XFS_DINODE_MAGIC) & (stored == computed)
                & (core["di_ino"][rows].astype(np.uint64) == ino.astype(np.uint64))
                & (c.forkoff * 8 <= isize - _CORE))
        c.exact = ~c.ok
        c.realtime = (core["di_flags"][rows] & f.XFS_DIFLAG_REALTIME) != 0
        nrext64 = (core["di_flags2"][rows] & _U64(_NREXT64)) != 0
        nextents = core["di_nextents"][rows].astype(np.uint64)
        c.dn = np.where(nrext64, core["di_big_nextents"][rows].astype(np.uint64), nextents)
        c.an = np.where(nrext64, nextents, core["di_anextents"][rows].astype(np.uint64))
        c.fmt, c.afmt = core["di_format"][rows], core["di_aformat"][rows]
        c.has_attr = c.ok & (c.forkoff > 0)
        return c

    def _extent_forks(self, every, rows, ino, c) -> None:
        """Every extent-format fork of the batch, decoded as one array: data forks as a dense (inode, slot) grid
        cut to each inode's extent count, attr forks (few, each at its own offset) gathered."""
        isize = self.geo.inodesize
        dlit = np.where(c.forkoff > 0, c.forkoff * 8, isize - _CORE)
        alit = isize - _CORE - c.forkoff * 8
        dext = c.ok & ~c.realtime & (c.fmt == f.XFS_DINODE_FMT_EXTENTS)
        aext = c.has_attr & (c.afmt == f.XFS_DINODE_FMT_EXTENTS)
        c.exact |= dext & (c.dn > (dlit // 16).astype(np.uint64))
        c.exact |= aext & (c.an > (alit // 16).astype(np.uint64))
        dext &= ~c.exact
        aext &= ~c.exact
        words = every.reshape(-1).view(">u8")
        per_row = isize // 8
        nslots = (isize - _CORE) // 16
        count = np.minimum(c.dn, nslots).astype(np.int64)
        slot_used = np.flatnonzero(dext[:, None] & (np.arange(nslots) < count[:, None]))
        d_row = slot_used // nslots
        d_w = rows[d_row] * per_row + _CORE // 8 + 2 * (slot_used - d_row * nslots)
        a_row = np.flatnonzero(aext)
        which, k = _ranges(c.an[aext])
        a_w = rows[a_row[which]] * per_row + (_CORE + c.forkoff[a_row[which]] * 8) // 8 + 2 * k
        c.ext_row = np.concatenate([d_row, a_row[which]])
        w = np.concatenate([d_w, a_w])
        c.l0 = words[w].astype(np.uint64)
        l1 = words[w + 1].astype(np.uint64)
        c.flag = np.concatenate([np.zeros(len(d_row), np.uint64), np.full(len(a_w), _ATTR_FLAG, np.uint64)])
        bad, c.e_agno, c.e_agbno, c.e_count = self._extents(c.l0, l1)
        c.exact[c.ext_row[bad]] = True

    def _bmbt_forks(self, every, rows, ino, c) -> None:
        """bmbt-format forks: a few inodes with many extents each."""
        isize = self.geo.inodesize
        dbt = c.ok & (c.fmt == f.XFS_DINODE_FMT_BTREE) & ~c.exact  # realtime too: its bmbt blocks are here
        abt = c.has_attr & (c.afmt == f.XFS_DINODE_FMT_BTREE) & ~c.exact
        for r in np.flatnonzero(dbt | abt):
            pending = _Records()
            i_no = int(ino[r])
            raw = every[rows[r]].tobytes()  # the fork: the CRC field is in the core
            try:
                if dbt[r]:
                    end = _CORE + int(c.forkoff[r]) * 8 if c.forkoff[r] else isize
                    self._bmbt(i_no, raw[_CORE:end], _U64(0), pending, not c.realtime[r])
                if abt[r]:
                    self._bmbt(i_no, raw[_CORE + int(c.forkoff[r]) * 8:], _ATTR_FLAG, pending)
            except _Fallback:
                c.exact[r] = True
                continue
            self.out.segments += pending.segments

    def _exact_inodes(self, chunks, wanted, read_ok, buf, rows, chunk_of, exact, stored_crc) -> None:
        """Everything else, one inode at a time, in the walk's order (so problems come in the same order)."""
        walk, isize = self.walk, self.geo.inodesize
        exact_at = {}
        for r in np.flatnonzero(exact):
            exact_at.setdefault(int(chunk_of[r]), []).append(int(rows[r] % XFS_INODES_PER_CHUNK))
        csize = XFS_INODES_PER_CHUNK * isize
        for c, (agno, rec) in enumerate(chunks):
            if not wanted[c]:
                continue
            if not read_ok[c]:
                walk.chunk_inodes(agno, rec[0], chunk_slot_states(self.fs, rec))
            elif c in exact_at:  # the chunk's bytes as read: CRC fields put back
                raw = np.frombuffer(buf, np.uint8, csize, c * csize).reshape(XFS_INODES_PER_CHUNK, isize).copy()
                raw[:, _ICRC:_ICRC + 4] = stored_crc[c * XFS_INODES_PER_CHUNK:(c + 1) * XFS_INODES_PER_CHUNK]
                walk.chunk_inodes(agno, rec[0], chunk_slot_states(self.fs, rec), exact_at[c], raw.tobytes())

    # --- bmbt ---
    def _bmbt(self, ino: int, lit: bytes, flag, out: _Records, extents: bool = True) -> None:
        """A btree-format fork: its extents (unless not `extents`: a realtime file's count rt-device blocks) and
        bmbt blocks into `out`; _Fallback on anything the per-record code would reject (inode._bmbt_walk and
        _bmbt_block make the same checks)."""
        geo = self.geo
        if len(lit) < 4 + 16:
            raise _Fallback
        level, numrecs = int.from_bytes(lit[0:2], "big"), int.from_bytes(lit[2:4], "big")
        maxrecs = (len(lit) - 4) // 16
        if not (1 <= level < XFS_BMAP_MAXLEVELS) or numrecs > maxrecs:
            raise _Fallback
        if numrecs == 0:
            return
        ptrs = np.frombuffer(lit, ">u8", numrecs, 4 + 8 * maxrecs).astype(np.uint64)
        level -= 1
        bs = geo.blocksize
        node_max = (bs - _BHDR) // 16
        while level > 0:
            blocks, hdr = self._blocks(ino, ptrs, level, flag, out)
            n = hdr["bb_numrecs"].astype(np.int64)
            if ((n == 0) | (n > node_max)).any():
                raise _Fallback
            which, k = _ranges(n)
            words = blocks.reshape(-1).view(">u8")
            ptrs = words[which * (bs // 8) + (_BHDR + 8 * node_max) // 8 + k].astype(np.uint64)
            level -= 1
        per = max(1, LEAF_BYTES // bs)
        for i in range(0, len(ptrs), per):
            blocks, hdr = self._blocks(ino, ptrs[i:i + per], 0, flag, out)
            n = hdr["bb_numrecs"].astype(np.int64)
            if (n > node_max).any():
                raise _Fallback
            if not extents:
                continue
            which, k = _ranges(n)
            words = blocks.reshape(-1).view(">u8")
            w = which * (bs // 8) + _BHDR // 8 + 2 * k
            l0 = words[w].astype(np.uint64)
            bad, agno, agbno, count = self._extents(l0, words[w + 1].astype(np.uint64))
            if bad.any():
                raise _Fallback
            out.add(self.keep, agno, agbno, count, np.full(len(agno), ino, np.int64),
                    flag | ((l0 >> _U64(9)) & _STARTOFF_MASK) | ((l0 >> _U64(63)) << _U64(61)))

    def _blocks(self, ino: int, ptrs: np.ndarray, level: int, flag, out: _Records):
        """Read and verify bmbt blocks (one read per run of adjacent blocks); their own records into `out`."""
        geo, dev = self.geo, self.fs.dev
        bs = geo.blocksize
        agno = (ptrs >> _U64(geo.agblklog)).astype(np.int64)
        agbno = (ptrs & _U64((1 << geo.agblklog) - 1)).astype(np.int64)
        if not ((agno < geo.agcount) & (agbno < self.aglen[np.minimum(agno, geo.agcount - 1)])).all():
            raise _Fallback
        byte = (agno * geo.agblocks + agbno) << geo.blocklog
        n = len(ptrs)
        buf = bytearray(n * bs)
        cuts = np.flatnonzero(np.diff(byte) != bs) + 1
        edges = [0, *cuts.tolist(), n]
        starts = byte[edges[:-1]].tolist() if n else []
        for (a, b), pos in zip(zip(edges[:-1], edges[1:]), starts):
            try:
                buf[a * bs:b * bs] = dev.pread(pos, (b - a) * bs, "bmbt blocks")
            except FsdaxError:
                raise _Fallback from None
        blocks = np.frombuffer(buf, np.uint8).reshape(n, bs)
        stored, computed = _crcs(blocks, _BCRC)
        hdr = blocks.view(self.block_dt)[:, 0]
        if not ((hdr["bb_magic"] == f.XFS_BMAP_CRC_MAGIC).all() and (stored == computed).all()
                and (hdr["bb_blkno"].astype(np.int64) == geo.byte_to_daddr(byte)).all()
                and (hdr["bb_owner"].astype(np.uint64) == _U64(ino)).all()
                and (hdr["bb_level"] == level).all()):
            raise _Fallback
        out.add(self.keep, agno, agbno, np.ones(n, np.int64), np.full(n, ino, np.int64),
                np.full(n, flag | _BMBT_FLAG, np.uint64))
        return blocks, hdr


# --- sort and merge -----------------------------------------------------------------------------------------

def _columns(recs: list[tuple]):
    n = len(recs)
    return (np.fromiter((r[0] for r in recs), np.int64, n), np.fromiter((r[1] for r in recs), np.int64, n),
            np.fromiter((r[2] for r in recs), np.int64, n), np.fromiter((r[3] for r in recs), np.uint64, n))


def _merged(start, count, owner, off):
    """walk._merge of the records sorted as the per-record walk sorts them, as columns of runs."""
    order = np.lexsort((off, owner, start))  # stable: equal keys keep the order they were found in
    s, c, o, x = start[order], count[order], owner[order], off[order]
    end = s + c
    if len(s) > 1:
        po, pc, px = o[:-1], c[:-1], x[:-1]
        cx = x[1:]
        join = (o[1:] == po) & (end[:-1] == s[1:]) & (
            (o[1:] < 0)  # special owners, by position
            | (((px & _BMBT_FLAG) != 0) & (cx == px))  # bmbt blocks, by position
            | (((cx & _OFF_FLAGS) == (px & _OFF_FLAGS))  # file blocks whose offsets continue too
               & ((cx & _OFF_MASK) == (px & _OFF_MASK) + pc.astype(np.uint64))))
        first = np.flatnonzero(np.concatenate([[True], ~join]))
    else:
        first = np.arange(len(s))
    last = np.concatenate([first[1:], [len(s)]]) - 1
    return s[first], end[last] - s[first], o[first], x[first]


def _finish(agno, keep: _Keep, parts):
    """The merged records of one AG, and the windows they answer (None: the whole AG); None when a merged
    record near a window reaches the margin (it might continue beyond what was kept)."""
    cols = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.uint64 if i == 3 else np.int64)
            for i in range(4)]
    s, c, o, x = _merged(*cols)
    if agno not in keep.asked_windows:
        return list(zip(s.tolist(), c.tolist(), o.tolist(), x.tolist())), None
    lo_w = np.array([w[0] for w in keep.asked_windows[agno]], np.int64)
    hi_w = np.array([w[1] for w in keep.asked_windows[agno]], np.int64)
    e = s + c
    i = np.searchsorted(hi_w, s, "left")
    hit = i < len(hi_w)
    hit[hit] = lo_w[i[hit]] <= e[hit] - 1
    if agno in keep.wide:  # not all kept: exact when every merged record that meets a window starts after A
        wa, wb = keep.wide[agno]  # and ends by B (the module docstring)
        j = np.searchsorted(wa, s[hit], "left") - 1
        inside = (j >= 0) & (e[hit] <= wb[np.maximum(j, 0)])
        if not inside.all():
            return None
    s, c, o, x = s[hit], c[hit], o[hit], x[hit]
    return list(zip(s.tolist(), c.tolist(), o.tolist(), x.tolist())), keep.asked_windows[agno]


def run(walk) -> dict[int, list[tuple]]:
    keep = _Keep(walk.geo, walk.agnos, walk.windows, MARGIN)
    for agno in sorted(walk.agnos):
        walk._ag_metadata(agno)  # AG headers, btrees, AGFL, CoW staging: tuples, through the per-record code
    inodes = _InodeWalk(walk, keep)
    inodes.run()
    by_ag: dict[int, list] = {a: [] for a in walk.agnos}
    for agno in walk.agnos:  # what the per-record code found first: the AG's own metadata, damaged inodes
        if walk.records[agno]:
            by_ag[agno].append(_columns(walk.records[agno]))
    for seg in inodes.out.segments:
        agno = seg[0]
        for a in np.unique(agno).tolist():
            sel = agno == a
            by_ag[a].append(tuple(col[sel] for col in seg[1:]))
    inodes.out.segments.clear()
    for agno, blocks in inodes.own_inodes.items():
        n = len(blocks)
        by_ag[agno].append((blocks.astype(np.int64), np.ones(n, np.int64), np.full(n, f.XFS_RMAP_OWN_INODES, np.int64),
                            np.zeros(n, np.uint64)))
    out: dict[int, list[tuple]] = {}
    again = set()
    for agno in sorted(walk.agnos):
        done = _finish(agno, keep, by_ag.pop(agno))
        if done is None:
            again.add(agno)
            continue
        out[agno], walk.covered[agno] = done
    if again:  # a merged record reaches the margin: walk those AGs again, whole
        from fsdaxctl.xfs.walk import MetadataWalk

        whole = MetadataWalk(walk.fs, again, None, windows=None, exact=False)
        for agno, recs in run(whole).items():
            out[agno] = recs
            walk.covered[agno] = None
    walk.records = out
    return out
