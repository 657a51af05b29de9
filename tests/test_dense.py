"""Ranges cut from whole chunks read once (fsdaxctl.xfs.dense) get exactly their own query's answer: pieces,
order, types and warnings, on every committed image (clean, crashed and replayed, damaged copies, realtime,
without rmapbt), for scattered, clustered, edge-straddling, AG-straddling, unaligned and past-the-end lists;
and the CLI's output is byte for byte the same with the chunks as without."""

from __future__ import annotations

import lzma
import os
import random
import shutil
import subprocess
import sys

import pytest
from fsdaxctl.locate import locate
from fsdaxctl.ranges import Range
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.owners import OwnerMap

DATA = os.path.join(os.path.dirname(__file__), "data")
IMAGES = sorted(os.path.join(d, n) for d in (DATA, os.path.join(DATA, "crash"))
                for n in os.listdir(d) if n.endswith(".img.xz"))
KINDS = ("scattered", "clustered", "edges", "ag", "past")


def _unpack(xz: str, tmp) -> str:
    out = os.path.join(str(tmp), os.path.basename(xz).removesuffix(".xz"))
    if not os.path.exists(out):
        with lzma.open(xz) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


def _damaged(path: str, rng: random.Random) -> str:
    """A copy with six metadata blocks overwritten in part: unreadable spans, bad CRCs, conflicts."""
    with XfsFilesystem.open(path) as fs:
        meta = [p for p in OwnerMap(fs, source="bnobt" if not fs.has_rmapbt else None).pieces(0, fs.geo.size)
                if p.owner not in ("file", "free", "unknown")]
        bs = fs.geo.blocksize
    out = path + ".damaged"
    shutil.copyfile(path, out)
    with open(out, "r+b") as fh:
        for p in rng.sample(meta, min(6, len(meta))):
            fh.seek(p.offset + rng.randrange(0, p.length // bs) * bs + rng.randrange(0, bs - 64))
            fh.write(rng.randbytes(64))
    return out


def _ranges(fs, kind: str, rng: random.Random, n: int) -> list[Range]:
    size, bs = fs.geo.size, fs.geo.blocksize
    pieces = OwnerMap(fs, source=None if fs.has_rmapbt else "bnobt").pieces(0, size)
    edges = sorted({p.offset for p in pieces} | {p.offset + p.length for p in pieces})
    ags = [fs.geo.ag_to_byte(a, 0) for a in range(fs.geo.agcount)]
    out: list[Range] = []
    for _ in range(n):
        if kind == "scattered":
            off = rng.randrange(0, size)
        elif kind == "clustered":
            near = out and rng.random() < 0.7
            off = max(0, (out[-1].offset if near else rng.randrange(0, size)) + rng.randrange(-8192, 300000))
        elif kind == "edges":
            off = max(0, rng.choice(edges) + rng.randrange(-2 * bs, 2 * bs))
        elif kind == "ag":
            off = max(0, rng.choice(ags) + rng.randrange(-3 * bs, 3 * bs))
        else:
            off = rng.randrange(size - 65536, size + 8192)
        out.append(Range(off, rng.choice((1, 511, 512, 4096, 4097, 65536, 1 << 20))))
    return out


def _shape(results):
    """Every piece with the type of every field: JSON spells 1 and true apart."""
    return [[(tuple(p), tuple(map(type, p))) for p in r.owners] for r in results]


@pytest.mark.parametrize("chunk", [64, 256, None])
@pytest.mark.parametrize("xz", IMAGES, ids=os.path.basename)
def test_chunks_answer_as_each_range_alone(xz, chunk, tmp_path, monkeypatch):
    from fsdaxctl.xfs import dense

    if chunk is not None:  # small chunks: many chunk edges inside the small images
        monkeypatch.setattr(dense, "CHUNK_BLOCKS", chunk)
    rng = random.Random(f"{os.path.basename(xz)}-{chunk}")
    path = _unpack(xz, tmp_path)
    cut = 0
    for img in (path, _damaged(path, rng)):
        with XfsFilesystem.open(img) as fs:
            for kind in KINDS:
                ranges = _ranges(fs, kind, rng, 1500)
                old, new = OwnerMap(fs), OwnerMap(fs)
                old.dense_after, new.dense_after = 0, 1
                new.many_calls = 1  # not the first call: chunks from this one on
                assert _shape(locate(new, ranges)) == _shape(locate(old, ranges)), (img, kind)
                assert new.problems == old.problems
                cut += len(new.chunks.kept) if new.chunks else 0
    with XfsFilesystem.open(path) as fs:
        assert cut > 0 or not fs.has_rmapbt  # the chunks were used


_RUN = """import sys
from fsdaxctl.xfs import dense
from fsdaxctl.xfs.owners import OwnerMap
OwnerMap.dense_after = int(sys.argv.pop(1))
cut, used = dense.Chunks.cut, []
dense.Chunks.cut = lambda self, rs: used.append(len(x := cut(self, rs))) or x
sys.argv[0] = "fsdaxctl"
try:
    from fsdaxctl.cli import main
    main()
finally:
    sys.stderr.write(f"ranges cut from chunks: {sum(used)}\\n")
"""


def _cli(args, dense_after: int):
    """(exit status, stdout, stderr) of the command in a process of its own, as a user runs it."""
    proc = subprocess.run([sys.executable, "-c", _RUN, str(dense_after), *args], capture_output=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("detail", [False, True])
@pytest.mark.parametrize("case", ["4k-reflink", "1k-reflink", "4k-norefl-normap", "crash/1k-reflink-noflush",
                                  "crash/4k-rmap-convert-flush", "rt/rt-classic", "rt/zoned-internal", "damaged"])
def test_cli_output_is_the_same_byte_for_byte(case, detail, tmp_path):
    """A streamed ranges list of 10,000 lines (three windows) through the whole command."""
    rng = random.Random(case)
    extra = []
    if case.startswith("rt/"):
        d = os.path.join(DATA, case)
        path = _unpack(os.path.join(d, "data.img.xz"), tmp_path)
        if os.path.exists(os.path.join(d, "rt.img.xz")):
            rt = os.path.join(str(tmp_path), "rtdev.img")
            with lzma.open(os.path.join(d, "rt.img.xz")) as src, open(rt, "wb") as dst:
                shutil.copyfileobj(src, dst)
            extra = ["--rtdev", rt]
    else:
        path = _unpack(os.path.join(DATA, ("4k-reflink" if case == "damaged" else case) + ".img.xz"), tmp_path)
        if case == "damaged":
            path = _damaged(path, rng)
    with XfsFilesystem.open(path) as fs:  # past the device is a usage error: past the filesystem is not
        ranges = [r for kind in KINDS for r in _ranges(fs, kind, rng, 2000) if r.end <= fs.dev.size]
    rng.shuffle(ranges)
    listing = tmp_path / "ranges.txt"
    listing.write_text("".join(f"{r.offset} {r.length}\n" for r in ranges))
    args = ["locate", path, *extra, "--ranges", str(listing), "--format", "jsonl"] + ([] if detail else
                                                                                       ["--no-detail"])
    got, want = _cli(args, 1), _cli(args, 0)
    assert got[:2] == want[:2]
    cut = int(got[2].rsplit(b": ", 1)[1])
    assert got[2].replace(b"chunks: %d" % cut, b"chunks: 0") == want[2]
    assert got[1].count(b"\n") == len(ranges), got[2][-2000:]
    if case in ("4k-reflink", "1k-reflink", "damaged"):  # an rmapbt, no intents to apply, no other device
        assert cut > 3000


def test_one_range_does_not_import_numpy(tmp_path):
    """numpy (xfs.dense) only for many ranges: a one-range locate starts as fast as before."""
    path = _unpack(os.path.join(DATA, "4k-reflink.img.xz"), tmp_path)
    code = ("import sys; from fsdaxctl.cli import main; sys.argv = ['fsdaxctl', 'locate', sys.argv[1], '--offset', "
            "'4096', '--length', '4096', '--no-detail', '--format', 'json']\ntry: main()\nexcept SystemExit: pass\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
