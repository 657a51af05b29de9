"""Real XFS images for the kernel-oracle tests: mkfs.xfs, loop mounts, a deterministic population with files of
every shape, and a record of what the kernel itself says about the result (GETFSMAP, FIEMAP, paths).

    python tests/images.py CONFIG OUT.img      # build one image by hand (needs root and loop devices)

Needs root for everything but mkfs().  Only the stdlib.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import random
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import kernel as K  # noqa: E402

# mkfs.xfs 6.1 refuses filesystems under 300 MB unless it believes it runs under xfstests.
MKFS_ENV = {**os.environ, "TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def mkfs(path, size_bytes: int, opts: list[str], *, binary: str = "mkfs.xfs") -> None:
    """Create (or truncate) a sparse file of size_bytes and run `<binary> -f -q <opts> path` on it.

    binary: the mkfs.xfs to run (a name on PATH or a path), e.g. a newer build for features mkfs 6.1 lacks.
    """
    path = os.fspath(path)
    with open(path, "wb") as fh:
        fh.truncate(size_bytes)
    p = subprocess.run([binary, "-f", "-q", *opts, path], env=MKFS_ENV, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{binary} {' '.join(opts)} {path} failed ({p.returncode}): {p.stderr.strip()}")


def _cfg(size, mkfs_opts, *, block_size, reflink, rmapbt, sector_size=512, **extra):
    return {"size": size, "mkfs": mkfs_opts, "block_size": block_size, "sector_size": sector_size,
            "reflink": reflink, "rmapbt": rmapbt, **extra}


_ODD_AG_BLOCKS = 3001  # 8 KiB blocks: not a power of two, so agblklog (12) leaves a gap in fsblock numbers
_ODD_FS_BLOCKS = 3 * _ODD_AG_BLOCKS + 2500  # and a short last AG

# Every config here was checked to mkfs, mount (rw and ro) and populate on kernel 6.18 / xfsprogs 6.1.
# Images are sparse files; `size` is the image file's size (for 8k-odd-ag 1 MiB more than the filesystem, so
# the image has bytes past the end of the filesystem).  Notes:
#  * a 4096-byte sector needs a block size >= 4096, so there is no 2k-block/4k-sector config: "4k-4ksect" is
#    4k blocks on 4k sectors (mounted through a 4096-byte-sector loop device), and "2k-reflink" covers 2k blocks;
#  * 64k blocks need a log of >= 1984 blocks (124 MiB) inside one AG, hence 256 MiB with 2 AGs; the kernel
#    mounts it (with an "EXPERIMENTAL large block size" warning), as it does 8k blocks on 4k pages;
#  * rmapbt=1,reflink=0 gets an explicit 8 MiB log: mkfs 6.1's default for 64 MiB (878 blocks) is below what
#    kernel 6.18 demands for that feature set (962 blocks), and the mount fails with "Log size ... too small".
IMAGE_CONFIGS: dict[str, dict] = {
    "4k-reflink": _cfg(64 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"],
                       block_size=4096, reflink=True, rmapbt=True),
    "1k-reflink": _cfg(64 * MiB, ["-b", "size=1024", "-m", "rmapbt=1,reflink=1", "-d", "agcount=3"],
                       block_size=1024, reflink=True, rmapbt=True),
    "2k-reflink": _cfg(64 * MiB, ["-b", "size=2048", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"],
                       block_size=2048, reflink=True, rmapbt=True),
    "4k-4ksect": _cfg(64 * MiB, ["-b", "size=4096", "-s", "size=4096", "-m", "rmapbt=1,reflink=1"],
                      block_size=4096, sector_size=4096, reflink=True, rmapbt=True),
    "64k-block": _cfg(256 * MiB, ["-b", "size=65536", "-m", "rmapbt=1,reflink=1", "-d", "agcount=2"],
                      block_size=65536, reflink=True, rmapbt=True),
    "4k-rmap-noreflink": _cfg(64 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=0", "-l", "size=8m"],
                              block_size=4096, reflink=False, rmapbt=True),
    "4k-norefl-normap": _cfg(64 * MiB, ["-b", "size=4096", "-m", "rmapbt=0,reflink=0"],
                             block_size=4096, reflink=False, rmapbt=False),
    "4k-reflink-normap": _cfg(64 * MiB, ["-b", "size=4096", "-m", "rmapbt=0,reflink=1"],
                              block_size=4096, reflink=True, rmapbt=False),
    "8k-odd-ag": _cfg(_ODD_FS_BLOCKS * 8192 + 1 * MiB,
                      ["-b", "size=8192", "-d", f"agsize={_ODD_AG_BLOCKS * 8192},size={_ODD_FS_BLOCKS * 8192}",
                       "-m", "rmapbt=1,reflink=1"],
                      block_size=8192, reflink=True, rmapbt=True),
    # 0.8 TiB AGs (agblklog 28 + inopblog 3): inode numbers of AG 2 and up need more than 32 bits, so the
    # root's shortform directory keeps 8-byte inode numbers (i8count > 0). Sparse: mkfs writes only the AG
    # headers and the log.
    "4k-4t-sparse": _cfg(4 << 40, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=5", "-l", "size=64m"],
                         block_size=4096, reflink=True, rmapbt=True),
    # 1 KiB blocks in 8 AGs (the smallest AG mkfs allows with 1 KiB blocks is 16 MiB): the third base image
    # of the fuzz campaign (tests/fuzzdb.py), with many AG headers and multi-level btrees.
    "1k-8ag": _cfg(128 * MiB, ["-b", "size=1024", "-d", "agcount=8", "-m", "rmapbt=1,reflink=1"],
                   block_size=1024, reflink=True, rmapbt=True),
    # A directory block of 4 fs blocks (-n size=16k): directory blocks span fs blocks (dirblklog = 2).
    "4k-dirblk16k": _cfg(64 * MiB, ["-b", "size=4096", "-n", "size=16384", "-m", "rmapbt=1,reflink=1"],
                         block_size=4096, reflink=True, rmapbt=True),
}


# --- mounting --------------------------------------------------------------------------------------------

def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def image_sector_size(image) -> int:
    """sb_sectsize from the primary superblock (big-endian u16 at byte 102), 512 if it is not XFS."""
    with open(image, "rb") as fh:
        sb = fh.read(104)
    if len(sb) < 104 or sb[:4] != b"XFSB":
        return 512
    return struct.unpack_from(">H", sb, 102)[0]


def _retry(cmd, tries: int = 30) -> bool:
    for i in range(tries):
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return True
        time.sleep(min(0.05 * (i + 1), 0.5))
    return False


@contextlib.contextmanager
def loop_mount(image, readonly: bool = False):
    """Mount an XFS image at a fresh temporary directory and yield its path; always unmount and clean up.

    512-byte-sector images: `mount -o loop[,ro]`.  4 KiB-sector images: `losetup --sector-size 4096 -f
    --show [-r]`, mount that device, detach it afterwards.
    """
    image = os.fspath(image)
    mnt = tempfile.mkdtemp(prefix="fsdaxctl-mnt-")
    dev = None
    try:
        if image_sector_size(image) >= 4096:
            dev = _run(["losetup", "--sector-size", "4096", "-f", "--show", *(["-r"] if readonly else []),
                        image]).stdout.strip()
            _run(["mount", "-t", "xfs", *(["-o", "ro"] if readonly else []), dev, mnt])
        else:
            _run(["mount", "-t", "xfs", "-o", "loop,ro" if readonly else "loop", image, mnt])
        try:
            yield mnt
        finally:
            if not _retry(["umount", mnt]):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
                raise RuntimeError(f"could not unmount {mnt} (lazily unmounted instead)")
    finally:
        if dev is not None and not _retry(["losetup", "-d", dev]):
            raise RuntimeError(f"could not detach {dev}")
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


# --- population ------------------------------------------------------------------------------------------

BMBT_FILE = "bmbt/many-extents"  # the file whose data fork must be in btree format
BMBT_EXTENTS = 450


def write_file(path, data: bytes, offset: int = 0, *, fsync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _xfs_io(path, *cmds: str) -> str:
    args = ["xfs_io"]
    for c in cmds:
        args += ["-c", c]
    return _run([*args, path]).stdout


def _direct_interleave(paths, rng, bs: int, rounds: int) -> None:
    """Append chunks of 1-4 blocks to each file in turn with O_DIRECT, so their extents interleave on disk.

    Direct writes allocate exactly what they write (no speculative post-EOF preallocation), so every chunk
    of one file is separated from the next by a chunk of another.  Falls back to buffered write + fsync.
    """
    buf = mmap.mmap(-1, 4 * bs)  # page-aligned, as O_DIRECT wants
    try:
        fds = []
        for p in paths:
            try:
                fds.append((os.open(p, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644), True))
            except OSError:
                fds.append((os.open(p, os.O_WRONLY | os.O_CREAT, 0o644), False))
        sizes = [0] * len(paths)
        for _ in range(rounds):
            for i, (fd, direct) in enumerate(fds):
                n = rng.randint(1, 4) * bs
                buf.seek(0)
                buf.write(rng.randbytes(n))
                view = memoryview(buf)[:n]
                try:
                    written = os.pwrite(fd, view, sizes[i])
                finally:
                    view.release()
                assert written == n
                sizes[i] += n
                if not direct:
                    os.fsync(fd)
        for fd, _ in fds:
            os.fsync(fd)
            os.close(fd)
    finally:
        buf.close()


def _geometry(mnt) -> dict:
    out = _xfs_io(mnt, "statfs")
    geo = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        k, v = k.strip(), v.strip()
        if k.startswith("geom.") and v.isdigit():
            geo[k[5:]] = int(v)
    return geo


def populate(mnt, *, reflink: bool, seed: int, block_size: int) -> None:
    """Fill a mounted, empty XFS with a deterministic (per seed) set of files of every shape.

    Multi-extent files (interleaved direct appends and gappy writes), sparse files (data at 1 GiB and 3 GiB),
    unwritten extents (fallocate, partly written, and past EOF), whole and partial reflinks, reflinks inside
    one file and of unwritten extents, CoW-broken sharing (reflink configs only), hard links across
    directories, local/leaf/remote xattrs, a directory of thousands of entries (node form), a file of
    BMBT_EXTENTS extents (bmbt format), short/long/dangling symlinks, empty files and dirs, deep directories,
    and deleted files leaving free-space holes.  Ends with os.sync().
    """
    rng = random.Random(seed)
    bs = block_size
    P = lambda *parts: os.path.join(mnt, *parts)  # noqa: E731
    geo = _geometry(mnt)
    ag_bytes = geo.get("agblocks", 0) * bs

    for d in ("deep/l1/l2/l3/l4/l5/l6/l7", "frag", "sparse", "prealloc", "bmbt", "links/sub", "xattr",
              "bigdir", "empty/dir/inner", "scratch", "big", "reflink"):
        os.makedirs(P(d), exist_ok=True)

    # Deep directories with a small file at every level (the deepest one several blocks).
    d = mnt
    for lvl, name in enumerate("deep/l1/l2/l3/l4/l5/l6/l7".split("/")):
        d = os.path.join(d, name)
        write_file(os.path.join(d, f"f{lvl}"), rng.randbytes(rng.randint(1, 3 * bs)))

    # Multi-extent files: interleaved direct appends, plus a small file whose writes leave gaps.
    _direct_interleave([P("frag/a"), P("frag/b"), P("frag/c")], rng, bs, rounds=12)
    for i in range(12):
        write_file(P("frag/gappy"), rng.randbytes(rng.randint(1, 2) * bs), (3 * i + rng.randint(0, 1)) * bs)

    # Free-space holes: files that are deleted again (every other one), and unaligned tails.
    for i in range(24):
        write_file(P("scratch", f"t{i:02d}"), rng.randbytes(rng.randint(1, 3) * bs + rng.randint(0, bs - 1)),
               fsync=True)
    for i in range(0, 24, 2):
        os.unlink(P("scratch", f"t{i:02d}"))

    # Sparse files: data at 0, a few blocks on, 1 MiB, 1 GiB (+ blocks); data only at 3 GiB; a hole-only tail.
    for off in (0, 5 * bs, 1 * MiB, 1 * GiB, 1 * GiB + 3 * bs):
        write_file(P("sparse/holes"), rng.randbytes(bs), off)
    write_file(P("sparse/far-only"), rng.randbytes(2 * bs), 3 * GiB)
    write_file(P("sparse/tail-hole"), rng.randbytes(bs))
    os.truncate(P("sparse/tail-hole"), 64 * bs)
    with open(P("sparse/all-hole"), "wb") as fh:
        fh.truncate(256 * MiB)

    # Unwritten extents: whole, partly written (written islands split the unwritten extent), past EOF.
    fd = os.open(P("prealloc/full"), os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, 16 * bs)
    os.close(fd)
    fd = os.open(P("prealloc/mixed"), os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, 32 * bs)
    os.pwrite(fd, rng.randbytes(3 * bs), 3 * bs)
    os.pwrite(fd, rng.randbytes(bs // 2), 20 * bs + 7)  # a partial block: that whole block becomes written
    os.fsync(fd)
    os.close(fd)
    write_file(P("prealloc/beyond-eof"), rng.randbytes(4 * bs))
    _xfs_io(P("prealloc/beyond-eof"), f"falloc -k {4 * bs} {8 * bs}")

    # A file with far more extents than fit in the inode: single blocks at every other block, written
    # backwards so no write extends EOF (no speculative preallocation bridging the holes).
    fd = os.open(P(BMBT_FILE), os.O_WRONLY | os.O_CREAT, 0o644)
    for i in reversed(range(BMBT_EXTENTS)):
        os.pwrite(fd, rng.randbytes(bs), 2 * i * bs)
    os.fsync(fd)
    os.close(fd)
    nextents = int(_xfs_io(P(BMBT_FILE), "stat").split("fsxattr.nextents = ")[1].split()[0])
    if nextents < BMBT_EXTENTS // 2:
        raise RuntimeError(f"{BMBT_FILE} has only {nextents} extents")

    # A file larger than an AG (when half the free space allows): extents in several AGs.
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    big = min(int(ag_bytes * 1.25), free // 2, 96 * MiB) if ag_bytes else 0
    big = max(big, 16 * bs) // bs * bs
    with open(P("big/spans-ags"), "wb") as fh:
        chunk = rng.randbytes(min(big, 1 * MiB))
        left = big
        while left:
            n = min(left, len(chunk))
            fh.write(chunk[:n])
            left -= n

    # Hard links: one inode, several names in different directories.
    write_file(P("links/orig"), rng.randbytes(3 * bs + 100))
    os.link(P("links/orig"), P("links/sub/second-name"))
    os.link(P("links/orig"), P("deep/l1/l2/third-name"))
    os.link(P("links/orig"), P("empty/dir/fourth-name"))
    os.link(P("frag/a"), P("deep/l1/frag-a-link"))

    # Symlinks: short (inline), long (a remote block: XFS allows up to 1024 bytes), dangling, to a directory.
    os.symlink("orig", P("links/short"))
    os.symlink("/".join(f"component-{i:03d}" for i in range(70))[:1000], P("links/long"))
    os.symlink("does/not/exist", P("links/dangling"))
    os.symlink("../deep/l1/l2", P("links/to-dir"))

    # Empty files and directories.
    for i in range(4):
        open(P("empty", f"e{i}"), "wb").close()

    # Extended attributes: one tiny (shortform), many small (leaf/node blocks), several KiB values (remote
    # value blocks, or a leaf block for big block sizes), and some on a directory.
    write_file(P("xattr/inline"), b"x")
    os.setxattr(P("xattr/inline"), "user.tiny", b"1")
    write_file(P("xattr/many-small"), rng.randbytes(bs))
    for i in range(300):
        os.setxattr(P("xattr/many-small"), f"user.attr-{i:04d}", rng.randbytes(rng.randint(8, 60)))
    write_file(P("xattr/big-remote"), rng.randbytes(2 * bs))
    for i in range(4):
        os.setxattr(P("xattr/big-remote"), f"user.big{i}", rng.randbytes(rng.randint(5, 14) * KiB))
    for i in range(10):
        os.setxattr(P("xattr/big-remote"), f"user.small{i}", rng.randbytes(32))
    os.setxattr(P("xattr"), "user.on-a-dir", rng.randbytes(6 * KiB))
    os.setxattr(P("links/orig"), "user.linked", rng.randbytes(3 * KiB))

    # A big directory: thousands of entries with long names (leaf/node form); some removed again.
    for i in range(3000):
        fd = os.open(P("bigdir", f"entry-{i:05d}-{rng.getrandbits(64):016x}-padding-to-make-names-long"),
                     os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    for name in sorted(os.listdir(P("bigdir")))[::9]:
        os.unlink(P("bigdir", name))

    # Names as they come: spaces, tabs, a newline, quotes and backslashes, bytes that are not UTF-8, unicode
    # (precomposed and combining), a leading dash, the longest name XFS allows (255 bytes).
    os.makedirs(P("names/sub dir/tab\there"), exist_ok=True)
    odd = [b"plain", b"with space", b"tab\there", b"new\nline", b"quote\"d and back\\slash", b"-leading-dash",
           b"\xff\xfe not utf-8 \x80", b"caf\xc3\xa9 na\xc3\xafve", b"cafe\xcc\x81 combining",
           "\U0001f4be disk \u2603".encode(), b"x" * 255, b"\x1b[31mescape", b"carriage\rreturn"]
    for name in odd:
        write_file(os.path.join(os.fsencode(P("names")), name), rng.randbytes(rng.randint(1, bs)))
        write_file(os.path.join(os.fsencode(P("names/sub dir/tab\there")), name), b"y")
    os.link(os.path.join(os.fsencode(P("names")), b"new\nline"),
            os.path.join(os.fsencode(P("names/sub dir")), b"\xff link to new\nline"))

    # One directory of each form: shortform (in the inode), block (one directory block), leaf (data blocks and
    # a hash leaf), node (bigdir, below); with 64 KiB blocks everything but bigdir stays in one block.
    for form, n in (("sf", 3), ("block", 40), ("leaf", 400)):
        os.makedirs(P("forms", form), exist_ok=True)
        for i in range(n):
            open(P("forms", form, f"{form}-{i:04d}"), "wb").close()
    os.mkdir(P("forms", "sf", "subdir"))

    if reflink:
        # Whole-file clone; partial reflink into a file with its own data; a reflink inside one file; a clone
        # of a multi-extent file and of a file with unwritten extents; then CoW writes that break sharing for
        # part of an extent, leaving records only partly shared.
        write_file(P("reflink/src"), rng.randbytes(64 * bs), fsync=True)
        _run(["cp", "--reflink=always", P("reflink/src"), P("reflink/whole-clone")])
        write_file(P("reflink/partial"), rng.randbytes(32 * bs), fsync=True)
        _xfs_io(P("reflink/partial"), f"reflink {P('reflink/src')} {8 * bs} {4 * bs} {16 * bs}")
        _xfs_io(P("reflink/src"), f"reflink {P('reflink/src')} {40 * bs} {80 * bs} {8 * bs}")
        _run(["cp", "--reflink=always", P("frag/a"), P("reflink/frag-a-clone")])
        _run(["cp", "--reflink=always", P("prealloc/mixed"), P("reflink/prealloc-clone")])
        _run(["cp", "--reflink=always", P("big/spans-ags"), P("reflink/big-clone")])
        write_file(P("reflink/whole-clone"), rng.randbytes(2 * bs), 30 * bs, fsync=True)
        write_file(P("reflink/partial"), rng.randbytes(bs), 10 * bs, fsync=True)
        os.link(P("reflink/whole-clone"), P("links/sub/clone-link"))

    os.sync()


# --- recording the kernel's view -------------------------------------------------------------------------

def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def collect_files(mnt, *, with_fiemap: bool = True, kind=None) -> tuple[dict, dict, dict]:
    """(files, fiemap, fiemap_xattr) for a mounted fs, keyed by str(inode); paths are absolute from fs root.
    kind: mode -> the type's name (default: file, dir, symlink, other); with_fiemap=False skips FIEMAP."""
    files: dict[int, dict] = {}
    kind = kind or _kind

    def add(full, st):
        rel = "/" + os.path.relpath(full, mnt) if full != mnt else "/"
        ent = files.setdefault(st.st_ino, {"paths": [], "type": kind(st.st_mode), "size": st.st_size})
        ent["paths"].append(rel.replace("/./", "/"))

    add(mnt, os.lstat(mnt))
    for root, dirs, names in os.walk(mnt, followlinks=False):
        for n in dirs + names:
            full = os.path.join(root, n)
            add(full, os.lstat(full))
    fmap, xmap = {}, {}
    for ino, ent in files.items():
        ent["paths"].sort()
        if with_fiemap and ent["type"] == "file":
            path = os.path.join(mnt, ent["paths"][0].lstrip("/"))
            fmap[str(ino)] = [e.to_dict() for e in K.fiemap(path)]
            xa = K.fiemap(path, xattr=True)
            if xa:
                xmap[str(ino)] = [e.to_dict() for e in xa]
    return {str(k): v for k, v in sorted(files.items())}, fmap, xmap


