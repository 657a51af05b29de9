#!/usr/bin/env python3
"""Build the committed crashed images tests/data/crash/<name>.img.xz + <name>.kernel.json.xz (needs root, loop
devices), so tests/test_replay.py compares the log replay with the kernel's recovery without root.

Each is made by tests/crash.py (a workload shut down while it runs, the kernel's answer recorded on a recovered
copy). Regular files' data blocks (where the kernel's FIEMAP put them after recovery) are then zeroed and
the image kept only if fsdaxctl still agrees with the record, so it compresses to tens of KiB.

  python tests/make_crash_fixtures.py            # every fixture in FIXTURES
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.crash import build_crash  # noqa: E402
from tests.make_fixtures import zero_file_data  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "crash")
# name: (config, seed, ops, mode); tried with seeds from `seed` up until one has unfinished intents or
# unlinked inodes where wanted, or `tries` runs out
FIXTURES = {
    "4k-reflink-flush": ("4k-reflink", 1, 150, "flush"),
    "1k-reflink-noflush": ("1k-reflink", 2, 150, "noflush"),
    "4k-norefl-normap-flush": ("4k-norefl-normap", 3, 400, "flush"),
}
MAX_XZ = 200 << 10  # per image: keep the committed total at a few hundred KiB


def zero_free_space(image: str, rec: dict) -> None:
    """Zero what the kernel calls free after its recovery (deleted files' random data): never read by a replay
    that agrees with the kernel, which check_image proves again afterwards."""
    from tests.kernel import FMR_OF_SPECIAL_OWNER, FMR_OWN_FREE

    with open(image, "r+b") as fh:
        for r in rec["fsmap"]:
            if r["flags"] & FMR_OF_SPECIAL_OWNER and r["owner"] == FMR_OWN_FREE:
                fh.seek(r["physical"])
                fh.write(bytes(r["length"]))


def build(name: str, config: str, seed: int, ops: int, mode: str) -> bool:
    from tests.test_replay import check_image

    with tempfile.TemporaryDirectory(prefix="fsdaxctl-crashfix-") as tmp:
        img = os.path.join(tmp, name + ".img")
        rec = build_crash(img, config, seed, ops=ops, mode=mode)
        zero_file_data(img, rec)
        zero_free_space(img, rec)
        try:
            figures = check_image(img, rec)
        except AssertionError as e:
            print(f"{name}: seed {seed}: does not agree after zeroing file data, skipped: {str(e)[:300]}")
            return False
        rec["fixture"] = {"name": name, "figures": figures}
        os.makedirs(DATA, exist_ok=True)
        out = os.path.join(DATA, name + ".img.xz")
        with open(img, "rb") as src, lzma.open(out + ".tmp", "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
            shutil.copyfileobj(src, dst)
        if os.path.getsize(out + ".tmp") > MAX_XZ:
            os.unlink(out + ".tmp")
            print(f"{name}: seed {seed}: compresses to more than {MAX_XZ} bytes, skipped")
            return False
        os.replace(out + ".tmp", out)
        with lzma.open(os.path.join(DATA, name + ".kernel.json.xz"), "wt", preset=9) as fh:
            json.dump(rec, fh)
        print(f"{name}: {os.path.getsize(out)} bytes xz; {figures}")
        return True


def main(argv: list[str]) -> int:
    names = argv or list(FIXTURES)
    bad = 0
    for name in names:
        config, seed, ops, mode = FIXTURES[name]
        for s in range(seed, seed + 10 * 1000, 1000):
            if build(name, config, s, ops, mode):
                break
        else:
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
