"""Short-form (per-AG) btrees: verified node reads and range queries that read only the blocks on their path.

Two descents (xfs_btree.c):
- ordinary trees (bnobt, refcountbt, inobt): records do not overlap, so child i holds records starting in
  [key_i, key_i+1); descend into the children whose span meets the query;
- overlapping trees (rmapbt): a node entry carries the child's low *and* high key, high keys are not sorted,
  so scan entries in order, stop once low > hi, and descend into every entry whose high key reaches lo.
Siblings pointers are never followed: levels strictly decrease, so a damaged tree cannot make a walk loop.
A damaged subtree is reported (an `Unreadable` item carrying the agbno span it covered) and the walk goes on.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import struct
from dataclasses import dataclass

from fsdaxctl.errors import CorruptError, FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.inode import XFS_INODES_PER_CHUNK
from fsdaxctl.xfs.verify import check_crc, check_field, check_magic

HDR = f.XFS_BTREE_SBLOCK_CRC_LEN
XFS_BTREE_MAXLEVELS = 9  # no AG btree is deeper (xfs_btree.h bounds are smaller still)


# Key orders (the kernel's per-btree keys_inorder/recs_inorder): how records and node keys are sorted.
BY_START = "start"  # bnobt, refcountbt (the CoW domain is bit 31 of the start, so it sorts after the shared one)
BY_SIZE = "size"  # cntbt: blockcount, then startblock
BY_INODE = "inode"  # inobt, finobt: startino; records each cover a chunk of 64 inodes
BY_RMAP = "rmap"  # rmapbt: startblock, owner (unsigned), offset without the unwritten flag


@dataclass(frozen=True)
class SBtree:
    name: str
    magic: int
    rec: struct.Struct
    key: struct.Struct
    overlapping: bool = False
    extents: bool = True  # records start with (startblock, blockcount) in agbnos
    order: str = BY_START

    @property
    def entry(self) -> struct.Struct:
        return self._entry

    def __post_init__(self):
        # An overlapping node entry is the low key and the high key packed back to back.
        fmt = self.key.format
        pair = struct.Struct(fmt[0] + fmt[1:] * 2) if self.overlapping else self.key
        object.__setattr__(self, "_entry", pair)

    def maxrecs(self, blocksize: int, leaf: bool) -> int:
        if leaf:
            return (blocksize - HDR) // self.rec.size
        return (blocksize - HDR) // (self._entry.size + 4)


RMAPBT = SBtree("rmapbt", f.XFS_RMAP_CRC_MAGIC, f.RMAP_REC, f.RMAP_KEY, overlapping=True, order=BY_RMAP)
BNOBT = SBtree("bnobt", f.XFS_ABTB_CRC_MAGIC, f.ALLOC_REC, f.ALLOC_KEY)
CNTBT = SBtree("cntbt", f.XFS_ABTC_CRC_MAGIC, f.ALLOC_REC, f.ALLOC_REC, order=BY_SIZE)
REFCOUNTBT = SBtree("refcountbt", f.XFS_REFC_CRC_MAGIC, f.REFCOUNT_REC, f.REFCOUNT_KEY)
INOBT = SBtree("inobt", f.XFS_IBT_CRC_MAGIC, f.INOBT_REC, f.INOBT_KEY, extents=False, order=BY_INODE)
FINOBT = SBtree("finobt", f.XFS_FIBT_CRC_MAGIC, f.INOBT_REC, f.INOBT_KEY, extents=False, order=BY_INODE)



@dataclass(frozen=True, slots=True)
class Node:
    level: int
    items: list  # records (leaf) or key entries (node)
    ptrs: list  # child agbnos (node only)
    last: int = 0  # the last agbno this block's records cover (extents) or start at (others)
    # Search aids of an interior node, made once per block read (interior nodes stay cached and are searched
    # by every query; a leaf is mostly read for one): `lows` the children's first keys (ascending), `reach`
    # the running maximum of their high keys (overlapping trees): a query finds its children by bisection.
    lows: list = None
    reach: list = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A subtree that could not be read: its records between `first` and `last` (agbnos) are unknown."""
    first: int
    last: int
    error: FsdaxError


