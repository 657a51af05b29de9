"""The owner map without a reverse-mapping btree: walk the metadata, synthesize rmap records.

Every block's owner is found from the forward structures, as xfs_repair and xfs_db's blockget do: AG headers,
the free-space, inode and refcount btrees, the AGFL, inode chunks (sparse holemasks honoured), every in-use
inode's data and attr forks (extent lists, bmbt records and the bmbt blocks themselves), and the internal log.
The result is one sorted list of records per AG in the rmapbt's own shape and key order
(startblock, blockcount, owner, offset-with-flags), so the query code answers from it unchanged.
Inodes can own blocks in any AG, so every inode is read; AG-local metadata is read only for the AGs asked.

Two implementations give the same records: the per-record code here (exact, the reference, and the fallback for
anything damaged) and fsdaxctl.xfs.walkvec, which decodes whole inode chunks and bmbt leaves as numpy arrays and
hands every inode that fails any check to the per-record code, so problems are reported exactly as here. numpy
is imported only when a walk runs. FSDAXCTL_WALK=exact forces the per-record code.
"""

from __future__ import annotations

import bisect
import operator
import os

from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.inode import (IN_USE, SPARSE_HOLE, XFS_INODES_PER_CHUNK, bmap, chunk_slot_states, parse_inode,
                                 unpack_bmbt_recs)

_U64 = 1 << 64


# Sorting the synthesized records: start, owner, offset; owners compare signed here, so a special owner sorts
# before an inode at the same block, as pieces are ordered (the rmapbt compares them unsigned: sets compared
# against it in verify_rmap do not depend on the order).
_BY_START_OWNER_OFFSET = operator.itemgetter(0, 2, 3)


def rmap_sort_key(rec):
    """The rmapbt's key order: startblock, owner as an unsigned 64-bit number, offset."""
    return (rec[0], rec[2] % _U64, rec[3])


