"""A deterministic (per seed) random filesystem workload, in the spirit of fstests' fsstress default mix, run in
one process against a mounted XFS directory. Pure stdlib: os, fcntl ioctls, ctypes for fallocate(2) modes and
renameat2(2).

    run(mnt, seed, ops, block_size=4096, reflink=True) -> {op: (tried, succeeded)}

Ops that fail with an OSError (ENOSPC, EINVAL, EOPNOTSUPP, ENOTSUP, EXDEV, EEXIST, ENOTEMPTY, ...) are
counted, never fatal: the point is the on-disk shapes the kernel leaves behind, not that every op succeeds.
A bug in this generator (anything but OSError) propagates. Once the filesystem has shut down (EIO everywhere)
the run stops early and says so.

Everything lives under MNT/work (created if missing). Paths are bytes, so names may hold any byte but '/' and
NUL. The random stream depends only on the seed and on what the kernel answered (sizes, errors), so a seed
reproduces the same op sequence on the same kernel.

    python3 tests/workload.py MNT SEED OPS [BLOCK_SIZE]     # run by hand on a mounted filesystem
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import random
import stat
import struct
import sys
import time
from collections import Counter

KiB, MiB = 1 << 10, 1 << 20

# --- ioctls and syscalls ---------------------------------------------------------------------------------
# include/uapi/linux/fs.h
FICLONE = 0x40049409  # _IOW(0x94, 9, int)
# _IOW(0x94, 13, struct file_clone_range { s64 src_fd; u64 src_offset, src_length, dest_offset; })
FICLONERANGE = 0x4020940D
FIDEDUPERANGE = 0xC0189436  # _IOWR(0x94, 54, struct file_dedupe_range) (the fixed 24-byte head)
FILE_DEDUPE_RANGE_SAME, FILE_DEDUPE_RANGE_DIFFERS = 0, 1
_CLONE_RANGE = struct.Struct("=qQQQ")
_DEDUPE_HEAD = struct.Struct("=QQHHI")  # src_offset, src_length, dest_count, reserved1, reserved2
_DEDUPE_INFO = struct.Struct("=qQQiI")  # dest_fd, dest_offset, bytes_deduped, status, reserved
assert _CLONE_RANGE.size == 32 and _DEDUPE_HEAD.size == 24 and _DEDUPE_INFO.size == 32

# fs/xfs/libxfs/xfs_fs.h (kernel 6.10+): #define XFS_IOC_EXCHANGE_RANGE _IOW('X', 129, struct xfs_exchange_range)
# struct xfs_exchange_range { __s32 file1_fd; __u32 pad; __u64 file1_offset, file2_offset, length, flags; }
_XCHG = struct.Struct("=iIQQQQ")
assert _XCHG.size == 40
XFS_IOC_EXCHANGE_RANGE = (1 << 30) | (_XCHG.size << 16) | (ord("X") << 8) | 129  # 0x40285881
XFS_EXCHANGE_RANGE_TO_EOF = 1 << 0
XFS_EXCHANGE_RANGE_DSYNC = 1 << 1

# struct dioattr { u32 d_mem, d_miniosz, d_maxiosz }: XFS_IOC_DIOINFO _IOR('X', 30, struct dioattr)
XFS_IOC_DIOINFO = (2 << 30) | (12 << 16) | (ord("X") << 8) | 30
# struct fsxattr { u32 fsx_xflags, fsx_extsize, fsx_nextents, fsx_projid, fsx_cowextsize; u8 pad[8] }
_FSXATTR = struct.Struct("=IIIII8x")
FS_IOC_FSGETXATTR = (2 << 30) | (_FSXATTR.size << 16) | (ord("X") << 8) | 31
FS_IOC_FSSETXATTR = (1 << 30) | (_FSXATTR.size << 16) | (ord("X") << 8) | 32
FS_XFLAG_EXTSIZE = 0x800
FS_XFLAG_COWEXTSIZE = 0x10000

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
AT_FDCWD = -100

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_fallocate = _libc.fallocate64
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
try:
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
except AttributeError:  # glibc < 2.28
    _renameat2 = None


_linkat = _libc.linkat
_linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_linkat.restype = ctypes.c_int
AT_SYMLINK_FOLLOW = 0x400


def link_fd(fd: int, new: bytes) -> None:
    """Give an O_TMPFILE file a name: linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, new, AT_SYMLINK_FOLLOW).
    (os.link calls link(2), which does not follow the /proc magic link.)"""
    if _linkat(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, new, AT_SYMLINK_FOLLOW) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(old: bytes, new: bytes, flags: int) -> None:
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 not in this libc")
    if _renameat2(AT_FDCWD, old, AT_FDCWD, new, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def dio_alignment(path) -> int:
    """Minimum O_DIRECT I/O size (XFS_IOC_DIOINFO d_miniosz: the sector size), 512 if it cannot be asked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(12)
        fcntl.ioctl(fd, XFS_IOC_DIOINFO, buf, True)
        return struct.unpack("=III", buf)[1] or 512
    except OSError:
        return 512
    finally:
        os.close(fd)


