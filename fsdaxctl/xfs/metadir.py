"""The metadata directory tree (METADIR, incompat 0x100; xfsprogs and Linux 6.13): quota and realtime inodes
(rt bitmap, summary, rmap and refcount btrees of every rt group) are files of a directory tree of their own,
rooted at sb_metadirino, apart from the namespace rooted at sb_rootino. Its inodes carry XFS_DIFLAG2_METADATA.

Ordinary paths never include this tree (the path walk starts at sb_rootino); metadata inodes are named by their
path in it (`/quota/user`, `/rtgroups/0.rmap`), as xfs_db's `ls -m` and the kernel's xfs_metadir.c name them.
"""

from __future__ import annotations

from fsdaxctl.errors import FsdaxError, Problems
from fsdaxctl.parsers import xfs as f

NULLFSINO = 0xFFFFFFFFFFFFFFFF
_MAX_ENTRIES = 1 << 20  # the tree holds a few inodes per rt group: far fewer than this in any real filesystem


def has_metadir(fs) -> bool:
    return bool(fs.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_METADIR)


def metadir_paths(fs) -> tuple[dict[int, str], list[str]]:
    """({inode: path in the metadir tree}, problems), read once per filesystem (breadth first from
    sb_metadirino; the root is '/')."""
    cached = getattr(fs, "_metadir_paths", None)
    if cached is not None:
        return cached
    from fsdaxctl.xfs.dir import is_dir, read_dir
    from fsdaxctl.xfs.inode import read_inode

    paths: dict[int, str] = {}
    problems = Problems()
    root = fs.sb.sb_metadirino
    if has_metadir(fs) and root not in (0, NULLFSINO):
        paths[root] = "/"
        queue = [root]
        while queue and len(paths) < _MAX_ENTRIES:
            ino = queue.pop(0)
            try:
                inode = read_inode(fs, ino)
                if not is_dir(inode):
                    continue
                _, entries = read_dir(fs, inode)
            except FsdaxError as e:
                problems.append(f"metadata directory {paths[ino]} (inode {ino}) unreadable: {e}", e, ino=ino)
                continue
            base = paths[ino].rstrip("/")
            for e in entries:
                if e.ino in paths:
                    continue
                paths[e.ino] = f"{base}/{e.name.decode('utf-8', 'surrogateescape')}"
                queue.append(e.ino)
    fs._metadir_paths = (paths, problems)
    return fs._metadir_paths


def metadata_name(fs, ino: int, inode=None) -> str | None:
    """Why inode `ino` has no ordinary path, when it is a metadata inode of the metadir tree: its path there."""
    if not has_metadir(fs):
        return None
    paths, _ = metadir_paths(fs)
    if ino in paths:
        return f"metadata: metadir {paths[ino]} (no name)"
    if inode is not None and inode.core.di_flags2 & f.XFS_DIFLAG2_METADATA:
        return "metadata: a metadir inode not found in the metadata directory tree (no name)"
    return None
