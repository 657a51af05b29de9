#!/usr/bin/env python3
"""Build the committed fixtures tests/data/<config>.img.xz + <config>.kernel.json.xz (needs root, loop devices).

Each is a real image from tests/images.py with the kernel's GETFSMAP recorded on a read-only mount. Regular
files' data blocks are then zeroed (fsdaxctl never reads file contents; metadata, directories and xattrs are
kept byte for byte), so the images compress to a few KiB and the tests that use them run without root.

  python tests/make_fixtures.py [CONFIG ...]
"""

from __future__ import annotations

import json
import lzma
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.images import build_and_record  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURES = ("4k-reflink", "1k-reflink", "4k-norefl-normap")


def zero_file_data(image: str, rec: dict) -> None:
    """Zero every regular file's data extents, where the kernel's FIEMAP put them."""
    with open(image, "r+b") as fh:
        for extents in rec["fiemap"].values():
            for e in extents:
                fh.seek(e["physical"])
                fh.write(bytes(e["length"]))


def main(names):
    os.makedirs(DATA, exist_ok=True)
    for name in names or FIXTURES:
        with tempfile.TemporaryDirectory() as tmp:
            image = os.path.join(tmp, f"{name}.img")
            rec = build_and_record(image, name)
            zero_file_data(image, rec)
            with open(image, "rb") as fh:
                packed = lzma.compress(fh.read(), preset=9 | lzma.PRESET_EXTREME)
            with open(os.path.join(DATA, f"{name}.img.xz"), "wb") as fh:
                fh.write(packed)
            meta = lzma.compress(json.dumps(rec, sort_keys=True).encode(), preset=9)
            with open(os.path.join(DATA, f"{name}.kernel.json.xz"), "wb") as fh:
                fh.write(meta)
            print(f"{name}: image {len(packed)} bytes, kernel record {len(meta)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
