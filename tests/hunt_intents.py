#!/usr/bin/env python3
"""Hunt for crashed XFS images whose log holds unfinished intents of the kinds a random workload (tests/crash.py)
almost never leaves: bmap (BUI MAP/UNMAP), rmap MAP/MAP_SHARED/ALLOC/FREE, refcount ALLOC_COW/FREE_COW,
mapping-exchange (XMI) and xattr (ATTRI, parent pointers).

An intent reaches the log only when a checkpoint is cut between the transaction that logs it and the one that
logs its done item (otherwise the CIL drops both). So each attempt mkfs-es a small filesystem, loop-mounts it,
starts a few worker processes that repeat only the operations logging the wanted intents, plus one that forces
the log (a one-byte write and fsync, over and over: a checkpoint each time), optionally drops the caches in a
loop (finishing the deferred work then waits on reads), shuts the filesystem down after a seeded delay
(`xfs_io -x -c 'shutdown -f'`: log flushed, or `shutdown`: not flushed), unmounts, and lists the log's
unfinished intents with fsdaxctl's own log reader (fsdaxctl/xfs/logrecover.py). An image with a wanted kind (one
fsdaxctl does not finish exactly yet, see EXACT; `--keep-all`: any kind, a campaign of the exact ones) is kept as OUT/NAME.img with OUT/NAME.img.kernel.json (the kernel's answer after its own recovery of a copy:
tests/crash.kernel_after_recovery), compared with fsdaxctl's answer (tests/test_replay.check_image), and
described by a line in OUT/hits.md; OUT/progress.md has the attempts and hit rates, OUT/attempts.jsonl one line
per attempt (a hunt into the same OUT carries the counts on; a file OUT/STOP ends it between attempts). The
moment of the shutdown decides what the log holds, so a seed does not reproduce an image.

    python tests/hunt_intents.py OUT [--minutes 90] [--scenarios remap,cow-dio,...] [--seed N] [--dir /dev/shm]
                                     [--delays 0.2,1.8] [--keep 3] [--keep-all]
    python tests/hunt_intents.py --one SCENARIO SEED OUT.img [--delays LO,HI]   # one attempt (the seed picks
                                                     # the delay and the mode); the image kept if it has any
    python tests/hunt_intents.py --list IMG                     # the unfinished intents of a crashed image

Scenarios exchange* and pptr* need a mkfs.xfs >= 6.10 (exchange=1, parent=1): FSDAXCTL_MKFS_NEW names it (without
it they are skipped). Needs root and loop devices; only the stdlib and the repository's tests modules.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections import Counter

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import workload as W  # noqa: E402 - fsdaxctl and tests.images are imported where needed, so the
# worker processes start fast

MiB = 1 << 20
# --- the log's unfinished intents ------------------------------------------------------------------------

RMAP_TYPES = {1: "MAP", 2: "MAP_SHARED", 3: "UNMAP", 4: "UNMAP_SHARED", 5: "CONVERT", 6: "CONVERT_SHARED",
              7: "ALLOC", 8: "FREE"}  # xfs_map_extent me_flags & XFS_RMAP_EXTENT_TYPE_MASK
BMAP_TYPES = {1: "MAP", 2: "UNMAP"}  # XFS_BMAP_MAP, XFS_BMAP_UNMAP
REFC_TYPES = {1: "INCREASE", 2: "DECREASE", 3: "ALLOC_COW", 4: "FREE_COW"}  # xfs_phys_extent pe_flags & 0xff
ATTR_OPS = {1: "SET", 2: "REMOVE", 3: "REPLACE", 4: "PPTR_SET", 5: "PPTR_REMOVE", 6: "PPTR_REPLACE"}
# flag bits named in the labels, as a kept image's variety: XFS_RMAP_EXTENT_*, XFS_BMAP_EXTENT_*, XFS_EXCHMAPS_*
FLAG_NAMES = {"RUI": {1 << 31: "attr", 1 << 30: "bmbt", 1 << 29: "unwritten"},
              "BUI": {1 << 31: "attr", 1 << 30: "unwritten", 1 << 29: "rt"},
              "XMI": {1: "ATTR_FORK", 2: "SET_SIZES", 4: "INO1_WRITTEN", 8: "CLEAR_INO1_REFLINK",
                      16: "CLEAR_INO2_REFLINK"}}
# log item types (fsdaxctl/xfs/logrecover.py's XFS_LI_*; not imported here, so that workers start fast)
XFS_LI_EFI, XFS_LI_RUI, XFS_LI_CUI, XFS_LI_BUI = 0x1236, 0x1240, 0x1242, 0x1244
XFS_LI_ATTRI, XFS_LI_XMI = 0x1246, 0x1248
SHORT = {XFS_LI_EFI: "EFI", XFS_LI_RUI: "RUI", XFS_LI_CUI: "CUI", XFS_LI_BUI: "BUI", XFS_LI_XMI: "XMI",
         XFS_LI_ATTRI: "ATTRI"}
# what fsdaxctl finishes exactly (fsdaxctl/xfs/logrecover.py): every other kind is wanted
EXACT = frozenset({"EFI", "RUI MAP", "RUI MAP_SHARED", "RUI UNMAP", "RUI UNMAP_SHARED", "RUI CONVERT",
                   "RUI CONVERT_SHARED", "RUI ALLOC", "RUI FREE", "CUI INCREASE", "CUI DECREASE", "CUI ALLOC_COW",
                   "CUI FREE_COW", "BUI MAP", "BUI UNMAP"})
# exchanges fsdaxctl finishes exactly: of data forks, with these flags (their labels' flag part)
EXACT_XMI = frozenset({"", "SET_SIZES", "INO1_WRITTEN", "SET_SIZES+INO1_WRITTEN"})


def unfinished(image) -> list[dict]:
    """The intents the log of IMAGE leaves for the mount to finish, oldest first, each with its extents: the
    replay's own two passes over the log, then, instead of its finishing, the intents it has left."""
    from fsdaxctl.xfs import logrecover as L
    from fsdaxctl.xfs.fs import XfsFilesystem

    class Lister(L._Replayer):
        left: list = []

        def finish(self):
            self.left = sorted(self.intents.items(), key=lambda kv: (kv[1][0], kv[1][1]))

    with XfsFilesystem.open(os.fspath(image)) as fs:
        ring = L._Ring(fs)
        ends = ring.find_tail()
        if ends["clean"] or ends["head"] == ends["tail"]:
            return []
        r = Lister(fs, ring, L.Replay(log_blocks=ring.nbb))
        L._both_passes(r, ring, ends["head"], ends["tail"], {})
        return [describe(t, iid, lsn, regions) for (t, iid), (lsn, _, regions) in r.left]


