#!/usr/bin/env python3
"""Build the committed fixtures tests/data/<config>.img.xz + <config>.kernel.json.xz (needs root, loop devices).

Each is a real image from tests/images.py with the kernel's GETFSMAP recorded on a read-only mount. Regular
files' data blocks are then zeroed (fsdaxctl never reads file contents; metadata, directories and xattrs are
kept byte for byte), so the images compress to a few KiB and the tests that use them run without root.

  python tests/make_fixtures.py [CONFIG ...]
  python tests/make_fixtures.py --parent-mkfs /path/to/mkfs.xfs     # the 4k-parent fixture

4k-parent (the PARENT feature: parent pointers) needs mkfs.xfs >= 6.10, which CI's xfsprogs 6.1 is not, so it
is not in IMAGE_CONFIGS (every kernel test iterates those): it is built only here, with the mkfs.xfs given by
--parent-mkfs (e.g. one built from an xfsprogs source tree, not installed). Its kernel record says which mkfs
version made it ("mkfs_version") and whether the superblock has the PARENT bit ("parent"); so does every
fixture built by this script.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.images import MiB, _cfg, build_and_record  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURES = ("4k-reflink", "1k-reflink", "4k-norefl-normap")

PARENT = "4k-parent"
# mkfs.xfs >= 6.10. With parent=1 and no explicit -i exchange=, mkfs also turns on exchange-range (incompat
# 0x40); nrext64 (incompat 0x20) is on by default since mkfs 6.5.
PARENT_CFG = _cfg(64 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-n", "parent=1"],
                  block_size=4096, reflink=True, rmapbt=True, parent=True)
XFS_SB_FEAT_INCOMPAT_PARENT = 0x80  # sb_features_incompat: big-endian u32 at byte 216 of the superblock

# METADIR (incompat 0x100, mkfs.xfs >= 6.13, Linux >= 6.13): the metadata directory tree, no realtime device.
# Built like 4k-parent, with --new-mkfs; build_and_record's xfs_db must read metadir too, so put a new xfs_db
# first on PATH (PATH=/path/to/xfsprogs/db:$PATH).
METADIR = "4k-metadir"
METADIR_CFG = _cfg(64 * MiB, ["-b", "size=4096", "-m", "metadir=1,rmapbt=1,reflink=1", "-d", "agcount=3"],
                   block_size=4096, reflink=True, rmapbt=True, metadir=True)
XFS_SB_FEAT_INCOMPAT_METADIR = 0x100
NEW_MKFS = {PARENT: PARENT_CFG, METADIR: METADIR_CFG}  # fixtures that need a newer mkfs.xfs than CI's


def mkfs_version(binary: str) -> str:
    """'6.15.0' from `<binary> -V` ("mkfs.xfs version 6.15.0"); the whole first line if it does not parse."""
    out = subprocess.run([binary, "-V"], capture_output=True, text=True, check=True).stdout.strip()
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else out.splitlines()[0] if out else "unknown"


def features_incompat(image: str) -> int:
    with open(image, "rb") as fh:
        sb = fh.read(220)
    if sb[:4] != b"XFSB":
        raise RuntimeError(f"{image}: no XFS superblock")
    return struct.unpack_from(">I", sb, 216)[0]


def zero_file_data(image: str, rec: dict) -> None:
    """Zero every regular file's data extents, where the kernel's FIEMAP put them."""
    with open(image, "r+b") as fh:
        for extents in rec["fiemap"].values():
            for e in extents:
                fh.seek(e["physical"])
                fh.write(bytes(e["length"]))


def build_fixture(name: str, cfg: dict | None = None, mkfs_binary: str = "mkfs.xfs") -> None:
    """build_and_record, zero file data, xz the image and the kernel record into tests/data."""
    version = mkfs_version(mkfs_binary)
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, f"{name}.img")
        rec = build_and_record(image, name, cfg=cfg, mkfs_binary=mkfs_binary)
        rec["mkfs_version"] = version
        rec["parent"] = bool(features_incompat(image) & XFS_SB_FEAT_INCOMPAT_PARENT)
        rec["metadir"] = bool(features_incompat(image) & XFS_SB_FEAT_INCOMPAT_METADIR)
        if cfg is not None and cfg.get("metadir") and not rec["metadir"]:
            raise RuntimeError(f"{name}: mkfs.xfs {version} left the METADIR bit off")
        if cfg is not None and cfg.get("parent") and not rec["parent"]:
            raise RuntimeError(f"{name}: mkfs.xfs {version} left the PARENT bit off "
                               f"(features_incompat {features_incompat(image):#x})")
        zero_file_data(image, rec)
        with open(image, "rb") as fh:
            packed = lzma.compress(fh.read(), preset=9 | lzma.PRESET_EXTREME)
        with open(os.path.join(DATA, f"{name}.img.xz"), "wb") as fh:
            fh.write(packed)
        meta = lzma.compress(json.dumps(rec, sort_keys=True).encode(), preset=9)
        with open(os.path.join(DATA, f"{name}.kernel.json.xz"), "wb") as fh:
            fh.write(meta)
        print(f"{name}: image {len(packed)} bytes, kernel record {len(meta)} bytes (mkfs.xfs {version})")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="CONFIG",
                    help=f"configs to build (default: {', '.join(FIXTURES)}); {PARENT} needs --parent-mkfs")
    ap.add_argument("--parent-mkfs", "--new-mkfs", dest="parent_mkfs", metavar="MKFS",
                    help=f"a mkfs.xfs >= 6.13 to build {', '.join(NEW_MKFS)} with (alone it builds only those)")
    args = ap.parse_args(argv)
    names = args.names or (list(NEW_MKFS) if args.parent_mkfs else list(FIXTURES))
    if set(NEW_MKFS) & set(names) and not args.parent_mkfs:
        ap.error(f"{', '.join(NEW_MKFS)} need --new-mkfs (a mkfs.xfs >= 6.13)")
    os.makedirs(DATA, exist_ok=True)
    for name in names:
        if name in NEW_MKFS:
            build_fixture(name, NEW_MKFS[name], args.parent_mkfs)
        else:
            build_fixture(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