class MetadataWalk:
    """Synthesized rmap records for the AGs in `agnos` (None: all). `problems` lists what could not be read;
    `progress(done, total)` is called as inode chunks are read.

    `windows` ({agno: [(lo, hi), ...]}, agbnos inclusive; None: whole AGs) says which blocks the caller will ask
    about: records are then kept only near them, so memory does not grow with the filesystem. The result holds
    at least every merged record that overlaps a window, each exactly as a whole-AG walk gives it;
    `covered[agno]` lists the windows answered (None: the whole AG). `exact` forces the per-record code."""

    def __init__(self, fs, agnos=None, progress=None, windows=None, exact=None):
        self.fs = fs
        self.geo = fs.geo
        readable = fs.readable_agcount
        self.agnos = set(range(readable)) if agnos is None else {a for a in agnos if a < readable}
        self.progress = progress
        self.windows = windows
        self.exact = os.environ.get("FSDAXCTL_WALK") == "exact" if exact is None else exact
        self.covered: dict[int, list[tuple[int, int]] | None] = {}
        self.problems = Problems()
        if readable < fs.geo.agcount:
            self.problems.append(f"AG {readable} and after lie past the end of the device: not walked")
        self.records: dict[int, list[tuple]] = {a: [] for a in self.agnos}

    def run(self) -> dict[int, list[tuple]]:
        if not self.exact:
            # numpy is imported here only, never at start-up; the walk uses no BLAS, so OpenBLAS need not start a
            # thread per core while it loads (it reads the variable then; children do not inherit it).
            ours = "OPENBLAS_NUM_THREADS" not in os.environ
            if ours:
                os.environ["OPENBLAS_NUM_THREADS"] = "1"
            try:
                from fsdaxctl.xfs import walkvec
            except ImportError:
                walkvec = None
            finally:
                if ours:
                    os.environ.pop("OPENBLAS_NUM_THREADS", None)
            if walkvec is not None:
                return walkvec.run(self)
        return self.run_exact()

    def run_exact(self) -> dict[int, list[tuple]]:
        """The per-record walk: every inode and extent decoded in Python (the reference)."""
        for agno in sorted(self.agnos):
            self._ag_metadata(agno)
        self._inodes()
        for agno, recs in self.records.items():
            self.records[agno] = _merge(sorted(recs, key=_BY_START_OWNER_OFFSET))
            self.covered[agno] = None
        return self.records

    # --- helpers ---
    def _add(self, agno: int, agbno: int, count: int, owner: int, offset: int = 0) -> None:
        recs = self.records.get(agno)
        if recs is not None and count > 0:
            recs.append((agbno, count, owner, offset))

    def _add_fsb(self, fsb: int, count: int, owner: int, offset: int) -> None:
        """A file extent given in segmented fsblocks; one that is empty or leaves its AG is reported."""
        agno, agbno = self.geo.fsb_to_ag(fsb)
        if count == 0 or agno >= self.geo.agcount or agbno + count > self.geo.ag_length(agno):
            self._bad_extent(owner, fsb, count)
        else:
            self._add(agno, agbno, count, owner, offset)

    def _bad_extent(self, ino: int, fsb: int, count: int) -> None:
        self._problem(f"inode {ino}: extent at fsblock {fsb} of {count} blocks is empty or leaves its AG: ignored")

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    # --- per AG ---
    def _ag_metadata(self, agno: int) -> None:
        fs, geo = self.fs, self.geo
        # The AG header sectors (sb, AGF, AGI, AGFL) fill whole blocks: XFS_AGFL_BLOCK + 1 of them.
        header_blocks = (4 * geo.sectsize - 1) // geo.blocksize + 1
        self._add(agno, 0, header_blocks, f.XFS_RMAP_OWN_FS)
        log = fs.internal_log  # None when its superblock fields are impossible: its bytes stay unclaimed
        if log and log[0] == agno:
            self._add(agno, log[1], log[2], f.XFS_RMAP_OWN_LOG)
        ag = btree.Ag(fs, agno)
        try:
            trees = ag.btrees()
        except FsdaxError as e:
            self._problem(e)
            return
        for t in trees:
            errors: list[FsdaxError] = []
            try:
                for agbno in t.blocks(errors):
                    self._add(agno, agbno, 1, t.owner)
            except FsdaxError as e:
                errors.append(e)
            for e in errors:
                self._problem(f"{t.tree.name} of AG {agno} not walked whole: {e}")
        try:
            for agbno in fs.agfl(agno):
                self._add(agno, agbno, 1, f.XFS_RMAP_OWN_AG)
        except FsdaxError as e:
            self._problem(e)
        if fs.has_reflink:  # CoW staging extents live in the refcountbt's CoW domain
            for rec in ag.refcountbt.records(f.XFS_REFC_COWFLAG, 0xFFFFFFFF):
                if type(rec) is btree.Unreadable:
                    self._problem(str(rec.error))
                else:
                    self._add(agno, rec[0] & ~f.XFS_REFC_COWFLAG, rec[1], f.XFS_RMAP_OWN_COW)

    # --- inodes, in every AG: their forks can point anywhere ---
    def _chunks(self):
        fs = self.fs
        for agno in range(fs.readable_agcount):
            try:
                inobt = btree.Ag(fs, agno).inobt
            except FsdaxError as e:
                self._problem(e)
                continue
            for rec in inobt.records(0, 0xFFFFFFFF):
                if type(rec) is btree.Unreadable:
                    self._problem(str(rec.error))
                    continue
                yield agno, rec

    def _inodes(self) -> None:
        geo, fs = self.geo, self.fs
        chunks = list(self._chunks())
        isize = geo.inodesize
        inode_blocks: dict[int, set[int]] = {}  # a block may hold several chunks (64 KiB blocks: 128 inodes)
        for n, (agno, rec) in enumerate(chunks):
            if self.progress:
                self.progress(n, len(chunks))
            startino = rec[0]
            states = chunk_slot_states(fs, rec)
            present = [i for i, st in enumerate(states) if st != SPARSE_HOLE]
            # OWN_INODES: the blocks holding the chunk's allocated inodes.
            inode_blocks.setdefault(agno, set()).update((startino + i) * isize >> geo.blocklog for i in present)
            if not present:
                continue
            self.chunk_inodes(agno, startino, states)
        for agno, blocks in inode_blocks.items():
            for b in blocks:
                self._add(agno, b, 1, f.XFS_RMAP_OWN_INODES)
        if self.progress:
            self.progress(len(chunks), len(chunks))

    def chunk_inodes(self, agno: int, startino: int, states, slots=None, raw=None) -> None:
        """The in-use inodes of one chunk (only `slots` when given), read (unless `raw` holds the chunk's bytes)
        and walked one by one."""
        fs, geo = self.fs, self.geo
        isize = geo.inodesize
        base = geo.ag_to_byte(agno, 0) + startino * isize
        if raw is None:
            try:
                raw = fs.dev.pread(base, XFS_INODES_PER_CHUNK * isize,
                                   f"inode chunk at agino {startino} of AG {agno}")
            except FsdaxError:  # a chunk cut by the end of a truncated image: read what is there, inode by inode
                raw = None
        for i in range(XFS_INODES_PER_CHUNK) if slots is None else slots:
            if states[i] != IN_USE:
                continue
            ino = geo.ag_to_ino(agno, 0) | (startino + i)
            try:
                data = raw[i * isize:(i + 1) * isize] if raw else fs.dev.pread(base + i * isize, isize,
                                                                               f"inode {ino}")
                self._inode_forks(parse_inode(fs, ino, data, geo.byte_to_daddr(base + i * isize)))
            except FsdaxError as e:
                self._problem(e)

    def _inode_forks(self, inode) -> None:
        for which, flag in (("data", 0), ("attr", f.XFS_RMAP_OFF_ATTR_FORK)):
            # A realtime file's data extents count rt-device blocks: only its bmbt blocks are on this device.
            rt = which == "data" and inode.core.di_flags & f.XFS_DIFLAG_REALTIME
            fmt, lit = inode.fork(which)
            if fmt == f.XFS_DINODE_FMT_EXTENTS:
                if not rt:
                    self._extent_list(inode, which, flag, lit)
                continue
            bmbt_blocks: list[int] = []
            for e in bmap(self.fs, inode, which, bmbt_blocks):
                if not rt:
                    self._add_fsb(e.startblock, e.blockcount, inode.ino,
                                  flag | (f.XFS_RMAP_OFF_UNWRITTEN if e.unwritten else 0) | e.startoff)
            for fsb in bmbt_blocks:
                self._add_fsb(fsb, 1, inode.ino, flag | f.XFS_RMAP_OFF_BMBT_BLOCK)


    def _extent_list(self, inode, which: str, flag: int, lit: bytes) -> None:
        """An extent-format fork, decoded inline (the walk's hottest loop): one record per extent."""
        n = inode.nextents if which == "data" else inode.anextents
        if n * 16 > len(lit):
            self._problem(f"inode {inode.ino}: {which} fork extent count {n} larger than the fork")
            n = len(lit) // 16
        geo = self.geo
        agblklog = geo.agblklog
        mask = (1 << agblklog) - 1
        records, ino = self.records, inode.ino
        for startoff, fsb, count, unwritten in unpack_bmbt_recs(lit[:n * 16]):
            agno, agbno = fsb >> agblklog, fsb & mask
            if count == 0 or agno >= geo.agcount or agbno + count > geo.ag_length(agno):
                self._bad_extent(ino, fsb, count)
                continue
            recs = records.get(agno)
            if recs is not None:
                recs.append((agbno, count, ino, flag | startoff | (f.XFS_RMAP_OFF_UNWRITTEN if unwritten else 0)))


