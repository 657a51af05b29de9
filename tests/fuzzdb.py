"""Fuzzed filesystems in the manner of fstests' xfs fuzz groups: `xfs_db -x` `fuzz -d` (CRC re-sealed: the
damage passes the checks) or `fuzz -c` (bad CRC) on every field of every structure kind with every verb, and
`blocktrash` of whole metadata blocks, each on a fresh copy of an image the kernel described.

For every damaged image `fsdaxctl fsmap` (a subprocess with a time and memory limit) must: not crash, not
hang, print a valid map (no `internal error`: its invariant check found nothing), and answer no byte `free`
that is in use on the undamaged filesystem (the kernel's GETFSMAP of the undamaged image is the truth: "free
needs two witnesses"). Damage confined to one AG's headers or btrees (rmapbt images) must leave every byte of
the other AGs answered exactly as on the undamaged image.

    python3 tests/fuzzdb.py --images DIR --cases 3000 --seed 7 [--out results.json]   # the slow campaign

Needs root (loop mounts) only to build the base images; xfs_db and the fsdaxctl CLI for the rest.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import images  # noqa: E402
from tests import kernel as K  # noqa: E402
from tests.oracle import overlaps  # noqa: E402

VERBS = ("zeroes", "ones", "firstbit", "middlebit", "lastbit", "add", "sub", "random")
TIME_LIMIT = 120  # seconds for one fsmap of a damaged 64 MiB image (a clean one takes about one)
MEMORY_LIMIT = 1 << 30  # bytes of address space

# The three base filesystems of the issue: 4 KiB with rmapbt+reflink, no rmapbt, 1 KiB with 8 AGs.
BASES = {
    "4k-reflink": images.IMAGE_CONFIGS["4k-reflink"],
    "4k-norefl-normap": images.IMAGE_CONFIGS["4k-norefl-normap"],
    "1k-8ag": images.IMAGE_CONFIGS["1k-8ag"],
}


@dataclass
class Base:
    name: str
    path: str
    record: dict  # images.build_and_record's record: GETFSMAP, files, bmbt inode
    rmapbt: bool
    reflink: bool
    agcount: int
    ag_bytes: int
    size: int
    used: list = field(default_factory=list)  # [start, end) of every byte not free in the kernel's map

    @classmethod
    def load(cls, name: str, path: str, record: dict) -> "Base":
        info = json.loads(subprocess.run([sys.executable, "-m", "fsdaxctl", "info", path, "--format", "json"],
                                         capture_output=True, text=True, check=True).stdout)
        fsinfo = info.get("filesystem", info)
        recs = [K.FsmapRec(**r) for r in record["fsmap"]]
        used = sorted((r.physical, r.physical + r.length) for r in recs if K.owner_name(r) != "free")
        return cls(name, path, record, record["rmapbt"], record["reflink"], fsinfo["ag_count"],
                   fsinfo["ag_size"], fsinfo["size"], used)

    def a_file(self, rng: random.Random) -> int:
        """A regular file with data (its inode is a target)."""
        inos = [int(i) for i, e in self.record["fiemap"].items() if e]
        return rng.choice(sorted(inos))


# --- targets: (kind, xfs_db commands that select the structure, the AG it lives in or None) ---------------

def targets(base: Base, rng: random.Random) -> list[tuple[str, list[str], int | None]]:
    ag = rng.randrange(base.agcount)
    out = [("sb", ["sb 0"], 0), ("agf", [f"agf {ag}"], ag), ("agi", [f"agi {ag}"], ag),
           ("agfl", [f"agfl {ag}"], ag), ("bnobt", [f"agf {ag}", "addr bnoroot"], ag),
           ("cntbt", [f"agf {ag}", "addr cntroot"], ag), ("inobt", [f"agi {ag}", "addr root"], ag),
           ("finobt", [f"agi {ag}", "addr free_root"], ag),
           ("inode", [f"inode {base.a_file(rng)}"], None),
           ("bmbt", [f"inode {base.record['bmbt_inode']}", "addr u3.bmbt.ptrs[1]"], None)]
    if base.rmapbt:
        out.append(("rmapbt", [f"agf {ag}", "addr rmaproot"], ag))
        out.append(("rmapbt-child", [f"agf {ag}", "addr rmaproot", "addr ptrs[1]"], ag))
    if base.reflink:
        out.append(("refcountbt", [f"agf {ag}", "addr refcntroot"], ag))
    return out


_LINE = re.compile(r"^([A-Za-z0-9_.\[\]-]+) = (.*)$")
_ARRAY = re.compile(r"^(.*)\[(\d+)-(\d+)\]$")
_SKIP = {"crc", "v3.crc", "magic", "magicnum", "core.magic"}  # fuzzing these is only "not a structure"


def fields(image: str, select: list[str]) -> list[str]:
    """Every fuzzable field of the selected structure, arrays expanded at their first, middle and last
    element (`recs[1].startblock`), as fstests' field lists do."""
    cmds = [c for s in select for c in ("-c", s)]
    p = subprocess.run(["xfs_db", "-r", *cmds, "-c", "print", image], capture_output=True, text=True)
    out = []
    for line in p.stdout.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        name, value = m.groups()
        arr = _ARRAY.match(name)
        if arr:
            base, lo, hi = arr.group(1), int(arr.group(2)), int(arr.group(3))
            subs = value.strip()[1:-1].split(",") if value.strip().startswith("[") else [""]
            for i in sorted({lo, (lo + hi) // 2, hi}):
                out += [f"{base}[{i}]" + (f".{s}" if s else "") for s in subs if s]
                if subs == [""]:
                    out.append(f"{base}[{i}]")
        elif name not in _SKIP and value.strip() not in ("(empty)",):
            out.append(name)
    return out


# --- one case ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    base: str
    kind: str
    select: list
    action: str  # "fuzz -d FIELD VERB", "fuzz -c FIELD VERB" or "blocktrash ..."
    ag: int | None

    def describe(self) -> str:
        return f"{self.base}: {' / '.join(self.select)}: {self.action}"


def make_cases(base: Base, n: int, rng: random.Random) -> list[Case]:
    """n cases drawn from every (target, field, verb), resealed CRCs mostly, some bad CRCs, some blocktrash."""
    pool = []
    for kind, select, ag in targets(base, rng):
        for name in fields(base.path, select):
            pool.append((kind, select, name, ag))
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            out.append(Case(base.name, "blocktrash", ["blockget"],
                            f"blocktrash -s {rng.randrange(1 << 30)} -n {rng.randint(1, 8)} -3", None))
            continue
        kind, select, name, ag = rng.choice(pool)
        flag = "-c" if r < 0.15 else "-d"
        out.append(Case(base.name, kind, select, f"fuzz {flag} {name} {rng.choice(VERBS)}", ag))
    return out


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(base: Base, case: Case, work: str) -> dict:
    """Damage a copy, answer it, check it. Returns {"case", "status", "problems": [...]}."""
    img = os.path.join(work, "fuzzed.img")
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", base.path, img], check=True)
    cmds = [c for s in case.select for c in ("-c", s)]
    p = subprocess.run(["xfs_db", "-x", *cmds, "-c", case.action, img], capture_output=True, text=True)
    rep = {"case": case.describe(), "problems": []}
    if p.returncode or "not found" in p.stderr or "bad" in p.stderr.lower() and "field" in p.stderr.lower():
        rep["status"] = "not-applied"
        return rep
    try:
        q = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", img, "--format", "jsonl"],
                           capture_output=True, text=True, timeout=TIME_LIMIT, preexec_fn=_limits)
    except subprocess.TimeoutExpired:
        rep.update(status="hang", problems=[f"no answer in {TIME_LIMIT} s"])
        return rep
    rep["exit"] = q.returncode
    if "Traceback" in q.stderr or q.returncode < 0 or q.returncode not in (0, 1, 4, 5, 8, 9, 12, 13):
        rep.update(status="crash", problems=[q.stderr.strip().splitlines()[-1] if q.stderr.strip()
                                             else f"exit {q.returncode}"])
        return rep
    pieces = [json.loads(line) for line in q.stdout.splitlines() if line.startswith("{")]
    pieces = [x for x in pieces if "owner" in x]
    if not pieces:  # refused whole: one clear line and exit 1 is an honest answer
        one = q.stderr.strip().splitlines()
        rep["status"] = "refused" if q.returncode == 1 and one else "crash"
        if rep["status"] == "crash":
            rep["problems"].append(f"no pieces, exit {q.returncode}: {q.stderr.strip()[-300:]}")
        return rep
    rep["problems"] += check_answer(base, case, pieces, q.stderr)
    rep["status"] = "wrong" if rep["problems"] else "ok"
    return rep


def check_answer(base: Base, case: Case, pieces: list[dict], stderr: str) -> list[str]:
    out = []
    if "internal error" in stderr:
        out.append("invariant breach: " + next(l for l in stderr.splitlines() if "internal error" in l))
    free = sorted((x["offset"], x["offset"] + x["length"]) for x in pieces if x["owner"] == "free")
    wrong = overlaps(base.used, free)
    if wrong:
        total = sum(e - s for s, e in wrong)
        out.append(f"{total} bytes in use on the undamaged filesystem answered free, first {wrong[:3]}")
    return out


def confined_equal(base: Base, case: Case, pieces: list[dict], clean: list[dict]) -> bool | None:
    """Damage to one AG's own structures (rmapbt images): is every other AG answered as before? None when
    the case is not confined to one AG."""
    if not base.rmapbt or case.ag is None or case.kind == "sb":
        return None
    lo, hi = case.ag * base.ag_bytes, (case.ag + 1) * base.ag_bytes

    def outside(ps):
        return sorted((x["offset"], x["length"], x["owner"], x.get("inode"), x.get("file_offset"), x.get("shared"))
                      for x in ps if x["offset"] + x["length"] <= lo or x["offset"] >= hi)
    return outside(pieces) == outside(clean)


def clean_answer(base: Base) -> list[dict]:
    q = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", base.path, "--format", "jsonl"],
                       capture_output=True, text=True, check=False)
    return [x for x in map(json.loads, (l for l in q.stdout.splitlines() if l.startswith("{"))) if "owner" in x]


