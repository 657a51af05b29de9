"""Fuzzing with damaged images: every bad input gives a clean answer or one FsdaxError, never a traceback.

Forensic input is damaged by definition. For every kind of damage below the library must either answer or raise
an `FsdaxError` whose text is one line naming the structure and where, and every answer of `OwnerMap.pieces`
must be well formed: pieces inside the query, of positive length, in device order, together covering every byte
of it. The CLI (`info`, `fsmap`, `locate`, through the real entry point) must exit with a status made of the
documented bits, print no traceback, at most one `fsdaxctl: <error>` line (every other stderr line is
`fsdaxctl: warning: ...`), nothing on stdout after a fatal error and one valid UTF-8 JSON document otherwise.

Damage, one strategy per structure: random bytes, bit flips and boundary values (0, 1, max, sign bit, +-1, an
agbno of the same btree) at the structure's fields or anywhere in it, with or without the CRC re-sealed so the
checks behind the CRC (level, numrecs, pointers, keys, records) are reached: (a) the superblock, (b) AGF/AGI/AGFL,
(c) rmapbt, refcountbt and bnobt blocks (the bnobt on a copy whose rmapbt feature bit is cleared, so it is the
tree that is read), (d) inodes and bmbt blocks, (e) the log, (f) truncation; and, for the CLI only, directory and
xattr blocks (`locate` walks the directories to name owners). 4: crafted pointer cycles in the rmapbt.

How: each image is read into memory once and copied once to a scratch file; an example writes its damage into
that copy, runs, and writes the original bytes back. Every run is under a wall-clock limit (`time_limit`), so a
hang fails the example instead of the session. Images: `mkfs_image` (tests/conftest.py: empty, 4 AGs, no root
needed) and `populated` (64 MiB, 4k blocks, rmapbt+reflink, 2 AGs, filled by tests/images.populate: a two-level
rmapbt, a bmbt-format file, xattrs, shared extents, directories of every form, a used log; root and loop devices).

Bugs the fuzzers found have plain reproductions at the end of the file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner
from crc32c import crc32c
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from fsdaxctl.cli import main
from fsdaxctl.errors import FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs import btree
from fsdaxctl.xfs.fs import XfsFilesystem, filesystem_info
from fsdaxctl.xfs.inode import bmap, read_inode
from fsdaxctl.xfs.log import log_is_clean, log_warnings
from fsdaxctl.xfs.owners import OWNER_KINDS, OwnerMap

MiB = 1 << 20
BLOCK = 4096
POPULATED_MKFS = ["-b", "size=4096", "-d", "agcount=2", "-m", "rmapbt=1,reflink=1"]
POPULATED_SEED = 1234  # with this seed AG 1's rmapbt has two levels (checked when the image is built)

# Wall-clock limits. A healthy run over these 64 MiB images takes milliseconds.
EXAMPLE_SECONDS = 10
WALK_SECONDS = 3

# The exit statuses the CLI may use: 2 (usage) alone, or any combination of 1 (part of the job could not be
# done), 4 (file data hit) and 8 (filesystem metadata hit). tests/test_cli.py expects 1|8 = 9 from `locate`.
EXIT_BITS = {a | b | c for a in (0, 1) for b in (0, 4) for c in (0, 8)}
ALLOWED_EXIT = EXIT_BITS | {2}

# Facts that say where a structure is; an FsdaxError must carry one (or name the device in its message).
WHERE_FACTS = {"structure", "device", "daddr", "agno", "agbno", "ino", "line"}

# Shrinking a failure of a damaged-image run can take minutes; the bugs found so far have plain reproductions
# at the end of this file. FSDAXCTL_FUZZ_SHRINK=1 turns shrinking back on, FSDAXCTL_FUZZ_SCALE=N runs N times
# as many examples (a longer fuzzing session).
SHRINK = os.environ.get("FSDAXCTL_FUZZ_SHRINK") == "1"
SCALE = float(os.environ.get("FSDAXCTL_FUZZ_SCALE", "1"))
FUZZ = settings(deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                phases=[p for p in Phase if SHRINK or p is not Phase.shrink])


def examples(n: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(n * SCALE)))


# --- wall-clock limit ------------------------------------------------------------------------------------------

class Hang(Exception):
    """Raised by SIGALRM inside a run that took too long: deliberately not an FsdaxError."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    def on_alarm(signum, frame):
        raise Hang(f"{what} still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def no_runaway():
    """A RecursionError becomes a short failure naming where it recursed (pytest would print ~1000 frames)."""
    try:
        yield
    except RecursionError as e:
        frames = traceback.extract_tb(e.__traceback__)
        inner = [f"{os.path.basename(fr.filename)}:{fr.lineno} {fr.name}" for fr in frames[-4:]]
        raise AssertionError(f"RecursionError after {len(frames)} frames, innermost: {'; '.join(inner)}") from None


# --- on-disk helpers -------------------------------------------------------------------------------------------

def set_crc(buf: bytearray, crc_off: int) -> None:
    """Store the XFS CRC32c of buf (CRC field taken as zero) little-endian at crc_off."""
    buf[crc_off:crc_off + 4] = b"\0\0\0\0"
    buf[crc_off:crc_off + 4] = struct.pack("<I", crc32c(bytes(buf)))


def decl_fields(decl, base: int = 0, max_words: int = 4) -> list[tuple[int, int]]:
    """(offset, width) of every field of a construct Struct; fields wider than 8 bytes give a few 8-byte words."""
    out, off = [], base
    for sub in decl.subcons:
        size = sub.sizeof()
        if size in (1, 2, 4, 8):
            out.append((off, size))
        else:
            out += [(off + 8 * i, min(8, size - 8 * i)) for i in range(min(max_words, -(-size // 8)))]
        off += size
    return out


def format_fields(fmt: str, base: int) -> list[tuple[int, int]]:
    """(offset, width) of every field of a struct.Struct format such as '>LLqQ'."""
    out, off = [], base
    for code in fmt[1:]:
        size = struct.calcsize(">" + code)
        out.append((off, size))
        off += size
    return out


SBLOCK_HDR_FIELDS = decl_fields(f.xfs_btree_sblock)
LBLOCK_HDR_FIELDS = decl_fields(f.xfs_btree_lblock)


@dataclass(frozen=True)
class Target:
    """One structure that can be damaged: its bytes in the image, its CRC field, its fields worth hitting."""
    kind: str
    name: str
    offset: int
    size: int
    crc_off: int | None
    fields: tuple = field(default=(), repr=False)
    # 4-byte values worth writing into pointer fields: the agbnos of the blocks of the same tree (ancestors
    # included), so pointer damage makes cycles and shared subtrees, not only pointers into nowhere.
    agbnos: tuple = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"<{self.name} at byte {self.offset:#x}>"

    def _repr_pretty_(self, p, cycle) -> None:  # how Hypothesis prints a falsifying example
        p.text(repr(self))


@dataclass
class Layout:
    name: str
    size: int
    blocksize: int
    agblocks: int
    agcount: int
    sectsize: int
    rootino: int
    inodes: list[int]
    targets: dict[str, list[Target]] = field(default_factory=dict)
    cut_points: list[int] = field(default_factory=list)
    rmap_levels: list[int] = field(default_factory=list)


def _tree_targets(fs, tree: btree.SBtree, agno: int, root: int) -> list[Target]:
    """Every block of one short-form btree (walked from its root with the library's own verified reads)."""
    geo = fs.geo
    found: dict[int, btree.Node] = {}

    def walk(agbno, level):
        if agbno in found:
            return
        node = btree.read_node(fs, tree, agno, agbno, level, root=level is None)
        found[agbno] = node
        for p in node.ptrs:
            walk(p, node.level - 1)

    walk(root, None)
    agbnos = tuple(sorted(found))
    out = []
    for agbno, node in found.items():
        hdr = btree.HDR
        n = len(node.items)
        if node.level == 0:
            rsz = tree.rec.size
            fields = [fl for i in range(n + 1) for fl in format_fields(tree.rec.format, hdr + i * rsz)]
        else:
            esz = tree.entry.size
            pstart = hdr + tree.maxrecs(geo.blocksize, False) * esz
            fields = [fl for i in range(n + 1) for fl in format_fields(tree.entry.format, hdr + i * esz)]
            fields += [(pstart + 4 * i, 4) for i in range(n + 1)]
        out.append(Target(tree.name, f"{tree.name} block AG {agno} agbno {agbno} level {node.level}",
                          geo.ag_to_byte(agno, agbno), geo.blocksize, f.XFS_BTREE_SBLOCK_CRC_OFF,
                          tuple(SBLOCK_HDR_FIELDS + fields), agbnos))
    return out


def _log_cycle(data: bytes, start: int, bb: int) -> int:
    word = int.from_bytes(data[start + bb * 512: start + bb * 512 + 4], "big")
    if word == f.XLOG_HEADER_MAGIC_NUM:
        return int.from_bytes(data[start + bb * 512 + 4: start + bb * 512 + 8], "big")
    return word


def _dir_attr_crc_off(block: bytes) -> int | None:
    """Where the CRC of a directory or attr block is, from its magic (None: not a block we know)."""
    if int.from_bytes(block[:4], "big") in (f.XFS_DIR3_BLOCK_MAGIC, f.XFS_DIR3_DATA_MAGIC, f.XFS_DIR3_FREE_MAGIC):
        return 4  # xfs_dir3_blk_hdr: magic, crc
    if int.from_bytes(block[8:10], "big") in (f.XFS_DA3_NODE_MAGIC, f.XFS_DIR3_LEAF1_MAGIC,
                                              f.XFS_DIR3_LEAFN_MAGIC, f.XFS_ATTR3_LEAF_MAGIC):
        return 12  # xfs_da3_blkinfo: forw, back, magic, pad, crc
    if int.from_bytes(block[:4], "big") == f.XFS_ATTR3_RMT_MAGIC:
        return 12  # xfs_attr3_rmt_hdr: magic, offset, bytes, crc
    return None


DIR_FIELDS = tuple([(4 * i, 4) for i in range(40)] + [(2 * i, 2) for i in range(40)] + [(8 * i, 8) for i in range(24)])
MAX_BLOCK_TARGETS = 96  # directory and attr blocks kept as targets (spread over all of them)


def build_layout(name: str, path: str, data: bytes, inodes: list[int], dirs=()) -> Layout:
    """Where the metadata of a pristine image lives, found with the library itself (the image is undamaged)."""
    with XfsFilesystem.open(path) as fs:
        geo, sb = fs.geo, fs.sb
        lay = Layout(name, len(data), geo.blocksize, geo.agblocks, geo.agcount, geo.sectsize, sb.sb_rootino,
                     [sb.sb_rootino, *inodes])
        T = lay.targets
        T["sb"] = [Target("sb", "superblock", 0, geo.sectsize, f.XFS_SB_CRC_OFF, tuple(decl_fields(f.xfs_dsb)))]
        agfl_slots = [(f.XFS_AGFL_BNO_OFF + 4 * i, 4) for i in range((geo.sectsize - f.XFS_AGFL_BNO_OFF) // 4)]
        headers = []
        for agno in range(geo.agcount):
            for sector, kind, crc_off, fields in (
                    (1, "agf", f.XFS_AGF_CRC_OFF, decl_fields(f.xfs_agf)),
                    (2, "agi", f.XFS_AGI_CRC_OFF, decl_fields(f.xfs_agi)),
                    (3, "agfl", f.XFS_AGFL_CRC_OFF, decl_fields(f.xfs_agfl) + agfl_slots[:16])):
                headers.append(Target(kind, f"{kind.upper()} of AG {agno}", geo.ag_header_byte(agno, sector),
                                      geo.sectsize, crc_off, tuple(fields)))
        T["ag"] = headers
        for agno in range(geo.agcount):
            agf = fs.agf(agno)
            lay.rmap_levels.append(agf.agf_rmap_level)
            T.setdefault("rmapbt", []).extend(_tree_targets(fs, btree.RMAPBT, agno, agf.agf_rmap_root))
            T.setdefault("bnobt", []).extend(_tree_targets(fs, btree.BNOBT, agno, agf.agf_bno_root))
            T.setdefault("refcountbt", []).extend(_tree_targets(fs, btree.REFCOUNTBT, agno, agf.agf_refcount_root))
        core = decl_fields(f.xfs_dinode_core)
        T["inode"] = []
        # The inodes that are read and mapped, directories (the path walk reads them), and neighbours of both
        # in their chunks (the detail of a damaged inode chunk reads those).
        extra = list(dirs)
        for ino in lay.inodes + list(dirs)[:4]:
            extra += [ino + d for d in (1, 2, 5) if geo.ino_to_ag(ino + d)[1] == geo.ino_to_ag(ino)[1]]
        for ino in dict.fromkeys(lay.inodes + extra):
            try:
                inode = read_inode(fs, ino)
            except FsdaxError:
                continue  # a free slot never written (sparse chunk)
            fork = [(f.XFS_DINODE_CORE_SIZE + 4 * i, 4) for i in range(24)]
            if inode.core.di_forkoff:
                a = f.XFS_DINODE_CORE_SIZE + inode.core.di_forkoff * 8
                fork += [(a + 4 * i, 4) for i in range(8) if a + 4 * i + 4 <= geo.inodesize]
            T["inode"].append(Target("inode", f"inode {ino}", geo.ino_to_byte(ino), geo.inodesize,
                                     f.XFS_DINODE_CRC_OFF, tuple(core + fork)))
        pieces = OwnerMap(fs).pieces(0, len(data))
        bm = []
        for p in pieces:
            if p.owner == "file" and p.extent_map:
                for off in range(p.offset, p.offset + p.length, geo.blocksize):
                    n = int.from_bytes(data[off + 6: off + 8], "big")
                    recs = [(f.XFS_BTREE_LBLOCK_CRC_LEN + 16 * i + k, 8) for i in range(min(n + 1, 8)) for k in (0, 8)]
                    bm.append(Target("bmbt", f"bmbt block of inode {p.inode} (fsblock byte {off:#x})", off,
                                     geo.blocksize, f.XFS_BTREE_LBLOCK_CRC_OFF, tuple(LBLOCK_HDR_FIELDS + recs)))
        T["bmbt"] = bm
        dirset, blocks = set(dirs), {"dir": [], "attr": []}
        dirblk = geo.blocksize << sb.sb_dirblklog
        for p in pieces:
            if p.owner != "file" or p.extent_map or not (p.fork == "attr" or p.inode in dirset):
                continue
            kind, size = ("attr", geo.blocksize) if p.fork == "attr" else ("dir", dirblk)
            for off in range(p.offset, p.offset + p.length - size + 1, size):
                crc_off = _dir_attr_crc_off(data[off:off + size])
                if crc_off is not None:
                    blocks[kind].append(Target(kind, f"{kind} block of inode {p.inode} ({p.fork} fork)", off, size,
                                               crc_off, DIR_FIELDS))
        for kind, found in blocks.items():
            step = max(1, len(found) // MAX_BLOCK_TARGETS)
            T[kind] = found[::step][:MAX_BLOCK_TARGETS]
        # The log: one target over all of it; fields are the words the head search and the unmount check read,
        # in the blocks they read (first, last, around the head).
        lstart = geo.fsb_to_byte(sb.sb_logstart)
        nbb = (sb.sb_logblocks << geo.blocklog) // 512
        head = next((bb for bb in range(nbb) if _log_cycle(data, lstart, bb) != _log_cycle(data, lstart, 0)), 0)
        bbs = sorted({0, 1, nbb - 1, nbb - 2, *[(head + d) % nbb for d in range(-4, 3)]})
        words = [0, 4, 8, 12, 36, 40, 300, 320, 9]
        T["log"] = [Target("log", f"log (head at BB {head} of {nbb})", lstart, nbb * 512, None,
                           tuple((bb * 512 + w, 1 if w == 9 else 4) for bb in bbs for w in words))]
        cuts = {0, 1, 100, 511, 512, 513, len(data) - 1, lay.size}
        for ts in T.values():
            for t in ts:
                cuts |= {t.offset - 1, t.offset, t.offset + 1, t.offset + t.size - 1, t.offset + t.size}
        for agno in range(geo.agcount):
            cuts |= {geo.ag_to_byte(agno, 0) + d for d in (0, 512, 1024, 1536, 2048, BLOCK)}
        lay.cut_points = sorted(c for c in cuts if 0 <= c <= lay.size)
    return lay


class Bench:
    """A pristine image in memory, and one scratch copy that examples damage and then put back."""

    CHUNK = 64 * 1024

    def __init__(self, layout: Layout, data: bytes, path: str):
        self.layout, self.data, self.path = layout, data, path
        with open(path, "wb") as fh:
            fh.write(data)
        zero = bytes(self.CHUNK)
        self.nonzero = [o for o in range(0, len(data), self.CHUNK) if data[o:o + self.CHUNK] != zero]

    @contextlib.contextmanager
    def damaged(self, patches=(), truncate: int | None = None):
        """The scratch copy with `patches` [(offset, bytes)] written and cut to `truncate` bytes."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            for off, b in patches:
                os.pwrite(fd, b, off)
            if truncate is not None:
                os.ftruncate(fd, truncate)
            yield self.path
        finally:
            if truncate is not None:
                os.ftruncate(fd, len(self.data))
                for o in self.nonzero:
                    if o + self.CHUNK > truncate:
                        s = max(o, truncate)
                        os.pwrite(fd, self.data[s:o + self.CHUNK], s)
            for off, b in patches:
                os.pwrite(fd, self.data[off:off + len(b)], off)
            os.close(fd)


def _without_rmapbt(data: bytes) -> bytes:
    sb = bytearray(data[:512])
    ro = int.from_bytes(sb[212:216], "big") & ~f.XFS_SB_FEAT_RO_COMPAT_RMAPBT
    sb[212:216] = ro.to_bytes(4, "big")
    set_crc(sb, f.XFS_SB_CRC_OFF)
    return bytes(sb) + data[512:]


# --- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def populated(tmp_path_factory):
    """(image path, interesting inode numbers): 64 MiB, 4k blocks, rmapbt+reflink, 2 AGs, populated."""
    from tests.conftest import need_kernel
    from tests.images import BMBT_FILE, loop_mount, mkfs, populate

    need_kernel()
    path = str(tmp_path_factory.mktemp("fuzz") / "populated.img")
    mkfs(path, 64 * MiB, POPULATED_MKFS)
    with loop_mount(path) as mnt:
        populate(mnt, reflink=True, seed=POPULATED_SEED, block_size=BLOCK)
        inodes = [os.lstat(os.path.join(mnt, p)).st_ino
                  for p in (BMBT_FILE, "xattr/many-small", "xattr/big-remote", "xattr", "bigdir", "reflink/src")]
        dirs = sorted({os.lstat(root).st_ino for root, _, _ in os.walk(mnt)})
    return path, inodes, dirs


def _bench(tmp_path_factory, name: str, path: str, inodes: list[int], normap: bool = False,
           dirs: list[int] = ()) -> Bench:
    with open(path, "rb") as fh:
        data = fh.read()
    if normap:
        data = _without_rmapbt(data)
    work = str(tmp_path_factory.mktemp("fuzz-work") / f"{name}.img")
    with open(work, "wb") as fh:
        fh.write(data)
    return Bench(build_layout(name, work, data, inodes, dirs), data, work)


@pytest.fixture(scope="session")
def mkfs_bench(tmp_path_factory, mkfs_image):
    with XfsFilesystem.open(mkfs_image) as fs:
        inodes = [fs.sb.sb_rbmino, fs.sb.sb_rsumino]
    return _bench(tmp_path_factory, "mkfs", mkfs_image, inodes)


@pytest.fixture(scope="session")
def populated_bench(tmp_path_factory, populated):
    path, inodes, dirs = populated
    bench = _bench(tmp_path_factory, "populated", path, inodes, dirs=dirs)
    lay = bench.layout
    assert max(lay.rmap_levels) >= 2, f"populated image has no multi-level rmapbt: levels {lay.rmap_levels}"
    assert lay.targets["bmbt"], "populated image has no bmbt block"
    return bench


@pytest.fixture(scope="session")
def mkfs_normap_bench(tmp_path_factory, mkfs_image):
    with XfsFilesystem.open(mkfs_image) as fs:
        inodes = [fs.sb.sb_rbmino, fs.sb.sb_rsumino]
    return _bench(tmp_path_factory, "mkfs-normap", mkfs_image, inodes, normap=True)


@pytest.fixture(scope="session")
def populated_normap_bench(tmp_path_factory, populated):
    path, inodes, dirs = populated
    return _bench(tmp_path_factory, "populated-normap", path, inodes, normap=True, dirs=dirs)


@pytest.fixture(scope="session", params=["mkfs", "populated"])
def bench(request):
    return request.getfixturevalue(f"{request.param}_bench")


@pytest.fixture(scope="session", params=["mkfs", "populated"])
def normap_bench(request):
    return request.getfixturevalue(f"{request.param}_normap_bench")


# --- damage strategies ----------------------------------------------------------------------------------------

HOW = ("flip", "zero", "one", "max", "sign", "inc", "dec", "rand", "tree")


def edits_strategy(target: Target, max_edits: int = 4):
    """A few edits: (position, width), how, and a random word. Positions are mostly the structure's fields."""
    anywhere = st.tuples(st.integers(0, target.size - 1), st.sampled_from((1, 2, 4, 8)))
    pos = st.one_of(st.sampled_from(target.fields), anywhere) if target.fields else anywhere
    return st.lists(st.tuples(pos, st.sampled_from(HOW), st.integers(0, (1 << 64) - 1)),
                    min_size=1, max_size=max_edits)


def _edit_value(orig: int, width: int, how: str, r: int, agbnos: tuple) -> int:
    mask = (1 << (8 * width)) - 1
    return {
        "flip": orig ^ (1 << (r % (8 * width))),
        "zero": 0,
        "one": 1,
        "max": mask,
        "sign": 1 << (8 * width - 1),
        "inc": orig + 1,
        "dec": orig - 1,
        "rand": r,
        "tree": agbnos[r % len(agbnos)] if agbnos else r % 64,
    }[how] & mask


def damage(target: Target, data: bytes, edits, fix_crc: bool) -> list[tuple[int, bytes]]:
    """The patches [(image offset, bytes)] that apply `edits` to `target` (and re-seal its CRC if asked)."""
    if target.size <= 64 * 1024:
        buf = bytearray(data[target.offset:target.offset + target.size])
        _apply(buf, edits, target.agbnos)
        if fix_crc and target.crc_off is not None:
            set_crc(buf, target.crc_off)
        return [(target.offset, bytes(buf))]
    # A big target (the log): edit a copy of only the bytes around the edits, then patch the runs that changed.
    lo = max(0, min(pos for (pos, _), _, _ in edits) - 8)
    hi = min(target.size, max(pos for (pos, _), _, _ in edits) + 16)
    if hi - lo > 64 * 1024:
        patches = []
        for e in edits:
            patches += damage(target, data, [e], False)
        return patches
    buf = bytearray(data[target.offset + lo:target.offset + hi])
    _apply(buf, [((pos - lo, w), how, r) for (pos, w), how, r in edits], target.agbnos)
    return [(target.offset + lo, bytes(buf))]


def _apply(buf: bytearray, edits, agbnos: tuple) -> None:
    for (pos, width), how, r in edits:
        if not 0 <= pos < len(buf):
            continue
        width = min(width, len(buf) - pos)
        orig = int.from_bytes(buf[pos:pos + width], "big")
        buf[pos:pos + width] = _edit_value(orig, width, how, r, agbnos).to_bytes(width, "big")


def queries_strategy():
    """Query ranges as fractions (of 2**32) of the bytes the image claims, resolved once the image is open."""
    frac = st.integers(0, (1 << 32) - 1)
    return st.lists(st.tuples(frac, frac), min_size=1, max_size=3)


def _resolve(queries, total: int) -> list[tuple[int, int]]:
    out = [(0, total)]
    for a, b in queries:
        off = a * total >> 32
        out.append((off, max(1, (b * (total - off)) >> 32)))
    return out


# --- checks -----------------------------------------------------------------------------------------------------

def check_error(e: FsdaxError, path: str) -> None:
    text = str(e)
    assert text and "\n" not in text and "\r" not in text, f"error text is not one line: {text!r}"
    assert WHERE_FACTS & set(e.facts) or path in text, f"error names no structure or place: {text!r}"


def check_pieces(pieces, qstart: int, length: int, what: str) -> None:
    """Pieces inside the query, of positive length, sorted by offset, together covering every byte."""
    qend = qstart + length
    assert all(p.owner in OWNER_KINDS for p in pieces), [p for p in pieces if p.owner not in OWNER_KINDS][:3]
    outside = [p for p in pieces if p.offset < qstart or p.offset + p.length > qend]
    assert not outside, f"{what}: pieces outside the query [{qstart}, {qend}): {outside[:3]}"
    empty = [p for p in pieces if p.length <= 0]
    assert not empty, f"{what}: pieces of length <= 0: {empty[:3]}"
    unsorted = [(a, b) for a, b in itertools.pairwise(pieces) if b.offset < a.offset]
    assert not unsorted, f"{what}: pieces out of device order: {unsorted[:2]}"
    assert sum(p.length for p in pieces) >= length, f"{what}: pieces add up to less than the query"
    cursor = qstart
    for p in sorted(pieces, key=lambda p: p.offset):
        assert p.offset <= cursor, f"{what}: no piece covers bytes [{cursor}, {p.offset})"
        cursor = max(cursor, p.offset + p.length)
    assert cursor >= qend, f"{what}: no piece covers bytes [{cursor}, {qend})"
    for p in pieces:
        if p.owner == "unknown":
            assert p.detail, f"{what}: an unknown piece says nothing about why: {p}"


def owner_map(fs, source: str | None = None) -> OwnerMap:
    """OwnerMap(fs), from `source` ("rmapbt", "bnobt", "walk") when asked."""
    return OwnerMap(fs, source=source)


def exercise_library(path: str, layout: Layout, queries, source: str | None = None) -> str:
    """Everything a damaged image can go through in process. Returns what happened (a Hypothesis event)."""
    try:
        fs = XfsFilesystem.open(path)
    except FsdaxError as e:
        check_error(e, path)
        return f"open refused: {type(e).__name__}"
    with fs:
        geo = fs.geo
        for w in fs.warnings:
            assert "\n" not in w
        json.dumps(filesystem_info(fs))  # the JSON contract's `filesystem` object (names may carry surrogate escapes)
        for agno in range(min(geo.agcount, 8)):  # what `info` reads
            for read in (fs.agf, fs.agi, fs.agfl):
                try:
                    read(agno)
                except FsdaxError as e:
                    check_error(e, path)
        omap = owner_map(fs, source)
        total = max(fs.dev.size, geo.size)
        for qstart, length in _resolve(queries, total):
            try:
                pieces = omap.pieces(qstart, length)
            except FsdaxError as e:
                check_error(e, path)
                continue
            check_pieces(pieces, qstart, length, f"pieces({qstart}, {length})")
        for line in omap.problems:
            assert line and "\n" not in line, f"problem is not one line: {line!r}"
        for ino in dict.fromkeys([fs.sb.sb_rootino, *layout.inodes]):
            try:
                inode = read_inode(fs, ino)
            except FsdaxError as e:
                check_error(e, path)
                continue
            for which in ("data", "attr"):
                try:
                    extents = bmap(fs, inode, which)
                except FsdaxError as e:
                    check_error(e, path)
                    continue
                assert isinstance(extents, list)
        try:
            assert log_is_clean(fs) in (True, False, None)
        except FsdaxError as e:
            check_error(e, path)
        for w in log_warnings(fs):
            assert "\n" not in w
    return "answered"


def run_library(bench: Bench, patches=(), truncate=None, queries=(), source: str | None = None):
    with (bench.damaged(patches, truncate) as path, time_limit(EXAMPLE_SECONDS, "the library run"),
          no_runaway()):
        outcome = exercise_library(path, bench.layout, queries, source)
    with contextlib.suppress(Exception):  # only inside a Hypothesis test (--hypothesis-show-statistics)
        event(outcome)
    return outcome


# --- 2. library property tests, one per kind of damage -----------------------------------------------------------

def _damage_test(bench: Bench, data, kind: str, crc_weights=(True, False), source: str | None = None):
    if isinstance(kind, tuple):
        kind = data.draw(st.sampled_from([k for k in kind if bench.layout.targets.get(k)]), label="kind")
    targets = bench.layout.targets[kind]
    if not targets:  # the fuzz image lost a shape it is built to have: a fixture defect, not a reason to skip
        pytest.fail(f"{bench.layout.name} has no {kind} structure")
    target = data.draw(st.sampled_from(targets), label="target")
    edits = data.draw(edits_strategy(target), label="edits")
    fix = data.draw(st.sampled_from(crc_weights), label="fix_crc") if target.crc_off is not None else False
    queries = data.draw(queries_strategy(), label="queries")
    run_library(bench, damage(target, bench.data, edits, fix), queries=queries, source=source)


@examples(250)
@given(data=st.data())
def test_superblock_damage(bench, data):
    """(a) bytes, bit flips and boundary values anywhere in the superblock sector, CRC re-sealed or not."""
    _damage_test(bench, data, "sb")


@examples(250)
@given(data=st.data())
def test_ag_header_damage(bench, data):
    """(b) the AGF, AGI or AGFL sector of a random AG."""
    _damage_test(bench, data, "ag")


@examples(300)
@given(data=st.data())
def test_rmapbt_block_damage(bench, data):
    """(c) rmapbt blocks, mostly with a valid CRC so level, numrecs, pointers, keys and records are reached."""
    _damage_test(bench, data, "rmapbt", crc_weights=(True, True, True, False))


@examples(200)
@given(data=st.data())
def test_refcountbt_block_damage(bench, data):
    """(c) refcountbt blocks (read for the shared flag of data-fork records)."""
    _damage_test(bench, data, "refcountbt", crc_weights=(True, True, True, False))


@examples(200)
@given(data=st.data())
def test_bnobt_block_damage(normap_bench, data):
    """(c) bnobt blocks, on the image with its rmapbt feature bit cleared, answered from the bnobt."""
    _damage_test(normap_bench, data, "bnobt", crc_weights=(True, True, True, False), source="bnobt")


@examples(40)
@given(data=st.data())
def test_metadata_walk_on_damaged_images(normap_bench, data):
    """Without rmapbt the owners can be synthesized by walking all metadata (every inode, fork and btree):
    the same contract with inodes, bmbt blocks, AG headers and free-space btrees damaged."""
    _damage_test(normap_bench, data, ("inode", "bmbt", "ag", "bnobt", "refcountbt"),
                 crc_weights=(True, True, False), source="walk")


@examples(250)
@given(data=st.data())
def test_inode_damage(bench, data):
    """(d) on-disk inodes that are read and mapped (root, realtime bitmap, bmbt-format file, xattrs, dirs)."""
    _damage_test(bench, data, "inode", crc_weights=(True, True, True, False))


@examples(200)
@given(data=st.data())
def test_bmbt_block_damage(populated_bench, data):
    """(d) bmbt blocks of the files whose forks are in btree format."""
    _damage_test(populated_bench, data, "bmbt", crc_weights=(True, True, True, False))


@examples(200)
@given(data=st.data())
def test_log_damage(bench, data):
    """(e) the log: cycle words and record headers at the start, the end and around the head."""
    _damage_test(bench, data, "log")


@examples(120)
@given(data=st.data())
def test_truncated_image(bench, data):
    """(f) the image cut at any length, around metadata edges more often than not."""
    lay = bench.layout
    cut = data.draw(st.one_of(st.sampled_from(lay.cut_points), st.integers(0, lay.size)), label="cut")
    queries = data.draw(queries_strategy(), label="queries")
    run_library(bench, truncate=cut, queries=queries)


# --- 3. the CLI --------------------------------------------------------------------------------------------------

def impact(owner: dict) -> int:
    kind = owner["owner"]
    if kind in ("free", "outside-filesystem"):
        return 0
    if kind == "file":  # README.md "Conventions": a directory's and a symlink's blocks are metadata too
        meta = owner["fork"] == "attr" or owner["extent_map"] or owner.get("impact") in ("directory", "symlink")
        return 8 if meta else 4
    if kind == "unknown":
        return 1
    return 8


def check_json_owners(owners, qstart, length, what):
    qend = qstart + length
    outside = [o for o in owners if o["offset"] < qstart or o["offset"] + o["length"] > qend or o["length"] <= 0]
    assert not outside, f"{what}: owners outside the query or empty: {outside[:3]}"
    cursor = qstart
    for o in sorted(owners, key=lambda o: o["offset"]):
        assert o["offset"] <= cursor, f"{what}: no owner for bytes [{cursor}, {o['offset']})"
        cursor = max(cursor, o["offset"] + o["length"])
    assert cursor >= qend, f"{what}: no owner for bytes [{cursor}, {qend})"


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def entry_point(args):
    """`fsdaxctl ARGS` through the real entry point (fsdaxctl.cli.main: it also sets up stdout), in process."""
    saved = sys.argv
    sys.argv = ["fsdaxctl", *args]
    try:
        main()
    finally:
        sys.argv = saved


def run_cli(*args):
    result = CliRunner(env={"FSDAXCTL_DEBUG": None}).invoke(entry_point, [str(a) for a in args])
    tb = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(*result.exc_info))
    assert not tb, f"fsdaxctl {' '.join(map(str, args))} raised:\n{tb}"
    return result


def check_cli(result, args, *, command: str):
    """Exit status, stderr shape, stdout JSON. Returns the document (None after a fatal error)."""
    what = "fsdaxctl " + " ".join(map(str, args))
    out, err = result.stdout, result.stderr
    assert "Traceback" not in out + err, f"{what}: traceback\n{err}"
    assert "internal error" not in err, f"{what}: {err.strip()}"
    assert result.exit_code in ALLOWED_EXIT, f"{what}: exit status {result.exit_code}\n{err}"
    lines = err.splitlines()
    assert all(ln.startswith("fsdaxctl: ") for ln in lines), f"{what}: stray stderr lines\n{err}"
    errors = [ln for ln in lines if not ln.startswith("fsdaxctl: warning: ")]
    assert len(errors) <= 1, f"{what}: more than one error line\n{err}"
    if errors:
        assert result.exit_code in (1, 2), f"{what}: fatal error but exit status {result.exit_code}\n{err}"
        assert out == "", f"{what}: output after a fatal error: {out[:200]!r}"
        return None
    if command in ("info", "fsmap"):
        assert result.exit_code in (0, 1), f"{what}: exit status {result.exit_code}"
    doc = json.loads(result.stdout_bytes.decode("utf-8"))  # strictly UTF-8: JSON text is UTF-8
    assert all("\n" not in w for w in doc["warnings"])
    return doc


def exercise_cli(path: str, loc: tuple[int, int], aim: tuple[int, int] | None = None):
    """info, fsmap and locate (over `aim` when given: the damaged structure and what follows it)."""
    size = os.path.getsize(path)
    args = ("info", path, "--format", "json")
    check_cli(run_cli(*args), args, command="info")
    args = ("fsmap", path, "--format", "json")
    doc = check_cli(run_cli(*args), args, command="fsmap")
    if doc is not None:
        fsinfo = doc["filesystem"]
        check_json_owners(doc["owners"], 0, max(fsinfo["size"], fsinfo["device_size"]), "fsmap")
    if not size:
        return
    if aim is not None and aim[0] < size:
        off, length = aim[0], min(aim[1], size - aim[0])
    else:
        off = loc[0] * size >> 32
        length = max(1, loc[1] * min(size - off, 16 * MiB) >> 32)
    args = ("locate", path, "--offset", off, "--length", length, "--format", "json")
    result = run_cli(*args)
    doc = check_cli(result, args, command="locate")
    if doc is not None:
        owners = doc["results"][0]["owners"]
        check_json_owners(owners, off, length, "locate")
        bits = 0
        for o in owners:
            bits |= impact(o)
        assert result.exit_code == bits, f"locate exit {result.exit_code} but owners say {bits}"


CLI_KINDS = ("sb", "ag", "rmapbt", "refcountbt", "inode", "bmbt", "log", "truncate")


def _cli_test(bench: Bench, data, kinds):
    lay = bench.layout
    kinds = [k for k in kinds if k == "truncate" or lay.targets.get(k)]
    if not kinds:
        pytest.fail(f"{lay.name} has none of the structures to damage")
    kind = data.draw(st.sampled_from(kinds), label="kind")
    loc = data.draw(st.tuples(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1)), label="locate")
    patches, cut, aim = (), None, None
    if kind == "truncate":
        cut = data.draw(st.one_of(st.sampled_from(lay.cut_points), st.integers(0, lay.size)), label="cut")
    else:
        target = data.draw(st.sampled_from(lay.targets[kind]), label="target")
        edits = data.draw(edits_strategy(target), label="edits")
        fix = data.draw(st.booleans(), label="fix_crc") if target.crc_off is not None else False
        patches = damage(target, bench.data, edits, fix)
        if data.draw(st.booleans(), label="locate the damage"):
            aim = (target.offset, min(target.size, 1 * MiB) + lay.blocksize)
    with bench.damaged(patches, cut) as path, time_limit(EXAMPLE_SECONDS * 3, "the CLI run"):
        exercise_cli(path, loc, aim)


@examples(80)
@given(data=st.data())
def test_cli_on_damaged_images(bench, data):
    """3. info, fsmap and locate on damaged images: status bits, one error line at most, JSON or nothing."""
    _cli_test(bench, data, CLI_KINDS)


@examples(80)
@given(data=st.data())
def test_cli_on_damaged_directories_and_xattrs(populated_bench, data):
    """3. The same with directory and attr blocks damaged: `locate` names owners by walking the directories."""
    _cli_test(populated_bench, data, ("dir", "attr"))


def test_cli_subprocess_smoke(mkfs_bench):
    """The real entry point (`python -m fsdaxctl`), on a few damaged images: no traceback, the same contract."""
    lay = mkfs_bench.layout
    root = next(t for t in lay.targets["rmapbt"] if t.name.startswith("rmapbt block AG 1 "))
    cases = {
        "bad sb magic": {"patches": [(0, b"XFSX")]},
        "bad rmapbt CRC": {"patches": [(root.offset + 100, b"\xff\xff")]},
        "cut in AG 1 headers": {"truncate": lay.agblocks * lay.blocksize + 600},
    }
    for name, kw in cases.items():
        with mkfs_bench.damaged(**kw) as path:
            for args in (["info", path], ["fsmap", path, "--format", "jsonl"],
                         ["locate", path, "--offset", "0", "--length", "1m"]):
                p = subprocess.run([sys.executable, "-m", "fsdaxctl", *args], capture_output=True, timeout=60,
                                   check=False)
                err = p.stderr.decode("utf-8", "replace")
                assert "Traceback" not in err, (name, args, err)
                assert p.returncode in ALLOWED_EXIT, (name, args, p.returncode, err)
                errors = [ln for ln in err.splitlines() if not ln.startswith("fsdaxctl: warning: ")]
                assert len(errors) <= 1 and all(ln.startswith("fsdaxctl: ") for ln in errors), (name, args, err)
                if errors:
                    assert p.stdout == b"", (name, args)
                elif args[0] == "fsmap":
                    for line in p.stdout.decode("utf-8").splitlines():
                        json.loads(line)
                else:
                    json.loads(p.stdout.decode("utf-8"))


# --- 4. pointer cycles and shared subtrees in the rmapbt (valid CRCs) --------------------------------------------

def sblock(lay_uuid: bytes, magic: int, agno: int, daddr: int, level: int, body: bytes, numrecs: int,
           blocksize: int) -> bytes:
    """A short-form btree block with a valid header and CRC: body is the records, or keys then pointers."""
    hdr = struct.pack(">IHHIIQQ16sI", magic, level, numrecs, f.NULLAGBLOCK, f.NULLAGBLOCK, daddr, 0, lay_uuid,
                      agno) + b"\0\0\0\0"
    buf = bytearray((hdr + body).ljust(blocksize, b"\0"))
    set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
    return bytes(buf)


def rmap_node_body(entries: list[tuple[bytes, int]], blocksize: int) -> bytes:
    """Node body: the (low key + high key) entries, padded to maxrecs, then the pointers."""
    maxrecs = btree.RMAPBT.maxrecs(blocksize, False)
    keys = b"".join(k for k, _ in entries).ljust(maxrecs * btree.RMAPBT.entry.size, b"\0")
    return keys + b"".join(struct.pack(">I", p) for _, p in entries)


class RmapSurgery:
    """Rewrites AG `agno`'s rmapbt on a pristine image: new node blocks in free space, a new root in the AGF."""

    def __init__(self, bench: Bench, agno: int):
        self.bench, self.agno = bench, agno
        with XfsFilesystem.open(bench.path) as fs:
            self.geo, self.uuid = fs.geo, fs.meta_uuid
            agf = fs.agf(agno)
            self.root, self.levels = agf.agf_rmap_root, agf.agf_rmap_level
            leaf = btree.read_node(fs, btree.RMAPBT, agno, self.root, None, root=True)
            while leaf.level:
                leaf_agbno = leaf.ptrs[0]
                leaf = btree.read_node(fs, btree.RMAPBT, agno, leaf_agbno, leaf.level - 1)
            self.leaf_agbno = leaf_agbno if self.levels > 1 else self.root
            recs = leaf.items
            lo, hi = recs[0], max(recs, key=lambda r: r[0])
            # Node entry: low key (start, owner, offset) + high key of the same shape.
            self.leaf_key = btree.RMAPBT.entry.pack(lo[0], lo[2], lo[3], hi[0] + hi[1] - 1, hi[2], hi[3])
            base = self.geo.ag_to_byte(agno, 0)
            free = [p for p in OwnerMap(fs).pieces(base, self.geo.ag_length(agno) << self.geo.blocklog)
                    if p.owner == "free"]
            self.free = [(p.offset - base) // self.geo.blocksize + i
                         for p in free for i in range(p.length // self.geo.blocksize)]
        self.patches: list[tuple[int, bytes]] = []

    def node(self, agbno: int, level: int, ptrs: list[int], key: bytes | None = None) -> None:
        geo = self.geo
        body = rmap_node_body([(key or self.leaf_key, p) for p in ptrs], geo.blocksize)
        blk = sblock(self.uuid, f.XFS_RMAP_CRC_MAGIC, self.agno, geo.ag_to_daddr(self.agno, agbno), level,
                     body, len(ptrs), geo.blocksize)
        self.patches.append((geo.ag_to_byte(self.agno, agbno), blk))

    def set_root(self, agbno: int, levels: int) -> None:
        off = self.geo.ag_header_byte(self.agno, 1)
        agf = bytearray(self.bench.data[off:off + self.geo.sectsize])
        struct.pack_into(">I", agf, 24, agbno)  # agf_rmap_root
        struct.pack_into(">I", agf, 36, levels)  # agf_rmap_level
        set_crc(agf, f.XFS_AGF_CRC_OFF)
        self.patches.append((off, bytes(agf)))

    def walk(self, seconds: float = WALK_SECONDS):
        """Whole-AG pieces (consumed a batch at a time: a blow-up must not eat memory before the alarm)."""
        with self.bench.damaged(self.patches) as path, XfsFilesystem.open(path) as fs:
            omap = OwnerMap(fs)
            base = self.geo.ag_to_byte(self.agno, 0)
            length = self.geo.ag_length(self.agno) << self.geo.blocklog
            pieces, cap = [], 100_000
            with time_limit(seconds, f"the rmapbt walk of AG {self.agno}"), no_runaway():
                for batch in omap.iter_batches(base, length):
                    pieces += batch
                    assert len(pieces) <= cap, f"over {cap} pieces for one AG of {length} bytes"
            return pieces, omap.problems


def _cycle_cases():
    """Pointer damage that makes cycles, over a chain of new nodes N1..Nd (N_k at level k, Nd the root, each
    pointing at the one below, N1 at the real leaf): (depth, name, {node: pointer targets that replace its own})."""
    cases = []
    for d in (1, 2, 3):
        top, below = f"N{d}", ("leaf" if d == 1 else f"N{d - 1}")
        cases += [(d, "root points at itself", {top: [below, top]}),
                  (d, "root points at itself first", {top: [top, below]})]
        if d >= 2:
            cases += [(d, "child points at its parent", {"N1": ["leaf", "N2"]}),
                      (d, "child points at the root", {"N1": ["leaf", top, "leaf"]}),
                      (d, "child points at itself", {"N1": ["N1", "leaf"]}),
                      (d, "root points at a grandchild", {top: [below, "N1" if d > 2 else "leaf", top]})]
    return cases


@pytest.mark.parametrize("depth,name,override", _cycle_cases(),
                         ids=[f"depth{d}-{n.replace(' ', '-')}" for d, n, _ in _cycle_cases()])
def test_rmapbt_pointer_cycle_terminates(mkfs_bench, depth, name, override):
    """4. A node pointing at itself or at an ancestor (all CRCs, levels, owners and self-addresses valid) cannot
    make the walk loop: each damaged pointer is reported and the rest of the AG is still answered, in ms."""
    s = RmapSurgery(mkfs_bench, agno=1)
    blocks = {f"N{k}": s.free[k] for k in range(1, depth + 1)}
    blocks["leaf"] = s.leaf_agbno
    for k in range(1, depth + 1):
        ptrs = override.get(f"N{k}", ["leaf" if k == 1 else f"N{k - 1}"])
        s.node(blocks[f"N{k}"], k, [blocks[p] for p in ptrs])
    s.set_root(blocks[f"N{depth}"], depth + 1)
    pieces, problems = s.walk()
    base = s.geo.ag_to_byte(1, 0)
    check_pieces(pieces, base, s.geo.ag_length(1) << s.geo.blocklog, name)
    assert any("bb_level" in p or "reached twice" in p for p in problems), (name, problems)


def test_rmapbt_real_tree_self_pointer_terminates(populated_bench):
    """4. On the populated image's real two-level rmapbt: the root's second pointer rewritten to the root."""
    lay = populated_bench.layout
    agno = lay.rmap_levels.index(max(lay.rmap_levels))
    with XfsFilesystem.open(populated_bench.path) as fs:
        root = fs.agf(agno).agf_rmap_root
    target = next(t for t in lay.targets["rmapbt"] if t.name.startswith(f"rmapbt block AG {agno} agbno {root} "))
    pstart = btree.HDR + btree.RMAPBT.maxrecs(lay.blocksize, False) * btree.RMAPBT.entry.size
    buf = bytearray(populated_bench.data[target.offset:target.offset + target.size])
    struct.pack_into(">I", buf, pstart + 4, root)
    set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
    with (populated_bench.damaged([(target.offset, bytes(buf))]) as path, XfsFilesystem.open(path) as fs,
          time_limit(WALK_SECONDS, "the rmapbt walk"), no_runaway()):
        omap = OwnerMap(fs)
        pieces = omap.pieces(0, fs.dev.size)
    check_pieces(pieces, 0, lay.size, "root pointing at itself")
    assert any("bb_level" in p or "reached twice" in p for p in omap.problems), omap.problems


@examples(150)
@given(data=st.data())
def test_rmapbt_pointer_rewrites_terminate(populated_bench, data):
    """4. Random pointers of the populated rmapbt's node blocks pointed at blocks of the same tree (ancestors
    included), levels changed too, CRC valid: the walk ends well within its limit."""
    nodes = [t for t in populated_bench.layout.targets["rmapbt"] if " level 0" not in t.name]
    target = data.draw(st.sampled_from(nodes), label="node")
    pstart = btree.HDR + btree.RMAPBT.maxrecs(target.size, False) * btree.RMAPBT.entry.size
    n = int.from_bytes(populated_bench.data[target.offset + 6:target.offset + 8], "big")
    slot = st.tuples(st.sampled_from([(pstart + 4 * i, 4) for i in range(n)] + [(4, 2)]), st.just("tree"),
                     st.integers(0, 1 << 20))
    edits = data.draw(st.lists(slot, min_size=1, max_size=4), label="edits")
    run_library(populated_bench, damage(target, populated_bench.data, edits, True), queries=[(0, 1 << 32)])


def test_rmapbt_shared_subtree_is_not_walked_exponentially(mkfs_bench):
    """A DAG instead of a cycle: every entry of each node points at the same child (levels, CRCs all valid).
    Levels strictly decrease, so the walk ends, but it visits maxrecs**depth leaves: 91**4 (~7e7) here. A
    forensic tool reading hostile input must bound this (e.g. refuse a block reached twice in one walk)."""
    s = RmapSurgery(mkfs_bench, agno=1)
    depth = 4
    fan = btree.RMAPBT.maxrecs(s.geo.blocksize, False)
    below = s.leaf_agbno
    for k in range(1, depth + 1):
        s.node(s.free[k], k, [below] * fan)
        below = s.free[k]
    s.set_root(below, depth + 1)
    pieces, _ = s.walk()
    base = s.geo.ag_to_byte(1, 0)
    check_pieces(pieces, base, s.geo.ag_length(1) << s.geo.blocklog, "shared subtree")


def test_rmapbt_sibling_pointer_cycle_is_ignored(populated_bench):
    """Sibling pointers are never followed: a cycle through them changes nothing in the answer."""
    lay = populated_bench.layout
    leaves = [t for t in lay.targets["rmapbt"] if t.name.endswith(" level 0")]
    patches = []
    for t in leaves:
        buf = bytearray(populated_bench.data[t.offset:t.offset + t.size])
        agbno = int(t.name.split(" agbno ")[1].split()[0])
        struct.pack_into(">II", buf, 8, agbno, agbno)  # leftsib = rightsib = itself
        set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
        patches.append((t.offset, bytes(buf)))
    with XfsFilesystem.open(populated_bench.path) as fs:
        want = OwnerMap(fs).pieces(0, lay.size)
    with (populated_bench.damaged(patches) as path, XfsFilesystem.open(path) as fs,
          time_limit(WALK_SECONDS, "the rmapbt walk")):
        got = OwnerMap(fs).pieces(0, lay.size)
    assert got == want


# --- plain reproductions of what the fuzzers found ---------------------------------------------------------------
#
# Open when written (each test fails until fsdaxctl is fixed):
# - a cached btree node is returned before its bb_level is checked (btree.read_node), so a valid-CRC pointer back
#   to an ancestor or to the node itself recurses until RecursionError ("internal error" from the CLI):
#   test_rmapbt_pointer_cycle_terminates, test_rmapbt_real_tree_self_pointer_terminates;
# - a node whose entries all point at one child is walked maxrecs**depth times:
#   test_rmapbt_shared_subtree_is_not_walked_exponentially;
# - rmapbt and bnobt records are not checked (length 0, past the AG, unsorted, duplicated by a wrong pointer):
#   pieces outside the query, of length <= 0 or out of order: test_rmapbt_leaf_record_past_the_ag,
#   test_rmapbt_leaf_record_of_length_zero, test_bnobt_leaf_record_past_the_ag, test_rmapbt_pointer_rewrites_*;
# - an unreadable subtree leaves the free blocks before its low key without any piece:
#   test_unreadable_rmapbt_leaf_leaves_no_hole;
# - bmap() of a btree attr fork that starts at the very end of the inode raises struct.error:
#   test_attr_fork_btree_root_at_the_end_of_the_inode;
# - a huge but self-consistent geometry makes `info` and `fsmap` visit every claimed AG:
#   test_huge_but_consistent_geometry_does_not_run_for_hours.
# Passing guard: a label that is not UTF-8 (test_label_that_is_not_utf8).

def test_huge_but_consistent_geometry_does_not_run_for_hours(mkfs_bench):
    """Four superblock fields rewritten together with a valid CRC: 2**24 AGs of 64 blocks (a 4 TiB filesystem
    the kernel's superblock checks accept) on a 64 MiB image. `info` and `fsmap` visit every AG the superblock
    claims, each unreadable past the end of the device: a row, a piece and a warning per AG. Measured: 2**20
    AGs take 36 s (`info`, 311 MB of JSON) and 25 s (`fsmap`); 2**32-2 AGs, the most the checks allow, would
    take days. AGs wholly past the end of the device should be reported once, not one by one."""
    sb = bytearray(mkfs_bench.data[:512])
    agcount = 1 << 24
    struct.pack_into(">Q", sb, 8, agcount * 64)  # sb_dblocks
    struct.pack_into(">I", sb, 84, 64)  # sb_agblocks (XFS_MIN_AG_BLOCKS)
    struct.pack_into(">I", sb, 88, agcount)  # sb_agcount
    sb[124] = 6  # sb_agblklog
    set_crc(sb, f.XFS_SB_CRC_OFF)
    with mkfs_bench.damaged([(0, bytes(sb))]) as path:
        with XfsFilesystem.open(path) as fs:  # the geometry passes the superblock checks
            assert fs.geo.agcount == agcount
        slow = []
        for args in (["info", path, "--format", "json"], ["fsmap", path, "--format", "jsonl"]):
            try:
                subprocess.run([sys.executable, "-m", "fsdaxctl", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=WALK_SECONDS * 2, check=False)
            except subprocess.TimeoutExpired:
                slow.append(args[0])
        assert not slow, f"{slow} still running after {WALK_SECONDS * 2} s on a 64 MiB image"


def test_rmapbt_leaf_record_past_the_ag(mkfs_bench):
    """A valid-CRC rmapbt leaf whose last record's length is absurd: the piece must stay inside the query (the
    record should be reported as damage, as the kernel's xfs_rmap_check_irec does)."""
    lay = mkfs_bench.layout
    t = next(t for t in lay.targets["rmapbt"] if t.name.startswith("rmapbt block AG 0 "))
    buf = bytearray(mkfs_bench.data[t.offset:t.offset + t.size])
    n = int.from_bytes(buf[6:8], "big")
    struct.pack_into(">I", buf, btree.HDR + (n - 1) * btree.RMAPBT.rec.size + 4, 0x7FFFFFFF)  # rm_blockcount
    set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
    run_library(mkfs_bench, [(t.offset, bytes(buf))])


def test_rmapbt_leaf_record_of_length_zero(mkfs_bench):
    """A valid-CRC rmapbt leaf whose first record (the superblock's) has rm_blockcount 0: a piece of length 0."""
    lay = mkfs_bench.layout
    t = next(t for t in lay.targets["rmapbt"] if t.name.startswith("rmapbt block AG 0 "))
    buf = bytearray(mkfs_bench.data[t.offset:t.offset + t.size])
    struct.pack_into(">I", buf, btree.HDR + 4, 0)  # first record's rm_blockcount
    set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
    run_library(mkfs_bench, [(t.offset, bytes(buf))])


def test_bnobt_leaf_record_past_the_ag(mkfs_normap_bench):
    """Answered from the bnobt: a valid-CRC leaf with one more record, at agbno 2**20 (past the end of the AG
    and of the device), before its last one. The whole leaf is taken (its first and last keys are inside the
    query) and the bogus record becomes a `free` piece of negative length."""
    lay = mkfs_normap_bench.layout
    t = next(t for t in lay.targets["bnobt"] if t.name.startswith("bnobt block AG 0 "))
    buf = bytearray(mkfs_normap_bench.data[t.offset:t.offset + t.size])
    n = int.from_bytes(buf[6:8], "big")
    rsz, hdr = btree.BNOBT.rec.size, btree.HDR
    last = bytes(buf[hdr + (n - 1) * rsz:hdr + n * rsz])
    buf[hdr + (n - 1) * rsz:hdr + (n + 1) * rsz] = btree.BNOBT.rec.pack(1 << 20, 1) + last
    struct.pack_into(">H", buf, 6, n + 1)  # bb_numrecs
    set_crc(buf, f.XFS_BTREE_SBLOCK_CRC_OFF)
    run_library(mkfs_normap_bench, [(t.offset, bytes(buf))], source="bnobt")


def test_unreadable_rmapbt_leaf_leaves_no_hole(populated_bench):
    """A leaf with a bad CRC in the middle of a two-level rmapbt: the bytes between the previous leaf's last
    record and the unreadable leaf's low key must still have an owner (free, or unknown)."""
    lay = populated_bench.layout
    agno = lay.rmap_levels.index(max(lay.rmap_levels))
    with XfsFilesystem.open(populated_bench.path) as fs:
        root = btree.read_node(fs, btree.RMAPBT, agno, fs.agf(agno).agf_rmap_root, None, root=True)
        assert root.level == 1
        victim = None
        for i in range(1, len(root.ptrs)):
            prev = btree.read_node(fs, btree.RMAPBT, agno, root.ptrs[i - 1], 0)
            end = max(r[0] + r[1] for r in prev.items)
            if root.items[i][0] > end:  # free blocks between the two leaves
                victim = root.ptrs[i]
                break
    assert victim is not None, "no two neighbouring leaves with free space between them"
    off = lay.blocksize * (agno * lay.agblocks + victim) + lay.blocksize - 1  # unused tail: only the CRC fails
    run_library(populated_bench, [(off, bytes([populated_bench.data[off] ^ 0xFF]))])


def test_attr_fork_btree_root_at_the_end_of_the_inode(mkfs_bench):
    """di_forkoff at the very end of the inode with a btree-format attr fork (valid CRC): bmap(attr) must raise
    CorruptError, not struct.error from parsing an empty fork."""
    lay = mkfs_bench.layout
    t = next(t for t in lay.targets["inode"] if t.name == f"inode {lay.rootino}")
    buf = bytearray(mkfs_bench.data[t.offset:t.offset + t.size])
    buf[82] = (t.size - f.XFS_DINODE_CORE_SIZE) // 8  # di_forkoff
    buf[83] = f.XFS_DINODE_FMT_BTREE  # di_aformat
    set_crc(buf, f.XFS_DINODE_CRC_OFF)
    run_library(mkfs_bench, [(t.offset, bytes(buf))])


def test_label_that_is_not_utf8(mkfs_bench):
    """sb_fname bytes that are not UTF-8 (valid CRC): the JSON stays UTF-8 and carries them as \\udcXX escapes,
    through the in-process entry point and a real process with a strict UTF-8 stdout."""
    sb = bytearray(mkfs_bench.data[:512])
    sb[108:112] = b"\xff\xfe\x80a"
    set_crc(sb, f.XFS_SB_CRC_OFF)
    want = b"\xff\xfe\x80a".decode("utf-8", "surrogateescape")
    with mkfs_bench.damaged([(0, bytes(sb))]) as path:
        args = ("info", path, "--format", "json")
        assert check_cli(run_cli(*args), args, command="info")["filesystem"]["label"] == want
        for env in ({}, {"PYTHONIOENCODING": "utf-8:strict"}):
            p = subprocess.run([sys.executable, "-m", "fsdaxctl", *args], capture_output=True, timeout=60,
                               env={**os.environ, **env}, check=False)
            assert p.returncode == 0, p.stderr
            assert json.loads(p.stdout.decode("utf-8"))["filesystem"]["label"] == want


# --- damage reports through the CLI: whatever the bytes, one clear line or an answer ------------------------

_REPORT_LINES = [
    b"2048 8\n", b"critical medium error, dev sdb, sector 90304 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n",
    b'XFS (sdb): metadata I/O error in "xfs_read_agf+0x8e/0x120 [xfs]" at daddr 0x1 len 1 error 5\n',
    b"[ 54.363325] Memory failure: 0x100d58: recovery action for dax page: Recovered\n",
    b"# Mapfile. Created by GNU ddrescue version 1.27\n0x0 + 1\n0x0 0x1000 -\n",
    b'[{"dev":"namespace0.0","mode":"fsdax","blockdev":"pmem0","badblocks":[{"offset":8,"length":8}]}]',
]


@examples(60)
@given(kind=st.sampled_from(["badblocks", "kmsg", "ndctl-json", "ddrescue", "e2fs-badblocks", "input"]),
       seed=st.sampled_from(_REPORT_LINES), junk=st.binary(max_size=200), cut=st.integers(0, 300))
def test_any_report_bytes_give_an_answer_or_one_line(kind, seed, junk, cut):
    data = (seed + junk + seed)[:cut] if cut % 3 else junk + seed
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report")
        with open(path, "wb") as fh:
            fh.write(data)
        args = ("locate", "--sample", f"--{kind}", path, "--format", "json", "--no-detail")
        check_cli(run_cli(*args), args, command="locate")


@examples(60)
@given(table=st.text(alphabet="0123456789 :/-abcdefgilnprstvxyz\n", max_size=120),
       md=st.text(alphabet="0123456789 =@+:kmdrailneacsbpuhy", max_size=60))
def test_any_dm_table_or_md_spec_gives_an_answer_or_one_line(table, md):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "table")
        with open(path, "w") as fh:
            fh.write(table)
        for extra in (("--dm-table", path), ("--md", md)):
            args = ("locate", "--sample", "--offset", "0", *extra, "--format", "json", "--no-detail")
            check_cli(run_cli(*args), args, command="locate")