# --- the workload ----------------------------------------------------------------------------------------

# (op, weight): roughly fsstress's default frequencies, plus shape-makers (bigdir, deepdir, fragment) that
# fsstress reaches only by chance.
OPS = (
    ("creat", 6), ("write", 8), ("dwrite", 4), ("append", 3), ("bigwrite", 3), ("truncate", 3),
    ("falloc", 2), ("falloc_keep", 2), ("punch", 4), ("zero", 2), ("collapse", 2), ("insert", 2),
    ("unshare", 2), ("clone", 2), ("clonerange", 4), ("clonerange_self", 2), ("dedupe", 3), ("copyrange", 3),
    ("exchange", 2), ("rename", 3), ("rename_dir", 1), ("rename_exchange", 1), ("rename_whiteout", 1),
    ("link", 2), ("unlink", 4), ("rmdir", 1), ("rmtree", 1), ("mkdir", 2), ("symlink", 2), ("mknod", 1),
    ("setxattr", 3), ("setxattr_many", 1), ("setxattr_big", 1), ("removexattr", 2), ("bigdir", 1),
    ("deepdir", 1), ("fragment", 1), ("tmpfile", 1), ("extsize", 1), ("fsync", 2), ("fdatasync", 1),
    ("sync", 1),
)
REFLINK_OPS = frozenset({"clone", "clonerange", "clonerange_self", "dedupe", "unshare"})
# When the filesystem is nearly full these free space, so a long run keeps changing shapes instead of
# failing every allocation with ENOSPC.
FREEING_OPS = (("unlink", 6), ("rmtree", 2), ("punch", 4), ("truncate", 3), ("collapse", 2), ("removexattr", 1))

_POOL_SIZE = 8 * MiB


