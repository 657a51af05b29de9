#!/usr/bin/env python3
"""Replay a full 64 MiB log: time and peak memory of fsdaxctl's in-memory replay next to `xfs_logprint -t`
(which only reads and prints the transactions) on the same crashed image. Needs root and loop devices.

    python benchmarks/bench_replay.py [--log 64m] [--size 1g] [--ops 20000] [--keep IMG]

The image: mkfs with a log of --log, a metadata-heavy workload (tests/workload.py) with the log kept from
being written back (`xfs_io -x -c 'shutdown -f'` at the end, so everything since the last checkpoint push is
only in the log), unmount. Each tool runs in its own process; peak RSS is that process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import images  # noqa: E402

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs import logrecover as L
fs = XfsFilesystem.open(sys.argv[1])
t1 = time.perf_counter()
fs2, rep = L.open_replayed(fs)
t2 = time.perf_counter()
print(json.dumps({"open_s": t1 - t0, "replay_s": t2 - t1, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "summary": rep.summary()}))
"""


def measure(cmd: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, rss, p.stdout


def build(img: str, log: str, size: int, ops: int) -> None:
    images.mkfs(img, size, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-l", f"size={log}"])
    with images.loop_mount(img) as mnt:
        subprocess.run([sys.executable, os.path.join(os.path.dirname(images.__file__), "workload.py"), mnt, "7",
                        str(ops), "4096"], check=True, capture_output=True)
        subprocess.run(["xfs_io", "-x", "-c", "shutdown -f", mnt], check=True)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", default="64m")
    ap.add_argument("--size", default=str(1 << 30))
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--keep")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-bench-replay-") as tmp:
        img = a.keep or os.path.join(tmp, "crash.img")
        if not (a.keep and os.path.exists(a.keep)):
            t0 = time.perf_counter()
            build(img, a.log, int(a.size), a.ops)
            print(f"built {img} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        # fsdaxctl first (RUSAGE_CHILDREN is a maximum over children: measure each in a fresh interpreter)
        p = subprocess.run([sys.executable, "-c", CHILD, img], capture_output=True, text=True, check=True)
        ours = json.loads(p.stdout)
        p = subprocess.run([sys.executable, "-c",
                            "import resource,subprocess,sys,time;t=time.perf_counter();"
                            "subprocess.run(['xfs_logprint','-t',sys.argv[1]],stdout=subprocess.DEVNULL,"
                            "stderr=subprocess.DEVNULL);"
                            "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                            img], capture_output=True, text=True, check=True)
        lp_s, lp_rss = p.stdout.split()
        s = ours["summary"]
        print(json.dumps({"log": a.log, "records": s["records"], "transactions": s["transactions"],
                          "blocks_changed": s["blocks_changed"], "log_bytes_between_tail_and_head": s["log_blocks_used"] * 512,
                          "fsdaxctl_replay_s": round(ours["replay_s"], 3), "fsdaxctl_peak_rss_mib":
                          round(ours["rss_kib"] / 1024, 1), "xfs_logprint_t_s": round(float(lp_s), 3),
                          "xfs_logprint_peak_rss_mib": round(int(lp_rss) / 1024, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
