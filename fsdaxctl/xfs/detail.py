"""What exactly was hit: the structure behind every metadata piece, the names in a damaged directory block,
the inodes in a damaged inode chunk; and each piece's `impact`.

Works on plain Pieces and returns new ones (detail and impact filled). Per-AG metadata indexes are built on
first need by reading only the interior nodes of each AG btree, then kept for the rest of the batch.
"""

from __future__ import annotations

from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.attr import leaf_entries
from fsdaxctl.xfs.dir import DirBlock, DirBlocks, parse_data_block
from fsdaxctl.xfs.inode import IN_USE, XFS_INODES_PER_CHUNK, chunk_slot_states, read_inode
from fsdaxctl.policy import piece_impact
from fsdaxctl.xfs.owners import FILE, Piece
from fsdaxctl.xfs.paths import PathResolver, decode_name

MAX_LISTED = 256
_INCOMPLETE = -1  # the index key of "some tree behind this owner could not be read whole": its reason
_UNATTRIBUTED = ("unattributed (not reachable from the AG headers)", -1)  # names/blocks/inodes listed in one detail; the count says how many more

_TREE_OWNERS = {"per-ag-metadata": f.XFS_RMAP_OWN_AG, "inode-btree": f.XFS_RMAP_OWN_INOBT,
                "refcount-btree": f.XFS_RMAP_OWN_REFC}

_KNOWN_TYPES = 1 << 17  # inode types a streamed list keeps between windows (about 100 bytes each)


def file_types(fs, inos, known: dict | None = None) -> dict[int, str | None]:
    """inode -> its type from the inode core alone (one inode read each): for the rule above without --detail.
    `known`: the types read before (kept across a streamed list's windows); the new ones are added to it."""
    from fsdaxctl.xfs.paths import mode_type

    known = {} if known is None else known
    out = {}
    for ino in set(inos):
        t = known.get(ino, known)
        if t is known:
            try:
                t = mode_type(read_inode(fs, ino).core.di_mode)
            except FsdaxError:
                t = None
            if len(known) >= _KNOWN_TYPES:
                known.clear()
            known[ino] = t
        out[ino] = t
    return out


# The realtime device holds file data, each realtime group's superblock (the first block of group 0 only on
# devices that are not zoned) and CoW staging; its btrees and bitmaps are files on the data device.
_RT_DETAIL = {
    "static-fs-metadata": {"structure": "realtime superblock (the first block of realtime group 0)"},
    "cow-staging": {"at_mount": "the kernel frees CoW staging extents when it mounts the filesystem "
                                "(xfs_reflink_recover_cow): these bytes are free after the next mount"},
}


