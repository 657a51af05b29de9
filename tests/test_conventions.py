"""The conventions of README.md "Conventions" (issue 16), one test or more per line of it: units as xfsprogs'
cvtnum, limits, advice that matches the facts, one-line errors, closed pipes, the terminal (width, colour),
one column style, plain CSV, completion, the man page, JSON Schemas, --sample's location."""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fsdaxctl.cli import cli
from fsdaxctl.errors import UsageError
from fsdaxctl.units import parse_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = shutil.which("fsdaxctl") or "fsdaxctl"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The sample image (fsdaxctl/data): two reflinked files at 46235648, a bmbt block at 48398336, a preallocated
# (unwritten) extent at 49315840. The committed fixture 4k-reflink: a symlink's and a directory's blocks.
SHARED, BMBT, UNWRITTEN = 46235648, 48398336, 49315840
SYMLINK_BLOCK, DIR_BLOCK = 503808, 516096


def run(*args, input=None, env=None):
    r = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False, env=env)
    assert "Traceback" not in r.output + r.stderr
    return r


def sh(*args, env=None, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=e, **kw)


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if not ln.startswith("fsdaxctl: warning:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def fixture4k(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "4k-reflink.img"
    with open(os.path.join(ROOT, "tests", "data", "4k-reflink.img.xz"), "rb") as fh:
        path.write_bytes(lzma.decompress(fh.read()))
    return str(path)


# --- units and limits ---

@pytest.mark.parametrize("text,block,value", [
    ("8b", 4096, 8 * 4096), ("8B", 1024, 8 * 1024), ("3s", None, 1536), ("3S", None, 1536), ("2k", None, 2048),
    ("2K", None, 2048), ("1e", None, 1 << 60), ("0x10b", 512, 0x10b), ("0x10 b", 512, 16 * 512), ("7", None, 7),
    ("010", None, 10),
])
def test_cvtnum_suffixes(text, block, value):
    """xfsprogs' cvtnum: one letter, either case; b = a filesystem block, s = a 512-byte sector. As with cvtnum's
    strtoll, hex digits come first: 0x10b is 267 bytes. Unlike it, 010 is ten (not octal)."""
    assert parse_size(text, "--x", block) == value
    if block:
        assert parse_size(text, "--x", lambda: block) == value


def test_block_suffix_needs_a_filesystem():
    with pytest.raises(UsageError, match="filesystem blocks"):
        parse_size("8b", "--length")
    r = run("badblocks", "-", "--block-size", "2b", input="0 1\n")
    assert r.exit_code == 2 and "filesystem blocks" in one_error_line(r.stderr)


def test_length_in_blocks_on_the_command_line_and_in_a_ranges_file():
    r = run("locate", "--sample", "--offset", SHARED, "--length", "2b", "--format", "json")
    assert r.exit_code == 4
    assert json.loads(r.stdout)["results"][0]["length"] == 8192
    r = run("locate", "--sample", "--ranges", "-", "--format", "json", input=f"{SHARED // 4096}b 1b\n")
    assert [(x["offset"], x["length"]) for x in json.loads(r.stdout)["results"]] == [(SHARED, 4096)]


@pytest.mark.parametrize("args,length", [
    (["--daddr", "0x1", "--count", "2"], 1024),                 # sectors after --daddr
    (["--fsblock", "3", "--count", "2"], 2 * 4096),             # blocks after --fsblock
    (["--agno", "1", "--agbno", "3", "--count", "3"], 3 * 4096),  # blocks after --agno/--agbno
])
def test_count_in_the_address_unit(args, length):
    r = run("locate", "--sample", *args, "--format", "json")
    assert r.exit_code in (0, 4, 8), r.stderr
    assert json.loads(r.stdout)["results"][0]["length"] == length


def test_count_usage():
    r = run("locate", "--sample", "--daddr", "1", "--count", "2", "--length", "4k")
    assert r.exit_code == 2 and "not both" in one_error_line(r.stderr)
    r = run("locate", "--sample", "--offset", "0", "--count", "2")
    assert r.exit_code == 2 and "--count goes with" in one_error_line(r.stderr)
    r = run("inject", "--sample", "--daddr", "0x1", "--count", "2", "--format", "json")
    assert r.exit_code == 8
    assert "bblen = BTOBB(1024) = 2" in r.stdout


def test_sub_sector_length_is_warned():
    r = run("locate", "--sample", "--offset", SHARED, "--length", "8", "--format", "json")
    assert r.exit_code == 4
    assert "less than one 512-byte sector" in r.stderr and "8b" in r.stderr
    r = run("locate", "--sample", "--offset", SHARED, "--length", "512", "--format", "json")
    assert "sector" not in r.stderr


@pytest.mark.parametrize("offset,length", [(64 << 20, 4096), ((64 << 20) - 4096, 8192), ((63 << 20), 3 << 19)])
def test_ranges_past_the_end_are_usage_errors(offset, length):
    """Starting past the end, or only ending past it (the sample is 64 MiB): exit 2, one line."""
    r = run("locate", "--sample", "--offset", offset, "--length", length)
    assert r.exit_code == 2
    assert "past the end" in one_error_line(r.stderr)
    r = run("locate", "--sample", "--ranges", "-", input=f"0 4096\n{offset} {length}\n")
    assert r.exit_code == 2 and "stdin line 2" in one_error_line(r.stderr)
    r = run("inject", "--sample", "--sector", offset // 512, "--count", length // 512)
    assert r.exit_code == 2


def test_filesystem_places_past_the_end_are_usage_errors():
    r = run("locate", "--sample", "--daddr", (64 << 20) // 512 - 1, "--count", "2")
    assert r.exit_code == 2 and "past the end" in one_error_line(r.stderr)


def test_past_the_filesystem_inside_the_device_stays_outside_filesystem(tmp_path):
    from fsdaxctl.sample import sample_image

    img = tmp_path / "grown.img"
    shutil.copy(sample_image(), img)
    size = os.path.getsize(img)
    os.truncate(img, size + (1 << 20))
    r = run("locate", img, "--offset", size - 4096, "--length", "2b", "--format", "json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["results"][0]["owners"][-1]["owner"] == "outside-filesystem"
    r = run("locate", img, "--offset", size, "--length", (1 << 20) + 512)
    assert r.exit_code == 2


def test_fsmap_end_is_clipped_to_the_device():
    r = run("fsmap", "--sample", "--start", "60m", "--end", "10g", "--format", "json")
    assert r.exit_code == 0
    owners = json.loads(r.stdout)["owners"]
    assert owners[-1]["offset"] + owners[-1]["length"] == 64 << 20
    assert sum(p["length"] for p in owners) == 4 << 20


# --- advice that matches the facts ---

def test_unwritten_extent_is_no_data_lost():
    r = run("locate", "--sample", "--offset", UNWRITTEN, "--length", "1b", "--format", "table")
    assert "restore" not in r.stdout
    assert "no data lost" in r.stdout and "re-allocate" in r.stdout
    assert "file space (unwritten: no data)" in r.stdout
    doc = json.loads(run("locate", "--sample", "--offset", UNWRITTEN, "--length", "1b", "--format", "json").stdout)
    assert doc["results"][0]["owners"][0]["impact"] == "file-unwritten"
    r = run("inject", "--sample", "--daddr", UNWRITTEN // 512, "--format", "json")
    actions = [d["action"] for d in json.loads(r.stdout)["outcomes"][0]["decisions"]]
    assert "restore-from-backup" not in actions and "reallocate-space" in actions


@pytest.mark.parametrize("offset,impact", [(SYMLINK_BLOCK, "symlink"), (DIR_BLOCK, "directory")])
def test_directory_and_symlink_blocks_are_metadata_everywhere(fixture4k, offset, impact):
    """One rule: summary, impact, exit bits and advice agree, in locate (with and without detail) and inject."""
    r = run("locate", fixture4k, "--offset", offset, "--length", "1b", "--format", "table")
    assert r.exit_code == 8
    assert f"{offset} + 4096 (4 KiB): file metadata" in r.stdout
    assert f"xfs_repair (damaged: {impact})" in r.stdout and "restore" not in r.stdout
    # Real processes: the directory's entries include names that are not UTF-8 (escaped by the console script).
    doc = json.loads(sh("locate", fixture4k, "--offset", offset, "--length", "1b", "--format", "json").stdout)
    assert {p["impact"] for p in doc["results"][0]["owners"]} == {impact}
    assert sh("locate", fixture4k, "--offset", offset, "--length", "1b", "--no-detail",
              "--format", "json").returncode == 8
    r = sh("inject", fixture4k, "--daddr", offset // 512, "--format", "json")
    assert r.returncode == 8
    decisions = json.loads(r.stdout)["outcomes"][0]["decisions"]
    assert "repair-filesystem" in [d["action"] for d in decisions]
    assert "restore-from-backup" not in [d["action"] for d in decisions]


def test_file_data_advice_uses_the_one_range_form():
    r = run("locate", "--sample", "--offset", SHARED, "--length", "8k", "--format", "table")
    assert "advice: restore from backup: /srv/db/snapshot/table.dat bytes 0..8191" in r.stdout
    assert r.exit_code == 4


def test_flags_column_holds_flags_only():
    r = run("locate", "--sample", "--offset", BMBT, "--length", "4k", "--format", "table")
    header, _, row = r.stdout.splitlines()[1:4]
    cols = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = re.findall(r"\S+(?: \S+)*", header)
    flags = row[cols[names.index("FLAGS")]:cols[names.index("FLAGS") + 1]].strip()
    assert flags == "extent-map"
    assert "structure: data fork extent map (bmbt) block" in row[cols[names.index("DETAIL")]:]


# --- errors and exit status ---

@pytest.mark.parametrize("args", [
    ["locate", "--sample", "--ranges", "/nonexistent/ranges.txt"],
    ["locate", "--sample", "--bogus-option"],
    ["locate", "--sample", "--format", "xml"],
    ["lcoate", "--sample"],
    ["info", "--partition", "x"],
])
def test_click_usage_errors_are_one_line(args):
    r = sh(*args)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert line.startswith("fsdaxctl: ") and "Usage:" not in r.stderr and "--help" in line


def test_closed_pipe_dies_of_sigpipe_quietly():
    """`fsdaxctl fsmap img | head -1`: like coreutils, killed by SIGPIPE (the shell says 141), nothing on stderr."""
    p = subprocess.Popen([EXE, "fsmap", "--sample", "--format", "jsonl"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGPIPE and err == b""
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {EXE} fsmap --sample --format table | head -1; "
                                      "echo status ${PIPESTATUS[0]}"], capture_output=True, text=True)
    assert r.stdout.splitlines()[-1] == "status 141" and r.stderr == ""
    # A short output may fit the pipe before the reader goes: then it is simply written (exit 0). Never exit 1.
    p = subprocess.Popen([EXE, "info", "--sample", "--format", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(700)
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, -signal.SIGPIPE) and err == b""


def test_badblocks_help_says_what_needs_on():
    text = run("badblocks", "--help").output
    for opt in ("--daddr N", "--fsblock N", "--inode INO", "--file PATH", "--offset TEXT", "--partition N",
                "--dm-table [NAME=]FILE"):
        block = text[text.index("  " + opt):text.index("  " + opt) + 200]
        assert "[needs --on]" in block, opt
    assert "[needs --on]" not in text[text.index("  --pfn PFN"):text.index("  --pfn PFN") + 60]
    r = run("badblocks", "-", "--inode", "131", input="0 1\n")
    assert r.exit_code == 2 and "--on TARGET" in one_error_line(r.stderr)


def test_flags_help_and_error_list_the_same_values():
    from fsdaxctl.engine.flags import NAMES

    help_text = " ".join(run("inject", "--help").output.split())
    err = one_error_line(run("inject", "--sample", "--daddr", "1", "--flags", "bogus").stderr)
    for name in NAMES:
        assert name in help_text and name in err


def test_one_range_form_everywhere():
    """Inclusive ranges are written A..B (as xfs_io and the kernel's messages do); never A-B."""
    for args in (["locate", "--sample", "--offset", SHARED, "--length", "8k", "--format", "table"],
                 ["inject", "--sample", "--daddr", SHARED // 512, "--format", "table", "--trace"]):
        out = run(*args).stdout
        assert re.search(r"\b\d+\.\.\d+\b", out), args
        assert not re.search(r"bytes \d+-\d+", out), args


# --- the terminal ---

def in_terminal(cmd: str, cols: int, env=None) -> str:
    """Run `cmd` in a real pseudo-terminal of `cols` columns (script(1)) and return what it printed."""
    if not shutil.which("script"):
        pytest.skip("script(1) not installed (bsdutils)")
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    e.update(env or {}, TERM="xterm")
    r = subprocess.run(["script", "-qec", f"stty cols {cols} rows 50; {cmd}", "/dev/null"], capture_output=True,
                       text=True, env=e, stdin=subprocess.DEVNULL)
    return r.stdout.replace("\r\n", "\n")


def test_tables_fit_the_terminal_width():
    for cols in (100, 130):
        out = in_terminal(f"{EXE} --color=never locate --sample --offset {BMBT} --length 4k", cols)
        assert "extent-map" in out and "many-" in out
        assert max(len(ANSI.sub("", ln)) for ln in out.splitlines()) <= cols, out
    out = in_terminal(f"{EXE} --color=never locate --sample --offset {SHARED} --length 8k", 60)
    assert "    paths: /srv/db/table.dat" in out  # too narrow to wrap: the paths go on lines of their own
    piped = sh("locate", "--sample", "--offset", BMBT, "--length", "4k", "--format", "table",
               env={"COLUMNS": ""}).stdout
    assert max(map(len, piped.splitlines())) > 100  # a file or pipe gets whole lines


def test_colour_on_a_terminal_honours_no_color_and_the_option():
    cmd = f"{EXE} locate --sample --offset {SHARED} --length 8k"
    assert ANSI.search(in_terminal(cmd, 200))
    assert not ANSI.search(in_terminal(cmd, 200, {"NO_COLOR": "1"}))
    assert not ANSI.search(in_terminal(cmd.replace("locate", "--color=never locate"), 200))
    assert not ANSI.search(sh("locate", "--sample", "--offset", SHARED, "--format", "table").stdout)
    r = sh("--color=always", "locate", "--sample", "--offset", SHARED, "--format", "table",
           "--offset", SHARED, "--length", "8")
    assert ANSI.search(r.stdout) and ANSI.search(r.stderr)  # owner kinds, and the warning's prefix
    assert ANSI.sub("", r.stdout) == sh("locate", "--sample", "--offset", SHARED, "--format", "table",
                                        "--offset", SHARED, "--length", "8").stdout


def test_one_column_style():
    """Every table's column titles: upper case, words apart by spaces (no snake_case)."""
    def titles(text, line):
        return re.findall(r"\S+(?: \S+)*", text.splitlines()[line])

    tables = {"info": (run("info", "--sample", "--format", "table").stdout.split("\n\n")[1], 0),
              "locate": (run("locate", "--sample", "--offset", SHARED, "--format", "table").stdout, 1),
              "fsmap": (run("fsmap", "--sample", "--format", "table", "--end", "1m").stdout, 0),
              "badblocks": (run("badblocks", "-", "--format", "table", input="0 8\n").stdout, 0)}
    inject = run("inject", "--sample", "--daddr", "1", "--format", "table").stdout
    tables["inject"] = (inject[inject.index("DECISION"):], 0)
    for name, (text, line) in tables.items():
        ts = titles(text, line)
        assert len(ts) >= 4, (name, ts)
        for t in ts:
            assert t == t.upper() and "_" not in t, (name, t)
    assert "FREE BLOCKS" in titles(*tables["info"])


def test_csv_cells_are_plain_values():
    r = run("locate", "--sample", "--offset", SHARED, "--length", "8k", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout, newline="")))
    assert {row["paths"] for row in rows} == {"/srv/db/snapshot/table.dat", "/srv/db/table.dat"}
    r = run("locate", "--sample", "--ranges", "-", "--format", "csv", input=f"0 4k\n{BMBT} 4k\n")
    for row in csv.DictReader(io.StringIO(r.stdout, newline="")):
        assert row["detail"] and not row["detail"].startswith("{") and "[" not in row["detail"]
    hard = run("locate", "--sample", "--offset", 53248, "--format", "csv").stdout  # /etc/hosts, two links
    assert next(csv.DictReader(io.StringIO(hard)))["paths"] == "/etc/hosts|/etc/hosts.bak"


# --- docs and discoverability ---

def test_completion_scripts():
    for shell, word in (("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        r = sh("completion", shell)
        assert r.returncode == 0 and word in r.stdout and "_FSDAXCTL_COMPLETE" in r.stdout, shell
    r = subprocess.run(["bash", "-c", f'eval "$({EXE} completion bash)" && complete -p fsdaxctl'],
                       capture_output=True, text=True)
    assert "fsdaxctl" in r.stdout
    r = sh(env={"_FSDAXCTL_COMPLETE": "bash_complete", "COMP_WORDS": "fsdaxctl lo", "COMP_CWORD": "1"})
    assert "plain,locate" in r.stdout.split()
    r = sh(env={"_FSDAXCTL_COMPLETE": "bash_complete", "COMP_WORDS": "fsdaxctl locate --for", "COMP_CWORD": "2"})
    assert "plain,--format" in r.stdout.split()


def test_man_pages_are_generated_from_the_commands(tmp_path):
    if not shutil.which("man"):
        pytest.skip("man not installed")
    pytest.importorskip("click_man")
    from fsdaxctl.commands.manpage import write_pages

    pages = write_pages(str(tmp_path))
    assert {os.path.basename(p) for p in pages} >= {"fsdaxctl.1", "fsdaxctl-locate.1", "fsdaxctl-inject.1",
                                                      "fsdaxctl-completion.1"}
    text = subprocess.run(["man", "-l", str(tmp_path / "fsdaxctl-locate.1")], capture_output=True, text=True,
                          env=dict(os.environ, MANWIDTH="200")).stdout
    assert "--count" in text and "--no-detail" in text  # the options as click knows them, not a copy
    top = subprocess.run(["man", "-l", str(tmp_path / "fsdaxctl.1")], capture_output=True, text=True).stdout
    assert "fsdaxctl-locate(1)" in top


def test_help_says_where_the_man_page_is():
    text = " ".join(run("--help").output.split())
    assert "Manual: " in text
    from fsdaxctl.commands.manpage import where

    assert where() in text


def test_wheel_installs_the_man_page(tmp_path):
    """The build hook (setup.py) puts fsdaxctl.1 in the package and in PREFIX/share/man/man1."""
    pytest.importorskip("click_man")
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path), ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "fsdaxctl/man/fsdaxctl.1" in names
    assert any(n.endswith(".data/data/share/man/man1/fsdaxctl.1") for n in names)
    assert {f"fsdaxctl/schemas/{n}.schema.json" for n in ("locate", "fsmap", "info", "inject", "badblocks")} \
        <= set(names)


def validator(name):
    jsonschema = pytest.importorskip("jsonschema")
    from fsdaxctl.schemas import load

    schema = load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema), schema


def sub_validator(name, ref):
    import jsonschema

    _, schema = validator(name)
    return jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"})


def test_schemas_validate_real_outputs(fixture4k, tmp_path):
    v, _ = validator("locate")
    ranges = f"0 4k\n{SHARED} 8k\n{BMBT} 4k\n{UNWRITTEN} 1b\n{(64 << 20) - 4096} 4k\n"
    for extra in ([], ["--explain"], ["--no-detail"]):
        r = run("locate", "--sample", "--ranges", "-", "--format", "json", *extra, input=ranges)
        v.validate(json.loads(r.stdout))
    bad = tmp_path / "bb"
    bad.write_text("0 8\n")
    r = run("locate", fixture4k, "--badblocks", f"sdz={bad}", "--badblocks", f"sdb={bad}", "--device", "sdb",
            "--format", "json", "--explain")
    doc = json.loads(r.stdout)
    v.validate(doc)
    assert doc.get("not_on_filesystem")  # the sdz list: never looked at, listed with why
    lines = run("locate", fixture4k, "--badblocks", f"sdz={bad}", "--badblocks", f"sdb={bad}", "--device", "sdb",
                "--format", "jsonl").stdout.splitlines()
    results, dropped = sub_validator("locate", "result"), sub_validator("locate", "dropped")
    for line in lines:
        item = json.loads(line)
        (dropped if "dropped" in item else results).validate(item)
    v, _ = validator("fsmap")
    v.validate(json.loads(run("fsmap", fixture4k, "--format", "json").stdout))
    piece = sub_validator("fsmap", "piece")
    for line in run("fsmap", "--sample", "--format", "jsonl").stdout.splitlines():
        piece.validate(json.loads(line))
    v, _ = validator("info")
    v.validate(json.loads(run("info", fixture4k, "--format", "json").stdout))
    v, _ = validator("inject")
    for args in (["--daddr", "0x1"], ["--sector", SHARED // 512, "--count", "16"], ["--daddr", DIR_BLOCK // 512],
                 ["--daddr", UNWRITTEN // 512, "--sample"], ["--daddr", "0x1", "--flags", "pre-remove"],
                 ["--file", "/frag/gappy", "--length", "64k"]):
        tgt = [] if "--sample" in args else [fixture4k]
        r = sh("inject", *tgt, *args, "--format", "json")
        assert r.returncode != 2, r.stderr
        v.validate(json.loads(r.stdout))
    v, _ = validator("badblocks")
    v.validate(json.loads(run("badblocks", "-", "--format", "json", input="0 8\n16 8\n").stdout))
    v.validate(json.loads(run("badblocks", "-", "--on", fixture4k, "--format", "json", input="0 8\n").stdout))


def test_schema_catches_a_renamed_field():
    jsonschema = pytest.importorskip("jsonschema")
    v, _ = validator("locate")
    doc = json.loads(run("locate", "--sample", "--offset", SHARED, "--format", "json").stdout)
    doc["results"][0]["owners"][0]["inode_number"] = doc["results"][0]["owners"][0].pop("inode")
    with pytest.raises(jsonschema.ValidationError):
        v.validate(doc)


def test_sample_says_where_it_is_unpacked(tmp_path):
    r = sh("info", "--sample", "--format", "json", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert r.returncode == 0
    where = str(tmp_path / "fsdaxctl")
    assert f"unpacked the sample image (64 MiB) to {where}/sample-" in r.stderr
    assert sh("info", "--sample", "--format", "json", env={"XDG_CACHE_HOME": str(tmp_path)}).stderr == ""
    help_text = " ".join(run("locate", "--help").output.split())
    assert "~/.cache/fsdaxctl" in help_text and "XDG_CACHE_HOME" in help_text
