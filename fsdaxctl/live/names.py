"""Names of a mounted filesystem's inodes, from its live namespace, and who holds each file open or mapped.

A walk of the mounted tree (readdir's d_ino and d_type: no stat per entry) that stops once every wanted inode
has as many names as its link count; paths are the machine's (the mount point joined), or relative to the
filesystem root. An inode with no name in the tree but open by a process is "deleted while still open", with
the processes named (from /proc/PID/fd): the kernel frees it on the last close.
"""

from __future__ import annotations

import os
import stat
from collections import deque

from fsdaxctl.errors import Problems
from fsdaxctl.live.fsmap import LiveError
from fsdaxctl.live.procs import maps_device, maps_lines, read_all_maps
from fsdaxctl.xfs.paths import Naming, mode_type


class LivePathResolver:
    """`name(inos)` -> {inode: Naming}, like the on-disk PathResolver; `holders(inos)` -> who has them."""

    def __init__(self, mount_point: str, *, fs_relative: bool = False, proc: str = "/proc"):
        self.mount_point = mount_point.rstrip("/") or "/"
        self.fs_relative = fs_relative
        self.proc = proc
        self.problems = Problems()
        self.dev = os.stat(self.mount_point).st_dev

    def _shown(self, rel: bytes) -> str:
        path = rel if self.fs_relative else os.fsencode(self.mount_point).rstrip(b"/") + rel
        return os.fsdecode(path or b"/")

    def name(self, inos) -> dict[int, Naming]:
        want = set(inos)
        out = {ino: Naming() for ino in want}
        root = os.stat(self.mount_point)
        left: dict[int, int] = {}
        if root.st_ino in want:
            out[root.st_ino].paths.append(self._shown(b"/") if self.fs_relative else self.mount_point)
            out[root.st_ino].ftype = "dir"
            want.discard(root.st_ino)
        queue = deque([b""])
        while queue and want:
            rel = queue.popleft()
            try:
                entries = list(os.scandir(os.fsencode(self.mount_point) + (rel or b"/")))
            except OSError as e:
                self.problems.append(f"cannot list {self._shown(rel)}: {e.strerror}")
                continue
            for e in entries:
                path = rel + b"/" + e.name
                ino = e.inode()
                is_dir = e.is_dir(follow_symlinks=False)
                if ino in want:
                    self._found(ino, path, out, left, want)
                if is_dir and self._same_fs(e):
                    queue.append(path)
        for ino in want:
            if not out[ino].paths and ino not in left:
                out[ino].reason = "no name in the mounted tree"
        self._unnamed_holders(out)
        for n in out.values():
            n.paths.sort()
        return out

    def _found(self, ino, path: bytes, out, left, want) -> None:
        n = out[ino]
        n.paths.append(self._shown(path))
        if ino not in left:
            try:
                st = os.lstat(os.fsencode(self.mount_point) + path)
                n.ftype = mode_type(st.st_mode)
                left[ino] = 1 if stat.S_ISDIR(st.st_mode) else st.st_nlink
            except OSError:
                left[ino] = 1
        left[ino] -= 1
        if left[ino] <= 0:
            want.discard(ino)

    def _same_fs(self, entry) -> bool:
        """Do not walk into another filesystem mounted below this one."""
        try:
            return entry.stat(follow_symlinks=False).st_dev == self.dev
        except OSError:
            return False

    def _unnamed_holders(self, out: dict) -> None:
        """Inodes without a name that a process holds: deleted while still open."""
        unnamed = {ino for ino, n in out.items() if not n.paths}
        if not unnamed:
            return
        for ino, procs in self.holders(unnamed).items():
            who = ", ".join(f"{p['comm']} (pid {p['pid']})" for p in procs[:8])
            out[ino].reason = f"deleted while still open by {who}: the blocks are freed on the last close"

    def holders(self, inos) -> dict[int, list[dict]]:
        """inode -> processes holding it open (fd) or mapped (maps), from one pass over /proc."""
        want = set(inos)
        out: dict[int, list[dict]] = {}
        try:
            pids = sorted(int(p) for p in os.listdir(self.proc) if p.isdigit())
            all_maps, _ = read_all_maps(self.proc)
        except (OSError, LiveError):
            return out
        device = maps_device(os.major(self.dev), os.minor(self.dev))
        for pid in pids:  # a process whose maps could not be read may still hold the file open
            comm = _read(f"{self.proc}/{pid}/comm").strip()
            mapped = [("mapped", int(parts[4])) for parts in maps_lines(all_maps.get(pid, b""), device)]
            seen = set()
            for how, ino in _fd_inodes(self.proc, pid, self.dev) + mapped:
                if ino in want and (ino, how[0]) not in seen:
                    seen.add((ino, how[0]))
                    out.setdefault(ino, []).append({"pid": pid, "comm": comm, "how": how})
        return out


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _fd_inodes(proc: str, pid: int, dev: int) -> list[tuple[str, int]]:
    out = []
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            st = os.stat(f"{proc}/{pid}/fd/{fd}")
        except OSError:
            continue
        if st.st_dev == dev:
            out.append((f"fd {fd}", st.st_ino))
    return out