def windows_of(geo, ranges) -> dict[int, list[tuple[int, int]]]:
    """agno -> [(lo, hi), ...]: the agbnos (inclusive) that (offset, length) byte ranges reach, per AG, as
    OwnerMap queries them."""
    out: dict[int, list[tuple[int, int]]] = {}
    for off, length in ranges:
        if off >= geo.size or length <= 0:
            continue
        first, lo = geo.byte_to_ag(off)
        last, hi = geo.byte_to_ag(min(off + length, geo.size) - 1)
        for agno in range(first, last + 1):
            out.setdefault(agno, []).append((lo if agno == first else 0,
                                             hi if agno == last else geo.ag_length(agno) - 1))
    return out


def covers(windows, lo: int, hi: int) -> bool:
    """Do `windows` (a walk's `covered` entry: sorted, disjoint (lo, hi) pairs; None is the whole AG) answer
    agbnos lo..hi?"""
    if windows is None:
        return True
    i = bisect.bisect_right(windows, (lo, float("inf"))) - 1
    return i >= 0 and windows[i][0] <= lo and hi <= windows[i][1]


def _merge(recs: list[tuple]) -> list[tuple]:
    """Join adjacent records of one owner, as the rmapbt does when it maps a neighbouring extent:
    special owners and bmbt blocks by position; file data when the file offsets continue too."""
    out: list[tuple] = []
    for rec in recs:
        if out:
            start, count, owner, off = out[-1]
            if owner == rec[2] and start + count == rec[0]:
                flags = off & ~f.XFS_RMAP_OFF_MASK
                if owner < 0 or (flags & f.XFS_RMAP_OFF_BMBT_BLOCK and rec[3] == off):
                    out[-1] = (start, count + rec[1], owner, off)
                    continue
                if rec[3] & ~f.XFS_RMAP_OFF_MASK == flags \
                        and rec[3] & f.XFS_RMAP_OFF_MASK == (off & f.XFS_RMAP_OFF_MASK) + count:
                    out[-1] = (start, count + rec[1], owner, off)
                    continue
        out.append(rec)
    return out


