"""Stress: random workloads nobody here wrote, then fsdaxctl's offline answers against the kernel's.

For each (mkfs configuration, seed): mkfs a sparse image, loop-mount it, run a workload (tests/workload.py, or
an external fsstress binary given by path), unmount; mount read-only and record the kernel's truth (GETFSMAP,
the tree by os.walk, FIEMAP on filesystems without rmapbt); unmount; `xfs_repair -n` the image (so a real
corruption is not blamed on us); then compare fsdaxctl, reading the unmounted image:

  fsmap        the whole device: OwnerMap (rmapbt, or `bnobt` without one) against tests.oracle.KernelMap
  locate       a few hundred interesting ranges (tests.test_kernel_oracle.interesting_ranges) through locate()
  walk         (rmapbt configs) the synthesized metadata walk, piece for piece against the kernel
  verify_rmap  (rmapbt configs) must find nothing on a clean filesystem
  walk_free    (no rmapbt) the walk's free pieces are exactly the kernel's free pieces
  walk_owned   (no rmapbt) every byte the kernel calls `unknown` (in use) has a real owner in the walk
  walk_fiemap  (no rmapbt) the walk's file blocks (data and attr forks) are each regular file's FIEMAP
  paths        every inode os.walk found has exactly those paths (all hard links) and that type

    python3 tests/stress.py --configs all --seeds 1-30 [--ops N] [--fsstress PATH] [--out results.json]
                            [--keep DIR] [--jobs N] [--mkfs PATH] [--mkfs-extra OPTS]

One line per run on stdout; --out writes every run's counts and its first disagreements as JSON; --keep
copies the image (and the kernel's record) of every run that disagreed, with the command that reproduces it.
Needs root, loop devices and xfsprogs. The sharing semantics are tests/oracle.py's, used as
tests/test_kernel_oracle.py uses them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter

if __package__ in (None, ""):  # run as a script: make `tests` and `fsdaxctl` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import images  # noqa: E402
from tests import kernel as K  # noqa: E402

MiB = 1 << 20

# Sizes and options that mkfs (xfsprogs 6.1) makes and kernel 6.18 mounts; see tests/images.py IMAGE_CONFIGS.
CONFIGS: dict[str, dict] = {
    "4k-reflink": images._cfg(256 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"],
                              block_size=4096, reflink=True, rmapbt=True),
    "1k-reflink": images._cfg(256 * MiB, ["-b", "size=1024", "-m", "rmapbt=1,reflink=1", "-d", "agcount=4"],
                              block_size=1024, reflink=True, rmapbt=True),
    # 64 KiB blocks: the log must be >= 1984 blocks (124 MiB) inside one AG, hence 2 AGs of 256 MiB.
    "64k-reflink": images._cfg(512 * MiB, ["-b", "size=65536", "-m", "rmapbt=1,reflink=1", "-d", "agcount=2"],
                               block_size=65536, reflink=True, rmapbt=True),
    # 4 KiB sectors: images.loop_mount attaches it through a 4096-byte-sector loop device.
    "4k-4ksect": images._cfg(256 * MiB, ["-b", "size=4096", "-s", "size=4096", "-m", "rmapbt=1,reflink=1"],
                             block_size=4096, sector_size=4096, reflink=True, rmapbt=True),
    "4k-16ag": images._cfg(512 * MiB, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1", "-d", "agcount=16"],
                           block_size=4096, reflink=True, rmapbt=True),
    "4k-normap-norefl": images._cfg(256 * MiB, ["-b", "size=4096", "-m", "rmapbt=0,reflink=0"],
                                    block_size=4096, reflink=False, rmapbt=False),
    "4k-normap-refl": images._cfg(256 * MiB, ["-b", "size=4096", "-m", "rmapbt=0,reflink=1"],
                                  block_size=4096, reflink=True, rmapbt=False),
    # 1 KiB blocks without rmapbt: small btree blocks, so a fragmented AG has a multi-level bnobt/cntbt.
    "1k-normap": images._cfg(256 * MiB, ["-b", "size=1024", "-m", "rmapbt=0,reflink=1"],
                             block_size=1024, reflink=True, rmapbt=False),
}

# Kernel 6.18's GETFSMAP can drop one record at its internal batch boundary when the same inode maps the same
# block at two file offsets (a reflink inside one file): the continuation key (physical, owner, offset) of the
# last record returned then skips the next one. So the truth is the union of full passes with batch sizes
# that put the boundaries in different places.
GETFSMAP_BATCHES = (1024, 977, 131)
MAX_EXAMPLES = 20
LOCATE_RANGES = 300


# --- the kernel's truth ----------------------------------------------------------------------------------

def kernel_fsmap(mnt) -> tuple[list, dict]:
    """The union of full GETFSMAP passes (see GETFSMAP_BATCHES), in kernel order, and how the passes differed."""
    passes = [K.getfsmap(mnt, batch=b) for b in GETFSMAP_BATCHES]
    union = sorted(set().union(*passes), key=lambda r: (r.physical, r.owner, r.offset, r.flags, r.length))
    info = {"batches": list(GETFSMAP_BATCHES), "records": [len(p) for p in passes], "union": len(union),
            "missing_from_a_pass": [len(union) - len(set(p)) for p in passes]}
    return union, info


_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chardev",
          stat.S_IFBLK: "blockdev", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def collect_tree(mnt, *, with_fiemap: bool) -> tuple[dict, dict, dict]:
    """tests/images.collect_files with every file type named (fifo, chardev, socket: as
    fsdaxctl.xfs.paths.mode_type spells them) and FIEMAP only when asked."""
    return images.collect_files(mnt, with_fiemap=with_fiemap,
                                kind=lambda mode: _KINDS.get(stat.S_IFMT(mode), "unknown"))


def xfs_repair_check(image) -> dict:
    p = subprocess.run(["xfs_repair", "-n", "-f", os.fspath(image)], capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip().splitlines()
    return {"clean": p.returncode == 0, "returncode": p.returncode, "tail": out[-8:] if p.returncode else []}


# --- comparing -------------------------------------------------------------------------------------------

def fmt_piece(t) -> str:
    """An oracle tuple (offset, length, owner, inode, fork, file_offset, extent_map, unwritten, shared)."""
    off, ln, owner, ino, fork, foff, em, unw, shared = t
    s = f"[{off:#x}+{ln:#x}) {owner}"
    if owner == "file":
        s += f" ino {ino} {fork}" + (" bmbt-block" if em else f" @{foff:#x}")
        s += " unwritten" * bool(unw) + " shared" * bool(shared)
    return s


def _intervals(pieces) -> list[list[int]]:
    out: list[list[int]] = []
    for off, ln in sorted((p[0], p[1]) for p in pieces):
        if out and off <= out[-1][1]:
            out[-1][1] = max(out[-1][1], off + ln)
        else:
            out.append([off, off + ln])
    return out


def _coverage(pieces) -> dict:
    """Bytes each owner key covers (file offsets normalised to physical), boundaries ignored."""
    by: dict = {}
    for t in pieces:
        off, ln, owner, ino, fork, foff, em, unw, shared = t
        key = (owner, ino, fork, em, unw, shared, None if foff is None else foff - off)
        by.setdefault(key, []).append(t)
    return {k: _intervals(v) for k, v in by.items()}


def classify(ours_only, kern_only) -> str:
    """What kind of disagreement: only the shared flag, only where pieces are split, or owners/extents."""
    if sorted(t[:8] for t in ours_only) == sorted(t[:8] for t in kern_only):
        return "shared-flag"
    if _coverage(ours_only) == _coverage(kern_only):
        return "split"
    if sorted(t[:2] + t[3:] for t in ours_only) == sorted(t[:2] + t[3:] for t in kern_only):
        return "owner-kind"
    return "owner"


def diff_pieces(ours_list, kern_list, *, limit: int = MAX_EXAMPLES) -> dict:
    """Piece lists (oracle tuples) compared as multisets; disagreeing pieces grouped into clusters of
    overlapping byte ranges, each {"range", "class", "ours", "kernel"}."""
    oc, kc = Counter(ours_list), Counter(kern_list)
    only_o, only_k = oc - kc, kc - oc
    res = {"compared": len(kern_list), "ours": len(ours_list), "agree": sum((oc & kc).values()),
           "only_ours": sum(only_o.values()), "only_kernel": sum(only_k.values()), "examples": [],
           "classes": {}}
    if not only_o and not only_k:
        return res
    tagged = sorted([(t, "ours") for t in only_o.elements()] + [(t, "kernel") for t in only_k.elements()])
    clusters = []
    for t, side in tagged:
        lo, hi = t[0], t[0] + t[1]
        if clusters and lo < clusters[-1]["hi"]:
            c = clusters[-1]
            c["hi"] = max(c["hi"], hi)
        else:
            c = {"lo": lo, "hi": hi, "ours": [], "kernel": []}
            clusters.append(c)
        c[side].append(t)
    classes: Counter = Counter()
    for c in clusters:
        cls = classify(c["ours"], c["kernel"])
        classes[cls] += 1
        if len(res["examples"]) < limit:
            res["examples"].append({"range": [c["lo"], c["hi"] - c["lo"]], "class": cls,
                                    "ours": [fmt_piece(t) for t in c["ours"]],
                                    "kernel": [fmt_piece(t) for t in c["kernel"]]})
    res["clusters"] = len(clusters)
    res["classes"] = dict(classes)
    return res


def _ok(check: dict) -> bool:
    return not check.get("error") and not check.get("only_ours") and not check.get("only_kernel") \
        and not check.get("problems") and not check.get("mismatches")


def _error(e: BaseException) -> dict:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {"error": f"{type(e).__name__}: {e}", "traceback": "".join(tb[-4:])[-2000:]}


def _checked(fn, *args, **kw) -> dict:
    try:
        return fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - fsdaxctl failing on a clean filesystem is itself a finding
        return _error(e)


# --- the checks ------------------------------------------------------------------------------------------

def check_fsmap(fs, km) -> dict:
    from fsdaxctl.xfs.owners import OwnerMap
    from tests.oracle import ours

    omap = OwnerMap(fs, source=None if fs.has_rmapbt else "bnobt")
    size = fs.dev.size
    res = diff_pieces(ours(omap.pieces(0, size)), km.pieces(0, size))
    res["source"] = omap.source
    if fs.has_rmapbt:  # without rmapbt the one "problem" is the note that only free space is resolved
        res["problems"] = omap.problems[:MAX_EXAMPLES]
    return res


def check_locate(fs, km, rng: random.Random, n: int = LOCATE_RANGES) -> dict:
    from fsdaxctl.locate import locate
    from fsdaxctl.xfs.owners import OwnerMap
    from tests.oracle import ours
    from tests.test_kernel_oracle import interesting_ranges

    omap = OwnerMap(fs, source=None if fs.has_rmapbt else "bnobt")
    ranges = interesting_ranges(km, fs, rng, n)
    results = locate(omap, ranges)
    res = {"ranges": len(ranges), "compared": 0, "agree": 0, "only_ours": 0, "only_kernel": 0,
           "mismatches": 0, "examples": [], "classes": {}}
    classes: Counter = Counter()
    for r, out in zip(ranges, results):
        d = diff_pieces(ours(out.owners), km.pieces(r.offset, r.length), limit=1)
        bad = (out.offset, out.length) != (r.offset, r.length)
        for k in ("compared", "agree", "only_ours", "only_kernel"):
            res[k] += d[k]
        if d["only_ours"] or d["only_kernel"] or bad:
            res["mismatches"] += 1
            classes.update(d["classes"])
            if len(res["examples"]) < MAX_EXAMPLES:
                ex = d["examples"][0] if d["examples"] else {}
                res["examples"].append({"query": [r.offset, r.length], **ex,
                                        **({"answered_for": [out.offset, out.length]} if bad else {})})
    res["classes"] = dict(classes)
    if fs.has_rmapbt:
        res["problems"] = omap.problems[:MAX_EXAMPLES]
    return res


def check_walk(fs, km) -> dict:
    """rmapbt configs: the synthesized walk must reproduce the kernel's map piece for piece."""
    from fsdaxctl.xfs.owners import OwnerMap
    from tests.oracle import ours

    omap = OwnerMap(fs, source="walk")
    size = fs.dev.size
    res = diff_pieces(ours(omap.pieces(0, size)), km.pieces(0, size))
    res["problems"] = omap.problems[:MAX_EXAMPLES]
    return res


