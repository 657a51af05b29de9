#!/usr/bin/env python3
"""Benchmark: the no-rmapbt metadata walk (a one-range `locate --no-detail`) against `xfs_db -r -c blockget`.

In one run, each measurement a fresh process under GNU time (wall, peak RSS), medians of --runs runs (the
machine may be busy: the ratios, measured side by side, are the figures that hold):
  - the per-record walk (FSDAXCTL_WALK=exact: the code before numpy, kept as the reference), the numpy walk,
    and xfs_db's blockget, on the benchmark image without rmapbt (benchmarks/bench_locate.py builds it:
    ~106k inodes, ~1.1M extents);
  - the same on a bigger image, built here once (cached): --big-files inodes with one block each, plus two
    files of --big-extents single-block extents each (bmbt format);
  - that start-up does not import numpy (python -X importtime), and what start-up alone costs (a locate on the
    bundled sample image: no walk).
Building the big image takes ~8 minutes here (fallocate makes ~5,000 extents a second on a loop mount: the
issue's 2 x 10M extents would take over an hour).
Python byte-code is cached out of the tree (PYTHONPYCACHEPREFIX), as an installed package has it.

  python benchmarks/bench_walk.py [--runs 5] [--big PATH] [--big-files 400000] [--big-extents 1000000]
                                  [--no-big] [--no-exact]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

BLOCK = 4096


def build_big(image: str, files: int, extents: int) -> None:
    """`files` inodes with one written block each (1,000 per directory) and two files of `extents` unwritten
    single-block extents each (a hole between every two: nothing merges), without rmapbt."""
    from tests.images import loop_mount, mkfs

    size = max(64 << 30, (4 * extents * BLOCK + files * BLOCK) * 2)
    mkfs(image, size, ["-b", f"size={BLOCK}", "-d", "agcount=8", "-m", "rmapbt=0,reflink=0", "-i", "maxpct=10"])
    t0 = time.time()
    with loop_mount(image) as mnt:
        block = b"y" * BLOCK
        for d in range(-(-files // 1000)):
            dpath = os.path.join(mnt, f"d{d:04}")
            os.mkdir(dpath)
            for i in range(min(1000, files - d * 1000)):
                fd = os.open(os.path.join(dpath, f"f{i:03}"), os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, block)
                os.close(fd)
            if d % 50 == 49:
                print(f"  {(d + 1) * 1000} files ({time.time() - t0:.0f} s)", file=sys.stderr)
        for n in range(2):
            fd = os.open(os.path.join(mnt, f"many-extents-{n}"), os.O_CREAT | os.O_WRONLY, 0o644)
            try:
                for e in range(extents):
                    os.posix_fallocate(fd, 2 * e * BLOCK, BLOCK)
                    if e % 1000000 == 999999:
                        print(f"  file {n}: {e + 1} extents ({time.time() - t0:.0f} s)", file=sys.stderr)
            finally:
                os.close(fd)
    print(f"  built in {time.time() - t0:.0f} s", file=sys.stderr)


def measure(argv, env=None) -> tuple[float, int]:
    """(wall seconds, peak RSS MiB) of one fresh process, from GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env)
        wall = time.perf_counter() - t0
        rss_kib = int(tf.read().split()[-1])
    if proc.returncode not in (0, 4, 8, 12):
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return wall, rss_kib // 1024


def interleaved(runs: int, cmds: dict) -> dict:
    """Median wall and max RSS of each command, the commands taking turns (load changes hit all alike)."""
    got = {k: [] for k in cmds}
    for _ in range(runs):
        for k, (argv, env) in cmds.items():
            got[k].append(measure(argv, env))
    return {k: (statistics.median(w for w, _ in v), max(m for _, m in v), [round(w, 3) for w, _ in v])
            for k, v in got.items()}  # (median wall, max RSS, every wall)