def log_written(image) -> int:
    """Bytes of the log written since mkfs (all of it once it has wrapped): what makes a kept image big
    compressed (tests/make_crash_fixtures.py keeps images of at most 200 KiB xz)."""
    from fsdaxctl.xfs import logrecover as L
    from fsdaxctl.xfs.fs import XfsFilesystem

    with XfsFilesystem.open(os.fspath(image)) as fs:
        ring = L._Ring(fs)
        ends = ring.find_tail()
    return ring.nbb * 512 if ends.get("head_lsn", 0) >> 32 > 1 else ends["head"] * 512


def describe(t: int, iid: int, lsn: int, regions: list) -> dict:
    r0 = regions[0]
    n = struct.unpack_from("<I", r0, 4)[0]
    kind = SHORT.get(t, f"{t:#x}")
    out = {"kind": kind, "id": f"{iid:#x}", "lsn": f"{lsn >> 32}:{lsn & 0xFFFFFFFF}", "extents": []}
    if t == XFS_LI_EFI:
        size = (len(r0) - 16) // max(n, 1)
        out["extents"] = [{"type": "", "start": s, "len": ln}
                          for s, ln in (struct.unpack_from("<QI", r0, 16 + size * i) for i in range(n))]
    elif t in (XFS_LI_RUI, XFS_LI_BUI):
        names = RMAP_TYPES if t == XFS_LI_RUI else BMAP_TYPES
        for i in range(n):
            owner, start, off, ln, fl = struct.unpack_from("<QQQII", r0, 16 + 32 * i)
            out["extents"].append({"type": names.get(fl & 0xFF, str(fl & 0xFF)), "owner": owner, "start": start,
                                   "off": off, "len": ln, "flags": f"{fl:#x}"})
    elif t == XFS_LI_CUI:
        for i in range(n):
            start, ln, fl = struct.unpack_from("<QII", r0, 16 + 16 * i)
            out["extents"].append({"type": REFC_TYPES.get(fl & 0xFF, str(fl & 0xFF)), "start": start, "len": ln,
                                   "flags": f"{fl:#x}"})
    elif t == XFS_LI_XMI:
        ino1, ino2, _, _, off1, off2, count, fl = struct.unpack_from("<QQIIQQQQ", r0, 16)
        out["extents"] = [{"type": "", "ino1": ino1, "ino2": ino2, "off1": off1, "off2": off2, "len": count,
                           "flags": f"{fl:#x}"}]
    elif t == XFS_LI_ATTRI:
        ino, op = struct.unpack_from("<QI", r0, 16)
        out["extents"] = [{"type": ATTR_OPS.get(op & 0xFF, str(op & 0xFF)), "ino": ino, "flags": f"{op:#x}"}]
    return out


