"""The command line: every bad input gets one line naming the problem, the right exit status, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from tests import xfsdb


def run(*args, input=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    assert "Traceback" not in result.output + result.stderr
    return result


def one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if not ln.startswith("fsdaxctl: warning:")]
    assert len(errors) == 1, result.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


@pytest.mark.parametrize("name", ["info", "fsmap", "locate"])
def test_help(name):
    r = run(name, "--help")
    assert r.exit_code == 0 and "Usage:" in r.output


def test_top_help_and_version():
    assert "locate" in run("--help").output
    r = subprocess.run([sys.executable, "-m", "fsdaxctl", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "fsdaxctl" in r.stdout


def test_console_script_runs():
    exe = shutil.which("fsdaxctl")
    assert exe, "the console script is not installed (pip install -e .)"
    r = subprocess.run([exe, "locate", "--offset", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing TARGET" in r.stderr and "Traceback" not in r.stderr


def test_not_xfs(tmp_path):
    img = tmp_path / "zeros.img"
    img.write_bytes(bytes(1 << 20))
    r = run("locate", img, "--offset", "0")
    assert r.exit_code == 1
    one_line_error(r, "not XFS", str(img))


def test_tiny_file(tmp_path):
    img = tmp_path / "tiny.img"
    img.write_bytes(b"XFSB")
    r = run("info", img)
    assert r.exit_code == 1
    one_line_error(r, "not XFS", "4 bytes")


def test_missing_target(tmp_path):
    r = run("info", tmp_path / "nope.img")
    assert r.exit_code == 1
    one_line_error(r, "cannot open", "No such file")


def test_directory_target(tmp_path):
    """A directory is a TARGET only as (a directory of) a mounted XFS: answered by its kernel."""
    r = run("info", tmp_path)
    assert r.exit_code == 1
    one_line_error(r, "is a directory but not on a mounted XFS filesystem")


@pytest.mark.parametrize("args,words", [
    (["--offset", "4096", "--length", "0"], ["length must be positive"]),
    (["--offset", "-4096"], ["--offset", "not a size"]),
    (["--offset", "4096", "--length", "-1"], ["--length", "not a size"]),
    (["--offset", "12q"], ["unknown unit"]),
    (["--offset", "1p"], ["past the end"]),
    (["--offset", "9223372036854775807", "--length", "2"], ["2^63"]),
    ([], ["nothing to locate"]),
])
def test_bad_ranges_on_command_line(mkfs_image, args, words):
    r = run("locate", mkfs_image, *args)
    assert r.exit_code == 2
    one_line_error(r, *words)


@pytest.mark.parametrize("text,words", [
    ("4096 4096\nbanana\n", ["line 2", "expected 'OFFSET LENGTH'"]),
    ("# header\n\n4096 4k\n8192 0\n", ["line 4", "length must be positive"]),
    ("4096 4096 12\n", ["line 1", "3 field(s)"]),
    ("0x10 zz\n", ["line 1", "length", "not a size"]),
    ("0x10 12zz\n", ["line 1", "length", "unknown unit"]),
    ("# nothing\n", ["no ranges"]),
    ("4096 4096\n1t 4k\n", ["line 2", "past the end"]),
])
def test_bad_ranges_file(mkfs_image, tmp_path, text, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    r = run("locate", mkfs_image, "--ranges", path)
    assert r.exit_code == 2
    one_line_error(r, str(path), *words)


def test_ranges_from_stdin_in_input_order(mkfs_image):
    r = run("locate", mkfs_image, "--ranges", "-", "--format", "json",
            input="# offset length\n8192 1k\n0 512s   # superblock\n\n4096 4096\n")
    assert r.exit_code == 8  # AG headers and btree blocks are metadata
    doc = json.loads(r.stdout)
    assert [(x["offset"], x["length"]) for x in doc["results"]] == [(8192, 1024), (0, 262144), (4096, 4096)]
    assert doc["results"][1]["owners"][0] == {
        "offset": 0, "length": 4096, "owner": "static-fs-metadata", "impact": "filesystem-metadata",
        "detail": {"ag": 0, "structures": ["superblock", "AGF", "AGI", "AGFL", "unused space after the AG headers"]}}


def test_both_range_forms_refused(mkfs_image, tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("0 1\n")
    r = run("locate", mkfs_image, "--ranges", p, "--offset", "0")
    assert r.exit_code == 2
    one_line_error(r, "not both")


def test_sample_and_target_refused(mkfs_image):
    r = run("info", mkfs_image, "--sample")
    assert r.exit_code == 2
    one_line_error(r, "not both")


def _xfs_db_write(img, *cmds):
    subprocess.run(["xfs_db", "-x", *sum((["-c", c] for c in cmds), []), img], check=True, capture_output=True)


def test_bad_superblock_crc(mkfs_image, tmp_path):
    img = tmp_path / "badcrc.img"
    shutil.copy(mkfs_image, img)
    with open(img, "r+b") as fh:
        fh.seek(108)  # sb_fname: changing it without updating sb_crc
        fh.write(b"X")
    r = run("info", img)
    assert r.exit_code == 1
    one_line_error(r, "bad CRC", "superblock", "daddr 0x0")


def test_v4_refused(tmp_path):
    from tests.images import mkfs

    img = tmp_path / "v4.img"
    mkfs(img, 64 << 20, ["-m", "crc=0"])
    r = run("locate", img, "--offset", "0")
    assert r.exit_code == 1
    one_line_error(r, "XFS v4", "not supported")


@pytest.mark.parametrize("incompat,words", [(0x1B | 0x10, ["NEEDSREPAIR", "xfs_repair"]),
                                            (0x1B | 0x40000000, ["incompatible feature bits 0x40000000"])])
def test_refused_features(mkfs_image, tmp_path, incompat, words):
    img = tmp_path / "feat.img"
    shutil.copy(mkfs_image, img)
    base = int(xfsdb.fields(str(img), "sb 0", "p features_incompat")["features_incompat"], 16)
    _xfs_db_write(str(img), "sb 0", f"write -d features_incompat {base | incompat:#x}")
    r = run("info", img)
    assert r.exit_code == 1
    one_line_error(r, *words)


def test_corrupt_rmapbt_leaf_reported_and_rest_answered(mkfs_image, tmp_path):
    img = str(tmp_path / "badrmap.img")
    shutil.copy(mkfs_image, img)
    agf = xfsdb.fields(img, "agf 1", "p")
    root = int(agf["rmaproot"])
    daddr = xfsdb.convert(img, f"agno 1 agbno {root} daddr")[0]
    with open(img, "r+b") as fh:
        fh.seek(daddr * 512 + 100)  # a record, not the header: only the CRC catches it
        fh.write(b"\xff\xff")
    ag1 = int(xfsdb.fields(img, "sb 0", "p agblocks")["agblocks"]) * 4096
    with open(tmp_path / "r.txt", "w") as fh:
        fh.write(f"0 4096\n{ag1} 4096\n")
    r = run("locate", img, "--ranges", tmp_path / "r.txt", "--format", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code & 1 and r.exit_code & 8
    assert doc["results"][0]["owners"][0]["owner"] == "static-fs-metadata"
    bad = doc["results"][1]["owners"]
    assert [p["owner"] for p in bad] == ["unknown"]
    assert "bad CRC" in bad[0]["detail"]["error"] and f"{daddr:#x}" in bad[0]["detail"]["error"]
    assert any("rmapbt block in AG 1" in w for w in doc["warnings"])


def test_truncated_image(mkfs_image, tmp_path):
    img = tmp_path / "short.img"
    with open(mkfs_image, "rb") as src, open(img, "wb") as dst:
        dst.write(src.read(1 << 20))
    size = os.path.getsize(mkfs_image)
    r = run("locate", img, "--offset", str(size - 4096), "--length", "4096", "--format", "json")
    assert r.exit_code == 1
    assert "image is truncated" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["results"][0]["owners"][0]["owner"] == "unknown"
    assert "past the end" in doc["results"][0]["owners"][0]["detail"]["error"]


def test_outside_filesystem_piece(mkfs_image, tmp_path):
    img = tmp_path / "grown.img"
    shutil.copy(mkfs_image, img)
    size = os.path.getsize(img)
    os.truncate(img, size + (1 << 20))
    r = run("locate", img, "--offset", str(size - 4096), "--length", "8192", "--format", "json")
    owners = json.loads(r.stdout)["results"][0]["owners"]
    assert owners[-1] == {"offset": size, "length": 4096, "owner": "outside-filesystem", "impact": "none"}
    assert owners[0]["owner"] == "free" and owners[0]["length"] == 4096
    assert r.exit_code == 0


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_every_format_renders(mkfs_image, fmt):
    r = run("locate", mkfs_image, "--offset", "0", "--length", "64k", "--format", fmt)
    assert r.exit_code == 8 and r.output
    if fmt == "jsonl":
        assert json.loads(r.stdout.splitlines()[0])["offset"] == 0
    r = run("fsmap", mkfs_image, "--format", fmt, "--end", "1m")
    assert r.exit_code == 0 and r.output, (r.stderr, r.stdout[-300:])
    if fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["owners"][0]["offset"] == 0 and sum(p["length"] for p in doc["owners"]) == 1 << 20
    r = run("info", mkfs_image, "--format", fmt)
    assert r.exit_code == 0 and r.output


def test_fsmap_bad_bounds(mkfs_image):
    r = run("fsmap", mkfs_image, "--start", "8k", "--end", "4k")
    assert r.exit_code == 2
    one_line_error(r, "--end")


def test_paths_format_usage(mkfs_image):
    r = run("locate", mkfs_image, "--offset", "0", "--format", "json", "--null")
    assert r.exit_code == 2
    one_line_error(r, "--null")
    r = run("locate", mkfs_image, "--offset", "0", "--format", "paths", "--no-detail")
    assert r.exit_code == 2
    one_line_error(r, "--no-detail")
    r = run("locate", mkfs_image, "--offset", "0", "--length", "64k", "--format", "paths")
    assert r.exit_code == 8 and r.stdout == ""  # metadata only: no file, no path


def test_a_long_ranges_list_shows_its_progress_on_a_terminal(mkfs_image, tmp_path):
    """A streamed ranges list, stdout to a file and stderr on a terminal: a status line of ranges answered, the
    list's length and the rate, ending in a newline, also before the one line of an error that stops the list;
    with stderr not a terminal, nothing of the kind."""
    listing = tmp_path / "r.txt"
    listing.write_text("".join(f"{i * 4096} 4096\n" for i in range(9000)))
    argv = [sys.executable, "-m", "fsdaxctl", "locate", mkfs_image, "--ranges", str(listing), "--format", "jsonl",
            "--no-detail"]
    rc, text = _stderr_on_a_terminal(argv)
    assert rc in (0, 4, 8, 12)
    last = text.split("\r")[-1]
    assert "ranges answered: 4,096 (the list has 9,000 lines)" in text and last.startswith("ranges answered: 9,000,")
    assert "/s" in last and last.endswith("\n")
    quiet = subprocess.run(argv, capture_output=True, text=True)
    assert "ranges answered" not in quiet.stderr
    listing.write_text("".join(f"{i * 4096} 4096\n" for i in range(5000)) + "bad line\n")
    rc, text = _stderr_on_a_terminal(argv)
    *status, error = text.splitlines()
    assert rc == 2 and status[-1].split("\r")[-1].startswith("ranges answered: 4,096,")
    assert "line 5001" in error and "ranges answered" not in error


def _stderr_on_a_terminal(argv) -> tuple[int, str]:
    """(exit status, stderr) of a command whose stderr is a terminal (a pty) and stdout not."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while chunk := _read_pty(master):
        seen += chunk
    proc.wait()
    os.close(master)
    return proc.returncode, seen.decode().replace("\r\n", "\n")  # the terminal turns newlines into CR LF


def _read_pty(fd: int) -> bytes:
    """What the other side wrote next; b"" once it has closed (Linux reports that as EIO)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
