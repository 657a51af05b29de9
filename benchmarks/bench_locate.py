#!/usr/bin/env python3
"""Benchmark: fsdaxctl locate/fsmap on a large XFS image, side by side with `xfs_db -r -c fsmap`.

Builds (once, cached) an image with at least 1,000,000 rmap records and 100,000+ files in 1,000+
directories on a real loop mount, then measures in one run, each in a fresh process:
  - one-range `locate` (wall time of the whole process, peak RSS), and xfs_db fsmap of the same blocks;
  - 10,000 ranges in one `locate` call, and xfs_db with 10,000 fsmap commands in one call;
  - a full owner-map dump (`fsmap`), and `xfs_db -c fsmap` over the whole filesystem.
Prints figures; asserts nothing. Needs root, loop devices and xfsprogs.

  python benchmarks/bench_locate.py [--image PATH] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

DIRS = 1000
FILES_PER_DIR = 105  # 105,000 files
EXTENTS_PER_FILE = 10  # discontiguous single blocks: one rmap record each -> 1,050,000 file records
BLOCK = 4096


def build(image: str, rmapbt: bool = True) -> None:
    from tests.images import loop_mount, mkfs

    size = 12 << 30  # sparse; the metadata and unwritten extents take a small part of it
    mkfs(image, size, ["-b", f"size={BLOCK}", "-d", "agcount=8", "-m",
                       f"rmapbt={int(rmapbt)},reflink=1", "-i", "maxpct=5"])
    rng = random.Random(1)
    t0 = time.time()
    with loop_mount(image) as mnt:
        for d in range(DIRS):
            dpath = os.path.join(mnt, f"d{d:04}")
            os.mkdir(dpath)
            for i in range(FILES_PER_DIR):
                fd = os.open(os.path.join(dpath, f"f{i:03}"), os.O_CREAT | os.O_WRONLY, 0o644)
                try:
                    # Unwritten single blocks with holes between them: no merging, no data written.
                    for e in range(EXTENTS_PER_FILE):
                        os.posix_fallocate(fd, (2 * e + rng.randrange(2)) * BLOCK * 2, BLOCK)
                    os.pwrite(fd, b"x" * BLOCK, 0)  # one written extent per file
                finally:
                    os.close(fd)
            if d % 100 == 99:
                print(f"  built {d + 1}/{DIRS} directories ({time.time() - t0:.0f} s)", file=sys.stderr)
        # Reflinked copies: shared extents for the refcountbt to answer about.
        for d in range(0, DIRS, 10):
            src = os.path.join(mnt, f"d{d:04}", "f000")
            subprocess.run(["cp", "--reflink=always", src, src + ".clone"], check=True)
    print(f"  image built in {time.time() - t0:.0f} s", file=sys.stderr)


def measure(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one fresh process, as GNU time reports it.

    Not os.wait4's rusage: a forked child's RSS counts the parent's pages until exec, which would charge
    this benchmark's own memory to the measured program.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        rss_kib = int(tf.read().split()[-1])
    if proc.returncode not in (0, 4, 8, 12):
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return wall, rss_kib // 1024


def first_line(argv: list[str]) -> float:
    """Seconds from start until the first line of output arrives (a streamed answer's latency)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()
    latency = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return latency


def median_of(n, argv):
    runs = [measure(argv) for _ in range(n)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="/var/tmp/fsdaxctl-bench/large.img")
    ap.add_argument("--image-normap", default="/var/tmp/fsdaxctl-bench/large-normap.img")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    image = args.image
    os.makedirs(os.path.dirname(image), exist_ok=True)
    for path, rmapbt in ((image, True), (args.image_normap, False)):
        if args.rebuild or not os.path.exists(path):
            print(f"building {path} ...", file=sys.stderr)
            build(path, rmapbt)

    from fsdaxctl.xfs.fs import XfsFilesystem
    from fsdaxctl.xfs.owners import OwnerMap

    # As installed: pip compiles the package's bytecode at install time. An editable checkout under
    # PYTHONDONTWRITEBYTECODE (this project's machines set it) would otherwise compile every module from source
    # in every measured process, about 70 ms of start-up that no installed copy pays.
    import fsdaxctl

    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(fsdaxctl.__file__)], check=True)
    fsdax = [sys.executable, "-m", "fsdaxctl"]
    with XfsFilesystem.open(image) as fs:
        geo = fs.geo
        files = sum(fs.ag(a).agi.agi_count - fs.ag(a).agi.agi_freecount for a in range(geo.agcount))
        omap = OwnerMap(fs)
        file_offsets = []
        records = 0
        for batch in omap.iter_batches(0, geo.size):
            for p in batch:
                if p.owner != "free":
                    records += 1
                if p.owner == "file" and not p.extent_map:
                    file_offsets.append(p.offset)
        # The middle file extent on the device, for the one-range query.
        target_offset = file_offsets[len(file_offsets) // 2]
        rng = random.Random(3)
        # 1,000 file blocks of 1,000 different files, for the paths measurement.
        owners, seen = [], set()
        for p in omap.iter_batches(0, geo.size):
            for piece in p:
                if piece.owner == "file" and piece.fork == "data" and not piece.extent_map \
                        and piece.inode not in seen and rng.random() < 0.02:
                    seen.add(piece.inode)
                    owners.append((piece.offset, piece.inode))
        owners = owners[:1000]
        del file_offsets
        ranges = [(rng.randrange(0, geo.size // 512) * 512, rng.choice((512, 4096, 65536))) for _ in range(10000)]
    one_off, one_len = target_offset, 4096
    print(f"image: {image}: {human(geo.size)}, {geo.agcount} AGs, {files} inodes in use, "
          f"{records} rmap records (pieces of used space)")

    def fsb(byte):
        agno, agbno = geo.byte_to_ag(byte)
        return geo.ag_to_fsb(agno, agbno)

    rows = []
    xw, xm = median_of(5, ["xfs_db", "-r", "-c", f"fsmap {fsb(one_off)} {fsb(one_off + one_len - 1)}", image])
    w, m = median_of(5, fsdax + ["locate", image, "--offset", str(one_off), "--length", str(one_len),
                                 "--format", "json", "--no-detail"])
    rows.append(("one range (4 KiB), whole process, owners only (--no-detail)", w, m, xw, xm))
    w, m = median_of(5, fsdax + ["locate", image, "--offset", str(one_off), "--length", str(one_len),
                                 "--format", "json"])
    rows.append(("one range (4 KiB), whole process, with paths and detail", w, m, xw, xm))

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{o} {n}\n" for o, n in ranges))
        listing = fh.name
    xcmds = []
    for o, n in ranges:
        xcmds += ["-c", f"fsmap {fsb(o)} {fsb(o + n - 1)}"]
    xw, xm = median_of(3, ["xfs_db", "-r", *xcmds, image])
    w, m = median_of(3, fsdax + ["locate", image, "--ranges", listing, "--format", "jsonl", "--no-detail"])
    rows.append(("10,000 ranges, one call, owners only (--no-detail)", w, m, xw, xm))
    w, m = median_of(3, fsdax + ["locate", image, "--ranges", listing, "--format", "jsonl"])
    rows.append(("10,000 ranges, one call, with paths and detail", w, m, xw, xm))
    os.unlink(listing)

    # A million ranges (a whole-device scan's error list): streamed, in bounded memory. No xfs_db reference:
    # a million -c commands do not fit in one argument list.
    rng_big = random.Random(4)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        for _ in range(1_000_000):
            n = rng_big.choice((512, 4096, 65536))
            fh.write(f"{rng_big.randrange(0, (geo.size - n) // 512) * 512} {n}\n")
        listing = fh.name
    argv = fsdax + ["locate", image, "--ranges", listing, "--format", "jsonl", "--no-detail"]
    latency = first_line(argv)
    w, m = measure(argv)
    rows.append((f"1,000,000 ranges, --no-detail --format jsonl (first line after {latency:.2f} s)", w, m,
                 None, None))
    os.unlink(listing)

    for fmt in ("jsonl", "csv", "table"):
        w, m = median_of(3, fsdax + ["fsmap", image, "--format", fmt])
        xw, xm = median_of(3, ["xfs_db", "-r", "-c", "fsmap", image])
        rows.append((f"full fsmap dump (--format {fmt})", w, m, xw, xm))

    # A 64 MiB span with every path of every file in it, against blockget -n + ncheck of those inodes.
    span = 64 << 20
    span_off = min(one_off, geo.size - span) // 4096 * 4096
    w, m = median_of(3, fsdax + ["locate", image, "--offset", str(span_off), "--length", str(span), "--format",
                                 "json"])
    with XfsFilesystem.open(image) as fs:
        span_inos = sorted({p.inode for p in OwnerMap(fs).pieces(span_off, span) if p.owner == "file"})
    ncheck = ["-c", "blockget -n"] + ["-c", "ncheck " + " ".join(f"-i {ino}" for ino in span_inos)]
    xw, xm = median_of(3, ["xfs_db", "-r", *ncheck, image])
    rows.append((f"64 MiB span, every path ({len(span_inos)} files) vs blockget -n + ncheck", w, m, xw, xm))

    # Paths: name the owners of 1,000 blocks of 1,000 files (every hard link), against xfs_db's ncheck.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{o} 512\n" for o, _ in owners))
        listing = fh.name
    w, m = median_of(3, fsdax + ["locate", image, "--ranges", listing, "--format", "jsonl"])
    ncheck = ["-c", "blockget -n"] + ["-c", "ncheck " + " ".join(f"-i {ino}" for _, ino in owners)]
    xw, xm = median_of(3, ["xfs_db", "-r", *ncheck, image])
    rows.append((f"paths of {len(owners)} owners (locate, detail) vs blockget -n + ncheck", w, m, xw, xm))
    os.unlink(listing)

    # No rmapbt: the owner map from walking all metadata, against xfs_db's blockget walk.
    normap = args.image_normap
    xw, xm = median_of(3, ["xfs_db", "-r", "-c", "blockget", normap])
    w, m = median_of(3, fsdax + ["locate", normap, "--offset", str(one_off), "--length", "4096", "--no-detail",
                                 "--format", "json"])
    rows.append(("no rmapbt: walk of all metadata (one-range locate) vs blockget", w, m, xw, xm))
    w, m = median_of(3, fsdax + ["fsmap", normap, "--format", "jsonl"])
    rows.append(("no rmapbt: walk + full owner map dump (jsonl) vs blockget", w, m, xw, xm))

    from tabulate import tabulate

    print(tabulate([(r[0], f"{r[1]:.3f} s", f"{r[2]} MiB", "-" if r[3] is None else f"{r[3]:.3f} s",
                     "-" if r[4] is None else f"{r[4]} MiB", "-" if r[3] is None else f"{r[1] / r[3]:.2f}x")
                    for r in rows],
                   headers=["measurement", "fsdaxctl wall", "fsdaxctl peak RSS", "xfs_db wall", "xfs_db peak RSS",
                            "ratio"], tablefmt="github"))
    print("\nxfs_db prints raw rmap records only (no free space, no shared flag, not clipped); fsdaxctl prints "
          "clipped pieces with free space and sharing.")


def human(n):
    from fsdaxctl.units import human as h

    return h(n)


if __name__ == "__main__":
    main()