def label(kind: str, e: dict) -> str:
    """'BUI MAP', 'RUI MAP unwritten', 'CUI FREE_COW', 'XMI SET_SIZES', ...: an intent extent's kind, type and
    named flag bits."""
    fl = int(e.get("flags", "0"), 16)
    bits = "+".join(n for b, n in FLAG_NAMES.get(kind, {}).items() if fl & b)
    return " ".join(x for x in (kind, e["type"], bits) if x)


def labels(intents: list[dict]) -> Counter:
    """How many extents of each label an image's unfinished intents name."""
    return Counter(label(it["kind"], e) for it in intents for e in it["extents"] or [{"type": ""}])


def exact(lab: str) -> bool:
    """Does fsdaxctl finish this kind exactly already (for rmap, refcount and bmap intents the flag bits do not
    matter; for exchanges they do)?"""
    words = lab.split()
    if "rt" in words[2:]:  # realtime extents: unknown on the realtime device
        return False
    if words[0] == "XMI":
        return " ".join(words[1:]) in EXACT_XMI
    return " ".join(words[:2]) in EXACT


KEEP_ALL = [False]  # --keep-all: every kind but EFI is wanted (a campaign of the kinds finished exactly)


def is_wanted(lab: str) -> bool:
    return not exact(lab) or (KEEP_ALL[0] and lab != "EFI")


def wanted(intents: list[dict]) -> list[str]:
    return sorted(k for k in labels(intents) if is_wanted(k))


# --- workers: each a process repeating the operations that log the wanted intents --------------------------

WORKERS = {}
WORKER_SECONDS = 30  # a worker whose filesystem never shuts down stops by itself


def worker(name):
    def reg(fn):
        WORKERS[name] = fn
        return fn
    return reg