def check_verify_rmap(fs) -> dict:
    from fsdaxctl.xfs.walk import verify_rmap

    found = verify_rmap(fs)
    return {"compared": 1, "agree": int(not found), "problems": found[:MAX_EXAMPLES], "count": len(found)}


def walk_pieces(fs):
    """No rmapbt: the walk's pieces over the whole device (as oracle tuples), and its problems."""
    from fsdaxctl.xfs.owners import OwnerMap

    omap = OwnerMap(fs, source="walk")
    return omap.pieces(0, fs.dev.size), omap.problems


def check_walk_free(fs, km, walked) -> dict:
    from tests.oracle import ours

    pieces, problems = walked
    mine = [t for t in ours(pieces) if t[2] == "free"]
    theirs = [t for t in km.pieces(0, fs.geo.size) if t[2] == "free"]
    res = diff_pieces(mine, theirs)
    res["problems"] = problems[:MAX_EXAMPLES]
    return res


def check_walk_owned(fs, km, walked) -> dict:
    """Every byte the kernel says is in use (`unknown` without rmapbt) is owned (not free, not unknown) in
    the walk."""
    from tests.oracle import ours

    pieces, _ = walked
    mine = ours(pieces)
    owned = _intervals([t for t in mine if t[2] not in ("free", "unknown", "outside-filesystem")])
    used = _intervals([t for t in km.pieces(0, fs.geo.size) if t[2] == "unknown"])
    holes = []  # parts of `used` not covered by `owned`
    j = 0
    for lo, hi in used:
        cur = lo
        while j < len(owned) and owned[j][1] <= cur:
            j += 1
        k = j
        while cur < hi:
            if k < len(owned) and owned[k][0] <= cur:
                cur = max(cur, owned[k][1])
                k += 1
                continue
            nxt = owned[k][0] if k < len(owned) else hi
            holes.append((cur, min(nxt, hi)))
            cur = min(nxt, hi)
    res = {"compared": len(used), "agree": len(used), "uncovered_bytes": sum(b - a for a, b in holes),
           "mismatches": len(holes), "examples": []}
    if holes:
        starts = [t[0] for t in mine]
        import bisect

        bad = set()
        for lo, hi in holes:
            if len(res["examples"]) < MAX_EXAMPLES:
                i = max(0, bisect.bisect_right(starts, lo) - 3)
                near = [fmt_piece(t) for t in mine[i:i + 8] if t[0] < hi and t[0] + t[1] > lo]
                res["examples"].append({"range": [lo, hi - lo], "class": "in-use-not-owned", "ours": near,
                                        "kernel": [f"[{lo:#x}+{hi - lo:#x}) unknown (in use)"]})
            bad.update(i for i, (a, b) in enumerate(used) if a < hi and b > lo)
        res["agree"] = len(used) - len(bad)
    return res


