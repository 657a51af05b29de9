#!/usr/bin/env python3
"""Build the committed crashed images tests/data/crash/<name>.img.xz + <name>.kernel.json.xz (needs root, loop
devices), so tests/test_replay.py compares the log replay with the kernel's recovery without root.

Each is made by tests/crash.py (a workload shut down while it runs, the kernel's answer recorded on a recovered
copy). Regular files' data blocks and free space (where the kernel's record after recovery and fsdaxctl's
replayed answer agree on them) are then zeroed and the image kept only if fsdaxctl still agrees with the record,
so it compresses to tens of KiB.

  python tests/make_crash_fixtures.py            # every fixture in FIXTURES
  python tests/make_crash_fixtures.py --from IMAGE NAME   # keep a crashed image made before (tests/crash.py
                                                 # leaves IMAGE.kernel.json beside it), e.g. one whose log
                                                 # holds unfinished intents of a kind worth keeping
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

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "crash")
# name: (config, seed, ops, mode); tried with seeds from `seed` up until one has unfinished intents or
# unlinked inodes where wanted, or `tries` runs out
FIXTURES = {
    "4k-reflink-flush": ("4k-reflink", 1, 150, "flush"),
    "1k-reflink-noflush": ("1k-reflink", 2, 150, "noflush"),
    "4k-norefl-normap-flush": ("4k-norefl-normap", 3, 400, "flush"),
}
# Kept with --from (crash images of tests/crash.py, 800 operations, that left unfinished intents; seeds are
# not enough to make them again, the moment of the shutdown varies):
#   4k-rmap-convert-flush            4k-rmap-noreflink seed 305 flush: an rmap CONVERT (unwritten -> written)
#   1k-reflink-unmap-noflush         1k-reflink seed 316 noflush: an rmap UNMAP and its extent-free intents
#   1k-reflink-unmap-shared-noflush  1k-reflink seed 329 noflush: UNMAP_SHARED with a refcount DECREASE
# and from tests/hunt_intents.py's hunt (its hits.md says how each was made; MAX_XZ=450000):
#   1k-exchange-bmap-flush       mapping exchanges (XMI), bmap MAP and UNMAP; the mount gave two extent maps a block
#   1k-cow-end-noflush           CoW completion: bmap MAP/UNMAP, refcount DECREASE and FREE_COW, rmap FREE (OWN_COW)
#   4k-remap-map-shared-noflush  a reflink remap's rmap MAP_SHARED
#   1k-pptr-attri-noflush        a parent-pointer xattr intent (mkfs.xfs 6.15, -n parent=1): its attr block unknown
#   1k-cow-alloc-flush           CoW staging allocated: refcount ALLOC_COW and rmap ALLOC (OWN_COW)
#   4k-exchange-cow-alloc-flush  bmap MAP/UNMAP of unwritten extents, ALLOC_COW, rmap ALLOC and UNMAP, an exchange
#                                setting sizes (mkfs.xfs 6.15, -i exchange=1)
#   1k-normap-cow-alloc-flush    reflink without rmapbt (the metadata walk): refcount ALLOC_COW
#   1k-normap-cow-end-noflush    the same: CoW completion, bmap MAP/UNMAP, refcount DECREASE and FREE_COW
MAX_XZ = int(os.environ.get("MAX_XZ", 200 << 10))  # per image: keep the committed total small


def zero_unread(image: str, rec: dict) -> None:
    """Zero the file data and free space of a crashed image (files' and deleted files' random data), where the
    kernel's record after its recovery (free, or a regular file's data) and fsdaxctl's replayed answer (free,
    CoW staging or file data) agree: blocks the mount itself frees (AG btree blocks its own transactions
    release) are still read by the replay. check_image proves afterwards that nothing it reads was zeroed."""
    from fsdaxctl.ranges import merge_spans
    from fsdaxctl.xfs import logrecover as L
    from fsdaxctl.xfs.fs import XfsFilesystem
    from fsdaxctl.xfs.owners import OwnerMap
    from tests.kernel import FMR_OF_SPECIAL_OWNER, FMR_OWN_FREE
    from tests.oracle import overlaps

    with XfsFilesystem.open(image) as fs0:
        fs, _ = L.open_replayed(fs0)
        pieces = OwnerMap(fs).pieces(0, fs.geo.size)
    ours = merge_spans((p.offset, p.offset + p.length) for p in pieces if p.owner in ("free", "cow-staging")
                       or (p.owner == "file" and not p.extent_map))
    kernel = [(r["physical"], r["physical"] + r["length"]) for r in rec["fsmap"]
              if r["flags"] & FMR_OF_SPECIAL_OWNER and r["owner"] == FMR_OWN_FREE]
    kernel += [(e["physical"], e["physical"] + e["length"]) for ext in rec["fiemap"].values() for e in ext]
    with open(image, "r+b") as fh:
        for s, e in overlaps(ours, merge_spans(kernel)):
            fh.seek(s)
            fh.write(bytes(e - s))


def build(name: str, config: str, seed: int, ops: int, mode: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="fsdaxctl-crashfix-") as tmp:
        img = os.path.join(tmp, name + ".img")
        rec = build_crash(img, config, seed, ops=ops, mode=mode)
        return keep(name, img, rec, f"seed {seed}")


def keep(name: str, img: str, rec: dict, what: str) -> bool:
    """Zero a crashed image's file data and free space, check it still agrees with the kernel's record, and
    commit it (compressed) with the record, if it is small enough. The image is changed in place."""
    from tests.test_replay import check_image

    zero_unread(img, rec)
    try:
        figures = check_image(img, rec)
    except AssertionError as e:
        print(f"{name}: {what}: does not agree after zeroing file data, skipped: {str(e)[:300]}")
        return False
    rec["fixture"] = {"name": name, "figures": figures}
    os.makedirs(DATA, exist_ok=True)
    out = os.path.join(DATA, name + ".img.xz")
    with open(img, "rb") as src, lzma.open(out + ".tmp", "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
        shutil.copyfileobj(src, dst)
    if os.path.getsize(out + ".tmp") > MAX_XZ:
        os.unlink(out + ".tmp")
        print(f"{name}: {what}: compresses to more than {MAX_XZ} bytes, skipped")
        return False
    os.replace(out + ".tmp", out)
    with lzma.open(os.path.join(DATA, name + ".kernel.json.xz"), "wt", preset=9) as fh:
        json.dump(rec, fh)
    print(f"{name}: {os.path.getsize(out)} bytes xz; {figures}")
    return True


def main(argv: list[str]) -> int:
    if argv[:1] == ["--from"]:  # --from IMAGE NAME: a crashed image made before (IMAGE.kernel.json beside it)
        img, name = argv[1], argv[2]
        with open(img + ".kernel.json") as fh:
            rec = json.load(fh)
        with tempfile.TemporaryDirectory(prefix="fsdaxctl-crashfix-") as tmp:
            copy = os.path.join(tmp, name + ".img")
            shutil.copyfile(img, copy)
            return 0 if keep(name, copy, rec, img) else 1
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
