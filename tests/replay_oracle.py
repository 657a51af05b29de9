"""Compare fsdaxctl's answer on a crashed image (log replayed in memory) with the kernel's GETFSMAP after its
own recovery, piece for piece, and say exactly where and why they may differ.

Four things the kernel does at mount besides log recovery change its answer in ways fsdaxctl reports
differently on purpose, or cannot know:
  * CoW staging extents are freed at every mount (xfs_reflink_recover_cow): ours `cow-staging`, the kernel's
    `free`;
  * inodes on the AGI unlinked lists (deleted while open) are freed (xlog_recover_process_iunlinks): ours the
    file, with a note; the kernel's `free` (and files that shared blocks with them may lose `shared`);
  * intents left unfinished in the log: finished exactly where fsdaxctl can (extent free, rmap, refcount, bmap,
    plain mapping exchanges); ours `unknown` with the reason elsewhere (xattr intents); those bytes are not
    compared;
  * blocks the mount's own transactions allocate: AG btree blocks and the AGFL in an AG where the mount does
    work, and a new extent-map or attr block of an inode whose unfinished bmap, exchange or xattr intent adds
    to it (`growing`: ours free, with the note that the allocator may take a block there). Counted.
Everything else must be equal. Free pieces are joined where they touch on both sides (free space has no
identity; the kernel joins bnobt records, fsdaxctl may cut them where the replay freed blocks).
"""

from __future__ import annotations

from fsdaxctl.ranges import merge_spans
from fsdaxctl.xfs.logrecover import MAY_TAKE
from fsdaxctl.xfs.piece import minus
from tests.oracle import KernelMap, ours


def _join_free(pieces):
    out = []
    for p in pieces:
        if out and p[2] == "free" and out[-1][2] == "free" and out[-1][0] + out[-1][1] == p[0]:
            q = out[-1]
            out[-1] = (q[0], q[1] + p[1], *q[2:])
        else:
            out.append(p)
    return out


def _minus(pieces, holes):
    """pieces with the byte ranges in holes (sorted (start, end)) cut out."""
    return minus(pieces, holes, _cut)


def _cut(p, s, e):
    if (s, e - s) == (p[0], p[1]):
        return p
    fo = p[5] + (s - p[0]) if p[5] is not None else None
    return (s, e - s, p[2], p[3], p[4], fo, p[6], p[7], p[8])