def read_node(fs, tree: SBtree, agno: int, agbno: int, level: int | None, *, root: bool = False) -> Node:
    """Read and verify one block of `tree` in AG agno. `level` is what the parent promised (None: the root)."""
    key = (tree.name, agno, agbno)
    node = fs.node_cache_get(key)
    if node is not None:
        if level is not None and node.level != level:
            raise CorruptError("bb_level does not match the parent's", structure=f"{tree.name} block in AG {agno}",
                               agbno=agbno, expected=level, found=node.level)
        return node
    geo = fs.geo
    where = f"{tree.name} block in AG {agno}"
    daddr = geo.ag_to_daddr(agno, agbno)
    if agbno == 0 or agbno >= geo.ag_length(agno):
        raise CorruptError("btree pointer outside the AG", structure=where, agno=agno, agbno=agbno)
    buf = fs.read_fs_blocks(agno, agbno, 1, where)
    magic, bb_level, n, _, _, blkno, _, uuid, owner = f.BTREE_SBLOCK_HDR.unpack_from(buf)
    check_magic(magic, tree.magic, where, daddr)
    check_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF, where, daddr)
    check_field(blkno == daddr, "bb_blkno", where, daddr, daddr, blkno)
    check_field(owner == agno, "bb_owner", where, daddr, agno, owner)
    check_field(uuid == fs.meta_uuid, "bb_uuid", where, daddr, "the superblock's", "another")
    if level is not None:
        check_field(bb_level == level, "bb_level", where, daddr, level, bb_level)
    elif bb_level >= XFS_BTREE_MAXLEVELS:
        raise CorruptError("btree too deep", structure=where, daddr=daddr, found=f"level {bb_level}")
    leaf = bb_level == 0
    maxrecs = tree.maxrecs(geo.blocksize, leaf)
    if n > maxrecs or (n == 0 and not (root and leaf)):
        raise CorruptError("bad record count", structure=where, daddr=daddr,
                           expected=f"1..{maxrecs}", found=n)
    mv = memoryview(buf)
    if leaf:
        node = Node(0, list(tree.rec.iter_unpack(mv[HDR:HDR + n * tree.rec.size])), [])
    else:
        esz = tree.entry.size
        pstart = HDR + maxrecs * esz  # pointers follow *maxrecs* keys, not numrecs (trap 2)
        node = Node(bb_level, list(tree.entry.iter_unpack(mv[HDR:HDR + n * esz])),
                    [p for (p,) in f.SBTREE_PTR.iter_unpack(mv[pstart:pstart + 4 * n])])
    crc = buf[f.XFS_BTREE_SBLOCK_CRC_OFF:f.XFS_BTREE_SBLOCK_CRC_OFF + 4]
    memo = fs.verified.get(key)
    if memo is not None and memo[0] == crc:  # checked before, with these contents (the CRC checked above)
        last = memo[1]
    else:
        bad, last = _check_items(tree, node, geo.ag_length(agno))
        if bad:
            raise CorruptError(f"bad {'record' if leaf else 'key'}", structure=where, daddr=daddr, found=bad)
        fs.remember_verified(key, crc, last)
    node = _indexed(tree, Node(node.level, node.items, node.ptrs, last))
    fs.node_cache_put(key, node)
    return node


def _indexed(tree: SBtree, node: Node) -> Node:
    """An interior node with its search aids (Node.lows, Node.reach); a leaf as it is."""
    items = node.items
    if node.level == 0:
        return node
    lows = [e[0] for e in items]
    if tree.overlapping:
        ksz = len(items[0]) // 2 if items else 0
        reach = list(itertools.accumulate((e[ksz] for e in items), max))
    else:
        reach = None
    return Node(node.level, items, node.ptrs, node.last, lows, reach)