def verify_rmap(fs, agnos=None, progress=None) -> list[str]:
    """Every disagreement between the rmapbt and the owners found by walking the metadata, one line each.
    A damaged rmapbt is a real forensic case: it is what the kernel trusts on a media error."""
    walk = MetadataWalk(fs, agnos, progress)
    synthesized = walk.run()
    out = Problems(walk.problems)
    for agno in sorted(synthesized):
        real = []
        for rec in btree.Ag(fs, agno).rmapbt.records(0, fs.geo.ag_length(agno) - 1):
            if type(rec) is btree.Unreadable:
                out.append(f"AG {agno}: rmapbt unreadable: {rec.error}")
            else:
                real.append(rec)
        real = set(_merge(sorted(real, key=rmap_sort_key)))
        found = set(synthesized[agno])
        for rec in sorted(real - found, key=rmap_sort_key):
            out.append(f"AG {agno}: the rmapbt says {describe_record(rec)}, the metadata does not")
        for rec in sorted(found - real, key=rmap_sort_key):
            out.append(f"AG {agno}: the metadata says {describe_record(rec)}, the rmapbt does not")
    return out


_SPECIAL = {f.XFS_RMAP_OWN_FS: "AG headers", f.XFS_RMAP_OWN_LOG: "log", f.XFS_RMAP_OWN_AG: "AG btrees/AGFL",
            f.XFS_RMAP_OWN_INOBT: "inode btrees", f.XFS_RMAP_OWN_INODES: "inodes",
            f.XFS_RMAP_OWN_REFC: "refcount btree", f.XFS_RMAP_OWN_COW: "CoW staging"}


def describe_record(rec) -> str:
    start, count, owner, off = rec
    span = f"agbno {start}+{count}"
    if owner < 0:
        return f"{span} belongs to {_SPECIAL.get(owner, f'owner {owner}')}"
    fork = "attr" if off & f.XFS_RMAP_OFF_ATTR_FORK else "data"
    if off & f.XFS_RMAP_OFF_BMBT_BLOCK:
        return f"{span} is a {fork} fork bmbt block of inode {owner}"
    state = " (unwritten)" if off & f.XFS_RMAP_OFF_UNWRITTEN else ""
    return f"{span} maps inode {owner} {fork} block {off & f.XFS_RMAP_OFF_MASK}{state}"