class Describer:
    def __init__(self, fs, resolver: PathResolver | None = None):
        self.fs = fs
        self.geo = fs.geo
        self.live = getattr(fs, "live", None)  # mounted: names from the live tree, detail read from disk
        self.resolver = resolver or self._default_resolver(fs)
        self.problems = Problems()
        self._ag_index: dict[tuple[int, str], dict[int, tuple[str, int]]] = {}
        self._dirs: dict[int, DirBlocks | None] = {}
        self._ftype: dict[int, str] = {}

    def _default_resolver(self, fs):
        if self.live is None:
            return PathResolver(fs)
        from fsdaxctl.live import LivePathResolver

        return LivePathResolver(self.live.mount_point, fs_relative=self.live.fs_relative)

    # --- public ---
    def describe(self, pieces: list[Piece]) -> list[Piece]:
        """Detail and impact for every piece. Everything to be named (file owners, in-use inodes of damaged
        inode chunks) is gathered first, so the directory tree is walked once per call."""
        chunk_states = {}
        for i, p in enumerate(pieces):
            if p.owner == "inodes":
                try:
                    chunk_states[i] = self._chunk_states(p)
                except FsdaxError as e:
                    self._problem(e)
        inos = {p.inode for p in pieces if p.owner == FILE}
        inos.update(ino for states in chunk_states.values() for ino, st in states.items() if st == IN_USE)
        names = self.resolver.name(inos) if inos else {}
        holders = self.resolver.holders({p.inode for p in pieces if p.owner == FILE}) \
            if self.live is not None and inos else {}
        out = []
        for i, p in enumerate(pieces):
            try:
                if i in chunk_states:
                    detail = self._inodes(p, chunk_states[i], names)
                else:
                    detail = self._detail(p, names)
            except FsdaxError as e:
                self._problem(e)
                detail = {"detail_error": str(e)}
            if detail and self.live is not None:  # GETFSMAP names owners, not structures: those came from disk
                detail = {**detail, "read_from": "disk"}
            if p.owner == FILE:
                n = names[p.inode]
                if n.reason:
                    detail = {**(detail or {}), "name": n.reason}
                if p.inode in holders:  # who is affected, before anyone acts
                    detail = {**(detail or {}), "held_by": holders[p.inode]}
                p = p._replace(paths=tuple(n.paths))
            if p.detail:
                detail = {**p.detail, **(detail or {})}
            out.append(p._replace(detail=detail or None, impact=self._impact(p, names)))
        return out

    def _problem(self, text: str) -> None:
        self.problems.append(text)

    def _impact(self, p: Piece, names) -> str:
        return piece_impact(p, names[p.inode].ftype if p.owner == FILE else None)

    # --- per kind ---
    def _detail(self, p: Piece, names) -> dict | None:
        kind = p.owner
        if p.device == "rt" and kind != FILE:  # no AGs there: what a realtime group's non-file owners are
            return _RT_DETAIL.get(kind)
        if kind == "static-fs-metadata":
            return self._ag_headers(p)
        if kind in ("per-ag-metadata", "inode-btree", "refcount-btree"):
            return self._ag_blocks(p)
        if kind == "cow-staging" and self.live is None:
            return {"at_mount": "the kernel frees CoW staging extents when it mounts the filesystem "
                                "(xfs_reflink_recover_cow): these bytes are free after the next mount"}
        if kind == "log":
            if p.device == "log":  # an external log starts at byte 0 of its own device
                return {"structure": "log", "log_offset": p.offset}
            log = self.fs.internal_log
            if log is None:
                return {"structure": "log", "error": self.fs.log_problem or "the log is not internal"}
            return {"structure": "log", "log_offset": p.offset - self.geo.ag_to_byte(log[0], log[1])}
        if kind == FILE:
            if p.extent_map:
                return self._bmbt_block(p)
            if p.fork == "attr":
                return self._attr_block(p)
            if names[p.inode].ftype == "dir":
                return self._dir_block(p)
        return None

    def _ag_headers(self, p: Piece) -> dict:
        geo = self.geo
        agno, _ = geo.byte_to_ag(p.offset)
        base = geo.ag_to_byte(agno, 0)
        sb = "superblock" if agno == 0 else "secondary superblock"
        parts = [(sb, 0), ("AGF", 1), ("AGI", 2), ("AGFL", 3)]
        hit = [name for name, sector in parts
               if p.offset < base + (sector + 1) * geo.sectsize and p.offset + p.length > base + sector * geo.sectsize]
        if p.offset + p.length > base + 4 * geo.sectsize:
            hit.append("unused space after the AG headers")
        return {"ag": agno, "structures": hit}

    def _index(self, agno: int, kind: str) -> dict[int, tuple[str, int]]:
        """agbno -> (structure, level) for the AG btrees behind one owner kind."""
        key = (agno, kind)
        if key in self._ag_index:
            return self._ag_index[key]
        fs = self.fs
        idx: dict[int, tuple[str, int]] = {}
        owner = _TREE_OWNERS[kind]
        if owner == f.XFS_RMAP_OWN_AG:
            try:
                for b in fs.agfl(agno):
                    idx[b] = ("AGFL block (free list)", -1)
            except FsdaxError as e:
                self._problem(e)
        for t in btree.Ag(fs, agno).btrees(owner):
            errors: list[FsdaxError] = []
            for b, level in t.blocks(errors).items():
                idx[b] = (t.tree.name, level)
            for e in errors:
                self._problem(f"{t.tree.name} of AG {agno} not read whole: {e}")
                idx[_INCOMPLETE] = (f"not found: the {t.tree.name} could not be read whole ({e})", -1)
        self._ag_index[key] = idx
        return idx

    def _ag_blocks(self, p: Piece) -> dict:
        geo = self.geo
        agno, first = geo.byte_to_ag(p.offset)
        _, last = geo.byte_to_ag(p.offset + p.length - 1)
        idx = self._index(agno, p.owner)
        blocks = []
        for b in range(first, last + 1):
            name, level = idx.get(b, idx.get(_INCOMPLETE, _UNATTRIBUTED))
            entry = {"agbno": b, "structure": name}
            if level >= 0:
                entry["level"] = level
            blocks.append(entry)
        return _listed({"ag": agno}, "blocks", blocks)

    def _chunk_states(self, p: Piece) -> dict[int, str]:
        """inode number -> in use | free | sparse hole, for every inode slot in a damaged `inodes` piece,
        from the inobt record of its chunk (holemask for sparse chunks, the free mask)."""
        geo, fs = self.geo, self.fs
        agno, _ = geo.byte_to_ag(p.offset)
        base = geo.ag_to_byte(agno, 0)
        first_slot = (p.offset - base) // geo.inodesize
        last_slot = (p.offset + p.length - 1 - base) // geo.inodesize
        inobt = btree.Ag(fs, agno).inobt
        states, rec = {}, None
        for agino in range(first_slot, last_slot + 1):  # byte offset in the AG / inode size == agino
            if rec is None or not rec[0] <= agino < rec[0] + XFS_INODES_PER_CHUNK:
                rec = inobt.lookup_le(agino)
                slots = chunk_slot_states(fs, rec) if rec is not None else None
            ino = (agno << (geo.agblklog + geo.inopblog)) | agino
            state = "not in any inode chunk"
            if rec is not None and rec[0] <= agino < rec[0] + XFS_INODES_PER_CHUNK:
                state = slots[agino - rec[0]]
            states[ino] = state
        return states

    def _inodes(self, p: Piece, states: dict[int, str], names) -> dict:
        agno, _ = self.geo.byte_to_ag(p.offset)
        listed = []
        for ino, state in states.items():
            entry = {"inode": ino, "state": state}
            if state == IN_USE:
                n = names[ino]
                entry["type"] = n.ftype
                entry["paths"] = n.paths
                if n.reason:
                    entry["name"] = n.reason
            listed.append(entry)
        in_use = sum(1 for st in states.values() if st == IN_USE)
        return _listed({"ag": agno, "in_use": in_use}, "inodes", listed)

    def _bmbt_block(self, p: Piece) -> dict:
        buf = self.fs.dev.pread(p.offset - p.offset % self.geo.blocksize, self.geo.blocksize, "bmbt block")
        hdr = f.XFS_BTREE_LBLOCK.parse(buf)
        d = {"structure": f"{p.fork} fork extent map (bmbt) block"}
        if hdr.bb_magic == f.XFS_BMAP_CRC_MAGIC and hdr.bb_owner == p.inode:
            d["level"] = hdr.bb_level
            d["records"] = hdr.bb_numrecs
        return d

    def _dirblocks(self, ino: int) -> DirBlocks:
        if ino not in self._dirs:
            self._dirs[ino] = DirBlocks(self.fs, read_inode(self.fs, ino))
        return self._dirs[ino]

    def _dir_block(self, p: Piece) -> dict:
        """Names in the damaged part of a directory data block; index blocks hold no names."""
        geo = self.geo
        dirs = self._dirblocks(p.inode)
        fo_first, fo_end = p.file_offset, p.file_offset + p.length
        if fo_first >= f.XFS_DIR2_LEAF_OFFSET:
            return {"structure": "directory hash index (leaf/node/free) block",
                    "note": "holds no names; xfs_repair rebuilds it"}
        step = dirs.fsbs_per_dirblk
        names, structures = [], set()
        first_blk = (fo_first >> geo.blocklog) // step * step
        for dablk in range(first_blk, ((fo_end - 1) >> geo.blocklog) + 1, step):
            block = dirs.read(dablk)
            if block is None:
                continue
            _, entries = parse_data_block(self.fs, dirs.inode, block)
            structures.add("single-block directory" if _magic(block) == f.XFS_DIR3_BLOCK_MAGIC
                           else "directory data block")
            for e in entries:
                size = (11 + len(e.name) + (1 if self.fs.has_ftype else 0) + 7) & ~7
                if e.pos < fo_end and e.pos + size > fo_first:
                    names.append(decode_name(e.name))
        return _listed({"structure": ", ".join(sorted(structures)) or "directory block"}, "entries", names)

    def _attr_block(self, p: Piece) -> dict:
        geo = self.geo
        buf = self.fs.dev.pread(p.offset - p.offset % geo.blocksize, geo.blocksize, "xattr block")
        if int.from_bytes(buf[:4], "big") == f.XFS_ATTR3_RMT_MAGIC:
            return {"structure": "remote xattr value block"}
        info = f.XFS_DA3_BLKINFO.parse(buf)
        if info.magic == f.XFS_DA3_NODE_MAGIC:
            return {"structure": "xattr btree node (hash index)"}
        if info.magic != f.XFS_ATTR3_LEAF_MAGIC:
            return {"structure": "xattr block (unrecognised)"}
        names = [f"{a.namespace}.{decode_name(a.name)}" for a in leaf_entries(buf)]
        return _listed({"structure": "xattr leaf block"}, "attributes", names)


def _magic(block: DirBlock) -> int:
    return int.from_bytes(block.data[:4], "big")


def _listed(d: dict, key: str, items: list) -> dict:
    d[key] = items[:MAX_LISTED]
    if len(items) > MAX_LISTED:
        d[f"{key}_not_listed"] = len(items) - MAX_LISTED
    return d