def compare(fs, omap, km: KernelMap, unlinked: set, start: int = 0, length: int | None = None,
            busy_ags=(), growing=()) -> dict:
    """{"pieces": n compared, "unknown_bytes": b not compared (named unknown), "cow": n, "unlinked": n,
    "ours_only": [...], "kernel_only": [...]} over bytes [start, start+length)."""
    length = fs.geo.size - start if length is None else length
    pieces = omap.pieces(start, length)
    got = ours(pieces)
    # our free space where the mount may take an extent-map block (the note says so)
    may_take = merge_spans([(p.offset, p.offset + p.length) for p in pieces if p.owner == "free"
                            and MAY_TAKE in (p.detail or {}).get("note", "")])
    want = km.pieces(start, length)
    stats = {"cow": 0, "unlinked": 0, "unknown_bytes": 0}
    holes = sorted((p[0], p[0] + p[1]) for p in got if p[2] == "unknown")
    stats["unknown_bytes"] = sum(e - s for s, e in holes)
    unlinked_bytes = set()
    norm = []
    for p in got:
        if p[2] == "unknown":
            continue
        if p[2] == "cow-staging":
            stats["cow"] += 1
            p = (p[0], p[1], "free", None, None, None, False, False, False)
        elif p[2] == "file" and p[3] in unlinked:
            stats["unlinked"] += 1
            unlinked_bytes.add((p[0], p[0] + p[1]))
            p = (p[0], p[1], "free", None, None, None, False, False, False)
        norm.append(p)
    # a freed unlinked inode's blocks were free for the kernel, possibly shared before: drop the other owners'
    # `shared` flag comparison there, and the duplicate free pieces
    # (every piece of a file that shared blocks with one: the kernel cut its records where sharing changed)
    shared_lost = sorted(unlinked_bytes)
    touched = {p[3] for p in got + want if p[2] == "file" and p[3] not in unlinked
               and any(s < p[0] + p[1] and e > p[0] for s, e in shared_lost)}
    norm2 = []
    for p in sorted(set(norm), key=lambda t: (t[0], -1 if t[3] is None else t[3], t[4] or "", t[6], t[5] or 0)):
        if p[2] == "file" and p[3] in touched:
            p = (*p[:8], None)
        norm2.append(p)
    want2 = []
    for p in _minus(want, holes):
        if p[2] == "file" and p[3] in touched:
            p = (*p[:8], None)
        want2.append(p)
    # the unlinked inodes' file pieces became free: where another file still maps some of those bytes (a
    # shared extent, or part of one), ours has both a free and a file piece there; the kernel only the file
    files_at = merge_spans([(p[0], p[0] + p[1]) for p in want2 if p[2] != "free"])
    freed = [p for p in norm2 if p[2] == "free" and (p[0], p[0] + p[1]) in unlinked_bytes]
    norm3 = [p for p in norm2 if not (p[2] == "free" and (p[0], p[0] + p[1]) in unlinked_bytes)]
    norm3 += [(s, e - s, "free", None, None, None, False, False, False)  # two unlinked sharers: one free span
              for s, e in merge_spans((p[0], p[0] + p[1]) for p in _minus(_sortp(freed), files_at))]
    # where sharing may have changed (shared None), pieces were cut where sharing changed: join them back
    norm3, want2 = _join_unshared(_sortp(norm3)), _join_unshared(_sortp(want2))
    # The mount's own transactions (freeing those, finishing intents) refill and trim the AGFL and reshape the
    # AG btrees: in an AG where the mount does work, which blocks are per-AG metadata (the free-space and rmap
    # btrees, the AGFL, and the refcount and inode btrees that freeing CoW staging and unlinked inodes shrinks)
    # and which are free is the allocator's choice, and a whole inode chunk holding only freed inodes is freed.
    # There both sides' AG btree blocks count as free space, as do ours `inodes` chunks holding an unlinked
    # inode. Counted.
    geo = fs.geo
    busy = {geo.byte_to_ag(s)[0] for s, _ in unlinked_bytes} | {geo.byte_to_ag(p[0])[0] for p in got
                                                                if p[2] == "cow-staging"} | set(busy_ags)
    chunk = geo.blocksize * max(1, 64 * geo.inodesize // geo.blocksize)
    chunks_with_unlinked = {geo.ino_to_byte(i) // chunk for i in unlinked}
    stats["freed_metadata"] = stats["map_blocks"] = 0
    kfree = [(p[0], p[0] + p[1]) for p in want2 if p[2] == "free"]

    def relax(p, mine):
        if p[0] >= geo.size or geo.byte_to_ag(p[0])[0] not in busy:
            return p
        if not mine and p[2] == "file" and (p[6] or p[4] == "attr") and p[3] in growing and any(
                s <= p[0] and p[0] + p[1] <= e for s, e in may_take):  # the new extent-map block the mount took
            stats["map_blocks"] += 1
            return (p[0], p[1], "free", None, None, None, False, False, False)
        if p[2] in AG_BTREES or (mine and p[2] == "inodes" and p[0] // chunk in chunks_with_unlinked
                                         and any(s <= p[0] and e >= p[0] + p[1] for s, e in kfree)):
            stats["freed_metadata"] += mine
            return (p[0], p[1], "free", None, None, None, False, False, False)
        return p

    norm4 = [relax(p, 1) for p in norm3]
    want2 = [relax(p, 0) for p in want2]
    a, b = _join_free(_sortp(norm4)), _join_free(_sortp(want2))
    sa, sb = set(a), set(b)
    stats.update(pieces=len(b), ours_only=sorted(sa - sb), kernel_only=sorted(sb - sa))
    return stats


AG_BTREES = ("per-ag-metadata", "refcount-btree", "inode-btree")  # reshaped by the mount's own work


def _join_unshared(pieces):
    """Join touching pieces of one file fork with contiguous file offsets whose `shared` is not compared."""
    out = list(pieces)
    changed = True
    while changed:
        changed = False
        by_end = {}
        for i, p in enumerate(out):
            if p[2] == "file" and p[8] is None and p[5] is not None:
                by_end[(p[0] + p[1], p[3], p[4], p[5] + p[1], p[7])] = i
        for j, q in enumerate(out):
            if q[2] == "file" and q[8] is None and q[5] is not None:
                i = by_end.get((q[0], q[3], q[4], q[5], q[7]))
                if i is not None and i != j:
                    p = out[i]
                    out[i] = (p[0], p[1] + q[1], *p[2:])
                    del out[j]
                    changed = True
                    break
    return _sortp(out)


def _sortp(ps):
    return sorted(ps, key=lambda t: (t[0], -1 if t[3] is None else t[3], t[4] or "", t[6], t[5] or 0))
