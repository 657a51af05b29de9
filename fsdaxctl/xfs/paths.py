"""Inode numbers -> every path (all hard links), or the reason an inode has none.

With parent pointers (the PARENT feature): up from each inode through its parent-pointer xattrs, checking
every parent's generation. Without them (or for what they cannot name): a breadth-first walk down from the
root that reads only directory data blocks, and stops as soon as every wanted inode has been named as often
as its link count says. Names are bytes on disk;
they become str with surrogate escapes (os.fsdecode's convention), so no byte is lost or invented.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.attr import read_attrs
from fsdaxctl.xfs.dir import DirBlocks, is_dir, parse_data_block, read_dir, verify_data_block, wanted_entries
from fsdaxctl.xfs.inode import IN_USE, XFS_INODES_PER_CHUNK, chunk_slot_states, read_inode
from fsdaxctl.xfs.metadir import metadata_name

NULLFSINO = 0xFFFFFFFFFFFFFFFF
_MAX_PATTERNS = 64  # wanted inodes up to which a byte search beats comparing every aligned word
NEAR_MAX = 8  # wanted inodes up to which each is first looked for near its own inode number (_near)
NEAR_CHUNKS = 128  # inode chunks on either side searched for its directory, nearest first
PARENT_REC = f.XFS_PARENT_REC


def _is_dir_core(raw: bytes, off: int) -> bool:
    """Does the inode core at `off` (unverified: only a hint where to look) say directory?"""
    return raw[off:off + 2] == b"IN" and int.from_bytes(raw[off + 2:off + 4], "big") & 0o170000 == 0o040000


def decode_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class Naming:
    paths: list[str] = field(default_factory=list)
    reason: str | None = None  # why there are no (or not all) paths
    ftype: str | None = None  # file, dir, symlink, ... from the inode's mode


_MODE_TYPES = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink", 0o020000: "chardev",
               0o060000: "blockdev", 0o010000: "fifo", 0o140000: "socket"}


def mode_type(mode: int) -> str:
    return _MODE_TYPES.get(mode & 0o170000, "unknown")


class PathResolver:
    """Names inodes; remembers every directory it has read, so later calls walk only what is new."""

    def __init__(self, fs):
        self.fs = fs
        self.problems = Problems()
        self._dir_paths: dict[tuple[int, int], bytes | None] = {}
        self._up_paths: dict[int, bytes] = {}  # directories' paths found through '..' (_path_up)
        sb = fs.sb
        self.metadata_inodes = {ino: what for ino, what in (
            (sb.sb_rbmino, "realtime bitmap inode"), (sb.sb_rsumino, "realtime summary inode"),
            (sb.sb_uquotino, "user quota inode"), (sb.sb_gquotino, "group quota inode"),
            (sb.sb_pquotino, "project quota inode")) if ino not in (0, NULLFSINO)}

    def name(self, inos) -> dict[int, Naming]:
        fs = self.fs
        out: dict[int, Naming] = {}
        want: dict[int, int] = {}  # inode -> names still expected
        for ino in set(inos):
            n = out[ino] = Naming()
            try:
                inode = read_inode(fs, ino)
            except FsdaxError as e:
                n.reason = f"inode unreadable: {e}"
                continue
            n.ftype = mode_type(inode.core.di_mode)
            if ino in self.metadata_inodes:
                n.reason = f"metadata: {self.metadata_inodes[ino]} (no name)"
                continue
            meta = metadata_name(fs, ino, inode)  # METADIR: named by its path in the metadata tree
            if meta:
                n.reason = meta
                continue
            if ino == fs.sb.sb_rootino:
                n.paths.append("/")
                continue
            nlink = inode.core.di_nlink
            if nlink == 0:
                if self._on_unlinked_list(ino):
                    n.reason = ("unlinked: deleted while still open (on the AGI unlinked list); no name, the "
                                "blocks are freed when the last user closes it or at the next mount")
                else:
                    n.reason = "link count 0 but not on the AGI unlinked list: xfs_repair would free it"
                continue
            want[ino] = 1 if is_dir(inode) else nlink
        if want and self.fs.has_parent:
            self._up(want, out)
        remaining = {i: n for i, n in want.items() if n}
        if remaining and len(remaining) <= NEAR_MAX:  # a few: first among the directories allocated near them
            for ino in list(remaining):
                if self._near(ino, remaining[ino], out[ino]):
                    del remaining[ino]
                    want[ino] = 0
        if remaining:  # without parent pointers, or what they could not name
            self._walk(remaining, out)
            want.update(remaining)
        for ino, left in want.items():
            n = out[ino]
            if left and not n.paths:
                n.reason = "no directory entry found: an orphan (xfs_repair would move it to lost+found)"
            elif left:
                n.reason = f"{left} of its links not found in the directory tree"
            n.paths.sort()
        return out

    # --- up, through parent pointers (PARENT feature) ---
    def _up(self, want: dict[int, int], out: dict[int, Naming]) -> None:
        for ino in list(want):
            try:
                parents = self._parents(read_inode(self.fs, ino))
            except FsdaxError as e:
                self.problems.append(f"parent pointers of inode {ino} unreadable: {e}", e, ino=ino)
                continue
            for name, pino, pgen in parents:
                dpath = self._dir_path(pino, pgen, 0)
                if dpath is not None and want[ino]:
                    out[ino].paths.append(decode_name(dpath + b"/" + name))
                    want[ino] -= 1

    def _parents(self, inode) -> list[tuple[bytes, int, int]]:
        """(entry name, parent inode, parent generation) of every parent pointer xattr."""
        out = []
        for a in read_attrs(self.fs, inode):
            if a.flags & f.XFS_ATTR_PARENT and a.value is not None and len(a.value) == PARENT_REC.size:
                pino, pgen = PARENT_REC.unpack(a.value)
                out.append((a.name, pino, pgen))
        return out

    def _dir_path(self, ino: int, gen: int, depth: int) -> bytes | None:
        """The path of directory `ino` (b"" for the root) if its generation is `gen`, else None."""
        if ino == self.fs.sb.sb_rootino:
            return b""
        key = (ino, gen)
        if key in self._dir_paths:
            return self._dir_paths[key]
        self._dir_paths[key] = None  # a loop in damaged pointers ends here
        try:
            inode = read_inode(self.fs, ino)
            if inode.core.di_gen != gen:
                self.problems.append(f"parent pointer to inode {ino} names generation {gen}, the inode has "
                                     f"{inode.core.di_gen}: a stale pointer")
                return None
            parents = self._parents(inode)
        except FsdaxError as e:
            self.problems.append(f"directory inode {ino} unreadable: {e}", e, ino=ino)
            return None
        if depth < 4096 and len(parents) == 1:
            name, pino, pgen = parents[0]
            up = self._dir_path(pino, pgen, depth + 1)
            if up is not None:
                self._dir_paths[key] = up + b"/" + name
        return self._dir_paths[key]

    # --- near: the directories allocated next to an inode, then up through '..' ---
    def _near(self, ino: int, links: int, naming: Naming) -> bool:
        """Name `ino` from the directories whose inodes lie in the inode chunks around it (XFS allocates a new
        inode near its parent directory's), each found directory's path taken up through '..' and checked
        against its parent's entries to the root. True when all `links` names were found so (else nothing is
        kept, and the walk from the root names it)."""
        paths = []
        try:
            if is_dir(read_inode(self.fs, ino)):  # one name, found through its own '..'
                up = self._path_up(ino)
                paths = [decode_name(up)] if up else []
            for dino in self._dirs_near(ino) if not paths else ():
                names = self._names_of(dino, ino)
                dpath = self._path_up(dino) if names else None
                paths += [decode_name(dpath + b"/" + n) for n in names] if dpath is not None else []
                if len(paths) >= links:
                    break
        except FsdaxError:
            return False  # the walk reads these again, and says what it cannot read
        if len(paths) != links:
            return False
        naming.paths += paths
        return True

    def _dirs_near(self, ino: int):
        """Directory inodes in the NEAR_CHUNKS inode chunks on either side of `ino`'s, nearest chunk first
        (each chunk read only when the nearer ones did not hold the name)."""
        from fsdaxctl.xfs import btree

        fs, geo = self.fs, self.fs.geo
        agno, agbno, slot = geo.ino_to_ag(ino)
        agino = (agbno << geo.inopblog) | slot
        span = NEAR_CHUNKS * XFS_INODES_PER_CHUNK
        recs = []
        for rec in btree.Ag(fs, agno).inobt.records(max(0, agino - span), agino + span):
            if type(rec) is btree.Unreadable:
                raise rec.error
            recs.append(rec)
        for rec in sorted(recs, key=lambda r: abs(r[0] + XFS_INODES_PER_CHUNK // 2 - agino)):
            first = geo.ag_to_ino(agno, rec[0] >> geo.inopblog, rec[0] & ((1 << geo.inopblog) - 1))
            raw = fs.dev.pread(geo.ino_to_byte(first), XFS_INODES_PER_CHUNK * geo.inodesize, "inode chunk")
            dirs = [first + i for i, state in enumerate(chunk_slot_states(fs, rec)) if state == IN_USE
                    and _is_dir_core(raw, i * geo.inodesize) and first + i != ino]
            yield from sorted(dirs, key=lambda d: abs(d - ino))

    def _names_of(self, dino: int, ino: int) -> list[bytes]:
        """The names directory `dino` gives inode `ino` (its entries' chains followed, as the walk does)."""
        inode = read_inode(self.fs, dino)
        if not is_dir(inode):
            return []
        fmt, _ = inode.fork("data")
        if fmt == f.XFS_DINODE_FMT_LOCAL:
            return [e.name for e in read_dir(self.fs, inode)[1] if e.ino == ino]
        pattern, out = ino.to_bytes(8, "big"), []
        for block in DirBlocks(self.fs, inode).data_blocks():
            magic = verify_data_block(inode, block)
            if pattern in block.data:
                out += [e.name for e in wanted_entries(self.fs, inode, block, {ino}, verified=magic)]
        return out

    def _path_up(self, dino: int) -> bytes | None:
        """The path of directory `dino` (b"" for the root) through '..', each step confirmed by the parent's
        entry naming it; None when a step is not confirmed (an orphan, a damaged '..')."""
        chain, cur, seen = [], dino, set()  # (directory, its name in its parent), from dino up
        while cur not in seen:  # a '..' loop (damage) ends at its first repeat
            seen.add(cur)
            if cur == self.fs.sb.sb_rootino or cur in self._up_paths:
                path = self._up_paths.get(cur, b"")
                for d, name in reversed(chain):
                    path = self._up_paths[d] = path + b"/" + name
                return path
            parent = self._dotdot(cur)
            names = self._names_of(parent, cur) if parent else []
            if len(names) != 1:
                return None
            chain.append((cur, names[0]))
            cur = parent
        return None

    def _dotdot(self, dino: int) -> int | None:
        inode = read_inode(self.fs, dino)
        fmt, _ = inode.fork("data")
        if fmt == f.XFS_DINODE_FMT_LOCAL:
            return read_dir(self.fs, inode)[0]
        for block in DirBlocks(self.fs, inode).data_blocks():  # '..' is the second entry of the first block
            return parse_data_block(self.fs, inode, block)[0]
        return None

    # --- down, from the root ---
    def _walk(self, want: dict[int, int], out: dict[int, Naming]) -> None:
        fs = self.fs
        pending = sum(want.values())
        wanted = {ino for ino, left in want.items() if left}  # kept as counts run out: one set for the walk
        queue = deque([(fs.sb.sb_rootino, b"")])
        seen = {fs.sb.sb_rootino}
        while queue and pending:
            dino, dpath = queue.popleft()
            try:
                entries = self._entries(read_inode(fs, dino), wanted)
            except FsdaxError as e:
                self.problems.append(f"directory {decode_name(dpath) or '/'} (inode {dino}) unreadable: {e}",
                                     e, ino=dino)
                continue
            for e in entries:
                path = dpath + b"/" + e.name
                left = want.get(e.ino)
                if left:
                    out[e.ino].paths.append(decode_name(path))
                    want[e.ino] = left - 1
                    pending -= 1
                    if left == 1:
                        wanted.discard(e.ino)
                if e.ftype == f.XFS_DIR3_FT_DIR or (e.ftype is None and self._is_dir(e.ino)):
                    if e.ino not in seen:
                        seen.add(e.ino)
                        queue.append((e.ino, path))

    def _entries(self, inode, wanted: set[int]):
        """The entries of a directory that the walk needs. A directory with link count 2 has no
        subdirectories, so only entries of wanted inodes matter: a (verified) block in which no wanted inode
        number's 8 bytes occur is not walked at all (a few numbers: a byte search; many: the block's aligned
        words against the set), and in one that holds some only those entries are decoded. Most directories of
        a big tree are such leaves."""
        fmt, _ = inode.fork("data")
        if inode.core.di_nlink != 2 or fmt == f.XFS_DINODE_FMT_LOCAL:
            return read_dir(self.fs, inode)[1]
        patterns = [ino.to_bytes(8, "big") for ino in wanted] if len(wanted) <= _MAX_PATTERNS else None
        out = []
        for block in DirBlocks(self.fs, inode).data_blocks():
            magic = verify_data_block(inode, block)
            if patterns is None or any(p in block.data for p in patterns):
                out += wanted_entries(self.fs, inode, block, wanted, verified=magic)
        return out

    def _on_unlinked_list(self, ino: int) -> bool:
        """Is ino on its AGI's unlinked list? The bucket is agino % 64; the chain runs through
        di_next_unlinked (agino, NULLAGINO ends it)."""
        geo = self.fs.geo
        agno, agbno, slot = geo.ino_to_ag(ino)
        agino = (agbno << geo.inopblog) | slot
        try:
            cur = self.fs.agi(agno).agi_unlinked[agino % f.XFS_AGI_UNLINKED_BUCKETS]
            for _ in range(1 << 20):  # bounded: a damaged chain may loop
                if cur == agino:
                    return True
                if cur == f.NULLAGINO:
                    return False
                cur = read_inode(self.fs, geo.ag_to_ino(agno, 0) | cur).core.di_next_unlinked
        except FsdaxError:
            return False
        return False

    def _is_dir(self, ino: int) -> bool:
        try:
            return is_dir(read_inode(self.fs, ino))
        except FsdaxError:
            return False
