"""The realtime device's owners.

A classic realtime device (no metadata directory: one rt bitmap, no rt groups, no rt rmap btree) holds only
the data of realtime files. Its owners are found as xfs_repair and xfs_db's blockget find them: every inode's
data fork is walked, and a realtime inode's extents count realtime blocks (byte = rtblock << blocklog). The
kernel's own GETFSMAP of such a device knows less: free space and `unknown`.

A realtime device with realtime groups (metadir, Linux 6.13+) is cut into sb_rgcount groups of sb_rgextents
extents; each group has, in the metadata directory, an rmap btree (/rtgroups/N.rmap: who owns what, as the
data device's rmapbt, in blocks of the group), a refcount btree (/rtgroups/N.refcount: shared blocks and CoW
staging) and a bitmap (/rtgroups/N.bitmap). Both btrees are rooted in their inodes' data forks (format
META_BTREE) and grow in long-format blocks on the data device. Owners come from the rmap btrees, exactly as the
kernel's GETFSMAP of the rt device reports them. A query reads only what its bytes need: the groups they lie in,
those groups' metadata inodes, the btree blocks whose keys meet the range and the bitmap blocks holding its
extents; a long one (a dump) is answered a window of a group at a time, cut where no piece crosses.

On either kind, free space is the rt bitmap (one bit per realtime extent, set = free; classic words are in the
writing host's byte order, little-endian on every platform Linux XFS is used on; a group's bitmap blocks carry
a 48-byte header and big-endian words). Bytes the bitmap calls used that no record claims are `unknown`; a
record over bytes the bitmap calls free, or two owners of bytes the refcount btree does not call shared, are
`unknown` conflicts listing both claims.

A zoned realtime device (6.15) is a grouped one without bitmaps or reflink: a zone is written from its start,
and GETFSMAP reports the gaps between rmap records as free, so that is the answer there too, with a note that
no second witness confirms it. A zoned filesystem may keep its realtime section inside the data device, from
block sb_rtstart on: the kernel then addresses "the realtime device" as that whole disk (its GETFSMAP of it
starts with the data section, [0, rtstart), as one `static fs metadata` record) and so does this map: realtime
block b is disk byte (rtstart + b) << blocklog.
"""

from __future__ import annotations

import bisect
import struct
from collections import OrderedDict

from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f
from fsdaxctl.ranges import merge_spans
from fsdaxctl.xfs.dir import is_dir, read_dir
from fsdaxctl.xfs.inode import LongBtree, bmap, long_btree_records, read_inode
from fsdaxctl.xfs.piece import FILE, FREE, SPECIAL_OWNERS, UNKNOWN, Piece, device_batches, minus

RT = "rt"
_RTBUF_HDR = 48  # struct xfs_rtbuf_blkinfo: magic, crc, owner, blkno, lsn, uuid
_RTBITMAP_MAGIC = 0x424D505A  # "BMPZ"
_RTRMAP_MAGIC = 0x4D415052  # "MAPR"
_RTREFC_MAGIC = 0x52434E54  # "RCNT"
_UNWRITTEN, _BMBT, _ATTR = f.XFS_RMAP_OFF_UNWRITTEN, f.XFS_RMAP_OFF_BMBT_BLOCK, f.XFS_RMAP_OFF_ATTR_FORK
_UNREADABLE = -(1 << 40)  # a record standing for a group whose rmap btree cannot be read (its reason in Unread)
_TREES = {  # rt rmap keys: low and high (rm_startblock, rm_owner, rm_offset); rt refcount keys: rc_startblock
    "rmap": LongBtree("rtrmapbt", _RTRMAP_MAGIC, 24, 40, lambda raw: list(f.RMAP_REC.iter_unpack(raw)), True,
                      overlapping=True, start="I"),
    "refcount": LongBtree("rtrefcountbt", _RTREFC_MAGIC, 12, 4, lambda raw: list(f.REFCOUNT_REC.iter_unpack(raw)),
                          True, start="I"),
}
_WINDOW_BLOCKS = 1 << 16  # a long query is read and answered this many blocks of a group at a time
_META_KEPT = 3 * 64  # metadata inodes (rmap, refcount, bitmap) of the last groups used
_BITMAP_READ = 16  # bitmap blocks per read