def _check_items(tree: SBtree, node: Node, aglen: int) -> tuple[str | None, int]:
    """(what the kernel's xfs_*_check_irec and key-order checks would reject, or None; the block's last
    agbno). Once per block read, from C-level builtins (zip, map, max, sorted): a dump reads every block."""
    items = node.items
    if not items:
        return None, 0
    leaf = node.level == 0
    what = "record" if leaf else "key"
    cols = list(zip(*items))
    bad = _out_of_order(tree, cols, leaf)
    if bad:
        return f"{what}s out of order ({bad})", 0
    starts = cols[0]
    if not tree.extents:
        return None, starts[-1]
    if tree is REFCOUNTBT:
        starts = [s & ~f.XFS_REFC_COWFLAG for s in starts]
    if max(starts) >= aglen:
        return f"{what} at agbno {max(starts)} in an AG of {aglen} blocks", 0
    if not leaf:
        return None, max(cols[len(cols) // 2]) if tree.overlapping else max(starts)
    counts = cols[1]
    ends = list(map(operator.add, starts, counts))
    if min(counts) == 0 or max(ends) > aglen:
        i = next(i for i, (c, e) in enumerate(zip(counts, ends)) if c == 0 or e > aglen)
        return f"record {i + 1}: agbno {starts[i]} length {counts[i]} in an AG of {aglen} blocks", 0
    return None, max(ends) - 1


def _first_false(flags) -> int | None:
    """The index of the first false flag, or None (the scan stops at C speed in `all` first)."""
    flags = list(flags)
    return None if all(flags) else flags.index(False)


def _out_of_order(tree: SBtree, cols: list, leaf: bool) -> str | None:
    """Where the block breaks its tree's order (the kernel's recs_inorder for records, keys_inorder for node
    keys), or None. Each tree has its own order: a cntbt sorts by size, so its starts need not ascend."""
    lt, le = operator.lt, operator.le
    starts = cols[0]
    if tree.order == BY_SIZE:  # (blockcount, startblock), strictly increasing
        pairs = list(zip(cols[1], starts))
        i = _first_false(map(lt, pairs[:-1], pairs[1:]))
    elif tree.order == BY_RMAP:  # (startblock, owner unsigned, offset without UNWRITTEN), non-decreasing
        i = _first_false(map(le, starts[:-1], starts[1:]))
        if i is None:  # owners and offsets matter only where starts tie: rare, so compared one by one
            ocol, fcol = (2, 3) if leaf else (1, 2)
            key = lambda j: (starts[j], cols[ocol][j] % (1 << 64), cols[fcol][j] & ~f.XFS_RMAP_OFF_UNWRITTEN)  # noqa: E731
            i = next((j for j in range(len(starts) - 1) if starts[j] == starts[j + 1] and key(j) > key(j + 1)),
                     None)
    elif not leaf:  # bnobt, refcountbt, inobt keys: strictly increasing starts
        i = _first_false(map(lt, starts[:-1], starts[1:]))
    else:  # records of one start-ordered tree may not overlap: start + length <= the next start
        span = [XFS_INODES_PER_CHUNK] * len(starts) if tree.order == BY_INODE else cols[1]
        i = _first_false(map(le, map(operator.add, starts[:-1], span[:-1]), starts[1:]))
    return None if i is None else f"entries {i + 1} and {i + 2}"


def query(fs, tree: SBtree, agno: int, root: int, levels: int, lo: int, hi: int):
    """Yield, in key order, the records of `tree` in AG agno whose agbno span meets [lo, hi], one list per
    leaf, and an `Unreadable` for every subtree that could not be read (the walk goes on with its siblings).

    Records' spans: field 0 is the start, field 1 the length (bnobt, refcountbt, rmapbt). A tree ordered by
    anything but its start (the cntbt) cannot be queried by agbno: `tree_blocks` walks it whole.
    """
    if tree.order == BY_SIZE:
        raise ValueError(f"{tree.name} is ordered by size, not by agbno")
    if levels < 1 or levels > XFS_BTREE_MAXLEVELS:
        yield Unreadable(lo, hi, CorruptError(f"{tree.name} height out of range", agno=agno, found=levels))
        return
    yield from _walk(fs, tree, agno, root, levels - 1, lo, hi, lo, hi, True, set(), None)


def query_records(fs, tree: SBtree, agno: int, root: int, levels: int, lo: int, hi: int):
    """Like `query`, one record (or Unreadable) at a time."""
    for item in query(fs, tree, agno, root, levels, lo, hi):
        if type(item) is Unreadable:
            yield item
        else:
            yield from item


def _walk(fs, tree, agno, agbno, level, lo, hi, span_lo, span_hi, root, seen, bounds):
    """`seen`: blocks already visited by this query (a valid tree never reaches a block twice: this stops
    cycles and subtrees shared by damaged pointers). `bounds`: (first, last) agbnos the parent's keys allow
    this subtree's records to start (ordinary trees) or span (overlapping trees), None for the root."""
    try:
        if agbno in seen:
            raise CorruptError("btree block reached twice (a pointer cycle or a shared subtree)",
                               structure=f"{tree.name} block in AG {agno}", agbno=agbno)
        seen.add(agbno)
        node = read_node(fs, tree, agno, agbno, None if root else level, root=root)
        if root and node.level != level:
            raise CorruptError("bb_level does not match the tree height in the AG header",
                               structure=f"{tree.name} root in AG {agno}", agbno=agbno,
                               expected=level, found=node.level)
        if bounds is not None and node.items and not _within(tree, node, bounds):
            raise CorruptError("keys outside the range the parent block gives this block",
                               structure=f"{tree.name} block in AG {agno}", agbno=agbno,
                               expected=f"agbno {bounds[0]}..{bounds[1]}")
    except FsdaxError as e:
        yield Unreadable(max(lo, span_lo), min(hi, span_hi), e)
        return
    items = node.items
    if node.level == 0:
        if not items:
            return
        first, last = items[0], items[-1]
        if first[0] >= lo and last[0] <= hi:
            yield items  # the whole leaf is inside: the common case of a long walk
        else:
            hits = [r for r in items if r[0] <= hi and r[0] + r[1] > lo]
            if hits:
                yield hits
        return
    ptrs = node.ptrs
    if tree.overlapping:
        ksz = len(items[0]) // 2 if items else 0
        k = bisect.bisect_right(node.lows, hi)  # children starting by hi ...
        for i in range(bisect.bisect_left(node.reach, lo, 0, k), k):  # ... from the first whose reach meets lo
            entry = items[i]
            low_start, high_start = entry[0], entry[ksz]
            if high_start >= lo:
                yield from _walk(fs, tree, agno, ptrs[i], level - 1, lo, hi, low_start, high_start, False, seen,
                                 (low_start, high_start))
    else:
        n = len(items)
        for i in range(max(0, bisect.bisect_right(node.lows, lo) - 1), n):  # from the child holding lo
            first = items[i][0]
            if first > hi:
                break
            nxt = items[i + 1][0] if i + 1 < n else None
            if nxt is None or nxt > lo:
                last = span_hi if nxt is None else nxt - 1
                yield from _walk(fs, tree, agno, ptrs[i], level - 1, lo, hi, first, last, False, seen,
                                 (first, None if nxt is None else nxt - 1))


def _within(tree: SBtree, node: Node, bounds) -> bool:
    """Do the block's keys lie where its parent's keys say? Overlapping trees: every record (or child high
    key) ends by the parent's high key; ordinary trees: every record starts before the next sibling's key."""
    first, last = bounds
    if node.items[0][0] < first:
        return False
    if tree.overlapping:
        return node.last <= last
    return last is None or node.items[-1][0] <= last


def search_key(tree: SBtree, entry) -> int | tuple:
    """What a tree is searched by: the start (field 0), or for the cntbt (blockcount, startblock)."""
    return (entry[1], entry[0]) if tree.order == BY_SIZE else entry[0]


def lookup_le(fs, tree: SBtree, agno: int, root: int, levels: int, key):
    """The record with the greatest search key <= key, or None: one root-to-leaf path (ordinary trees)."""
    if levels < 1 or levels > XFS_BTREE_MAXLEVELS:
        raise CorruptError(f"{tree.name} height out of range", agno=agno, found=levels)
    agbno, level, is_root = root, levels - 1, True
    while True:
        node = read_node(fs, tree, agno, agbno, None if is_root else level, root=is_root)
        if is_root and node.level != level:
            raise CorruptError("bb_level does not match the tree height in the AG header",
                               structure=f"{tree.name} root in AG {agno}", agbno=agbno, expected=level,
                               found=node.level)
        keys = [search_key(tree, e) for e in node.items]
        i = bisect.bisect_right(keys, key) - 1
        if node.level == 0:
            return node.items[i] if i >= 0 else None
        if i < 0:
            return None
        agbno, level, is_root = node.ptrs[i], level - 1, False


@dataclass(frozen=True)
class AgBtree:
    """One btree rooted in an AG header: which tree, where its root is, how tall, and the rmap owner of its
    blocks. Every reader of a tree starts here, so the (agno, root, levels) triple travels as one value."""

    fs: object
    tree: SBtree
    agno: int
    root: int
    levels: int
    owner: int

    def query(self, lo: int, hi: int):
        """Leaves of records meeting agbnos [lo, hi], and Unreadable subtrees (see `query`)."""
        return query(self.fs, self.tree, self.agno, self.root, self.levels, lo, hi)

    def records(self, lo: int, hi: int):
        return query_records(self.fs, self.tree, self.agno, self.root, self.levels, lo, hi)

    def lookup_le(self, key):
        return lookup_le(self.fs, self.tree, self.agno, self.root, self.levels, key)

    def blocks(self, errors: list | None = None) -> dict[int, int]:
        return tree_blocks(self.fs, self.tree, self.agno, self.root, self.levels, errors)


def Ag(fs, agno: int) -> _Ag:
    """AG agno's btrees (`Ag(fs, agno).rmapbt.query(lo, hi)`), one object per AG of a filesystem."""
    cache = fs.__dict__.setdefault("_ag_btrees", {})
    ag = cache.get(agno)
    if ag is None:
        ag = cache[agno] = _Ag(fs, agno)
    return ag


class _Ag:
    """The btrees rooted in an AG's headers. The AGF or the AGI is read (once, by the filesystem) when a tree
    of it is first wanted; an unreadable header raises then, and again on every later ask."""

    def __init__(self, fs, agno: int):
        self.fs = fs
        self.agno = agno

    def _tree(self, tree: SBtree, root: int, levels: int, owner: int) -> AgBtree:
        return AgBtree(self.fs, tree, self.agno, root, levels, owner)

    @functools.cached_property
    def bnobt(self) -> AgBtree:
        agf = self.fs.agf(self.agno)
        return self._tree(BNOBT, agf.agf_bno_root, agf.agf_bno_level, f.XFS_RMAP_OWN_AG)

    @functools.cached_property
    def cntbt(self) -> AgBtree:
        agf = self.fs.agf(self.agno)
        return self._tree(CNTBT, agf.agf_cnt_root, agf.agf_cnt_level, f.XFS_RMAP_OWN_AG)

    @functools.cached_property
    def rmapbt(self) -> AgBtree:
        agf = self.fs.agf(self.agno)
        return self._tree(RMAPBT, agf.agf_rmap_root, agf.agf_rmap_level, f.XFS_RMAP_OWN_AG)

    @functools.cached_property
    def refcountbt(self) -> AgBtree:
        agf = self.fs.agf(self.agno)
        return self._tree(REFCOUNTBT, agf.agf_refcount_root, agf.agf_refcount_level, f.XFS_RMAP_OWN_REFC)

    @functools.cached_property
    def inobt(self) -> AgBtree:
        agi = self.fs.agi(self.agno)
        return self._tree(INOBT, agi.agi_root, agi.agi_level, f.XFS_RMAP_OWN_INOBT)

    @functools.cached_property
    def finobt(self) -> AgBtree:
        agi = self.fs.agi(self.agno)
        return self._tree(FINOBT, agi.agi_free_root, agi.agi_free_level, f.XFS_RMAP_OWN_INOBT)

    def btrees(self, owner: int | None = None) -> list[AgBtree]:
        """Every btree of the AG, grouped as the rmapbt records their blocks: OWN_AG (bnobt, cntbt, rmapbt),
        OWN_INOBT (inobt, finobt), OWN_REFC (refcountbt); only those of `owner` when given. The AGI is read
        only when inode btrees are wanted."""
        fs, out = self.fs, []
        if owner in (None, f.XFS_RMAP_OWN_AG):
            out += [self.bnobt, self.cntbt] + ([self.rmapbt] if fs.has_rmapbt else [])
        if owner in (None, f.XFS_RMAP_OWN_REFC) and fs.has_reflink:
            out.append(self.refcountbt)
        if owner in (None, f.XFS_RMAP_OWN_INOBT):
            out += [self.inobt] + ([self.finobt] if fs.has_finobt else [])
        return out


def tree_blocks(fs, tree: SBtree, agno: int, root: int, levels: int,
                errors: list | None = None) -> dict[int, int]:
    """agbno -> level of every block of a tree. Reads only the interior nodes: a leaf's agbno is in its
    parent. An unreadable node's subtree is left out and its error appended to `errors` (the caller must
    say so: those blocks are then owned by nobody it knows); an impossible height in the AG header raises."""
    if not 1 <= levels <= XFS_BTREE_MAXLEVELS:
        raise CorruptError(f"{tree.name} height out of range", agno=agno, found=levels)
    out = {root: levels - 1}
    frontier = [(root, levels - 1, True)] if levels > 1 else []
    while frontier:
        agbno, level, is_root = frontier.pop()
        try:
            node = read_node(fs, tree, agno, agbno, None if is_root else level, root=is_root)
        except FsdaxError as e:
            if errors is not None:
                errors.append(e)
            continue
        for p in node.ptrs:
            if p not in out:
                out[p] = level - 1
                if level - 1 > 0:
                    frontier.append((p, level - 1, False))
    return out