def _fill(path, nblocks: int, bs: int, rng, *, gappy: bool = False) -> int:
    """A file of nblocks blocks of data (every other block only, written backwards, when gappy: one extent
    per block; half the time its holes then preallocated: unwritten extents between the written ones),
    fsynced. Returns an open O_RDWR descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if gappy:
        for i in reversed(range(0, nblocks, 2)):
            os.pwrite(fd, rng.randbytes(bs), i * bs)
        os.ftruncate(fd, nblocks * bs)
        if rng.random() < 0.5:
            W.fallocate(fd, W.FALLOC_FL_KEEP_SIZE, 0, nblocks * bs)
    else:
        os.pwrite(fd, rng.randbytes(nblocks * bs), 0)
    os.fsync(fd)
    return fd


def _clone_range(src: int, dst: int, soff: int, ln: int, doff: int) -> None:
    fcntl.ioctl(dst, W.FICLONERANGE, W._CLONE_RANGE.pack(src, soff, ln, doff))


def _blocks(rng, nblocks: int, most: int) -> tuple[int, int]:
    """A random run of blocks inside a file of nblocks: (first, count)."""
    first = rng.randrange(nblocks)
    return first, rng.randint(1, min(most, nblocks - first))


@worker("remap")
def w_remap(d, rng, bs, deadline):
    """FICLONERANGE from a gappy file onto files with data: bmap UNMAP + MAP, refcount INCREASE, rmap MAP_SHARED
    per source mapping; now and then a buffered overwrite of a destination (CoW at writeback)."""
    n = 128
    src = _fill(os.path.join(d, "src"), n, bs, rng, gappy=True)
    dsts = [_fill(os.path.join(d, f"dst{i}"), n, bs, rng) for i in range(3)]
    while time.monotonic() < deadline:
        dst = rng.choice(dsts)
        if rng.random() < 0.2:
            first, count = _blocks(rng, n, 8)
            os.pwrite(dst, rng.randbytes(count * bs), first * bs)
            continue
        first, count = _blocks(rng, n, 64)
        _clone_range(src, dst, first * bs, count * bs, rng.randrange(n - count + 1) * bs)


def _dio_write(fd, buf, rng, bs, off, count):
    buf.seek(0)
    buf.write(rng.randbytes(count * bs))
    with memoryview(buf)[:count * bs] as view:
        os.pwrite(fd, view, off)


def _cowextsize(fd, blocks: int, bs: int) -> None:
    """A CoW extent size hint of `blocks` (the default, 32 blocks, makes one staging allocation serve many
    writes: a hint of one block allocates for every write)."""
    buf = bytearray(W._FSXATTR.size)
    fcntl.ioctl(fd, W.FS_IOC_FSGETXATTR, buf, True)
    xflags, extsize, nextents, projid, _ = W._FSXATTR.unpack(buf)
    fcntl.ioctl(fd, W.FS_IOC_FSSETXATTR, W._FSXATTR.pack(xflags | W.FS_XFLAG_COWEXTSIZE, extsize, nextents, projid,
                                                          blocks * bs))


def _cow(d, rng, bs, deadline, direct: bool, hint: int = 0):
    """A file cloned from another, its shared blocks overwritten (CoW staging allocated: refcount ALLOC_COW,
    rmap ALLOC; completed: bmap UNMAP + MAP, refcount FREE_COW + DECREASE, rmap FREE), re-cloned now and then.
    hint: a CoW extent size hint in blocks (0: the default)."""
    n = 256
    base = _fill(os.path.join(d, "base"), n, bs, rng, gappy=rng.random() < 0.5)
    copy = os.open(os.path.join(d, "copy"), os.O_RDWR | os.O_CREAT | (os.O_DIRECT if direct else 0), 0o644)
    buf = mmap.mmap(-1, 16 * bs)
    if hint:
        _cowextsize(copy, hint, bs)
    fcntl.ioctl(copy, W.FICLONE, base)
    while time.monotonic() < deadline:
        if rng.random() < 0.1:
            fcntl.ioctl(copy, W.FICLONE, base)
        first, count = _blocks(rng, n, 16)
        if direct:
            _dio_write(copy, buf, rng, bs, first * bs, count)
        else:
            os.pwrite(copy, rng.randbytes(count * bs), first * bs)
            if rng.random() < 0.5:
                os.fdatasync(copy)


@worker("cow-dio")
def w_cow_dio(d, rng, bs, deadline):
    _cow(d, rng, bs, deadline, True)


@worker("cow-buf")
def w_cow_buf(d, rng, bs, deadline):
    _cow(d, rng, bs, deadline, False)


@worker("cow-dio-1")
def w_cow_dio_1(d, rng, bs, deadline):
    _cow(d, rng, bs, deadline, True, hint=1)


@worker("cow-buf-1")
def w_cow_buf_1(d, rng, bs, deadline):
    _cow(d, rng, bs, deadline, False, hint=1)


XFS_EXCHANGE_RANGE_FILE1_WRITTEN = 1 << 3  # only file1's written extents (not in tests/workload.py)


@worker("cow-many")
def w_cow_many(d, rng, bs, deadline):
    """As many CoW staging allocations as can be: a large cloned file (CoW extent size hint one block) taken
    one block at a time with O_DIRECT, mostly where it is still shared, re-cloned when half of it is not."""
    n = 2048
    base = _fill(os.path.join(d, "base"), n, bs, rng)
    copy = os.open(os.path.join(d, "copy"), os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    buf = mmap.mmap(-1, 4 * bs)
    _cowextsize(copy, 1, bs)
    while time.monotonic() < deadline:
        fcntl.ioctl(copy, W.FICLONE, base)
        for first in rng.sample(range(n), n // 2):
            _dio_write(copy, buf, rng, bs, first * bs, 1)
            if time.monotonic() > deadline:
                break


@worker("exchange")
def w_exchange(d, rng, bs, deadline):
    """XFS_IOC_EXCHANGE_RANGE between two gappy files (a mapping-exchange intent, bmap intents for each step):
    sometimes with DSYNC, FILE1_WRITTEN, or TO_EOF (the sizes exchanged too: the intent's SET_SIZES; both are
    then grown back to their size); now and then a block rewritten."""
    n = 128
    a = _fill(os.path.join(d, "a"), n, bs, rng, gappy=True)
    b = _fill(os.path.join(d, "b"), n, bs, rng, gappy=rng.random() < 0.5)
    os.ftruncate(b, n * bs + rng.randrange(1, bs))  # sizes that differ: TO_EOF exchanges them
    while time.monotonic() < deadline:
        if rng.random() < 0.1:
            os.pwrite(rng.choice((a, b)), rng.randbytes(bs), rng.randrange(n) * bs)
            continue
        first, count = _blocks(rng, n, 64)
        o2 = rng.randrange(n - count + 1)
        flags = rng.choice((0, 0, W.XFS_EXCHANGE_RANGE_TO_EOF, XFS_EXCHANGE_RANGE_FILE1_WRITTEN))
        flags |= W.XFS_EXCHANGE_RANGE_DSYNC if rng.random() < 0.2 else 0
        if flags & W.XFS_EXCHANGE_RANGE_TO_EOF:
            o2, count = first, 0
        fcntl.ioctl(b, W.XFS_IOC_EXCHANGE_RANGE, W._XCHG.pack(a, 0, first * bs, o2 * bs, count * bs, flags))
        if flags & W.XFS_EXCHANGE_RANGE_TO_EOF:
            for fd in (a, b):
                if os.fstat(fd).st_size < n * bs:
                    os.ftruncate(fd, n * bs)


@worker("names")
def w_names(d, rng, bs, deadline):
    """Creates, hard links, renames (plain and RENAME_EXCHANGE) and unlinks in two directories. With parent
    pointers each changes the file's parent pointer attributes; while the attr fork is short form that is done
    in place, so every file first gets a 400-byte attribute (the fork goes leaf form): then each is a deferred
    xattr intent (ATTRI PPTR_SET / PPTR_REMOVE / PPTR_REPLACE)."""
    dirs = [os.path.join(d, "x"), os.path.join(d, "y")]
    for p in dirs:
        os.mkdir(p)
    names: list[str] = []
    i = 0
    while time.monotonic() < deadline:
        i += 1
        r = rng.random()
        if r < 0.3 or len(names) < 4:
            p = os.path.join(rng.choice(dirs), f"n{i}-" + "z" * rng.randrange(40))
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
            os.setxattr(p, "user.pad", bytes(400))  # zeros: a kept image compresses well
            names.append(p)
        elif r < 0.5:
            p = os.path.join(rng.choice(dirs), f"l{i}")
            os.link(rng.choice(names), p)
            names.append(p)
        elif r < 0.7:
            k = rng.randrange(len(names))
            p = os.path.join(rng.choice(dirs), f"r{i}")
            os.rename(names[k], p)
            names[k] = p
        elif r < 0.8:
            a, b = rng.sample(names, 2)
            W.renameat2(a.encode(), b.encode(), W.RENAME_EXCHANGE)
        else:
            os.unlink(names.pop(rng.randrange(len(names))))


@worker("alloc")
def w_alloc(d, rng, bs, deadline):
    """New files written in pieces with gaps (buffered then fdatasync, or O_DIRECT: unwritten then converted):
    an rmap MAP per allocated extent; old files deleted."""
    buf = mmap.mmap(-1, 16 * bs)
    files: list[str] = []
    i = 0
    while time.monotonic() < deadline:
        i += 1
        p = os.path.join(d, f"a{i}")
        direct = rng.random() < 0.5
        fd = os.open(p, os.O_RDWR | os.O_CREAT | (os.O_DIRECT if direct else 0), 0o644)
        try:
            for k in reversed(range(rng.randint(2, 24))):
                count = rng.randint(1, 8)
                if direct:
                    _dio_write(fd, buf, rng, bs, 2 * k * 8 * bs, count)
                else:
                    os.pwrite(fd, rng.randbytes(count * bs), 2 * k * 8 * bs)
            if not direct:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        files.append(p)
        if len(files) > 16:
            os.unlink(files.pop(rng.randrange(len(files))))


@worker("force")
def w_force(d, rng, bs, deadline):
    """A one-byte write and fsync, again and again: every fsync forces the log, cutting a checkpoint."""
    fd = os.open(os.path.join(d, "force"), os.O_RDWR | os.O_CREAT, 0o644)
    while time.monotonic() < deadline:
        os.pwrite(fd, b"x", rng.randrange(bs))
        os.fsync(fd)
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.003)


def run_worker(kind: str, mnt: str, seed: int, bs: int) -> int:
    """One worker until the filesystem shuts down (EIO) or WORKER_SECONDS pass. Other errors of an operation
    (ENOSPC, EINVAL of an odd range) restart the worker's loop in a fresh directory."""
    rng = random.Random(seed)
    deadline = time.monotonic() + WORKER_SECONDS
    print("ready", flush=True)  # the delay before the shutdown counts from here
    n = 0
    while time.monotonic() < deadline:
        n += 1
        d = os.path.join(mnt, f"{kind}-{seed}-{n}")
        try:
            os.mkdir(d)
            WORKERS[kind](d, rng, bs, deadline)
        except OSError as e:
            if e.errno in (errno.EIO, errno.EROFS, errno.EUCLEAN):
                return 0
            if e.errno not in (errno.ENOSPC, errno.EINVAL, errno.ENOENT, errno.EEXIST, errno.EMLINK):
                raise
    return 0