def _bmbt_format(image, ino: int) -> str:
    out = _run(["xfs_db", "-r", "-c", f"inode {ino}", "-c", "print core.format", os.fspath(image)]).stdout
    return out.split("=", 1)[1].strip() if "=" in out else out.strip()


def build_and_record(image_path, config_name: str, *, cfg: dict | None = None, mkfs_binary: str = "mkfs.xfs") -> dict:
    """mkfs, mount rw, populate, umount; mount read-only and record the kernel's view; umount.

    Returns the record and also writes it to `<image>.kernel.json`:
    {"config", "mkfs", "block_size", "sector_size", "reflink", "rmapbt",
     "fsmap": [GETFSMAP records over the whole device as dicts: device, flags, physical, owner, offset, length],
     "files": {str(inode): {"paths": [...], "type": "file|dir|symlink", "size": n}},
     "fiemap": {str(inode): [{"logical", "physical", "length", "flags"}]}   (regular files, data fork),
     "fiemap_xattr": {str(inode): [...]}   (regular files with attr-fork extents),
     "bmbt_inode": inode of BMBT_FILE (checked with xfs_db to be in btree format), "build_seconds": s}

    cfg: a config (as in IMAGE_CONFIGS) to build instead of IMAGE_CONFIGS[config_name], which then only names
    it (and seeds the population); mkfs_binary: the mkfs.xfs to run (see mkfs()).
    """
    if cfg is None:
        cfg = IMAGE_CONFIGS[config_name]
    image_path = os.fspath(image_path)
    t0 = time.monotonic()
    mkfs(image_path, cfg["size"], cfg["mkfs"], binary=mkfs_binary)
    with loop_mount(image_path) as mnt:
        populate(mnt, reflink=cfg["reflink"], seed=zlib.crc32(config_name.encode()),
                 block_size=cfg["block_size"])
    with loop_mount(image_path, readonly=True) as mnt:
        fsmap = [r.to_dict() for r in K.getfsmap(mnt)]
        files, fmap, xmap = collect_files(mnt)
        bmbt_ino = os.lstat(os.path.join(mnt, BMBT_FILE)).st_ino
    fmt = _bmbt_format(image_path, bmbt_ino)
    if not fmt.startswith("3") and "btree" not in fmt:
        raise RuntimeError(f"{config_name}: {BMBT_FILE} (inode {bmbt_ino}) is not in btree format: {fmt}")
    rec = {
        "config": config_name,
        "mkfs": list(cfg["mkfs"]),
        "block_size": cfg["block_size"],
        "sector_size": cfg["sector_size"],
        "reflink": cfg["reflink"],
        "rmapbt": cfg["rmapbt"],
        "fsmap": fsmap,
        "files": files,
        "fiemap": fmap,
        "fiemap_xattr": xmap,
        "bmbt_inode": bmbt_ino,
        "build_seconds": round(time.monotonic() - t0, 2),
    }
    tmp = image_path + ".kernel.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(rec, fh)
    os.replace(tmp, image_path + ".kernel.json")
    return rec


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in IMAGE_CONFIGS:
        print(f"usage: python tests/images.py CONFIG OUT.img\nCONFIG: {', '.join(IMAGE_CONFIGS)}", file=sys.stderr)
        return 2
    ok, why = K.can_loop_mount()
    if not ok:
        print(f"cannot build: {why}", file=sys.stderr)
        return 1
    rec = build_and_record(argv[1], argv[0])
    kinds: dict[str, int] = {}
    for r in rec["fsmap"]:
        kinds[K.owner_name(r)] = kinds.get(K.owner_name(r), 0) + 1
    print(f"{argv[1]}: {len(rec['fsmap'])} GETFSMAP records {kinds}, {len(rec['files'])} inodes, "
          f"{rec['build_seconds']} s; record in {argv[1]}.kernel.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