def _fiemap_blocks(extents, bs) -> set:
    out = set()
    for e in extents:
        for i in range(e["length"] // bs):
            out.add((e["logical"] // bs + i, e["physical"] + i * bs, bool(e["flags"] & K.FIEMAP_EXTENT_UNWRITTEN)))
    return out


def check_walk_fiemap(fs, walked, fmap, xmap) -> dict:
    """The walk's file blocks against FIEMAP of every regular file (as tests/test_walk.py does)."""
    pieces, _ = walked
    bs = fs.geo.blocksize
    got: dict = {"data": {}, "attr": {}}
    for p in pieces:
        if p.owner == "file" and not p.extent_map:
            got[p.fork].setdefault(str(p.inode), set()).update(
                (p.file_offset // bs + i, p.offset + i * bs, p.unwritten) for i in range(p.length // bs))
    res = {"compared": 0, "agree": 0, "mismatches": 0, "examples": []}
    for fork, table in (("data", fmap), ("attr", xmap)):
        for ino, extents in sorted(table.items(), key=lambda kv: int(kv[0])):
            want = _fiemap_blocks(extents, bs)
            have = got[fork].get(ino, set())
            res["compared"] += 1
            if want == have:
                res["agree"] += 1
                continue
            res["mismatches"] += 1
            if len(res["examples"]) < MAX_EXAMPLES:
                def show(s):
                    return [f"block {lb} at {ph:#x}" + " unwritten" * u for lb, ph, u in sorted(s)[:6]]
                res["examples"].append({"inode": int(ino), "fork": fork, "class": "fiemap",
                                        "ours_only": show(have - want), "kernel_only": show(want - have),
                                        "ours_blocks": len(have), "kernel_blocks": len(want)})
    return res


def check_paths(fs, files: dict) -> dict:
    from fsdaxctl.xfs.paths import PathResolver

    names = PathResolver(fs).name(int(i) for i in files)
    res = {"compared": len(files), "agree": 0, "mismatches": 0, "examples": []}
    for ino, info in files.items():
        n = names.get(int(ino))
        got = (sorted(n.paths), n.ftype, n.reason) if n else (None, None, "not answered")
        want = (sorted(info["paths"]), info["type"], None)
        if got == want:
            res["agree"] += 1
            continue
        res["mismatches"] += 1
        if len(res["examples"]) < MAX_EXAMPLES:
            res["examples"].append({"inode": int(ino), "class": "paths",
                                    "ours": {"paths": got[0], "type": got[1], "reason": got[2]},
                                    "kernel": {"paths": want[0], "type": want[1]}})
    return res


# --- one run ---------------------------------------------------------------------------------------------

def run_workload(mnt, cfg: dict, seed: int, ops: int, fsstress: str | None) -> dict:
    t0 = time.monotonic()
    if fsstress:
        work = os.path.join(mnt, "work")
        os.makedirs(work, exist_ok=True)
        cmd = [fsstress, "-d", work, "-n", str(ops), "-p", "4", "-s", str(seed)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        return {"kind": "fsstress", "command": shlex.join(cmd), "returncode": p.returncode,
                "output_tail": (p.stdout + p.stderr).strip().splitlines()[-10:],
                "seconds": round(time.monotonic() - t0, 2)}
    from tests import workload

    details: dict = {}
    counts = workload.run(mnt, seed, ops, block_size=cfg["block_size"], reflink=cfg["reflink"],
                          sector_size=cfg["sector_size"], details=details)
    return {"kind": "tests/workload.py", "counts": {k: list(v) for k, v in counts.items()}, **details}


def run_one(config: str, seed: int, ops: int, *, fsstress: str | None = None, keep: str | None = None,
            mkfs_binary: str = "mkfs.xfs", mkfs_extra: list[str] | None = None, workdir: str | None = None,
            locate_ranges: int = LOCATE_RANGES) -> dict:
    """One (configuration, seed): build, record, compare. Never raises for a disagreement; returns the report
    ({"ok": bool, "checks": {name: counts and examples}, ...})."""
    from fsdaxctl.xfs.fs import XfsFilesystem
    from tests.oracle import KernelMap

    cfg = CONFIGS[config]
    t0 = time.monotonic()
    rep: dict = {"config": config, "seed": seed, "ops": ops, "mkfs": [*cfg["mkfs"], *(mkfs_extra or [])],
                 "image_size": cfg["size"], "checks": {}, "timings": {}}
    tmp = tempfile.mkdtemp(prefix=f"fsdaxctl-stress-{config}-{seed}-", dir=workdir)
    image = os.path.join(tmp, f"{config}-s{seed}.img")
    checks = rep["checks"]
    try:
        images.mkfs(image, cfg["size"], [*cfg["mkfs"], *(mkfs_extra or [])], binary=mkfs_binary)
        with images.loop_mount(image) as mnt:
            rep["workload"] = run_workload(mnt, cfg, seed, ops, fsstress)
            st = os.statvfs(mnt)
            rep["used_fraction"] = round(1 - st.f_bfree / max(1, st.f_blocks), 3)
        rep["timings"]["workload"] = round(time.monotonic() - t0, 2)
        t = time.monotonic()
        rep["xfs_repair"] = xfs_repair_check(image)
        with images.loop_mount(image, readonly=True) as mnt:
            recs, rep["getfsmap"] = kernel_fsmap(mnt)
            files, fmap, xmap = collect_tree(mnt, with_fiemap=not cfg["rmapbt"])
        rep["inodes"] = len(files)
        rep["timings"]["record"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        with XfsFilesystem.open(image) as fs:
            rep["records"] = len(recs)
            try:
                km = KernelMap(recs, fs.geo.blocksize, fs.geo.size)
            except AssertionError as e:  # the kernel's own answer is inconsistent: say so, compare nothing
                rep["oracle_error"] = str(e)
                km = None
            if km is not None:
                rng = random.Random(f"{config}-{seed}")
                checks["fsmap"] = _checked(check_fsmap, fs, km)
                checks["locate"] = _checked(check_locate, fs, km, rng, locate_ranges)
                if fs.has_rmapbt:
                    checks["walk"] = _checked(check_walk, fs, km)
                    checks["verify_rmap"] = _checked(check_verify_rmap, fs)
                else:
                    try:
                        walked = walk_pieces(fs)
                    except Exception as e:  # noqa: BLE001
                        err = _error(e)
                        checks["walk_free"] = checks["walk_owned"] = checks["walk_fiemap"] = err
                    else:
                        checks["walk_free"] = _checked(check_walk_free, fs, km, walked)
                        checks["walk_owned"] = _checked(check_walk_owned, fs, km, walked)
                        checks["walk_fiemap"] = _checked(check_walk_fiemap, fs, walked, fmap, xmap)
            checks["paths"] = _checked(check_paths, fs, files)
        rep["timings"]["compare"] = round(time.monotonic() - t, 2)
    except Exception as e:  # noqa: BLE001 - the harness itself (mkfs, mount, record) failed: report it
        rep["harness_error"] = _error(e)
    rep["ok"] = bool(checks) and all(_ok(c) for c in checks.values()) and "harness_error" not in rep \
        and "oracle_error" not in rep
    rep["seconds"] = round(time.monotonic() - t0, 2)
    rep["reproduce"] = reproduce_command(config, seed, ops, fsstress, mkfs_binary, mkfs_extra)
    try:
        repair_dirty = not rep.get("xfs_repair", {}).get("clean", True)
        if keep and (not rep["ok"] or repair_dirty) and os.path.exists(image):
            os.makedirs(keep, exist_ok=True)
            dest = os.path.join(keep, os.path.basename(image))
            subprocess.run(["cp", "--sparse=always", image, dest], check=True)
            if "records" in rep:
                with open(dest + ".kernel.json", "w") as fh:
                    json.dump({"config": config, "seed": seed, "fsmap": [r.to_dict() for r in recs],
                               "files": files, "fiemap": fmap, "fiemap_xattr": xmap,
                               "reproduce": rep["reproduce"]}, fh)
            rep["kept"] = dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rep


def reproduce_command(config, seed, ops, fsstress, mkfs_binary, mkfs_extra) -> str:
    cmd = ["python3", "tests/stress.py", "--configs", config, "--seeds", str(seed), "--ops", str(ops)]
    if fsstress:
        cmd += ["--fsstress", fsstress]
    if mkfs_binary != "mkfs.xfs":
        cmd += ["--mkfs", mkfs_binary]
    if mkfs_extra:
        cmd += ["--mkfs-extra", " ".join(mkfs_extra)]
    return shlex.join(cmd + ["--keep", "stress-failures"])


def _cell(c: dict) -> str:
    if c.get("error"):
        return "ERROR"
    if "count" in c:  # verify_rmap
        return "ok" if not c["count"] else f"{c['count']} problems"
    bad = c.get("mismatches") or (c.get("only_ours", 0) + c.get("only_kernel", 0))
    s = f"{c.get('agree', 0)}/{c.get('compared', 0)}"
    if bad:
        s += f" ({bad} bad)"
    if c.get("problems"):
        s += f" +{len(c['problems'])} problems"
    return s


def summary_line(rep: dict) -> str:
    parts = [f"{rep['config']:17} seed={rep['seed']:<3}", "OK  " if rep["ok"] else "FAIL"]
    w = rep.get("workload", {})
    if w:
        parts.append(f"ops={rep['ops']} used={rep.get('used_fraction', 0):.0%} inodes={rep.get('inodes', '?')}")
    for name, c in rep["checks"].items():
        parts.append(f"{name}={_cell(c)}")
    if "xfs_repair" in rep:
        parts.append("repair=" + ("clean" if rep["xfs_repair"]["clean"] else "DIRTY"))
    g = rep.get("getfsmap")
    if g and any(g["missing_from_a_pass"]):
        parts.append(f"getfsmap-dropped={g['missing_from_a_pass']}")
    if "harness_error" in rep:
        parts.append(f"harness-error={rep['harness_error']['error'][:120]!r}")
    if "oracle_error" in rep:
        parts.append(f"oracle-error={rep['oracle_error'][:120]!r}")
    parts.append(f"{rep['seconds']}s")
    return " ".join(parts)


def run_many(pairs, ops: int, *, jobs: int = 1, on_result=None, **kw) -> list[dict]:
    """run_one for every (config, seed), `jobs` at a time (separate processes), in input order."""
    out: list = [None] * len(pairs)
    if jobs <= 1:
        for i, (c, s) in enumerate(pairs):
            out[i] = run_one(c, s, ops, **kw)
            if on_result:
                on_result(out[i])
        return out
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(run_one, c, s, ops, **kw): i for i, (c, s) in enumerate(pairs)}
        for fut in concurrent.futures.as_completed(futs):
            out[futs[fut]] = fut.result()
            if on_result:
                on_result(out[futs[fut]])
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            seeds += range(int(a), int(b) + 1)
        elif part:
            seeds.append(int(part))
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="all", help=f"comma-separated, or all: {', '.join(CONFIGS)}")
    ap.add_argument("--seeds", default="1", help="e.g. 1-30 or 1,4,7")
    ap.add_argument("--ops", type=int, default=3000)
    ap.add_argument("--fsstress", help="path of an fsstress binary: run `PATH -d MNT/work -n OPS -p 4 -s SEED` "
                                       "instead of tests/workload.py")
    ap.add_argument("--out", help="write every run's report as JSON here")
    ap.add_argument("--keep", help="copy the image (+ .kernel.json) of every run that disagreed, or that "
                                   "xfs_repair -n finds damaged, into DIR")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each its own process and loop device)")
    ap.add_argument("--mkfs", default="mkfs.xfs", help="mkfs.xfs to run (e.g. a newer build)")
    ap.add_argument("--mkfs-extra", default="", help="extra mkfs options, e.g. '-i exchange=1' (newer mkfs)")
    ap.add_argument("--workdir", help="where the images are made (default: $TMPDIR)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print the first disagreements of each run")
    a = ap.parse_args(argv)
    configs = list(CONFIGS) if a.configs == "all" else [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    ok, why = K.can_loop_mount()
    if not ok:
        print(f"stress: cannot run: {why}", file=sys.stderr)
        return 1
    pairs = [(c, s) for c in configs for s in parse_seeds(a.seeds)]

    def show(rep):
        print(summary_line(rep), flush=True)
        if a.verbose and not rep["ok"]:
            print(json.dumps(failures(rep), indent=1, ensure_ascii=False)[:6000], flush=True)
            print("  reproduce:", rep["reproduce"], flush=True)

    reps = run_many(pairs, a.ops, jobs=a.jobs, on_result=show, fsstress=a.fsstress, keep=a.keep,
                    mkfs_binary=a.mkfs, mkfs_extra=a.mkfs_extra.split(), workdir=a.workdir)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(reps, fh, indent=1, ensure_ascii=False)
    bad = [r for r in reps if not r["ok"]]
    failing = ", ".join(f"{r['config']}/{r['seed']}" for r in bad)
    print(f"{len(reps) - len(bad)}/{len(reps)} runs agree" + (f"; failing: {failing}" if bad else ""))
    return 1 if bad else 0


def failures(rep: dict) -> dict:
    """The disagreeing part of a report, for an assertion message or a terminal."""
    out = {k: rep[k] for k in ("harness_error", "oracle_error") if k in rep}
    for name, c in rep.get("checks", {}).items():
        if not _ok(c):
            out[name] = {k: v for k, v in c.items() if k in ("error", "traceback", "classes", "problems",
                                                              "examples", "only_ours", "only_kernel",
                                                              "mismatches", "uncovered_bytes")}
    if not rep.get("xfs_repair", {}).get("clean", True):
        out["xfs_repair"] = rep["xfs_repair"]
    out["reproduce"] = rep.get("reproduce")
    return out


if __name__ == "__main__":
    sys.exit(main())