def rt_owner_map(fs, progress=None):
    from fsdaxctl.xfs.devices import device_file

    device_file(fs, RT)  # a one-line error unless --rtdev was given
    return RtOwnerMap(fs, progress)


def has_rtgroups(fs) -> bool:
    return bool(fs.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_METADIR) and fs.sb.sb_rgcount > 0


# --- where realtime blocks are (xfs_rtb_to_daddr) ---------------------------------------------------------
# A realtime block number with groups is segmented: group << sb_rgblklog | block in group. On the device the
# groups follow each other (sb_rgextents * sb_rextsize blocks each), or, with zone gaps (a zone's capacity less
# than its size), each starts at a power-of-two boundary, 1 << sb_rgblklog blocks apart, the rest of it unused.
# An internal realtime section (zoned) starts at block sb_rtstart of the one disk.

def group_blocks(sb, rgno: int | None = None) -> int:
    """Blocks of a realtime group that hold data: sb_rgextents extents, but the last group (rgno given) only
    what is left of sb_rblocks (a device that is not a multiple of the group size)."""
    full = sb.sb_rgextents * sb.sb_rextsize
    if rgno is None or rgno < sb.sb_rgcount - 1:
        return full
    return max(0, min(full, sb.sb_rblocks - (sb.sb_rgcount - 1) * full))


def group_stride(sb) -> int:
    """Blocks from one realtime group's start on the device to the next's."""
    return 1 << sb.sb_rgblklog if sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_ZONE_GAPS else group_blocks(sb)