# --- attempts ---------------------------------------------------------------------------------------------

OLD, NEW = "mkfs.xfs", os.environ.get("FSDAXCTL_MKFS_NEW")
_R1K = ["-b", "size=1024", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"]
_R4K = ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"]
_N1K = ["-b", "size=1024", "-m", "rmapbt=0,reflink=1", "-d", "agcount=4"]  # reflink without rmapbt: the walk
# scenario: (mkfs binary, mkfs options, block size, workers); mkfs 6.1 where it will do, as the campaign's.
# Measured on kernel 6.18 (2 CPUs, images on tmpfs; share of attempts leaving the kind unfinished): XMI and
# bmap intents: exchange*, 40-55% / 25-30%; ATTRI: pptr*, 15-30% per op; refcount FREE_COW / rmap FREE:
# cow-many ~9%; rmap ALLOC / refcount ALLOC_COW, the rarest: cow-alloc-4k 3.5% / 3.0%, exchange-4k 2.3% / 2.1%.
SCENARIOS = {
    "remap": (OLD, _R1K, 1024, ("remap", "remap", "remap", "force")),
    "cow-dio": (OLD, _R1K, 1024, ("cow-dio", "cow-dio", "cow-buf", "force")),
    "cow-buf": (OLD, _R1K, 1024, ("cow-buf", "cow-buf", "remap", "force")),
    "alloc": (OLD, _R1K, 1024, ("alloc", "alloc", "remap", "force")),
    "remap-4k": (OLD, _R4K, 4096, ("remap", "cow-dio", "cow-buf", "force")),
    "cow-many": (OLD, _R1K, 1024, ("cow-many", "cow-many", "cow-many", "force")),
    "cow-alloc-4k": (OLD, _R4K, 4096, ("cow-dio-1", "cow-buf-1", "alloc", "force")),
    "cow-alloc": (OLD, _R1K, 1024, ("cow-dio-1", "cow-dio-1", "cow-buf-1", "force")),
    "exchange": (NEW, [*_R1K, "-i", "exchange=1"], 1024, ("exchange", "exchange", "exchange", "force")),
    "pptr": (NEW, [*_R1K, "-n", "parent=1"], 1024, ("names", "names", "names", "force")),
    "exchange-4k": (NEW, [*_R4K, "-i", "exchange=1"], 4096, ("exchange", "exchange", "cow-dio-1", "force")),
    "pptr-4k": (NEW, [*_R4K, "-n", "parent=1"], 4096, ("names", "names", "exchange", "force")),
    "cow-normap": (OLD, _N1K, 1024, ("cow-many", "cow-dio-1", "remap", "force")),
}
SIZE = 64 * MiB
SMALL_LOG = 3 * MiB  # log written below this: the image compresses to about 150 KiB once its data is zeroed


def _shutdown_after(mnt, procs, delay: float, mode: str, drop: bool) -> None:
    stop = threading.Event()

    def dropper():
        while not stop.wait(0.02):
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3")
    t = threading.Thread(target=dropper, daemon=True)
    if drop:
        t.start()
    try:
        for p in procs:  # every worker started (python's start-up is slow on a loaded machine)
            p.stdout.readline()
        time.sleep(delay)
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f" if mode == "flush" else "shutdown", mnt],
                       check=True, capture_output=True)
    finally:
        stop.set()
        if drop:
            t.join()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