def campaign(bases: list[Base], n: int, seed: int, work: str, on_result=None) -> list[dict]:
    rng = random.Random(seed)
    reps = []
    for base in bases:
        clean = clean_answer(base)
        for case in make_cases(base, n, rng):
            rep = run_case(base, case, work)
            if rep["status"] == "ok" and case.ag is not None:
                q = subprocess.run([sys.executable, "-m", "fsdaxctl", "fsmap", os.path.join(work, "fuzzed.img"),
                                    "--format", "jsonl"], capture_output=True, text=True)
                got = [x for x in map(json.loads, (l for l in q.stdout.splitlines() if l.startswith("{")))
                       if "owner" in x]
                rep["confined_equal"] = confined_equal(base, case, got, clean)
            reps.append(rep)
            if on_result:
                on_result(rep)
    return reps


def summary(reps: list[dict]) -> dict:
    by = {}
    for r in reps:
        by[r["status"]] = by.get(r["status"], 0) + 1
    confined = [r["confined_equal"] for r in reps if r.get("confined_equal") is not None]
    return {"cases": len(reps), "by_status": by, "confined": len(confined),
            "confined_equal": sum(1 for c in confined if c)}


def build_bases(directory: str) -> list[Base]:
    out = []
    for name in BASES:
        path = os.path.join(directory, f"{name}.img")
        if os.path.exists(path + ".kernel.json"):
            with open(path + ".kernel.json") as fh:
                rec = json.load(fh)
        else:
            rec = images.build_and_record(path, name)
        out.append(Base.load(name, path, rec))
    return out


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="directory for the base images (built once, then reused)")
    ap.add_argument("--cases", type=int, default=1000, help="damaged images per base filesystem")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="every case's report as JSON")
    a = ap.parse_args(argv)
    os.makedirs(a.images, exist_ok=True)
    bases = build_bases(a.images)
    work = os.path.join(a.images, "work")
    os.makedirs(work, exist_ok=True)

    def show(rep):
        if rep["status"] not in ("ok", "refused", "not-applied") or rep.get("confined_equal") is False:
            print(f"{rep['status']}: {rep['case']}: {'; '.join(rep['problems'])}"
                  + (" (other AGs changed)" if rep.get("confined_equal") is False else ""), flush=True)

    reps = campaign(bases, a.cases, a.seed, work, show)
    print(json.dumps(summary(reps)))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(reps, fh, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    bad = sum(1 for r in reps if r["status"] in ("crash", "hang", "wrong"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