def byte_to_group(sb, byte: int) -> int:
    """The realtime group whose stretch of the device (its data, and its zone gap after it) holds `byte`."""
    return min(sb.sb_rgcount - 1, max(0, ((byte >> sb.sb_blocklog) - sb.sb_rtstart) // group_stride(sb)))


def group_start(sb, rgno: int) -> int:
    """Device block (of the disk the realtime bytes are on) where realtime group rgno starts."""
    return sb.sb_rtstart + rgno * group_stride(sb)


def rtb_to_byte(sb, rtb: int) -> int:
    """A realtime block number's byte on the device its realtime bytes are on (linear on a classic device)."""
    if not (sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_METADIR and sb.sb_rgcount):
        return rtb << sb.sb_blocklog
    rgno, rgbno = rtb >> sb.sb_rgblklog, rtb & ((1 << sb.sb_rgblklog) - 1)
    return (group_start(sb, rgno) + rgbno) << sb.sb_blocklog


def rt_device_end(sb) -> int:
    """Byte where the realtime section ends on its device (past the last group's data)."""
    if not (sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_METADIR and sb.sb_rgcount):
        return (sb.sb_rtstart + sb.sb_rblocks) << sb.sb_blocklog
    return (group_start(sb, sb.sb_rgcount - 1) + group_blocks(sb, sb.sb_rgcount - 1)) << sb.sb_blocklog


class RtOwnerMap:
    """Owners on the realtime device; the OwnerSource protocol (fsdaxctl.xfs.piece).

    Queries are answered from a working set (records, shared runs, free runs, lost spans): on a classic device
    the whole device's, made once; with realtime groups that of the part of one group being answered, read
    for it (the group's metadata inodes, the btree blocks and bitmap blocks covering it) and replaced by the
    next: memory stays bounded however large the device is."""

    device = RT

    def __init__(self, fs, progress=None):
        self.fs = fs
        self.geo = fs.geo
        self.progress = progress
        self.grouped = has_rtgroups(fs)
        self.zoned = bool(fs.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_ZONED)
        # Zoned: no bitmap, so free space has one witness only (the gaps between rmap records), said on it.
        self._free_detail = {"note": "zoned: no rmap record claims these blocks (no bitmap to confirm it)"} \
            if self.zoned else None
        self.source = "rtrmapbt" if self.grouped else "walk"
        self.problems = Problems()
        # Internal realtime section (zoned, sb_rtstart): rt bytes are the disk's, the data section before them.
        self.origin = fs.sb.sb_rtstart << fs.geo.blocklog
        self.size = rt_device_end(fs.sb)
        self._recs: list[tuple] | None = None  # (start, end, owner, file offset, rm_offset flags), by start
        self._starts: list[int] = []
        self._longest = 0
        self._shared: list[tuple[int, int]] = []  # byte runs the refcount btrees count twice or more
        self._shared_starts: list[int] = []
        self._free: list[tuple[int, int]] | None = None  # free byte runs from the bitmap(s); None: unreadable
        self._free_starts: list[int] = []
        self._unread: list[tuple[int, int, str]] = []  # (start, end, why) of groups whose rmap or bitmap is lost
        self._names: dict[str, int] | None = None  # the /rtgroups directory: name -> inode
        self._meta: OrderedDict = OrderedDict()  # (rgno, kind) -> its inode (bitmap: extents), or its error

    def prepare(self, ranges) -> None:
        """Classic: every inode walked and the bitmap read, once. Groups: nothing, each query reads its own."""
        if self.grouped or self._recs is not None:
            return
        recs, free = _realtime_extents(self.fs, self.problems, self.progress), _bitmap_free(self.fs, self.problems)
        self._use(recs, [], free, [])

    def _use(self, recs, shared, free, unread) -> None:
        """Answer from these records, shared runs (merged), free runs (sorted, disjoint) and lost spans."""
        self._recs = sorted(recs)
        self._starts = [r[0] for r in self._recs]
        self._longest = max((r[1] - r[0] for r in self._recs), default=0)
        self._shared, self._shared_starts = shared, [s for s, _ in shared]
        self._free = free
        self._free_starts = [s for s, _ in free] if free is not None else []
        self._unread = unread

    def pieces(self, offset: int, length: int) -> list[Piece]:
        return [p for batch in self.iter_batches(offset, length) for p in batch]

    def iter_batches(self, offset: int, length: int):
        if not self.grouped:
            self.prepare(None)
            batches = iter(device_batches(offset, length, self.size, RT, self._owned, self.problems.append))
        else:
            batches = self._grouped_batches(offset, length)
        replay = getattr(self.fs, "replay", None)  # a dirty log replayed: what the mount will change here
        if replay is None or not replay.effects:
            return batches
        from fsdaxctl.xfs.logrecover import EffectIndex, effects_on, overlay_pieces

        effects = EffectIndex(effects_on(replay.effects, RT))
        return (overlay_pieces(b, effects, self.geo) for b in batches)

    def _grouped_batches(self, offset: int, length: int):
        """Batches of [offset, offset + length), one per window of `_windows`, each checked; past the device
        `outside-filesystem`."""
        if length <= 0:
            yield []
            return
        end, note = offset + length, self.problems.append
        for lo, hi, out in self._windows(offset, min(end, self.size)):
            yield from device_batches(lo, hi - lo, self.size, RT, lambda a, b, out=out: out, note)
        start = max(offset, self.size)
        if end > start:
            yield from device_batches(start, end - start, self.size, RT, None, note)

    def _windows(self, lo: int, hi: int):
        """(start, end, pieces) of [lo, hi) in device order: the data section before an internal realtime
        section (as the kernel says it), then each realtime group's part."""
        if lo < min(hi, self.origin):
            a = min(hi, self.origin)
            yield lo, a, [Piece(lo, a - lo, "static-fs-metadata", None, device=RT, detail={
                "note": "the data section, before the realtime section (rtstart): its owners are on the data map"})]
            lo = a
        sb, bl = self.fs.sb, self.geo.blocklog
        while lo < hi:
            rgno = byte_to_group(sb, lo)
            end = hi if rgno == sb.sb_rgcount - 1 else min(hi, group_start(sb, rgno + 1) << bl)
            yield from self._group_windows(rgno, lo, end)
            lo = end

    def _group_windows(self, rgno: int, lo: int, hi: int):
        """(start, end, pieces) of bytes [lo, hi) of group rgno: at most _WINDOW_BLOCKS blocks read at a time,
        each window cut at the last offset no piece crosses (so the pieces are those one query of the whole
        part gives), a window without one doubled."""
        step = _WINDOW_BLOCKS << self.geo.blocklog
        while lo < hi:
            t = min(hi, lo + step)
            while True:
                t = self._load(rgno, lo, t, hi)
                out, bad = self._answer(lo, t)
                x = t if t == hi else _seam(out, lo)
                if x is not None:
                    break
                t = min(hi, lo + 2 * (t - lo))
            self._report([c for c in bad if c[1] <= x])
            yield lo, x, [p for p in out if p.offset < x]
            lo = x

    # --- one query ---
    def _owned(self, lo: int, hi: int) -> list[Piece]:
        out, bad = self._answer(lo, hi)
        self._report(bad)
        return out

    def _answer(self, lo: int, hi: int) -> tuple[list[Piece], list]:
        """(pieces of [lo, hi): every record's part, between them what the bitmap says, conflicts unknown;
        the conflicting spans) from the working set."""
        first = bisect.bisect_left(self._starts, lo - self._longest + 1)
        last = bisect.bisect_left(self._starts, hi)
        recs = [r for r in self._recs[first:last] if r[1] > lo]
        out, spans = [], []
        for s, e, owner, foff, flags in recs:
            a, b = max(s, lo), min(e, hi)
            spans.append((a, b, owner))
            out += self._record(s, a, b, owner, foff, flags)
        covered = merge_spans([(a, b) for a, b, _ in spans])
        cur = lo
        for a, b in covered:
            if a > cur:
                out += self._gap(cur, a)
            cur = b
        if cur < hi:
            out += self._gap(cur, hi)
        bad = self._conflicts(spans)
        if bad:
            out = _replace(out, bad)
        out.sort(key=Piece.sort_key)
        return out, bad

    def _report(self, bad) -> None:
        for x, y, why in bad:
            self.problems.append(f"realtime bytes {x}..{y - 1}: conflict: {why}")

    # --- realtime groups: what one window reads ---
    def _load(self, rgno: int, lo: int, t: int, hi: int) -> int:
        """Make the working set group rgno's for bytes [lo, t) of it: its btrees queried over those blocks,
        the bitmap blocks covering them read. Returns t, or hi when its rmap btree cannot be read (the rest of
        the group's part is then one unknown piece)."""
        sb, bl = self.fs.sb, self.geo.blocklog
        base = group_start(sb, rgno) << bl
        data_end = base + (group_blocks(sb, rgno) << bl)
        a, b = max(lo, base), min(t, data_end)
        if a >= b:  # a zone gap: no block there
            self._use([], [], [], [])
            return t
        span, lost = ((a - base) >> bl, (b - 1 - base) >> bl), []
        got = self._query(rgno, "rmap", span, (base, data_end), lost)
        if got is None:
            self._use([(base, data_end, _UNREADABLE, 0, 0)], [], [], lost)
            return hi
        recs = [(base + (s << bl), base + ((s + n) << bl), owner, (off & f.XFS_RMAP_OFF_MASK) << bl,
                 off & (_UNWRITTEN | _BMBT | _ATTR)) for s, n, owner, off in got]
        shared = []
        if self.fs.has_reflink:
            got = self._query(rgno, "refcount", span, (base, data_end), lost) or []
            shared = [(base + (s << bl), base + ((s + n) << bl)) for s, n, c in got
                      if c >= 2 and not s & f.XFS_REFC_COWFLAG]
        # Zoned: no bitmap: what no rmap record claims is free (one witness, as GETFSMAP says).
        free = _gaps(recs, a, b) if self.zoned else self._bitmap(rgno, base, a, b, lost)
        self._use(recs, merge_spans(shared), free, lost)
        return t

    def _query(self, rgno: int, kind: str, span, group, lost) -> list | None:
        """Records of group rgno's rmap or refcount btree meeting group blocks span; None if it cannot be read
        (said, and the group's bytes `group` lost with why)."""
        try:
            inode = self._inode(rgno, kind)
            return long_btree_records(self.fs, inode, inode.fork("data")[1], _TREES[kind], "data fork", span=span)
        except FsdaxError as e:
            why = f"realtime group {rgno}: its {kind} btree cannot be read: {e}"
            self.problems.append(why, e)
            lost.append((*group, why))
            return None

    def _inode(self, rgno: int, kind: str):
        """Group rgno's metadata inode /rtgroups/N.kind (for the bitmap: its extents), read once; those of the
        last groups used are kept."""
        key = (rgno, kind)
        got = self._meta.pop(key, None)
        if got is None:
            try:
                ino = self._rtgroups().get(f"{rgno}.{kind}")
                if ino is None:
                    raise FsdaxError(f"no /rtgroups/{rgno}.{kind} in the metadata directory")
                got = read_inode(self.fs, ino)
                got = bmap(self.fs, got, "data") if kind == "bitmap" else got
            except FsdaxError as e:
                got = e
        self._meta[key] = got
        if len(self._meta) > _META_KEPT:
            self._meta.popitem(last=False)
        if isinstance(got, FsdaxError):
            raise got.with_traceback(None)
        return got

    def _rtgroups(self) -> dict[str, int]:
        """The metadata directory's /rtgroups entries, name -> inode, read once ({} if they cannot be read)."""
        if self._names is None:
            self._names = {}
            try:
                ino = _dir_entries(self.fs, self.fs.sb.sb_metadirino).get("rtgroups")
                self._names = _dir_entries(self.fs, ino) if ino is not None else {}
            except FsdaxError:
                pass  # every group's inodes are then missing, each said so
        return self._names

    def _bitmap(self, rgno: int, base: int, a: int, b: int, lost) -> list[tuple[int, int]]:
        """Free byte runs of group rgno (from byte `base`) over bytes [a, b) of it, from the bitmap blocks that
        hold their extents' bits; [] with the group's bytes lost (and said) if those cannot be read."""
        sb, geo, problems = self.fs.sb, self.geo, self.problems
        per_block, unit = (geo.blocksize - _RTBUF_HDR) * 8, sb.sb_rextsize << geo.blocklog
        ino, runs = self._rtgroups().get(f"{rgno}.bitmap"), None
        if ino is None:
            problems.append(f"realtime group {rgno}: no bitmap: its free space is unknown")
        else:
            try:
                runs = self._bitmap_runs(rgno, base, (a - base) // unit // per_block,
                                         (b - 1 - base) // unit // per_block)
            except FsdaxError as e:
                problems.append(f"the rt bitmap of group {rgno} (inode {ino}) cannot be read: {e}", e, ino=ino)
                problems.append(f"realtime group {rgno}: no bitmap: its free space is unknown")
        if runs is None:
            lost.append((base, base + (group_blocks(sb, rgno) << geo.blocklog),
                         f"realtime group {rgno}: its bitmap cannot be read: free space there is unknown"))
            return []
        return runs

    def _bitmap_runs(self, rgno: int, base: int, first: int, last: int) -> list[tuple[int, int]] | None:
        """Free byte runs of bitmap blocks first..last of group rgno (each a 48-byte header, then
        (blocksize - 48) * 8 bits, one per extent, in big-endian words); None (said) on a bad magic."""
        sb, geo = self.fs.sb, self.geo
        per_block, unit = (geo.blocksize - _RTBUF_HDR) * 8, sb.sb_rextsize << geo.blocklog
        runs: list[tuple[int, int]] = []
        for i, blk in self._bitmap_blocks(rgno, first, last):
            if struct.unpack_from(">I", blk)[0] != _RTBITMAP_MAGIC:
                self.problems.append(f"realtime group {rgno}: bitmap block {i} has a bad magic: its free space is "
                                     "unknown")
                return None
            got = _free_runs(blk[_RTBUF_HDR:], "big", min(per_block, sb.sb_rgextents - i * per_block),
                             base + i * per_block * unit, unit)
            if runs and got and runs[-1][1] == got[0][0]:  # a run going on from the block before
                runs[-1], got = (runs[-1][0], got[0][1]), got[1:]
            runs += got
        return runs

    def _bitmap_blocks(self, rgno: int, first: int, last: int):
        """(i, bytes) of group rgno's bitmap blocks first..last (an unmapped one reads as zeros), a few blocks
        per read."""
        geo, bl = self.geo, self.geo.blocklog
        extents = self._inode(rgno, "bitmap")
        i = first
        while i <= last:
            x = next((x for x in extents if x.startoff <= i < x.startoff + x.blockcount), None)
            if x is None:
                yield i, bytes(geo.blocksize)
                i += 1
                continue
            n = min(x.startoff + x.blockcount - i, last + 1 - i, _BITMAP_READ)
            agno, agbno = geo.fsb_to_ag(x.startblock + i - x.startoff)
            buf = self.fs.read_fs_blocks(agno, agbno, n, f"rt bitmap of group {rgno} block {i}")
            for k in range(n):
                yield i + k, buf[k << bl:(k + 1) << bl]
            i += n

    def _record(self, s: int, a: int, b: int, owner: int, foff, flags: int) -> list[Piece]:
        if owner == _UNREADABLE:
            return [Piece(a, b - a, UNKNOWN, None, detail={"error": self._why(a)}, device=RT)]
        if owner < 0:
            kind = SPECIAL_OWNERS.get(owner, UNKNOWN)
            detail = None if kind != UNKNOWN else {"error": f"realtime rmap record with owner {owner}"}
            return [Piece(a, b - a, kind, None, detail=detail, device=RT)]
        bmbt = bool(flags & _BMBT)
        p = Piece(a, b - a, FILE, None, owner, "attr" if flags & _ATTR else "data",
                  None if bmbt else foff + (a - s), bmbt, bool(flags & _UNWRITTEN), False, device=RT)
        if bmbt or not self._shared:
            return [p]
        return [_cut(p, x, y)._replace(shared=sh) for x, y, sh in self._split(a, b)]

    def _why(self, at: int) -> str:
        return next((why for s, e, why in self._unread if s <= at < e), "cannot be read")

    def _gap(self, a: int, b: int) -> list[Piece]:
        """Bytes no record claims; a zone gap (past a group's capacity, before the next group) holds no block:
        free, as the kernel's GETFSMAP reports it."""
        sb = self.fs.sb
        if not self.grouped or group_stride(sb) == group_blocks(sb):
            return self._unclaimed_part(a, b)
        out, bl = [], sb.sb_blocklog
        while a < b:
            rgno = byte_to_group(sb, a)
            g0 = group_start(sb, rgno) << bl
            data_end, nxt = g0 + (group_blocks(sb, rgno) << bl), g0 + (group_stride(sb) << bl)
            if a < data_end:
                out += self._unclaimed_part(a, min(b, data_end))
            else:
                out.append(Piece(a, min(b, nxt) - a, FREE, None, device=RT, detail={  # as GETFSMAP says
                    "note": "zone gap: past its realtime group's capacity: no filesystem block is there"}))
            a = min(b, data_end if a < data_end else nxt)
        return out

    def _unclaimed_part(self, a: int, b: int) -> list[Piece]:
        """Bytes no record claims: free where the bitmap says so, else used by nobody known."""
        lost = [(s, e, why) for s, e, why in self._unread if s < b and e > a and "bitmap" in why]
        if self._free is None or lost:
            why = lost[0][2] if lost else "the rt bitmap could not be read"
            return [Piece(a, b - a, UNKNOWN, None, device=RT, detail={"error": why})]
        out, cur = [], a
        for fa, fb in self._free_parts(a, b):
            if fa > cur:
                out.append(_unclaimed(cur, fa))
            out.append(Piece(fa, fb - fa, FREE, None, detail=self._free_detail, device=RT))
            cur = fb
        if cur < b:
            out.append(_unclaimed(cur, b))
        return out

    def _conflicts(self, spans) -> list[tuple[int, int, str]]:
        """(start, end, why) of bytes claimed in ways that cannot all be right: a record where the bitmap says
        free; two owners where the refcount btree does not say shared."""
        out = []
        spans = [sp for sp in spans if sp[2] != _UNREADABLE]  # unknown already, with its reason
        for a, b, owner in spans:
            for x, y in self._free_parts(a, b):
                out.append((x, y, f"{_owner_text(owner)} claims realtime blocks the rt bitmap calls free"))
        for i, (a, b, o1) in enumerate(spans):  # spans come in start order: only the next few can overlap
            for j in range(i + 1, len(spans)):
                c, d, o2 = spans[j]
                if c >= b:
                    break
                x, y = c, min(b, d)
                if x < y:
                    for u, v, sh in self._split(x, y):
                        if not sh:
                            out.append((u, v, f"{_owner_text(o1)} and {_owner_text(o2)} claim the same realtime "
                                              "blocks, which the refcount btree does not call shared"))
        return out

    def _split(self, a: int, b: int) -> list[tuple[int, int, bool]]:
        return _split(a, b, self._shared, self._shared_starts)

    def _free_parts(self, a: int, b: int) -> list[tuple[int, int]]:
        return _overlaps(self._free or [], self._free_starts, a, b)


def _owner_text(owner: int) -> str:
    return f"inode {owner}" if owner >= 0 else SPECIAL_OWNERS.get(owner, f"owner {owner}")


def _overlaps(runs, starts, a: int, b: int) -> list[tuple[int, int]]:
    """The parts of sorted, disjoint `runs` inside [a, b)."""
    j = max(0, bisect.bisect_right(starts, a) - 1)
    out = []
    while j < len(runs) and runs[j][0] < b:
        s, e = runs[j]
        if e > a:
            out.append((max(s, a), min(e, b)))
        j += 1
    return out


def _split(a: int, b: int, shared, starts) -> list[tuple[int, int, bool]]:
    """[a, b) cut where sharing starts and stops: (start, end, shared); `starts` are the shared runs' starts."""
    out, cur = [], a
    for x, y in _overlaps(shared, starts, a, b):
        if x > cur:
            out.append((cur, x, False))
        out.append((x, y, True))
        cur = y
    if cur < b:
        out.append((cur, b, False))
    return out


def _replace(pieces: list[Piece], bad) -> list[Piece]:
    """Pieces with every conflicting span taken out of the claims and given one `unknown` piece with the why."""
    spans = merge_spans([(x, y) for x, y, _ in bad])
    out = minus(pieces, spans, _cut)
    for x, y in spans:
        whys = sorted({w for a, b, w in bad if a < y and b > x})
        out.append(Piece(x, y - x, UNKNOWN, None, device=RT, detail={"error": "conflict: " + "; ".join(whys)}))
    return out


def _cut(p: Piece, a: int, b: int) -> Piece:
    fo = None if p.file_offset is None else p.file_offset + (a - p.offset)
    return p._replace(offset=a, length=b - a, file_offset=fo)


def _unclaimed(a: int, b: int) -> Piece:
    return Piece(a, b - a, UNKNOWN, None, device=RT,
                 detail={"error": "used in the rt bitmap, but nothing on the realtime device claims these blocks"})


# --- classic: a walk of every inode, one bitmap ----------------------------------------------------------

def _realtime_extents(fs, problems: Problems, progress=None) -> list[tuple]:
    """Every realtime file's data extents as records: every inode chunk of every AG is read (the inobt gives
    them) and every realtime inode's data fork decoded."""
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
                         _UNWRITTEN if x.unwritten else 0) for x in extents if x.blockcount]
    if progress:
        progress(fs.readable_agcount, fs.readable_agcount)
    return out


def _bitmap_free(fs, problems: Problems) -> list[tuple[int, int]] | None:
    """Free byte runs of a classic realtime device from its rt bitmap, or None if it cannot be read."""
    sb = fs.sb
    data = _file_bytes(fs, sb.sb_rbmino, sb.sb_rbmblocks, "rt bitmap", problems)
    if data is None:
        return None
    # Little-endian 32-bit words, bit 0 first: one little-endian bit string, one bit per realtime extent.
    return _free_runs(data, "little", sb.sb_rextents, 0, sb.sb_rextsize << fs.geo.blocklog)


def _file_bytes(fs, ino: int, nblocks: int, what: str, problems: Problems) -> bytes | None:
    """The first `nblocks` blocks of a metadata file's data fork, or None (said in problems)."""
    from fsdaxctl.xfs.inode import bmap, read_inode

    geo = fs.geo
    try:
        data = bytearray(nblocks << geo.blocklog)
        for x in bmap(fs, read_inode(fs, ino), "data"):
            if x.startoff >= nblocks:
                continue
            n = min(x.blockcount, nblocks - x.startoff)
            agno, agbno = geo.fsb_to_ag(x.startblock)
            data[x.startoff << geo.blocklog:(x.startoff + n) << geo.blocklog] = fs.read_fs_blocks(
                agno, agbno, n, f"{what} block {x.startoff}")
        return bytes(data)
    except FsdaxError as e:
        problems.append(f"the {what} (inode {ino}) cannot be read: {e}", e, ino=ino)
        return None


def _free_runs(bitmap: bytes, order: str, nbits: int, base: int, unit: int) -> list[tuple[int, int]]:
    """Byte runs [base + i * unit, ...) of every run of set bits among the first `nbits` (32-bit words of byte
    order `order`, bit 0 first)."""
    import numpy as np  # only here: a realtime bitmap can hold millions of bits

    words = np.frombuffer(bitmap[:len(bitmap) // 4 * 4], dtype="<u4" if order == "little" else ">u4")
    bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")[:nbits].astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], bits, [0]))))  # where free runs start and end
    return [(base + int(a) * unit, base + int(b) * unit) for a, b in zip(edges[::2], edges[1::2])]


# --- realtime groups: per-group rmap and refcount btrees, bitmaps ----------------------------------------

def _gaps(recs, cur: int, size: int) -> list[tuple[int, int]]:
    out = []
    for s, e in merge_spans([(r[0], r[1]) for r in recs]):
        if s > cur:
            out.append((cur, s))
        cur = max(cur, e)
    if cur < size:
        out.append((cur, size))
    return out


def _seam(pieces, lo: int) -> int | None:
    """The last offset past lo that no piece crosses (pieces in offset order): where an answer can be cut."""
    seam, reach = None, lo
    for p in pieces:
        if p.offset >= reach and p.offset > lo:
            seam = p.offset
        reach = max(reach, p.offset + p.length)
    return seam


def _dir_entries(fs, ino: int) -> dict[str, int]:
    """Name -> inode of a metadata directory's entries ({} if `ino` is no directory)."""
    inode = read_inode(fs, ino)
    if not is_dir(inode):
        return {}
    return {e.name.decode("utf-8", "surrogateescape"): e.ino for e in read_dir(fs, inode)[1]}
