"""Damage reports through locate, in one pass: what the inputs and the device stack cost on top of the query.

Uses the large image of bench_locate.py (built there if missing). The same 10,000 sectors are given as a
ranges file (the baseline: no input parsing, no stack), a sysfs badblocks list, ndctl JSON, a 100,000-line
kernel log (one line in ten a report, the rest ordinary messages) and a GPT whole-disk image made by
wrapping the filesystem in a partition table (the partition layer on every range). Prints a table.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from bench_locate import build, median_of  # noqa: E402

N = 10_000


def main():
    from tabulate import tabulate

    image = "/var/tmp/fsdaxctl-bench/large.img"
    if not os.path.exists(image):
        build(image)
    size = os.path.getsize(image)
    rng = random.Random(1)
    sectors = sorted(rng.randrange(0, size // 512 - 8) for _ in range(N))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        files = {}
        files["ranges"] = os.path.join(tmp, "ranges")
        with open(files["ranges"], "w") as fh:
            fh.writelines(f"{s * 512} 4096\n" for s in sectors)
        files["badblocks"] = os.path.join(tmp, "badblocks")
        with open(files["badblocks"], "w") as fh:
            fh.writelines(f"{s} 8\n" for s in sectors)
        files["ndctl"] = os.path.join(tmp, "ndctl.json")
        with open(files["ndctl"], "w") as fh:
            json.dump([{"dev": "namespace0.0", "mode": "fsdax", "blockdev": "sdb", "badblock_count": N * 8,
                        "badblocks": [{"offset": s, "length": 8} for s in sectors]}], fh)
        files["kmsg"] = os.path.join(tmp, "dmesg")
        with open(files["kmsg"], "w") as fh:
            t = 0.0
            for s in sectors:
                for _ in range(9):
                    t += 0.001
                    fh.write(f"[{t:12.6f}] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n")
                t += 0.001
                fh.write(f"[{t:12.6f}] critical medium error, dev sdb, sector {s} op 0x0:(READ) flags 0x0 "
                         "phys_seg 1 prio class 2\n")
        # A whole disk: 1 MiB of GPT in front of the filesystem (sparse copy), partition 1 = the filesystem.
        disk = os.path.join(tmp, "disk.img")
        subprocess.run(["truncate", "-s", str(size + (2 << 20)), disk], check=True)
        subprocess.run(["sfdisk", "-q", disk], input=f"label: gpt\nstart=2048, size={size // 512}\n", text=True,
                       check=True)
        subprocess.run(["dd", f"if={image}", f"of={disk}", "bs=1M", "seek=1", "conv=sparse,notrunc", "status=none"],
                       check=True)
        files["disk-badblocks"] = os.path.join(tmp, "disk-badblocks")
        with open(files["disk-badblocks"], "w") as fh:
            fh.writelines(f"{s + 2048} 8\n" for s in sectors)
        base = ["fsdaxctl", "locate", "--format", "json", "--no-detail"]
        cases = [
            ("10,000 ranges (--ranges, baseline)", [*base, image, "--ranges", files["ranges"]]),
            ("10,000 sectors, sysfs badblocks list", [*base, image, "--badblocks", files["badblocks"]]),
            ("10,000 sectors, ndctl JSON", [*base, image, "--ndctl-json", files["ndctl"], "--device", "sdb"]),
            ("100,000-line kernel log, 10,000 reports", [*base, image, "--kmsg", files["kmsg"], "--device", "sdb"]),
            ("10,000 sectors of a GPT disk (partition layer)", [*base, disk, "--badblocks", files["disk-badblocks"]]),
            ("10,000 sectors, badblocks list, --explain", [*base, image, "--badblocks", files["badblocks"],
                                                          "--explain"]),
            ("one event: inject --sector (trace + decisions)", ["fsdaxctl", "inject", image, "--sector",
                                                               str(sectors[0]), "--format", "json"]),
        ]
        rows = []
        for label, argv in cases:
            wall, rss = median_of(3, argv)
            rows.append([label, f"{wall:.3f} s", f"{rss} MiB"])
        print(tabulate(rows, headers=["measurement", "wall (median of 3)", "peak RSS"], tablefmt="github"))


if __name__ == "__main__":
    main()