class Workload:
    def __init__(self, mnt, seed: int, *, block_size: int, reflink: bool, sector_size: int | None = None):
        self.root = os.path.join(os.fsencode(mnt), b"work")
        os.makedirs(self.root, exist_ok=True)
        self.rng = random.Random(seed)
        self.bs = block_size
        self.reflink = reflink
        self.dio = sector_size or dio_alignment(self.root)
        self.pool = random.Random(seed ^ 0x5EED).randbytes(_POOL_SIZE)  # data comes from here: fast and seeded
        self.counts: dict[str, list[int]] = {}
        self.errors: Counter = Counter()  # (op, errno name) -> n
        self.files: list[bytes] = []  # regular files (absolute bytes paths)
        self.dirs: list[bytes] = [self.root]
        self.others: list[bytes] = []  # symlinks, fifos, device nodes
        self.empty: list[bytes] = []  # empty regular files (bigdir entries): namespace ops only
        self.serial = 0
        self.xattrd: list[bytes] = []  # paths given attributes (may be stale)
        self.shutdown = False
        self.dio_buf = mmap.mmap(-1, 4 * MiB)  # page-aligned, as O_DIRECT wants
        ops = [(n, w) for n, w in OPS if reflink or n not in REFLINK_OPS]
        self.op_names = [n for n, _ in ops]
        self.op_weights = [w for _, w in ops]
        self.rescan()

    # --- bookkeeping ---
    def rescan(self) -> None:
        """Rebuild the lists of what exists from the tree itself (after renames of directories, rmtree)."""
        files, dirs, others, empty = [], [self.root], [], []
        for top, dnames, fnames in os.walk(self.root):
            dnames.sort()
            for d in dnames:
                full = os.path.join(top, d)
                (others if os.path.islink(full) else dirs).append(full)
            for n in sorted(fnames):
                full = os.path.join(top, n)
                try:
                    mode = os.lstat(full).st_mode
                except OSError:
                    continue
                if not stat.S_ISREG(mode):
                    others.append(full)
                elif os.lstat(full).st_size == 0 and self.rng.random() < 0.9:
                    empty.append(full)  # mostly bigdir entries: kept out of the data ops' way
                else:
                    files.append(full)
        self.files, self.dirs, self.others, self.empty = files, dirs, others, empty

    def data(self, n: int) -> bytes:
        n = min(n, _POOL_SIZE)
        at = self.rng.randrange(0, _POOL_SIZE - n + 1)
        return self.pool[at:at + n]

    def name(self) -> bytes:
        """A new entry name: mostly plain, sometimes long (up to 255 bytes), not UTF-8, with newlines or spaces."""
        self.serial += 1
        s = b"%d" % self.serial
        k = self.rng.randrange(20)
        if k == 0:
            return (b"long-" + s + b"-" + b"x" * 255)[:255]
        if k == 1:
            return b"\xff\xfe" + s + b"\x80 not utf-8"
        if k == 2:
            return b"new\nline " + s
        if k == 3:
            return b"sp ace\t" + s + b" \x1b[0m"
        if k == 4:
            return ("\u00e9t\u00e9-\U0001f4be-" + s.decode()).encode()
        if k < 8:
            return b"f" + s + b"-" + b"%016x" % self.rng.getrandbits(64) + b"-padding-to-make-names-long"
        return b"f" + s

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))] if seq else None

    def size_choice(self, big: bool = False) -> int:
        r = self.rng.random()
        if big:
            return self.rng.randrange(256 * KiB, 4 * MiB)
        if r < 0.35:
            return self.rng.randrange(1, 4 * KiB)
        if r < 0.75:
            return self.rng.randrange(1, 64 * KiB)
        if r < 0.95:
            return self.rng.randrange(64 * KiB, 512 * KiB)
        return self.rng.randrange(512 * KiB, 2 * MiB)

    def offset_choice(self, size: int) -> int:
        r = self.rng.random()
        if r < 0.5 or size == 0:
            return self.rng.randrange(0, size + 1) if size else 0
        if r < 0.8:
            return self.rng.randrange(0, size + 256 * KiB)
        if r < 0.95:
            return self.rng.randrange(0, 16 * MiB)
        return self.rng.randrange(0, 1 << 30)  # sparse, far out

    def aligned(self, x: int, unit: int | None = None) -> int:
        unit = unit or self.bs
        return x // unit * unit

    def fsize(self, path) -> int:
        try:
            return os.stat(path).st_size
        except OSError:
            return 0

    def free_fraction(self) -> float:
        st = os.statvfs(self.root)
        return st.f_bavail / max(1, st.f_blocks)

    # --- driver ---
    def run(self, ops: int) -> dict:
        freeing = False
        for i in range(ops):
            if i % 50 == 0:
                # Free space decides what comes next, so read it only after a sync: with delayed allocation
                # still pending, statfs depends on how far writeback has got (timing, not the seed).
                os.sync()
                freeing = self.free_fraction() < 0.12
            if freeing and self.rng.random() < 0.7:
                names, weights = zip(*FREEING_OPS)
                op = self.rng.choices(names, weights)[0]
            else:
                op = self.rng.choices(self.op_names, self.op_weights)[0]
            c = self.counts.setdefault(op, [0, 0])
            c[0] += 1
            try:
                getattr(self, "op_" + op)()
                c[1] += 1
            except OSError as e:
                self.errors[(op, errno.errorcode.get(e.errno, str(e.errno)))] += 1
                if e.errno == errno.EIO:
                    self.shutdown = True
                    break
            if i % 97 == 96 and self.rng.random() < 0.1:
                self.rescan()
        return {k: tuple(v) for k, v in sorted(self.counts.items())}

    def _file_or_new(self) -> bytes:
        f = self.pick(self.files)
        if f is None or self.rng.random() < 0.05:
            self.op_creat()
            f = self.files[-1]
        return f

    def _two_files(self):
        a = self._file_or_new()
        b = self._file_or_new()
        if len(self.files) > 1 and b == a:
            b = self.pick(self.files)
        return a, b

    # --- namespace ---
    def op_creat(self) -> None:
        d = self.pick(self.dirs)
        p = os.path.join(d, self.name())
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.files.append(p)
        try:
            if self.rng.random() < 0.6:
                os.pwrite(fd, self.data(self.size_choice()), 0)
        finally:
            os.close(fd)

    def op_mkdir(self) -> None:
        p = os.path.join(self.pick(self.dirs), self.name())
        os.mkdir(p)
        self.dirs.append(p)

    def op_deepdir(self) -> None:
        """A chain of 8-40 nested directories, a small file at some levels."""
        d = self.pick(self.dirs)
        for _ in range(self.rng.randrange(8, 40)):
            d = os.path.join(d, b"d%d" % self.rng.randrange(100))
            try:
                os.mkdir(d)
            except FileExistsError:
                if not os.path.isdir(d):
                    return
            else:
                self.dirs.append(d)
            if self.rng.random() < 0.3:
                p = os.path.join(d, self.name())
                fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
                os.pwrite(fd, self.data(self.rng.randrange(1, 3 * self.bs)), 0)
                os.close(fd)
                self.files.append(p)

    def op_bigdir(self) -> None:
        """Hundreds of entries (long names) in one directory, so it goes leaf or node form; some removed."""
        d = os.path.join(self.pick(self.dirs), b"big" + self.name())
        os.mkdir(d)
        self.dirs.append(d)
        n = self.rng.choice((120, 300, 700, 1500))
        made = []
        for i in range(n):
            p = os.path.join(d, b"entry-%05d-%016x-padding-long-name-%s" % (i, self.rng.getrandbits(64),
                                                                              b"y" * self.rng.randrange(60)))
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            if self.rng.random() < 0.05:
                os.write(fd, self.data(self.rng.randrange(1, 2 * self.bs)))
            os.close(fd)
            made.append(p)
        step = self.rng.choice((2, 3, 7, 0))
        if step:
            for p in made[::step]:
                os.unlink(p)
            made = [p for i, p in enumerate(made) if i % step]
        self.empty += made

    def op_symlink(self) -> None:
        p = os.path.join(self.pick(self.dirs), self.name())
        k = self.rng.randrange(4)
        if k == 0:
            target = b"t"
        elif k == 1:
            target = os.path.relpath(self.pick(self.files) or b"x", os.path.dirname(p))
        elif k == 2:  # long: a remote symlink block (XFS allows 1024 bytes)
            target = (b"component/" * 110)[:self.rng.randrange(200, 1024)]
        else:
            target = b"does/not/exist" + self.name()
        os.symlink(target, p)
        self.others.append(p)

    def op_mknod(self) -> None:
        p = os.path.join(self.pick(self.dirs), self.name())
        k = self.rng.randrange(3)
        if k == 0:
            os.mkfifo(p)
        elif k == 1:
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        else:
            os.mknod(p, stat.S_IFSOCK | 0o600)
        self.others.append(p)

    def op_link(self) -> None:
        src = self.pick(self.rng.choices((self.files, self.empty), (4, 1))[0] or self.files)
        if src is None:
            raise OSError(errno.ENOENT, "no files")
        p = os.path.join(self.pick(self.dirs), self.name())
        os.link(src, p)
        self.files.append(p)

    def op_tmpfile(self) -> None:
        """O_TMPFILE, written, then linked into the tree (linkat through /proc/self/fd)."""
        d = self.pick(self.dirs)
        fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o644)
        try:
            os.pwrite(fd, self.data(self.size_choice()), self.aligned(self.offset_choice(0)))
            if self.rng.random() < 0.8:
                p = os.path.join(d, self.name())
                link_fd(fd, p)
                self.files.append(p)
        finally:
            os.close(fd)

    def op_unlink(self) -> None:
        pool = self.rng.choices((self.files, self.others, self.empty), (8, 1, 2))[0] or self.files
        p = self.pick(pool)
        if p is None:
            raise OSError(errno.ENOENT, "nothing to unlink")
        pool.remove(p)
        os.unlink(p)

    def op_rmdir(self) -> None:
        if len(self.dirs) < 2:
            raise OSError(errno.ENOENT, "no directories")
        cands = [self.pick(self.dirs[1:]) for _ in range(6)]
        empty = [c for c in cands if os.path.isdir(c) and not os.listdir(c)]
        d = (empty or cands)[0]  # an empty one when one turns up; else ENOTEMPTY, counted
        os.rmdir(d)
        self.dirs.remove(d)

    def op_rmtree(self) -> None:
        """Remove a whole subtree (frees space and whole directories): the deepest of a few candidates, so
        one op seldom empties the filesystem."""
        if len(self.dirs) < 2:
            raise OSError(errno.ENOENT, "no directories")
        d = max((self.pick(self.dirs[1:]) for _ in range(3)), key=lambda p: (p.count(b"/"), p))
        for top, dnames, fnames in os.walk(d, topdown=False):
            for n in fnames:
                os.unlink(os.path.join(top, n))
            for n in dnames:
                full = os.path.join(top, n)
                if os.path.islink(full):
                    os.unlink(full)
                else:
                    os.rmdir(full)
        os.rmdir(d)
        self.rescan()

    def op_rename(self) -> None:
        pool = self.rng.choices((self.files, self.others, self.empty), (8, 1, 2))[0] or self.files
        src = self.pick(pool)
        if src is None:
            raise OSError(errno.ENOENT, "nothing to rename")
        dst = os.path.join(self.pick(self.dirs), self.name())
        if self.rng.random() < 0.2 and len(self.files) > 1:  # onto an existing file: replaces (unlinks) it
            dst = self.pick(self.files)
        replaced = dst in self.files or dst in self.others or dst in self.empty
        os.rename(src, dst)
        if replaced:
            self.rescan()
        else:
            pool[pool.index(src)] = dst

    def op_rename_dir(self) -> None:
        if len(self.dirs) < 2:
            raise OSError(errno.ENOENT, "no directories")
        src = self.pick(self.dirs[1:])
        dst = os.path.join(self.pick(self.dirs), self.name())  # into its own subtree: EINVAL, counted
        try:
            os.rename(src, dst)
        finally:
            self.rescan()

    def op_rename_exchange(self) -> None:
        a = self.pick(self.files + self.dirs[1:] + self.others)
        b = self.pick(self.files + self.dirs[1:] + self.others)
        if a is None or b is None:
            raise OSError(errno.ENOENT, "nothing to exchange")
        try:
            renameat2(a, b, RENAME_EXCHANGE)
        finally:
            self.rescan()

    def op_rename_whiteout(self) -> None:
        """RENAME_WHITEOUT leaves a 0:0 character device (a whiteout) where the source was."""
        src = self.pick(self.files)
        if src is None:
            raise OSError(errno.ENOENT, "no files")
        dst = os.path.join(self.pick(self.dirs), self.name())
        try:
            renameat2(src, dst, RENAME_WHITEOUT)
        finally:
            self.rescan()

    # --- data ---
    def _open(self, path, flags=os.O_RDWR):
        return os.open(path, flags)

    def op_write(self) -> None:
        p = self._file_or_new()
        fd = self._open(p)
        try:
            off = self.offset_choice(os.fstat(fd).st_size)
            os.pwrite(fd, self.data(self.size_choice()), off)
        finally:
            os.close(fd)

    def op_bigwrite(self) -> None:
        p = self._file_or_new()
        fd = self._open(p)
        try:
            n = self.size_choice(big=True)
            off = self.aligned(self.offset_choice(os.fstat(fd).st_size), self.dio)
            chunk = 1 * MiB
            for at in range(0, n, chunk):
                os.pwrite(fd, self.data(min(chunk, n - at)), off + at)
        finally:
            os.close(fd)

    def op_dwrite(self) -> None:
        """O_DIRECT: aligned to the sector size (often not to the block), now and then not aligned at all
        (EINVAL, counted)."""
        p = self._file_or_new()
        fd = os.open(p, os.O_RDWR | os.O_DIRECT)
        try:
            unit = self.dio if self.rng.random() < 0.6 else self.bs
            n = max(unit, self.aligned(min(self.size_choice(), 4 * MiB), unit))
            off = self.aligned(self.offset_choice(os.fstat(fd).st_size), unit)
            if self.rng.random() < 0.03:
                off += self.rng.randrange(1, 512)
            self.dio_buf.seek(0)
            self.dio_buf.write(self.data(n))
            view = memoryview(self.dio_buf)[:n]
            try:
                os.pwrite(fd, view, off)
            finally:
                view.release()
        finally:
            os.close(fd)

    def op_append(self) -> None:
        p = self._file_or_new()
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, self.data(self.size_choice()))
        finally:
            os.close(fd)

    def op_truncate(self) -> None:
        p = self._file_or_new()
        size = self.fsize(p)
        if self.rng.random() < 0.5 or size == 0:
            new = size + self.rng.randrange(0, 8 * MiB)  # up: a hole past the old EOF
        else:
            new = self.rng.randrange(0, size)  # down, usually not block aligned
        os.truncate(p, new)

    def _big_file(self) -> bytes:
        """The largest of a few random files (ops inside a file want one of some size)."""
        cands = [self._file_or_new() for _ in range(4)]
        return max(cands, key=lambda p: (self.fsize(p), p))

    def _falloc(self, mode: int, *, inside: bool = False) -> None:
        p = self._big_file() if inside else self._file_or_new()
        fd = self._open(p)
        try:
            size = os.fstat(fd).st_size
            if inside and size >= 2:
                off = self.rng.randrange(0, size - 1)
                ln = self.rng.randrange(1, size - off)
            else:
                off = self.offset_choice(size)
                ln = self.size_choice()
            fallocate(fd, mode, off, ln)
        finally:
            os.close(fd)

    def _shift(self, mode: int) -> None:
        """COLLAPSE_RANGE / INSERT_RANGE: fs-block aligned (now and then not: EINVAL), inside the file (a
        collapse may not reach EOF)."""
        p = self._big_file()
        fd = self._open(p)
        try:
            nblocks = os.fstat(fd).st_size // self.bs
            if nblocks < 2:
                raise OSError(errno.EINVAL, "file smaller than two blocks")
            off = self.rng.randrange(0, nblocks - 1)
            if mode == FALLOC_FL_COLLAPSE_RANGE:
                ln = self.rng.randrange(1, nblocks - off)
            else:
                ln = self.rng.choice((1, 2, 3, 16, self.rng.randrange(1, 512)))
            off, ln = off * self.bs, ln * self.bs
            if self.rng.random() < 0.03:
                off += self.rng.randrange(1, self.bs)
            fallocate(fd, mode, off, ln)
        finally:
            os.close(fd)

    def op_falloc(self) -> None:
        self._falloc(0)

    def op_falloc_keep(self) -> None:
        self._falloc(FALLOC_FL_KEEP_SIZE)

    def op_punch(self) -> None:
        self._falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, inside=self.rng.random() < 0.7)

    def op_zero(self) -> None:
        self._falloc(FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if self.rng.random() < 0.3 else 0),
                     inside=self.rng.random() < 0.5)

    def op_collapse(self) -> None:
        self._shift(FALLOC_FL_COLLAPSE_RANGE)

    def op_insert(self) -> None:
        self._shift(FALLOC_FL_INSERT_RANGE)

    def op_unshare(self) -> None:
        self._falloc(FALLOC_FL_UNSHARE_RANGE, inside=True)

    def op_fragment(self) -> None:
        """A file with hundreds of extents, so its data fork goes btree format: single blocks at every other
        block, written backwards (no write extends EOF, so no speculative preallocation bridges the holes), or
        every other block of a long written range punched out."""
        p = os.path.join(self.pick(self.dirs), b"frag" + self.name())
        n = self.rng.randrange(150, 600)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.files.append(p)
        try:
            if self.rng.random() < 0.5:
                for i in reversed(range(n)):
                    os.pwrite(fd, self.data(self.bs), 2 * i * self.bs)
            else:
                os.pwrite(fd, self.data(2 * n * self.bs), 0)
                os.fsync(fd)
                for i in range(n):
                    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (2 * i + 1) * self.bs, self.bs)
            os.fsync(fd)
        finally:
            os.close(fd)

    def op_extsize(self) -> None:
        """An extent size hint (or CoW extent size hint) on a new, empty file, then data written through it."""
        p = os.path.join(self.pick(self.dirs), self.name())
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.files.append(p)
        try:
            buf = bytearray(_FSXATTR.size)
            fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf, True)
            xflags, extsize, nextents, projid, cowext = _FSXATTR.unpack(buf)
            hint = self.bs * self.rng.choice((4, 16, 64))
            if self.reflink and self.rng.random() < 0.4:
                xflags, cowext = xflags | FS_XFLAG_COWEXTSIZE, hint
            else:
                xflags, extsize = xflags | FS_XFLAG_EXTSIZE, hint
            fcntl.ioctl(fd, FS_IOC_FSSETXATTR, _FSXATTR.pack(xflags, extsize, nextents, projid, cowext))
            for _ in range(self.rng.randrange(1, 6)):
                os.pwrite(fd, self.data(self.rng.randrange(1, 3 * self.bs)), self.rng.randrange(0, 256 * self.bs))
        finally:
            os.close(fd)

    # --- sharing ---
    def op_clone(self) -> None:
        src, dst = self._two_files()
        if src == dst:
            raise OSError(errno.EINVAL, "one file")
        s = os.open(src, os.O_RDONLY)
        d = os.open(dst, os.O_RDWR)
        try:
            fcntl.ioctl(d, FICLONE, s)
        finally:
            os.close(s)
            os.close(d)

    def _clone_range(self, src, dst, *, same: bool) -> None:
        """Block-aligned offsets; the length whole blocks, or running to the source's EOF (then the
        destination range must reach the destination's EOF too, else EINVAL). Within one file the ranges must
        not overlap."""
        s = os.open(src, os.O_RDWR if same else os.O_RDONLY)
        d = s if same else os.open(dst, os.O_RDWR)
        try:
            size = os.fstat(s).st_size
            if size == 0:
                raise OSError(errno.EINVAL, "empty source")
            soff = self.aligned(self.rng.randrange(0, size))
            ln = self.rng.randrange(1, size - soff + 1)
            if size - soff >= self.bs and (soff + ln < size or self.rng.random() < 0.5):
                ln = min(max(self.bs, self.aligned(ln)), self.aligned(size - soff))  # whole blocks
            else:
                ln = size - soff  # to the source's EOF
            dsize = os.fstat(d).st_size
            if same:
                blen = -(-ln // self.bs) * self.bs
                doff = self.rng.choice((soff + blen + self.bs * self.rng.randrange(0, 8),
                                        self.rng.randrange(0, size + 64 * self.bs)))
                if doff < soff + blen and doff + blen > soff:
                    doff = soff + blen
            else:
                doff = self.offset_choice(dsize)
            doff = self.aligned(doff)
            if ln % self.bs and doff + ln < dsize:
                doff = -(-max(doff, dsize - ln) // self.bs) * self.bs
                if same and doff < soff + ln and doff + ln > soff:
                    doff = -(-(soff + ln) // self.bs) * self.bs
            fcntl.ioctl(d, FICLONERANGE, _CLONE_RANGE.pack(s, soff, ln, doff))
        finally:
            os.close(s)
            if not same:
                os.close(d)

    def op_clonerange(self) -> None:
        src, dst = self._two_files()
        self._clone_range(src, dst, same=src == dst)

    def op_clonerange_self(self) -> None:
        f = self._file_or_new()
        self._clone_range(f, f, same=True)

    def op_dedupe(self) -> None:
        """Write the same bytes into two places first, so the dedupe really shares blocks; sometimes two
        destinations, and sometimes a range that differs (status DIFFERS, counted as not done)."""
        src, dst = self._two_files()
        s = os.open(src, os.O_RDWR)
        d = os.open(dst, os.O_RDWR) if dst != src else s
        try:
            n = max(self.bs, self.aligned(self.rng.randrange(1, 64) * self.bs))
            data = self.data(n)
            soff = self.aligned(self.rng.randrange(0, max(1, os.fstat(s).st_size) + self.bs))
            os.pwrite(s, data, soff)
            dests = []
            for _ in range(self.rng.choice((1, 1, 2))):
                doff = self.aligned(self.rng.randrange(0, max(1, os.fstat(d).st_size) + 16 * self.bs))
                if d == s and abs(doff - soff) < n:
                    doff = soff + n + self.bs * self.rng.randrange(0, 4)
                os.pwrite(d, data if self.rng.random() < 0.9 else self.data(n), doff)
                dests.append(doff)
            if self.rng.random() < 0.5:
                os.fsync(s)
                os.fsync(d)
            buf = bytearray(_DEDUPE_HEAD.pack(soff, n, len(dests), 0, 0))
            for doff in dests:
                buf += _DEDUPE_INFO.pack(d, doff, 0, 0, 0)
            fcntl.ioctl(s, FIDEDUPERANGE, buf, True)
            for i in range(len(dests)):
                _, _, done, status, _ = _DEDUPE_INFO.unpack_from(buf, _DEDUPE_HEAD.size + i * _DEDUPE_INFO.size)
                if status < 0:
                    raise OSError(-status, os.strerror(-status))
                if status == FILE_DEDUPE_RANGE_DIFFERS:
                    raise OSError(errno.EBADE, "dedupe: contents differ")
        finally:
            os.close(s)
            if d != s:
                os.close(d)

    def op_copyrange(self) -> None:
        src, dst = self._two_files()
        s = os.open(src, os.O_RDONLY)
        d = os.open(dst, os.O_RDWR)
        try:
            size = os.fstat(s).st_size
            soff = self.rng.randrange(0, size + 1)
            if self.rng.random() < 0.6:
                soff = self.aligned(soff)
            ln = self.rng.randrange(1, max(2, size - soff + 1)) if size > soff else self.size_choice()
            doff = self.offset_choice(os.fstat(d).st_size)
            if self.rng.random() < 0.6:
                doff = self.aligned(doff)
            if src == dst and soff < doff + ln and doff < soff + ln:
                doff = soff + ln
            os.copy_file_range(s, d, ln, soff, doff)
        finally:
            os.close(s)
            os.close(d)

    def op_exchange(self) -> None:
        """XFS_IOC_EXCHANGE_RANGE (6.10+): swap block-aligned ranges of two files, or to EOF (and the sizes)."""
        f1, f2 = self._two_files()
        a = os.open(f1, os.O_RDWR)
        b = os.open(f2, os.O_RDWR) if f2 != f1 else a
        try:
            s1, s2 = os.fstat(a).st_size, os.fstat(b).st_size
            flags = XFS_EXCHANGE_RANGE_DSYNC if self.rng.random() < 0.2 else 0
            if self.rng.random() < 0.25 and a != b:
                flags |= XFS_EXCHANGE_RANGE_TO_EOF
                o1 = o2 = self.aligned(self.rng.randrange(0, max(1, min(s1, s2))))
                ln = 0
            else:
                lim = min(s1, s2)
                if lim < self.bs:
                    raise OSError(errno.EINVAL, "files too small")
                o1 = self.aligned(self.rng.randrange(0, lim))
                o2 = self.aligned(self.rng.randrange(0, lim))
                ln = max(self.bs, self.aligned(self.rng.randrange(1, lim - max(o1, o2) + 1)))
                if a == b and abs(o1 - o2) < ln:
                    raise OSError(errno.EINVAL, "overlapping ranges of one file")
            fcntl.ioctl(b, XFS_IOC_EXCHANGE_RANGE, _XCHG.pack(a, 0, o1, o2, ln, flags))
        finally:
            os.close(a)
            if b != a:
                os.close(b)

    # --- xattrs ---
    def _xattr_target(self, existing: bool = False) -> bytes:
        if existing and self.xattrd and self.rng.random() < 0.9:
            return self.pick(self.xattrd)
        pool = self.rng.choice((self.files, self.files, self.dirs, self.others))
        p = self.pick(pool) or self.root
        self.xattrd.append(p)
        return p

    def _xattr_name(self, p) -> str:
        # user.* is refused on symlinks and special files; trusted.* (root) works on everything
        ns = "trusted." if os.path.islink(p) or not os.path.isdir(p) and not os.path.isfile(p) \
            or self.rng.random() < 0.2 else "user."
        return ns + self.rng.choice(("a", "attr-%d" % self.rng.randrange(400), "n" * self.rng.randrange(1, 200)))

    def op_setxattr(self) -> None:
        p = self._xattr_target()
        os.setxattr(p, self._xattr_name(p), self.data(self.rng.randrange(0, 256)), follow_symlinks=False)

    def op_setxattr_many(self) -> None:
        """Tens to hundreds of small attributes: a leaf, then node-form attr fork."""
        p = self._xattr_target()
        ns = "trusted." if os.path.islink(p) or not (os.path.isdir(p) or os.path.isfile(p)) else "user."
        base = self.rng.getrandbits(32)
        for i in range(self.rng.choice((20, 60, 200, 500))):
            os.setxattr(p, f"{ns}many-{base:08x}-{i:04d}", self.data(self.rng.randrange(8, 100)),
                        follow_symlinks=False)

    def op_setxattr_big(self) -> None:
        """Values of several KiB up to 64 KiB: remote value blocks."""
        p = self._xattr_target()
        for _ in range(self.rng.randrange(1, 4)):
            os.setxattr(p, self._xattr_name(p) + "-big", self.data(self.rng.randrange(2 * KiB, 64 * KiB + 1)),
                        follow_symlinks=False)

    def op_removexattr(self) -> None:
        p = self._xattr_target(existing=True)
        names = sorted(os.listxattr(p, follow_symlinks=False))
        if not names:
            raise OSError(errno.ENODATA, "no attributes")
        for n in self.rng.sample(names, min(len(names), self.rng.choice((1, 1, 5, len(names))))):
            os.removexattr(p, n, follow_symlinks=False)

    # --- syncs ---
    def op_fsync(self) -> None:
        p = self._file_or_new()
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def op_fdatasync(self) -> None:
        p = self._file_or_new()
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def op_sync(self) -> None:
        if self.rng.random() < 0.5:
            os.sync()
        else:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
            finally:
                os.close(fd)

    def close(self) -> None:
        self.dio_buf.close()


def run(mnt, seed: int, ops: int, *, block_size: int, reflink: bool, sector_size: int | None = None,
        details: dict | None = None) -> dict:
    """Run `ops` random operations under MNT/work; {op: (tried, succeeded)}.

    details: if given, filled with "errors" ({"op errno": n}), "shutdown" (the filesystem stopped answering
    with EIO), "seconds", and "files"/"dirs"/"others" (how many the workload knows of at the end)."""
    t0 = time.monotonic()
    w = Workload(mnt, seed, block_size=block_size, reflink=reflink, sector_size=sector_size)
    try:
        counts = w.run(ops)
    finally:
        w.close()
    if details is not None:
        w.rescan()
        details.update({
            "errors": {f"{op} {name}": n for (op, name), n in sorted(w.errors.items())},
            "shutdown": w.shutdown,
            "seconds": round(time.monotonic() - t0, 2),
            "files": len(w.files) + len(w.empty), "dirs": len(w.dirs), "others": len(w.others),
        })
    return counts


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    details: dict = {}
    counts = run(argv[0], int(argv[1]), int(argv[2]), block_size=int(argv[3]) if len(argv) > 3 else 4096,
                 reflink=True, details=details)
    for op, (tried, ok) in counts.items():
        print(f"{op:18} {ok:6}/{tried:<6}")
    print(details)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
