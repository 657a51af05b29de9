#!/usr/bin/env python3
"""Replay a full log: time and peak memory of fsdaxctl's in-memory replay next to `xfs_logprint -t` (which only
reads and prints the transactions) on the same crashed image, for two logs in one run:

  64m      a 1 GiB filesystem with a 64 MiB log, tests/workload.py's metadata-heavy workload (--ops);
  1t       a sparse 1 TiB filesystem with the log mkfs.xfs picks for it (512 MiB with xfsprogs 6.x), filled by
           creating files with xattrs until --fill of the log lies between tail and head (or --fill-seconds).

Both end with the log kept from being written back (`xfs_io -x -c 'shutdown -f'`: everything since the last
checkpoint push is only in the log) and an unmount. Each tool runs --repeat times, each time in its own process
(peak RSS is that process's ru_maxrss); the medians of wall time, CPU time (user + system: steadier on a busy
machine) and peak RSS are printed. Needs root and loop devices.

    python benchmarks/bench_replay.py [--configs 64m,1t] [--repeat 5] [--keep-dir DIR] [--image CONFIG=IMG]
                                      [--locate IMG@OFFSET]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import images  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs import logrecover as L
fs = XfsFilesystem.open(sys.argv[1])
t1, c1 = time.perf_counter(), time.process_time()
fs2, rep = L.open_replayed(fs)
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"replay_s": t2 - t1, "cpu_s": c2 - c1, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "summary": rep.summary()}))
"""

# a whole process (argv as JSON): wall time, peak RSS, CPU time
WHOLE = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
         "subprocess.run(json.loads(sys.argv[1]),stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
         "r=resource.getrusage(resource.RUSAGE_CHILDREN);print(time.perf_counter()-t, r.ru_maxrss, r.ru_utime+r.ru_stime)")

# the filler: files with an xattr in 256 directories, until the log holds `fill` of its size or time is up
FILL = r"""
import os, sys, time
mnt, sysfs, fill, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
nbb = int(sys.argv[5])
def used():
    h = [int(x) for x in open(sysfs + "/log_head_lsn").read().split(":")]
    t = [int(x) for x in open(sysfs + "/log_tail_lsn").read().split(":")]
    return (h[0] - t[0]) * nbb + h[1] - t[1]
for d in range(256):
    os.mkdir(f"{mnt}/d{d}")
t0, i = time.monotonic(), 0
while time.monotonic() - t0 < seconds:
    for _ in range(2000):
        p = f"{mnt}/d{i % 256}/f{i}"
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        os.setxattr(p, "user.k", b"v" * 40)
        i += 1
    if used() >= fill * nbb:
        break
print(i, used())
"""


def build_64m(img: str, ops: int, **_) -> None:
    images.mkfs(img, 1 << 30, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-l", "size=64m"])
    with images.loop_mount(img) as mnt:
        subprocess.run([sys.executable, os.path.join(os.path.dirname(images.__file__), "workload.py"), mnt, "7",
                        str(ops), "4096"], check=True, capture_output=True)
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)


def build_1t(img: str, fill: float, fill_seconds: float, **_) -> None:
    images.mkfs(img, 1 << 40, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1"])
    with images.loop_mount(img) as mnt:
        dev = os.path.basename(os.path.realpath(_source_of(mnt)))
        sysfs = f"/sys/fs/xfs/{dev}/log"
        from fsdaxctl.xfs.fs import XfsFilesystem

        with XfsFilesystem.open(img) as fs:
            nbb = (fs.internal_log[2] << fs.geo.blocklog) // 512
        p = subprocess.run([sys.executable, "-c", FILL, mnt, sysfs, str(fill), str(fill_seconds), str(nbb)],
                           check=True, capture_output=True, text=True)
        print(f"fill: {p.stdout.strip()} (files, log blocks in use) of {nbb}", file=sys.stderr)
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)


def _source_of(mnt: str) -> str:
    for line in open("/proc/mounts"):
        dev, point = line.split()[:2]
        if point == mnt:
            return dev
    raise RuntimeError(f"{mnt} is not mounted")


BUILD = {"64m": build_64m, "1t": build_1t}


def measure(img: str, repeat: int) -> dict:
    ours, lp = [], []
    for _ in range(repeat):  # alternate, so that both see the same load
        p = subprocess.run([sys.executable, "-c", CHILD, img], capture_output=True, text=True, check=True)
        ours.append(json.loads(p.stdout))
        lp.append(whole_process(["xfs_logprint", "-t", img]))
    s = ours[0]["summary"]
    med = statistics.median
    return {"records": s["records"], "transactions": s["transactions"], "blocks_changed": s["blocks_changed"],
            "log_bytes": s["log_blocks"] * 512, "log_bytes_between_tail_and_head": s["log_blocks_used"] * 512,
            "runs": repeat,
            "fsdaxctl_replay_s": round(med(o["replay_s"] for o in ours), 3),
            "fsdaxctl_replay_cpu_s": round(med(o["cpu_s"] for o in ours), 3),
            "fsdaxctl_peak_rss_mib": round(med(o["rss_kib"] for o in ours) / 1024, 1),
            "xfs_logprint_t_s": round(med(x[0] for x in lp), 3),
            "xfs_logprint_t_cpu_s": round(med(x[2] for x in lp), 3),
            "xfs_logprint_peak_rss_mib": round(med(x[1] for x in lp) / 1024, 1)}


def whole_process(argv: list) -> list[float]:
    p = subprocess.run([sys.executable, "-c", WHOLE, json.dumps(argv)], capture_output=True, text=True, check=True)
    return [float(x) for x in p.stdout.split()]


def measure_locate(img: str, offset: int, repeat: int) -> dict:
    """The query the replay should cost less than: a one-range (4 KiB) locate, owners only, whole process."""
    argv = [sys.executable, "-m", "fsdaxctl", "locate", img, "--offset", str(offset), "--length", "4096",
            "--format", "json", "--no-detail"]
    runs = [whole_process(argv) for _ in range(repeat)]
    med = statistics.median
    return {"image": img, "offset": offset, "runs": repeat, "wall_s": round(med(x[0] for x in runs), 3),
            "cpu_s": round(med(x[2] for x in runs), 3), "peak_rss_mib": round(med(x[1] for x in runs) / 1024, 1)}


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="64m,1t")
    ap.add_argument("--ops", type=int, default=20000, help="workload operations of the 64m image")
    ap.add_argument("--fill", type=float, default=0.6, help="part of the 1t image's log to fill")
    ap.add_argument("--fill-seconds", type=float, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep-dir", help="keep the images here (and reuse them when present)")
    ap.add_argument("--image", action="append", default=[], help="CONFIG=IMG: measure this crashed image")
    ap.add_argument("--locate", metavar="IMG@OFFSET", help="also time a one-range locate on IMG (the 1M-record "
                    "image of bench_locate.py) at byte OFFSET, in the same run")
    a = ap.parse_args(argv)
    given = dict(x.split("=", 1) for x in a.image)
    out = {}
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-bench-replay-") as tmp:
        for name in a.configs.split(","):
            img = given.get(name) or os.path.join(a.keep_dir or tmp, f"replay-{name}.img")
            if not os.path.exists(img):
                t0 = time.perf_counter()
                BUILD[name](img, ops=a.ops, fill=a.fill, fill_seconds=a.fill_seconds)
                print(f"built {img} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            out[name] = measure(img, a.repeat)
    if a.locate:
        img, _, offset = a.locate.rpartition("@")
        out["locate"] = measure_locate(img, int(offset), a.repeat)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
