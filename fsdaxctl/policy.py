"""The owner policy: what a piece means to the admin (its impact), the exit status, the summary of a range in
words and the advice. One place: the Describer sets `impact` with `piece_impact`, `locate` and `inject` take
their exit bits from `impact_bits`, the table's summary and advice lines come from here (as plain strings for
the renderer, which knows no policy).
"""

from __future__ import annotations

import operator

from fsdaxctl.errors import EXIT_FAILED, EXIT_OK
from fsdaxctl.xfs.piece import FILE, FREE, NOT_IN_USE, OUTSIDE, UNKNOWN, Piece

IMPACT = {
    FREE: "none", OUTSIDE: "none", UNKNOWN: "unknown", "log": "log", "inodes": "inode",
    "static-fs-metadata": "filesystem-metadata", "per-ag-metadata": "filesystem-metadata",
    "inode-btree": "filesystem-metadata", "refcount-btree": "filesystem-metadata",
    "cow-staging": "filesystem-metadata", "defective": "filesystem-metadata",
}

# The one rule (README.md "Conventions"): a file's data-fork blocks are file data; every other block of a file is
# metadata, as xfs_db's blockget and xfs_repair see them: its extent map (bmbt), its xattrs, and the blocks of a
# directory (its names) or a symlink (its target), which xfs_repair checks and rebuilds and no backup of the
# file restores. Exit status bits, summaries and advice all follow `impact`.
IMPACT_BITS = {"none": 0, "unknown": 1, "file-data": 4, "file-unwritten": 4}  # every other impact: metadata, 8
FILE_METADATA = ("file-map", "file-attr", "directory", "symlink")


def piece_impact(p: Piece, ftype: str | None) -> str:
    """The impact of one piece; `ftype` is its inode's type (file, dir, symlink, ...) when it is a file's."""
    if p.owner != FILE:
        return IMPACT.get(p.owner, "filesystem-metadata")
    if p.extent_map:
        return "file-map"
    if p.fork == "attr":
        return "file-attr"
    if ftype == "dir":
        return "directory"
    if ftype == "symlink":
        return "symlink"
    if p.unwritten:
        return "file-unwritten"  # preallocated, never written: no data there to lose
    return "file-data"


def impact_bits(impact: str) -> int:
    return IMPACT_BITS.get(impact, 8)



def piece_bits(piece: Piece, ftype: str | None = None) -> int:
    """Exit-status bits for one piece (README.md "Conventions"): file data 4, filesystem metadata 8, unresolved 1;
    from its impact or, without detail, from the same facts (`ftype`: its inode's type)."""
    if piece.owner in NOT_IN_USE:
        return EXIT_OK
    if piece.owner == UNKNOWN:
        return EXIT_FAILED
    return impact_bits(piece.impact or piece_impact(piece, ftype))


# What `piece_bits` reads of a piece (owner, fork, extent_map, unwritten, impact), besides its inode's type.
_RULE_FIELDS = operator.itemgetter(2, 5, 7, 8, 12)


def exit_status(results, ftypes: dict | None = None) -> int:
    """The exit status of `locate`'s results; `ftypes` (inode -> type) for pieces without impact (--no-detail).
    A million ranges hold a few kinds of piece: each kind's bits are worked out once."""
    status = EXIT_OK
    ftypes = ftypes or {}
    bits: dict = {}
    for res in results:
        if res.recoverable:
            continue  # a mirror holds the data: nothing is lost
        for p in res.owners:
            key = (_RULE_FIELDS(p), ftypes.get(p.inode) if p.owner == FILE else None)
            b = bits.get(key)
            if b is None:
                b = bits[key] = piece_bits(p, key[1])
            status |= b
    return status


# Bytes dropped before the filesystem that still matter (exit bit 8): what the filesystem cannot be found without.
METADATA_DROPS = {"partition-table", "namespace-metadata", "md-metadata"}


def drop_bits(kind: str) -> int:
    """Exit bits for input bytes that never reached the filesystem: the partition table, a pmem info block and md
    superblocks are metadata (8); inputs about devices outside the stack were never looked at (1)."""
    if kind in METADATA_DROPS:
        return 8
    return EXIT_FAILED if kind in ("not-in-stack", "cycle") else EXIT_OK


def outcome_status(outcomes) -> int:
    """`inject`'s exit bits: the same as locate's for the same bytes (decisions about a file's blocks follow
    their impact; a metadata shutdown and the metadata drops are 8; any other action on file data 4)."""
    status = EXIT_OK
    for oc in outcomes:
        for d in oc.decisions:
            if d.impact:
                status |= impact_bits(d.impact) & 12
            elif (d.action == "shutdown-filesystem" and d.shutdown == "SHUTDOWN_CORRUPT_ONDISK") or \
                    d.owner in METADATA_DROPS:
                status |= 8
            elif d.action in ("kill-mappers", "restore-from-backup", "report-writeback-error",
                              "rewrite-cached-page"):
                status |= 4
    return status


def summary(pieces) -> str:
    """What a range hit, in words: the owner kinds, a file's blocks named by their impact (the rule above: a
    directory's, symlink's, xattr and extent-map blocks are file metadata)."""
    kinds = []
    for p in pieces:
        if p.owner != FILE:
            k = p.owner
        elif p.impact:
            k = {"file-data": "file data", "file-unwritten": "file space (unwritten: no data)"}.get(
                p.impact, "file metadata")
        else:
            k = "file data" if p.fork == "data" and not p.extent_map else "file metadata"
        if k not in kinds:
            kinds.append(k)
    return ", ".join(kinds)


def advice(pieces: list[Piece]) -> str:
    """One line: what to do about one damaged range (follows impact_bits: metadata, then file data)."""
    impacts = {p.impact for p in pieces}
    if impacts <= {"none"}:
        return "nothing to do: only free space or bytes outside the filesystem"
    parts = []
    meta = sorted(i for i in impacts if impact_bits(i) & 8)
    if meta:
        parts.append(f"unmount and run xfs_repair (damaged: {', '.join(meta)})")
    data = [p for p in pieces if p.impact == "file-data"]
    if data:
        parts.append(("then restore " if meta else "restore from backup: ") + _files(data)
                     + (" from backup" if meta else ""))
    unwritten = [p for p in pieces if p.impact == "file-unwritten"]
    if unwritten:
        parts.append(f"no data lost in {_files(unwritten)}: preallocated, never written (unwritten); re-allocate "
                     "that space (punch it out and preallocate again) so no later write lands on the damaged media")
    if "unknown" in impacts:
        parts.append("owners unknown for some bytes: see the warnings; do not trust this range until resolved")
    return "; ".join(parts)


def _files(pieces: list[Piece]) -> str:
    parts = []
    for p in pieces:
        name = p.paths[0] if p.paths else f"inode {p.inode}"
        parts.append(f"{name} bytes {p.file_offset}..{p.file_offset + p.length - 1}")
    return "; ".join(dict.fromkeys(parts))