def image_facts(image) -> tuple[str, dict]:
    """A description, and the queries: 4 KiB in the middle of AG 1, and of AG 0 (where bench_walk's big image
    has its two files of many extents). One AG each, as a media error is."""
    from fsdaxctl.units import human
    from fsdaxctl.xfs.fs import XfsFilesystem

    with XfsFilesystem.open(image) as fs:
        geo = fs.geo
        inodes = sum(fs.agi(a).agi_count - fs.agi(a).agi_freecount for a in range(geo.agcount))
        queries = {f"AG {a} middle": geo.ag_to_byte(a, geo.ag_length(a) // 2) for a in (1, 0)}
        return f"{human(geo.size)}, {geo.agcount} AGs, {inodes} inodes in use", queries


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-normap", default="/var/tmp/fsdaxctl-bench/large-normap.img")
    ap.add_argument("--big", default="/var/tmp/fsdaxctl-bench/big-normap.img")
    ap.add_argument("--big-files", type=int, default=400_000)
    ap.add_argument("--big-extents", type=int, default=1_000_000)
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--no-exact", action="store_true", help="skip the per-record walk (slow on big images)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    if not os.path.exists(args.image_normap):
        from benchmarks.bench_locate import build

        os.makedirs(os.path.dirname(args.image_normap), exist_ok=True)
        print(f"building {args.image_normap} ...", file=sys.stderr)
        build(args.image_normap, rmapbt=False)
    images = [args.image_normap]
    if not args.no_big:
        if not os.path.exists(args.big):
            print(f"building {args.big} ...", file=sys.stderr)
            build_big(args.big, args.big_files, args.big_extents)
        images.append(args.big)

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "fsdaxctl-bench-pycache")
    exact_env = dict(env, FSDAXCTL_WALK="exact")
    fsdax = [sys.executable, "-m", "fsdaxctl"]

    # Start-up must not import numpy: it is for the walk only.
    imp = subprocess.run(fsdax + ["locate", "--sample", "--offset", "0", "--length", "4k", "--no-detail"],
                         env=dict(env, PYTHONPROFILEIMPORTTIME="1"), capture_output=True, text=True)
    numpy_at_startup = any(line.split("|")[-1].strip() == "numpy" for line in imp.stderr.splitlines())
    print(f"start-up (locate --sample) imports numpy: {'YES (wrong)' if numpy_at_startup else 'no'}")

    rows = []
    for image in images:
        facts, queries = image_facts(image)
        print(f"\n{image}: {facts}")
        cmds = {"blockget": (["xfs_db", "-r", "-c", "blockget", image], env)}
        if image == images[0]:
            cmds["start-up only (locate --sample)"] = (fsdax + ["locate", "--sample", "--offset", "0", "--length",
                                                                "4k", "--no-detail", "--format", "json"], env)
        for name, off in queries.items():
            locate = fsdax + ["locate", image, "--offset", str(off), "--length", "4096", "--no-detail",
                              "--format", "json"]
            subprocess.run(locate, env=env, capture_output=True)  # byte-code cache, page cache
            cmds[f"numpy walk, {name}"] = (locate, env)
            if not args.no_exact:
                cmds[f"per-record walk, {name}"] = (locate, exact_env)
        got = interleaved(args.runs, cmds)
        bw, bmin = got["blockget"][0], min(got["blockget"][2])
        for k in sorted(got, key=lambda k: (k.startswith(("blockget", "start")), k.split(", ")[-1],
                                            not k.startswith("per"))):
            w, m, all_runs = got[k]
            rows.append((os.path.basename(image), k, w, m, w / bw, min(all_runs), min(all_runs) / bmin))
            print(f"  {k:32} {w:7.3f} s  {m:5d} MiB  {w / bw:5.2f}x blockget   runs {all_runs}")

    from tabulate import tabulate

    print()
    print(tabulate([(r[0], r[1], f"{r[2]:.3f} s", f"{r[3]} MiB", f"{r[4]:.2f}x", f"{r[5]:.3f} s", f"{r[6]:.2f}x")
                    for r in rows],
                   headers=["image", "what (whole process; locate: one 4 KiB range, --no-detail)",
                            f"wall, median of {args.runs}", "peak RSS", "vs blockget", "fastest run",
                            "fastest vs fastest blockget"], tablefmt="github"))


if __name__ == "__main__":
    main()
