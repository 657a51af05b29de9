"""The corruption-chain engine: `fsdaxctl inject`, its decisions, and --act on a real loop-mounted XFS.

The machines that run these tests have no pmem, so the live tests use --assume-dax (the policy treats every
mapping as DAX) and check with real processes who is signalled: the children map page ranges of files, two of
them reflinked, and report any SIGBUS they receive. Where the kernel's own chain is the reference (BTOBB
rounding, pgoff/pgcnt, flags), the expectations are computed from fs/xfs/xfs_notify_failure.c's formulas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from tests.conftest import need_kernel
from tests.kernel import fiemap
from tests.test_live import Child

PS = 4096


def inject(*args, input=None):
    r = CliRunner().invoke(cli, ["inject", *map(str, args)], input=input)
    assert "Traceback" not in (r.stderr or ""), r.stderr
    return r


def decisions(result) -> list[dict]:
    return [d for oc in json.loads(result.stdout)["outcomes"] for d in oc["decisions"]]


def freeze(mnt):
    """Quiesce the log so that the on-disk metadata we read is the mounted filesystem's (fsfreeze)."""
    subprocess.run(["fsfreeze", "-f", mnt], check=True)
    subprocess.run(["fsfreeze", "-u", mnt], check=True)


@pytest.fixture
def live(tmp_path):
    """A mounted XFS: a (16 pages), b = reflink of a, c (16 pages). Yields (image, mount point)."""
    need_kernel()
    from tests.images import loop_mount, mkfs

    img = tmp_path / "live.img"
    mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1"])
    with loop_mount(img) as mnt:
        for name, fill in (("a", b"A"), ("c", b"C")):
            with open(os.path.join(mnt, name), "wb") as fh:
                fh.write(fill * (16 * PS))
        subprocess.run(["cp", "--reflink=always", os.path.join(mnt, "a"), os.path.join(mnt, "b")], check=True)
        os.sync()
        freeze(mnt)
        yield str(img), mnt


@pytest.fixture
def children(tmp_path):
    made = []

    def start(mnt, name, first, count, kind="shared"):
        c = Child(os.path.join(mnt, name), first, count, kind, tmp=str(tmp_path))
        made.append(c)
        return c

    try:
        yield start
    finally:
        for c in made:
            c.stop()


def device_byte(path, file_offset):
    """Where the kernel (FIEMAP) says byte `file_offset` of `path` lives on the device."""
    for e in fiemap(path):
        if e.logical <= file_offset < e.logical + e.length:
            return e.physical + file_offset - e.logical
    raise AssertionError(f"{path} has no extent at {file_offset}")


def test_act_signals_exactly_the_mappers_of_a_shared_block(live, children, tmp_path):
    img, mnt = live
    byte = device_byte(os.path.join(mnt, "a"), 3 * PS)
    assert byte == device_byte(os.path.join(mnt, "b"), 3 * PS)  # the kernel shares the block
    hit = [children(mnt, "a", 2, 3), children(mnt, "b", 3, 1), children(mnt, "b", 0, 4, "private")]
    spared = [children(mnt, "a", 8, 2), children(mnt, "c", 3, 1), children(mnt, "b", 10, 2)]
    for c in hit + spared:
        c.wait_ready()
    log = tmp_path / "actions.jsonl"
    r = inject(img, "--sector", byte // 512, "--count", 8, "--assume-dax", "--act", "--yes", "--format", "json",
               "--action-log", log)
    assert r.exit_code == 4, r.output
    kills = [d for d in decisions(r) if d["action"] == "kill-mappers"]
    assert sorted(d["inode"] for d in kills) == sorted(os.stat(os.path.join(mnt, n)).st_ino for n in "ab")
    assert all((d["pgoff"], d["pgcnt"]) == (3, 1) for d in kills)
    assert sorted(m["pid"] for d in kills for m in d["mappers"]) == sorted(c.pid for c in hit)
    for c in hit:
        assert c.got() == (7, 0, os.getpid()), c.pid  # SIGBUS, SI_USER: userspace cannot send BUS_MCEERR_AO
    for c in spared:
        assert c.got(timeout=0.5) is None and c.proc.poll() is None, c.pid
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(int(rec["target"]) for rec in records if rec["action"] == "signal") == sorted(c.pid for c in hit)


