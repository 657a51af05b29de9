"""The corruption-chain engine: `fsdaxctl inject`, its decisions, and --act on a real loop-mounted XFS.

The machines that run these tests have no pmem, so the live tests use --assume-dax (the policy treats every
mapping as DAX) and check with real processes who is signalled: the children map page ranges of files, two of
them reflinked, and report any SIGBUS they receive. Where the kernel's own chain is the reference (BTOBB
rounding, pgoff/pgcnt, flags), the expectations are computed from fs/xfs/xfs_notify_failure.c's formulas.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from tests.conftest import need_kernel
from tests.kernel import fiemap
from tests.test_live import child_pool, mounted_abc

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
    img = tmp_path / "live.img"
    with mounted_abc(img) as mnt:
        freeze(mnt)
        yield str(img), mnt


@pytest.fixture
def children(tmp_path):
    with child_pool(tmp_path) as start:
        yield lambda mnt, name, *args: start(os.path.join(mnt, name), *args)


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


def test_locate_act_on_a_badblocks_list(live, children, tmp_path):
    """The monitoring path: a badblocks list of TARGET, `locate --act`: the mapper of the damaged page is
    signalled, the mapper of the next page is not."""
    img, mnt = live
    byte = device_byte(os.path.join(mnt, "c"), 5 * PS)
    hit, spared = children(mnt, "c", 5, 1), children(mnt, "c", 6, 1)
    for c in (hit, spared):
        c.wait_ready()
    bb = tmp_path / "badblocks"
    bb.write_text(f"{byte // 512} 8\n")
    r = CliRunner().invoke(cli, ["locate", img, "--badblocks", str(bb), "--assume-dax", "--act", "--yes",
                                 "--format", "json", "--action-log", str(tmp_path / "log")])
    assert r.exit_code == 4, r.output
    assert hit.got() == (7, 0, os.getpid()) and spared.got(timeout=0.5) is None


def test_nothing_runs_when_the_second_walk_differs(tmp_path):
    from fsdaxctl.engine.act import act
    from fsdaxctl.engine.chain import Decision, Mapping, Outcome
    from fsdaxctl.errors import FsdaxError

    def outcome(pids):
        return [Outcome(event={}, flags=0, decisions=[Decision("kill-mappers", "x", inode=131, pgoff=0, pgcnt=1,
                                                               mappers=[{"pid": p, "comm": "t"} for p in pids])])]
    mapping = Mapping()
    mapping.mount = str(tmp_path)  # pretend mounted; nothing may be signalled anyway
    log = tmp_path / "log"
    with open(log, "w") as fh, pytest.raises(FsdaxError, match="changed since the dry run"):
        act(outcome([os.getpid()]), mapping, rerun=lambda: outcome([os.getpid(), 1]), yes=True, sig="SIGBUS",
            exec_cmd=None, log=fh)
    assert log.read_text() == ""


def test_chain_splits_a_range_at_the_ag_boundary(odd_ag_image):
    """AGs of 5001 blocks: a range over the last block of AG 0 and the first of AG 1 is two rmap queries with the
    kernel's low/high keys (xfs_dax_notify_dev_failure), and every owner is told."""
    byte = 5001 * 4096 - 4096
    r = inject(odd_ag_image, "--daddr", byte // 512, "--length", 8192, "--format", "json")
    calls = [t["call"] for t in json.loads(r.stdout)["outcomes"][0]["trace"]]
    assert any("AG 0: xfs_rmap_query_range(agbno 5000..5000)" in c for c in calls), calls
    assert any("AG 1: xfs_rmap_query_range(agbno 0..0)" in c for c in calls), calls
    assert any("start_bno = AG 0 block 5000, end_bno = AG 1 block 0" in c for c in calls)


def test_pgcnt_of_a_block_smaller_than_a_page_is_zero_as_in_the_kernel():
    """xfs_failure_pgcnt: FSB_TO_B(1 block of 1 KiB) >> PAGE_SHIFT = 0: mf_dax_kill_procs gets count 0."""
    from fsdaxctl.engine.chain import Mapping, _failure_fn, Outcome
    from fsdaxctl.xfs.owners import Piece

    out = Outcome(event={}, flags=0)
    p = Piece(offset=1 << 20, length=1024, owner="file", inode=131, fork="data", file_offset=3072)
    _failure_fn(None, p, 0, Mapping(), out, 0)
    kill = next(d for d in out.decisions if d.action == "kill-mappers")
    assert (kill.pgoff, kill.pgcnt) == (0, 0)
    assert any("pgcnt is 0" in t for _, t in out.trace)


def test_range_past_the_filesystem_end_is_clipped_like_xfs_dax_translate_range(tmp_path):
    from fsdaxctl.sample import sample_image

    last = (64 << 20) - 512  # the sample's last sector
    # Past the end of TARGET is a usage error (README.md "Conventions")...
    assert inject("--sample", "--daddr", last // 512, "--length", 4096, "--format", "json").exit_code == 2
    # ...past the filesystem but inside the device, the kernel's clipping to the filesystem applies.
    img = tmp_path / "grown.img"
    shutil.copy(sample_image(), img)
    os.truncate(img, (64 << 20) + (1 << 20))
    r = inject(img, "--daddr", last // 512, "--length", 4096, "--format", "json")
    oc = json.loads(r.stdout)["outcomes"][0]
    calls = [t["call"] for t in oc["trace"]]
    assert any(f"BTOBB({last}) = {last // 512:#x}, bblen = BTOBB(512) = 1" in c for c in calls), calls
    assert oc["result"] == "Recovered" and r.exit_code == 0


def test_trace_flag_prints_the_call_path():
    plain = inject("--sample", "--daddr", 1, "--format", "table")
    traced = inject("--sample", "--daddr", 1, "--format", "table", "--trace")
    assert "xfs_rmap_query_range" not in plain.stdout and "--trace" in plain.stdout
    assert "  xfs_dax_translate_range: daddr = BTOBB(512)" in traced.stdout


def test_act_refuses_when_the_disk_is_behind_the_kernel(live, children, tmp_path):
    """A file written after the last freeze: its extent may be only in the log, so the offline answer can miss
    it. --act asks the kernel (GETFSMAP) first and does nothing on a disagreement; if the disk has caught up
    (the AIL wrote it back already), the answers agree and the mapper is signalled."""
    from fsdaxctl.engine.live import kernel_data_owners

    img, mnt = live
    path = os.path.join(mnt, "late")
    with open(path, "wb") as fh:
        fh.write(b"L" * (4 * PS))
    os.sync()  # data and log on disk; the rmapbt in place only when the log is written back
    ino = os.stat(path).st_ino
    byte = device_byte(path, 0)
    assert kernel_data_owners(mnt, byte, 4096) == {ino}
    child = children(mnt, "late", 0, 1)
    child.wait_ready()
    offline = CliRunner().invoke(cli, ["locate", img, "--offset", str(byte), "--length", "4096", "--format",
                                       "json", "--no-detail"])
    on_disk = {o.get("inode") for o in json.loads(offline.stdout)["results"][0]["owners"]}
    r = inject(img, "--sector", byte // 512, "--count", 8, "--assume-dax", "--act", "--yes", "--format", "json",
               "--action-log", tmp_path / "log")
    if ino in on_disk:
        assert r.exit_code == 4 and child.got() == (7, 0, os.getpid())
    else:
        assert r.exit_code == 1 and "behind the mounted filesystem" in r.stderr, r.stderr
        assert child.got(timeout=0.5) is None
        assert f"the mounted filesystem's kernel says file data of inode(s) [{ino}]" in offline.stderr
        assert offline.exit_code & 1  # locate says so too, and that the job is not done
