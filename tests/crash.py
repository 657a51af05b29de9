"""Crashed XFS images and the kernel's answer after its own log recovery, for the replay tests.

    python tests/crash.py CONFIG SEED OUT.img [--ops N] [--mode flush|noflush] [--log-size 2m]

build_crash(): mkfs (a tests/images.py config), loop-mount, run tests/workload.py in a child process, shut the
filesystem down while it runs (`xfs_io -x -c 'shutdown -f'`: log flushed, or `shutdown`: not flushed) after a
seeded random delay, unmount: the image is left with a dirty log. Then a *copy* is mounted, so the kernel
recovers it, and GETFSMAP (the union of passes with batch sizes 1024, 977 and 131: kernel 6.18 can drop a
record at a batch boundary), FIEMAP and every path are recorded, as tests/images.build_and_record does for
clean images. The crashed image itself is never mounted again.

Needs root and loop devices. Only the stdlib.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import images  # noqa: E402
from tests import kernel as K  # noqa: E402

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.py")

# Configs of the crash campaign: tests/images.py's, with small logs for the wrapped-log case.
CRASH_CONFIGS = {
    "4k-reflink": images.IMAGE_CONFIGS["4k-reflink"],
    "1k-reflink": images.IMAGE_CONFIGS["1k-reflink"],
    "4k-4ksect": images.IMAGE_CONFIGS["4k-4ksect"],
    "64k-block": images.IMAGE_CONFIGS["64k-block"],
    "4k-rmap-noreflink": images.IMAGE_CONFIGS["4k-rmap-noreflink"],
    "4k-norefl-normap": images.IMAGE_CONFIGS["4k-norefl-normap"],
    "4k-reflink-normap": images.IMAGE_CONFIGS["4k-reflink-normap"],
    # a small log (4 MiB; mkfs 6.1 and kernel 6.18 want at least 962 blocks with rmapbt and without reflink):
    # a thousand operations wrap it around its end several times
    "4k-smalllog": images._cfg(64 * images.MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=0", "-l", "size=1024b"],
                               block_size=4096, reflink=False, rmapbt=True),
}


def getfsmap_union(mnt) -> list:
    recs = set()
    for batch in (1024, 977, 131):
        recs |= set(K.getfsmap(mnt, batch=batch))
    return sorted(recs, key=lambda r: (r.physical, r.owner, r.offset, r.flags, r.length))


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def crash(image, cfg: dict, seed: int, *, ops: int = 400, mode: str = "flush", delay: float | None = None) -> dict:
    """mkfs + workload + shutdown while it runs + umount. Returns what happened."""
    image = os.fspath(image)
    images.mkfs(image, cfg["size"], cfg["mkfs"])
    rng = random.Random(seed)
    if delay is None:
        delay = rng.uniform(0.3, 2.5)
    with images.loop_mount(image) as mnt:
        proc = subprocess.Popen([sys.executable, WORKLOAD, mnt, str(seed), str(ops), str(cfg["block_size"])],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        finished_first = False
        try:
            proc.wait(timeout=delay)
            finished_first = True
        except subprocess.TimeoutExpired:
            pass
        # a workload that ended before the delay still leaves a dirty log: nothing was synced or unmounted
        _run(["xfs_io", "-x", "-c", "shutdown -f" if mode == "flush" else "shutdown", mnt], check=True)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return {"seed": seed, "ops": ops, "mode": mode, "delay": round(delay, 3),
            "workload_finished_first": finished_first, "shutdown_after": round(time.monotonic() - t0, 3),
            "workload_rc": proc.returncode}


def kernel_after_recovery(image) -> dict:
    """Mount a copy of the crashed image (the kernel replays its log), record its answers, unmount."""
    image = os.fspath(image)
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-crash-") as tmp:
        copy = os.path.join(tmp, "copy.img")
        subprocess.run(["cp", "--sparse=always", image, copy], check=True)
        with images.loop_mount(copy) as mnt:
            fsmap = [r.to_dict() for r in getfsmap_union(mnt)]
            files, fmap, xmap = images.collect_files(mnt)
    return {"fsmap": fsmap, "files": files, "fiemap": fmap, "fiemap_xattr": xmap}


def build_crash(image, config: str, seed: int, *, ops: int = 400, mode: str = "flush", cfg: dict | None = None,
                delay: float | None = None) -> dict:
    cfg = cfg or CRASH_CONFIGS[config]
    t0 = time.monotonic()
    what = crash(image, cfg, seed, ops=ops, mode=mode, delay=delay)
    rec = kernel_after_recovery(image)
    rec.update({"config": config, "mkfs": list(cfg["mkfs"]), "block_size": cfg["block_size"],
                "sector_size": cfg["sector_size"], "reflink": cfg["reflink"], "rmapbt": cfg["rmapbt"],
                "crash": what, "build_seconds": round(time.monotonic() - t0, 2)})
    with open(os.fspath(image) + ".kernel.json", "w") as fh:
        json.dump(rec, fh)
    return rec


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", choices=sorted(CRASH_CONFIGS))
    ap.add_argument("seed", type=int)
    ap.add_argument("out")
    ap.add_argument("--ops", type=int, default=400)
    ap.add_argument("--mode", choices=["flush", "noflush"], default="flush")
    a = ap.parse_args(argv)
    ok, why = K.can_loop_mount()
    if not ok:
        print(f"cannot build: {why}", file=sys.stderr)
        return 1
    rec = build_crash(a.out, a.config, a.seed, ops=a.ops, mode=a.mode)
    print(f"{a.out}: {len(rec['fsmap'])} GETFSMAP records after the kernel's recovery; {rec['crash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