DELAY = (0.2, 1.8)  # seconds from the workers' start to the shutdown: shorter ones write less log


def crash(image, scenario: str, seed: int, delays: tuple[float, float] = DELAY) -> dict:
    """mkfs, mount, the scenario's workers, shutdown after a seeded delay, unmount. What happened."""
    from tests import images

    binary, opts, bs, kinds = SCENARIOS[scenario]
    rng = random.Random(seed)
    mode = rng.choice(("flush", "noflush"))
    delay = round(rng.uniform(*delays), 3)
    drop = rng.random() < 0.5
    images.mkfs(image, SIZE, opts, binary=binary)
    with images.loop_mount(image) as mnt:
        procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", kind, mnt,
                                   str(seed * 16 + i), str(bs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i, kind in enumerate(kinds)]
        _shutdown_after(mnt, procs, delay, mode, drop)
    errs = [p.stderr.read().decode(errors="replace")[-500:] for p in procs if p.returncode]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    return {"scenario": scenario, "seed": seed, "mode": mode, "delay": delay, "drop_caches": drop,
            "mkfs": [binary, *opts], "block_size": bs, "workers": list(kinds), "worker_errors": errs}


def kernel_record(image, what: dict) -> dict:
    """The kernel's answer after its own recovery of a copy, in tests/crash.build_crash's layout."""
    from tests.crash import kernel_after_recovery

    rec = kernel_after_recovery(image)
    opts = " ".join(what["mkfs"][1:])
    rec.update({"config": what["scenario"], "mkfs": what["mkfs"][1:], "mkfs_binary": what["mkfs"][0],
                "block_size": what["block_size"], "sector_size": 512, "reflink": "reflink=0" not in opts,
                "rmapbt": "rmapbt=0" not in opts, "crash": what})
    with open(os.fspath(image) + ".kernel.json", "w") as fh:
        json.dump(rec, fh)
    return rec