def test_page_cache_mount_signals_nobody(live, children, tmp_path):
    img, mnt = live
    byte = device_byte(os.path.join(mnt, "a"), 3 * PS)
    kids = [children(mnt, "a", 2, 3), children(mnt, "b", 3, 1)]
    for c in kids:
        c.wait_ready()
    r = inject(img, "--sector", byte // 512, "--count", 8, "--format", "json")
    assert r.exit_code == 4
    acts = {d["action"] for d in decisions(r)}
    assert "kill-mappers" not in acts and acts & {"rewrite-cached-page", "report-writeback-error"}
    assert "dax=inode" in json.loads(r.stdout)["mapping"]  # the default; no inode here has FS_XFLAG_DAX
    out = tmp_path / "exec.json"
    append_stdin = f"{sys.executable} -c 'import sys; open(sys.argv[1], \"ab\").write(sys.stdin.buffer.read())' {out}"
    r = inject(img, "--sector", byte // 512, "--count", 8, "--act", "--yes", "--format", "json",
               "--exec", append_stdin, "--action-log", tmp_path / "log")
    assert r.exit_code == 4, r.output
    for c in kids:
        assert c.got(timeout=0.5) is None and c.proc.poll() is None
    # --exec got each decision as exactly one JSON object, the same as the JSON output.
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got == decisions(r)
    assert byte == device_byte(os.path.join(mnt, "a"), 3 * PS)  # rewrite-cached-page is never implied
    # --rewrite-cached: the resident pages are written back. XFS copies a shared block on write, so the first
    # file rewritten moves off the block; the second, now its only owner, is rewritten in place (over the bad
    # media, which is what clears poison on pmem). Contents stay intact.
    r = inject(img, "--sector", byte // 512, "--count", 8, "--act", "--yes", "--rewrite-cached", "--format", "json",
               "--action-log", tmp_path / "log2")
    assert r.exit_code == 4, r.output
    os.sync()
    moved = [device_byte(os.path.join(mnt, name), 3 * PS) != byte for name in "ab"]
    assert sorted(moved) == [False, True]
    for name in "ab":
        with open(os.path.join(mnt, name), "rb") as fh:
            assert fh.read() == b"A" * (16 * PS)
    recs = [json.loads(x) for x in (tmp_path / "log2").read_text().splitlines()]
    assert [x["outcome"] for x in recs if x["action"] == "rewrite-cached-page"] == ["rewritten", "rewritten"]


def test_metadata_fault_shuts_down_only_with_act(live, tmp_path):
    img, mnt = live
    probe = os.path.join(mnt, "probe")
    r = inject(img, "--daddr", 1, "--assume-dax", "--format", "json")  # the AGF sector of AG 0
    assert r.exit_code == 8
    shut = [d for d in decisions(r) if d["action"] == "shutdown-filesystem"]
    assert shut and shut[0]["shutdown"] == "SHUTDOWN_CORRUPT_ONDISK" and shut[0]["mount"] == mnt
    with open(probe, "wb") as fh:  # the dry run left it alone
        fh.write(b"still fine")
    r = inject(img, "--daddr", 1, "--act", "--yes", "--format", "json", "--action-log", tmp_path / "log")
    assert r.exit_code == 8, r.output
    with pytest.raises(OSError) as e:
        with open(probe, "wb") as fh:
            fh.write(b"after")
    assert e.value.errno == 5  # EIO: the filesystem is shut down
    rec = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert any(x["action"] == "shutdown" and not x.get("error") for x in rec)


def test_act_without_yes_off_a_terminal_is_refused(live):
    img, _ = live
    r = inject(img, "--daddr", 1, "--act", "--format", "json")
    assert r.exit_code == 2 and "--yes" in r.stderr


# --- the kernel's arithmetic and flags, offline on the bundled sample (no root needed) ---

def test_flags_pre_remove_metadata_and_data():
    r = inject("--sample", "--daddr", 1, "--flags", "pre-remove", "--format", "json")
    ds = decisions(r)
    assert [d["action"] for d in ds] == ["shutdown-filesystem"] and ds[0]["shutdown"] == "SHUTDOWN_FORCE_UMOUNT"
    assert r.exit_code == 0  # metadata is not a failure during pre-remove: continue, then FORCE_UMOUNT
    r = inject("--sample", "--file", "/srv/db/table.dat", "--length", "8k", "--flags", "pre-remove",
               "--format", "json")
    acts = [d["action"] for d in decisions(r)]
    assert acts.count("kill-mappers") == 2 and acts.count("invalidate-mappings") == 2
    assert "restore-from-backup" not in acts
    assert all(d["when"] == "now" for d in decisions(r) if d["action"] == "kill-mappers")


def test_reverse_file_range_names_every_sharer_and_the_call_path():
    r = inject("--sample", "--file", "/srv/db/table.dat", "--file-offset", 4096, "--length", 4096,
               "--format", "json")
    assert r.exit_code == 4
    oc = json.loads(r.stdout)["outcomes"][0]
    kills = [d for d in oc["decisions"] if d["action"] == "kill-mappers"]
    assert sorted(p for d in kills for p in d["paths"]) == ["/srv/db/snapshot/table.dat", "/srv/db/table.dat"]
    assert all((d["pgoff"], d["pgcnt"]) == (1, 1) for d in kills)
    calls = [t["call"] for t in oc["trace"]]
    assert any(c.startswith("xfs_dax_translate_range: daddr = BTOBB(") for c in calls)
    assert any("xfs_rmap_query_range" in c for c in calls)
    assert oc["result"] == "Recovered"


def test_btobb_rounds_up_like_the_kernel():
    # xfs_dax_translate_range: daddr = BTOBB(offset): an unaligned start skips its partial first sector.
    from fsdaxctl.engine.chain import btobb

    assert [btobb(x) for x in (0, 1, 511, 512, 513, 4096)] == [0, 1, 1, 1, 2, 8]


def test_one_line_errors():
    for args, words in ((["--sample"], "exactly one event"), (["--sample", "--daddr", 1, "--pfn", 2], "exactly one"),
                        (["--sample", "--daddr", 1, "--flags", "bogus"], "unknown flag"),
                        (["--sample", "--pfn", 5], "nd layout")):
        r = inject(*args)
        assert r.exit_code == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_poison_drill_end_to_end_with_the_kernel(tmp_path):
    """--poison on a copy, then the real kernel mounts the copy, reports the damage in its log, and that log
    through --kmsg names the same structure as the drill's badblocks list and as the original event."""
    need_kernel()
    import shutil

    from tests.images import loop_mount, mkfs

    img, copy = tmp_path / "a.img", tmp_path / "copy.img"
    mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1"])
    shutil.copyfile(img, copy)
    r = CliRunner().invoke(cli, ["locate", str(img), "--inode", "128", "--format", "json", "--no-detail"])
    root = json.loads(r.stdout)["results"][0]
    before = img.read_bytes()
    r = inject(img, "--daddr", root["offset"] // 512, "--poison", copy, "--format", "json")
    assert r.exit_code == 8 and img.read_bytes() == before  # TARGET untouched
    assert (tmp_path / "copy.img.badblocks").read_text() == f"{root['offset'] // 512} 8\n"
    assert copy.read_bytes()[root["offset"]:root["offset"] + 16] == b"fsdaxctl poison!"
    marker = f"fsdaxctl-drill-{os.getpid()}-{id(tmp_path)}"
    with open("/dev/kmsg", "w") as fh:
        fh.write(marker + "\n")
    with pytest.raises(RuntimeError, match="Structure needs cleaning"):
        with loop_mount(copy):
            pass  # the kernel refuses: the root inode fails its verifier
    log = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    log = log[log.index(marker):]
    (tmp_path / "dmesg.txt").write_text(log)
    r = CliRunner().invoke(cli, ["locate", str(copy), "--kmsg", str(tmp_path / "dmesg.txt"), "--format", "json",
                                 "--no-detail"])
    res = json.loads(r.stdout)["results"]
    assert res and all(x["offset"] <= root["offset"] < x["offset"] + x["length"] for x in res), log
    assert all([o["owner"] for o in x["owners"]] == ["inodes"] for x in res)
    r = CliRunner().invoke(cli, ["locate", str(copy), "--badblocks", str(tmp_path / "copy.img.badblocks"),
                                 "--format", "json", "--no-detail"])
    [x] = json.loads(r.stdout)["results"]
    assert (x["offset"], [o["owner"] for o in x["owners"]]) == (root["offset"], ["inodes"])


def test_act_needs_a_live_system_and_options_are_checked_first(tmp_path):
    r = inject("--sample", "--daddr", 1, "--act", "--yes", "--format", "json")
    assert r.exit_code == 1 and "not mounted on this machine" in r.stderr
    copy = tmp_path / "copy.img"
    copy.write_bytes(b"")
    r = inject("--sample", "--daddr", 1, "--poison", copy, "--yes")
    assert r.exit_code == 2 and copy.read_bytes() == b"" and not (tmp_path / "copy.img.badblocks").exists()
    for args in (["--sector", 8, "--length", "4k"], ["--daddr", 1, "--length", 0]):
        r = inject("--sample", *args)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