def compare(image, rec: dict) -> str:
    """fsdaxctl's answer on the crashed image against the kernel's record: agrees (with its figures) or not."""
    from tests.test_replay import check_image

    try:
        return "agrees: " + json.dumps(check_image(os.fspath(image), rec))
    except AssertionError as e:
        return "DISAGREES: " + str(e)[:3000]
    except Exception as e:  # noqa: BLE001 - any failure of fsdaxctl on the image is a finding
        return f"ERROR: {type(e).__name__}: {str(e)[:3000]}"


# --- the hunt ---------------------------------------------------------------------------------------------

def _summary(intents: list[dict]) -> str:
    """'BUI MAP x2 (flags 0x1), CUI FREE_COW x1 (flags 0x4), ...' for the hits file."""
    flags: dict[str, set] = {}
    for it in intents:
        for e in it["extents"] or [{"type": ""}]:
            flags.setdefault(label(it["kind"], e), set()).add(e.get("flags", "-"))
    return ", ".join(f"{k} x{n} (flags {' '.join(sorted(flags[k]))})" for k, n in sorted(labels(intents).items()))


class Hunt:
    def __init__(self, out: str, workdir: str, keep: int, delays: tuple[float, float] = DELAY):
        self.out, self.workdir, self.keep, self.delays = out, workdir, keep, delays
        self.t0 = time.monotonic()
        self.attempts: Counter = Counter()  # scenario -> attempts
        self.found: dict[str, Counter] = {}  # scenario -> label -> images with it unfinished
        self.kept: Counter = Counter()  # (label, block size, small log) -> images kept
        self.errors: Counter = Counter()
        os.makedirs(out, exist_ok=True)
        self.resume()

    def resume(self) -> None:
        """Counts carried on from an earlier hunt into the same OUT (its attempts.jsonl)."""
        path = os.path.join(self.out, "attempts.jsonl")
        if not os.path.exists(path):
            return
        with open(path) as fh:
            for line in fh:
                a = json.loads(line)
                sc, left = a["scenario"], a.get("left", {})
                self.attempts[sc] += 1
                self.errors[sc] += "error" in a
                self.found.setdefault(sc, Counter()).update(set(left))
                if a.get("kept"):
                    self.kept.update(self.keys(left, a))

    @staticmethod
    def keys(found, what: dict) -> list[tuple]:
        """What a kept image counts for: each wanted kind, with the block size and whether the log written is
        small enough (SMALL_LOG) for a committed fixture."""
        small = what.get("log_written", SMALL_LOG) < SMALL_LOG
        return [(k, what.get("block_size"), small) for k in found if is_wanted(k)]

    def attempt(self, scenario: str, seed: int) -> None:
        img = os.path.join(self.workdir, f"{scenario}-{seed}.img")
        try:
            what = crash(img, scenario, seed, self.delays)
            intents = unfinished(img)
        except Exception as e:  # noqa: BLE001 - counted and logged, the hunt goes on
            self.errors[scenario] += 1
            what, intents = {"scenario": scenario, "seed": seed, "error": f"{type(e).__name__}: {e}"[:500]}, []
        self.attempts[scenario] += 1
        self.found.setdefault(scenario, Counter()).update(set(labels(intents)))
        if wanted(intents):
            what["log_written"] = log_written(img)
        new = [k for k in self.keys(wanted(intents), what) if self.kept[k] < self.keep]
        with open(os.path.join(self.out, "attempts.jsonl"), "a") as fh:
            fh.write(json.dumps({**what, "left": dict(labels(intents)), "kept": bool(new)}) + "\n")
        try:
            if new:
                self.keep_hit(img, what, intents)
        finally:
            if os.path.exists(img):
                os.unlink(img)

    def keep_hit(self, img: str, what: dict, intents: list[dict]) -> None:
        name = f"{what['scenario']}-{what['seed']}-{what['mode']}"
        dst = os.path.join(self.out, name + ".img")
        subprocess.run(["cp", "--sparse=always", img, dst], check=True)
        what = {**what, "unfinished": intents}
        rec = kernel_record(dst, what)
        verdict = compare(dst, rec)
        self.kept.update(self.keys(wanted(intents), what))
        used = os.stat(dst).st_blocks * 512
        line = (f"- {name}.img: scenario {what['scenario']} (`{' '.join(what['mkfs'])}`, {what['block_size']}-byte "
                f"blocks, workers {'+'.join(what['workers'])}), seed {what['seed']}, {what['mode']}, delay "
                f"{what['delay']} s, drop_caches {'on' if what['drop_caches'] else 'off'}; unfinished: "
                f"{_summary(intents)}; image {SIZE // MiB} MiB ({used // 1024} KiB allocated, "
                f"{what['log_written'] // 1024} KiB of log written), kernel.json "
                f"{os.path.getsize(dst + '.kernel.json') // 1024} KiB; fsdaxctl {verdict}\n")
        with open(os.path.join(self.out, "hits.md"), "a") as fh:
            fh.write(line)
        print(line, end="", flush=True)
        self.progress()

    def progress(self) -> None:
        mins = (time.monotonic() - self.t0) / 60
        lines = [f"# intent hunt: {sum(self.attempts.values())} attempts (this run: {mins:.1f} min, updated "
                 f"{time.strftime('%H:%M:%S')})", "",
                 "Per scenario: attempts, errors, and in how many images each kind was left unfinished "
                 "(rate). " + ("Every kind but EFI is wanted (--keep-all)." if KEEP_ALL[0] else
                               "Wanted kinds are all but " + ", ".join(sorted(EXACT)) + " and data-fork XMI."), ""]
        for sc, n in sorted(self.attempts.items()):
            found = self.found.get(sc, Counter())
            kinds = ", ".join(f"{k}{'*' if is_wanted(k) else ''} {c} ({100 * c / n:.1f}%)"
                              for k, c in found.most_common())
            lines.append(f"- {sc}: {n} attempts, {self.errors[sc]} errors; {kinds or 'nothing unfinished'}")
        lines += ["", "Kept (images per wanted kind, block size, log size): "
                  + (", ".join(f"{k} ({bs}{', small log' if small else ''}) {c}"
                               for (k, bs, small), c in sorted(self.kept.items())) or "none"), ""]
        with open(os.path.join(self.out, "progress.md"), "w") as fh:
            fh.write("\n".join(lines))

    def run(self, scenarios: list[str], seed: int, minutes: float) -> None:
        last = time.monotonic()
        i = 0
        while time.monotonic() - self.t0 < minutes * 60 and not os.path.exists(os.path.join(self.out, "STOP")):
            sc = scenarios[i % len(scenarios)]
            self.attempt(sc, seed + i)
            i += 1
            if time.monotonic() - last > 300:
                self.progress()
                last = time.monotonic()
        self.progress()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default="/dev/shm", help="where attempts' images live (a tmpfs is fastest)")
    ap.add_argument("--keep", type=int, default=3, help="images kept per wanted kind and block size")
    ap.add_argument("--delays", default=",".join(map(str, DELAY)), help="LO,HI: the shutdown's delay (seconds)")
    ap.add_argument("--one", nargs=3, metavar=("SCENARIO", "SEED", "OUT_IMG"))
    ap.add_argument("--list", metavar="IMG")
    ap.add_argument("--keep-all", action="store_true", help="keep images of the kinds finished exactly too")
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "MNT", "SEED", "BS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    KEEP_ALL[0] = a.keep_all
    delays = tuple(float(x) for x in a.delays.split(","))
    if a.worker:
        return run_worker(a.worker[0], a.worker[1], int(a.worker[2]), int(a.worker[3]))
    if a.list:
        for it in unfinished(a.list):
            print(json.dumps(it))
        return 0
    if a.one:
        return one(*a.one, delays)
    if not a.out:
        ap.error("OUT is needed")
    scenarios = [s for s in a.scenarios.split(",") if SCENARIOS[s][0]]  # those needing a newer mkfs: if named
    hunt = Hunt(a.out, a.dir, a.keep, delays)
    try:
        hunt.run(scenarios, a.seed, a.minutes)
    except KeyboardInterrupt:
        hunt.progress()
    return 0


def one(scenario: str, seed: str, image: str, delays: tuple[float, float] = DELAY) -> int:
    """One attempt into IMAGE: its unfinished intents printed; kept (with IMAGE.kernel.json and the comparison)
    only if there are any."""
    what = crash(image, scenario, int(seed), delays)
    intents = unfinished(image)
    print(json.dumps({**what, "left": dict(labels(intents)), "wanted": wanted(intents)}))
    if not intents:
        os.unlink(image)
        return 1
    rec = kernel_record(image, {**what, "unfinished": intents, "log_written": log_written(image)})
    print(compare(image, rec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
