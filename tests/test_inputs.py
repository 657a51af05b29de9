"""Input parsers: sysfs and e2fsprogs bad-block lists, ndctl JSON, ddrescue mapfiles, kernel logs.

Samples are built the way the producing program prints them: the format string is quoted from its source next
to the sample, and Python's % applies it (it agrees with C for %llu, %u, %llx, %#lx of a non-zero value, %d,
%s; C prints %#lx of 0 as "0", so that case is written out). Where the real program is installed (GNU ddrescue,
e2fsprogs badblocks) its own output is parsed too, and some kernel lines are copied verbatim from what Linux
6.18 logged on this kind of machine when XFS images were damaged on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import need_kernel, need_tool
from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import InodeRef, Parsed
from fsdaxctl.inputs.badblocks import parse_e2fs_badblocks, parse_sysfs_badblocks, space_for_sysfs_path
from fsdaxctl.inputs.ddrescue import parse_ddrescue_mapfile
from fsdaxctl.inputs.kmsg import parse_kmsg
from fsdaxctl.inputs.ndctl import parse_ndctl_json
from fsdaxctl.stack import BLOCK, FS, PHYS, REGION, Extent, Space
from fsdaxctl.units import MAX_BYTES

PMEM0 = Space(BLOCK, "pmem0")
TARGET = Space(BLOCK)


def spans(parsed: Parsed) -> list[tuple]:
    return [(e.space, e.offset, e.length) for e in parsed.extents]


def skipped_lines(parsed: Parsed) -> list[str]:
    return [where for where, _ in parsed.skipped]


def only_usage_errors(fn, *args, **kw):
    """Call a parser on hostile input: a Parsed or a UsageError, nothing else."""
    try:
        return fn(*args, **kw)
    except UsageError as e:
        assert str(e).strip() and "\n" not in str(e)  # one clear line
        return None


# --- sysfs badblocks --------------------------------------------------------------------------------------------

# block/badblocks.c badblocks_show(): snprintf(page+len, PAGE_SIZE-len, "%llu %u\n", s << shift, length << shift)
BB_FMT = "%llu %u\n".replace("%llu", "%d").replace("%u", "%d")


def test_sysfs_entries_are_512_byte_sectors():
    lines = [BB_FMT % (2048, 8), BB_FMT % (0, 1), BB_FMT % (123456789, 4096)]
    p = parse_sysfs_badblocks(lines, "badblocks", PMEM0)
    assert spans(p) == [(PMEM0, 2048 * 512, 8 * 512), (PMEM0, 0, 512), (PMEM0, 123456789 * 512, 4096 * 512)]
    assert [e.origin for e in p.extents] == ["badblocks line 1", "badblocks line 2", "badblocks line 3"]
    assert p.extents[0].note == "sector 2048, 8 sectors" and p.extents[1].note == "sector 0, 1 sector"
    assert not p.skipped


@pytest.mark.parametrize("content", [[], [""], ["\n"], b"", b"\n"])
def test_sysfs_empty_is_no_bad_blocks(content):
    # block/genhd.c disk_badblocks_show(): a disk without a list prints "\n"; an empty list prints nothing
    p = parse_sysfs_badblocks(content, "badblocks", PMEM0)
    assert p == Parsed()


def test_sysfs_bad_lines_are_counted_and_good_lines_kept():
    lines = [
        BB_FMT % (8, 8),       # 1 good
        "0x10 8\n",            # 2 hex: the kernel prints decimal
        "-1 8\n",              # 3 negative
        "16 -8\n",             # 4 negative count
        "24\n",                # 5 truncated
        "32 0\n",              # 6 zero length
        "%d 1\n" % ((MAX_BYTES + 1) // 512),  # 7 past 2^63 - 1
        "40 8 9\n",            # 8 extra field
        b"\xff\xfe 8\n",       # 9 not UTF-8
        "48 8\n",              # 10 good
        "\n",                  # 11 blank: nothing
        "abc def\n",           # 12 words
        "56 4.5\n",            # 13 fraction
    ]
    p = parse_sysfs_badblocks(lines, "bad.txt", PMEM0)
    assert spans(p) == [(PMEM0, 8 * 512, 4096), (PMEM0, 48 * 512, 4096)]
    assert skipped_lines(p) == [f"bad.txt line {n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 12, 13)]
    reasons = dict(p.skipped)
    assert "hex" in reasons["bad.txt line 2"] and "negative" in reasons["bad.txt line 3"]
    assert "truncated" in reasons["bad.txt line 5"] and reasons["bad.txt line 6"] == "zero length"
    assert "2^63" in reasons["bad.txt line 7"] and reasons["bad.txt line 9"] == "not UTF-8 text"


def test_sysfs_largest_entry_that_fits():
    sectors = MAX_BYTES // 512  # the last whole sector below 2^63 - 1
    p = parse_sysfs_badblocks([f"{sectors - 1} 1\n"], "bb", PMEM0)
    assert spans(p) == [(PMEM0, (sectors - 1) * 512, 512)]


def test_sysfs_nothing_usable_is_one_clear_error():
    with pytest.raises(UsageError, match=r"^bad\.txt: no usable entries \(2 lines skipped; first: bad\.txt line 1: "):
        parse_sysfs_badblocks(["hello world\n", "0x1 0x2\n"], "bad.txt", PMEM0)


def test_sysfs_list_cut_at_one_page():
    # badblocks_show() stops at PAGE_SIZE and sysfs returns PAGE_SIZE - 1 bytes: the last entry is a fragment
    text = "".join(BB_FMT % (1000000 + 8 * i, 8) for i in range(500))[:4095]
    lines = text.splitlines(keepends=True)
    assert not lines[-1].endswith("\n")
    p = parse_sysfs_badblocks(lines, "region0/badblocks", Space(REGION, "region0"))
    assert len(p.extents) == len(lines) - 1
    assert skipped_lines(p) == [f"region0/badblocks line {len(lines)}"]
    assert "page size" in p.skipped[0][1]
    # the same text without line ends (str.splitlines) is caught too; a shorter list is not touched
    assert skipped_lines(parse_sysfs_badblocks(text.splitlines(), "x", PMEM0)) == [f"x line {len(lines)}"]
    assert not parse_sysfs_badblocks(text[:4000].rsplit("\n", 1)[0].splitlines(), "x", PMEM0).skipped


@pytest.mark.parametrize("path,space", [
    ("/sys/block/pmem0/badblocks", Space(BLOCK, "pmem0")),
    ("/sys/class/block/pmem1.2/badblocks", Space(BLOCK, "pmem1.2")),
    ("/sys/devices/LNXSYSTM:00/ACPI0012:00/ndbus0/region0/namespace0.0/block/pmem0/badblocks", Space(BLOCK, "pmem0")),
    ("/evidence/host1/sys/block/pmem0/badblocks", Space(BLOCK, "pmem0")),
    ("sys/block/sdb/badblocks", Space(BLOCK, "sdb")),
    ("/sys/bus/nd/devices/region0/badblocks", Space(REGION, "region0")),
    ("/copy/sys/bus/nd/devices/region12/badblocks", Space(REGION, "region12")),
    # the nfit_test path ndctl's test/daxdev-errors.sh reads
    ("/sys/bus/platform/devices/nfit_test.0/ndbus1/region3/badblocks", Space(REGION, "region3")),
    ("/sys/block/pmem0/size", None),
    ("/home/me/badblocks", None),
    ("/sys/bus/nd/devices/namespace0.0/badblocks", None),
    ("badblocks.txt", None),
])
def test_space_for_sysfs_path(path, space):
    assert space_for_sysfs_path(path) == space


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, (1 << 40)), st.integers(1, (1 << 32) - 1)), max_size=30),
       st.sampled_from(["\n", "\r\n", ""]))
def test_sysfs_roundtrip(entries, end):
    lines = [f"{s} {c}{end}" for s, c in entries]
    p = parse_sysfs_badblocks(lines, "bb", PMEM0)
    assert spans(p) == [(PMEM0, s * 512, c * 512) for s, c in entries]
    assert not p.skipped


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_sysfs_random_bytes_only_usage_errors(data):
    p = only_usage_errors(parse_sysfs_badblocks, data.splitlines(keepends=True), "fuzz", PMEM0)
    if p is not None:
        assert all(e.length > 0 and e.offset >= 0 and e.end <= MAX_BYTES for e in p.extents)


# --- e2fsprogs badblocks -o ---------------------------------------------------------------------------------------

# e2fsprogs misc/badblocks.c bb_output(): fprintf(out, "%lu\n", (unsigned long) bad) -- one block a line, no ranges
E2FS_FMT = "%lu\n".replace("%lu", "%d")


@pytest.mark.parametrize("block_size", [512, 1024, 4096, 65536])
def test_e2fs_blocks_in_the_b_size(block_size):
    p = parse_e2fs_badblocks([E2FS_FMT % b for b in (0, 192, 193)], "bb.out", block_size, TARGET)
    assert spans(p) == [(TARGET, b * block_size, block_size) for b in (0, 192, 193)]  # not merged
    assert p.extents[1].note == f"block 192 of {block_size} bytes"


@pytest.mark.parametrize("block_size", [0, 256, 1000, 3072, -4096, 4096.0])
def test_e2fs_block_size_must_be_a_power_of_two(block_size):
    with pytest.raises(UsageError, match="power of two"):
        parse_e2fs_badblocks(["1\n"], "bb.out", block_size, TARGET)


def test_e2fs_bad_lines():
    p = parse_e2fs_badblocks(["5\n", "-5\n", "0x5\n", "5 6\n", "five\n", b"\xc3\x28\n", "\n", "7\n",
                              "%d\n" % (MAX_BYTES // 4096)], "bb.out", 4096, TARGET)
    assert spans(p) == [(TARGET, 5 * 4096, 4096), (TARGET, 7 * 4096, 4096)]
    assert skipped_lines(p) == [f"bb.out line {n}" for n in (2, 3, 4, 5, 6, 9)]


def test_e2fs_empty_output_means_no_bad_blocks():
    assert parse_e2fs_badblocks([], "bb.out", 1024, TARGET) == Parsed()


def test_e2fs_real_badblocks_on_a_healthy_image(tmp_path):
    need_tool("badblocks", package="e2fsprogs")
    img, out = tmp_path / "disk.img", tmp_path / "bb.out"
    img.write_bytes(os.urandom(256 << 10))
    subprocess.run(["badblocks", "-b", "4096", "-o", str(out), str(img)], check=True, capture_output=True)
    assert out.read_bytes() == b""  # nothing unreadable in a plain file: the real "no bad blocks" output
    with open(out, "rb") as fh:
        assert parse_e2fs_badblocks(fh, str(out), 4096, TARGET) == Parsed()


@settings(max_examples=200)
@given(st.lists(st.integers(0, (1 << 32) - 1), max_size=30), st.sampled_from([512, 1024, 4096]))
def test_e2fs_roundtrip(blocks, bs):
    p = parse_e2fs_badblocks([E2FS_FMT % b for b in blocks], "bb", bs, TARGET)
    assert spans(p) == [(TARGET, b * bs, bs) for b in blocks]


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_e2fs_random_bytes_only_usage_errors(data):
    only_usage_errors(parse_e2fs_badblocks, data.splitlines(), "fuzz", 1024, TARGET)


# --- ddrescue mapfile -------------------------------------------------------------------------------------------

# The example of the GNU ddrescue manual (1.27), chapter "Mapfile structure", verbatim.
MANUAL_MAPFILE = """\
# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue -d -c18 /dev/fd0 fdimage mapfile
# Start time:   2015-07-21 09:37:44
# Current time: 2015-07-21 09:38:19
# Copying non-tried blocks... Pass 1 (forwards)
# current_pos  current_status  current_pass
0x00120000     ?               1
#      pos        size  status
0x00000000  0x00117000  +
0x00117000  0x00000200  -
0x00117200  0x00001000  /
0x00118200  0x00007E00  *
0x00120000  0x00048000  ?
"""


def test_ddrescue_manual_example():
    p = parse_ddrescue_mapfile(MANUAL_MAPFILE.splitlines(), "mapfile")
    # the status line "0x00120000 ? 1" is a position, not a block; only the '?' block at that position counts
    assert spans(p) == [(TARGET, 0x117000, 0x200), (TARGET, 0x117200, 0x1000), (TARGET, 0x118200, 0x7E00),
                        (TARGET, 0x120000, 0x48000)]
    assert [e.origin for e in p.extents] == [f"mapfile line {n}" for n in (10, 11, 12, 13)]
    assert p.extents[0].note.startswith("ddrescue status '-' (failed block, bad sector(s))")
    assert not p.skipped


def test_ddrescue_damaged_subset_and_space():
    only_bad = parse_ddrescue_mapfile(MANUAL_MAPFILE.splitlines(), "m", damaged="-", space=PMEM0)
    assert spans(only_bad) == [(PMEM0, 0x117000, 0x200)]
    assert parse_ddrescue_mapfile(MANUAL_MAPFILE.splitlines(), "m", damaged=set()).extents == []
    with pytest.raises(UsageError, match="status 'x'"):
        parse_ddrescue_mapfile(MANUAL_MAPFILE.splitlines(), "m", damaged={"-", "x"})


def test_ddrescue_number_bases_as_strtoll_reads_them():
    # "decimal, hexadecimal, or octal values, using the same syntax as integer constants in C++"
    text = ["0 + 1", "0 512 +", "512 0x200 -", "02000 0400 -", "0X600 +512 /", "0x800 010 *"]
    p = parse_ddrescue_mapfile(text, "m")
    assert spans(p) == [(TARGET, 512, 512), (TARGET, 0o2000, 0o400), (TARGET, 0x600, 512), (TARGET, 0x800, 8)]


def test_ddrescue_bad_lines():
    text = [
        "# Mapfile",                       # 1
        "0x0 + 2",                         # 2 status line
        "0x0 0x1000 +",                    # 3
        "0x1000 0x200 -",                  # 4 good
        "0x1100 0x200 -",                  # 5 overlaps line 4
        "0x1200 -0x200 -",                 # 6 negative size
        "-0x1400 0x200 -",                 # 7 negative pos
        "0x1400 0x200",                    # 8 truncated
        "0x1400 0x200 - extra",            # 9 extra field
        "0x1400 0x200 X",                  # 10 unknown status
        "0x1400 09 -",                     # 11 bad octal
        "0x1400 zz -",                     # 12 not a number
        "0x1400 0 -",                      # 13 zero length
        "0x7fffffffffffff00 0x200 -",      # 14 past 2^63 - 1
        "0x1400 0x200 -   # a note",       # 15 good, with a comment
        b"0x1600 \xff -",                  # 16 not UTF-8
        "0x1600 0x200 -#glued",            # 17 '#' not after whitespace: not a comment
        "0x1600 0x200 -\t# after a tab",   # 18 good
    ]
    p = parse_ddrescue_mapfile(text, "map")
    assert spans(p) == [(TARGET, 0x1000, 0x200), (TARGET, 0x1400, 0x200), (TARGET, 0x1600, 0x200)]
    assert skipped_lines(p) == [f"map line {n}" for n in (5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17)]
    reasons = dict(p.skipped)
    assert "overlaps" in reasons["map line 5"] and "negative" in reasons["map line 6"]
    assert "negative" in reasons["map line 7"] and "truncated" in reasons["map line 8"]
    assert "octal" in reasons["map line 11"] and reasons["map line 13"] == "zero length"


def test_ddrescue_old_status_line_and_no_status_line():
    # before the 1.20 format the status line had no current_pass; a hand-made map may have no status line
    assert spans(parse_ddrescue_mapfile(["0x1000 -", "0 0x1000 +", "0x1000 0x200 -"], "m")) == [
        (TARGET, 0x1000, 0x200)]
    assert spans(parse_ddrescue_mapfile(["0x1000 0x200 -", "0x1200 0x200 +"], "m")) == [(TARGET, 0x1000, 0x200)]


def test_ddrescue_a_finished_rescue_is_no_damage_not_an_error():
    p = parse_ddrescue_mapfile(["# finished", "0x100000 + 1", "0 0x100000 +"], "m")
    assert p == Parsed()
    with pytest.raises(UsageError, match="no usable entries"):
        parse_ddrescue_mapfile(["this is not", "a mapfile at all"], "m")


def _ddrescuelog(args, stdin=""):
    return subprocess.run(["ddrescuelog", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def test_ddrescue_real_ddrescuelog_mapfiles():
    need_tool("ddrescuelog", package="gddrescue")
    # ddrescuelog -c-+ builds a mapfile from a list of sectors: listed ones '-', the rest '+' -- up to 2^63 - 1
    # bytes when no size is given, so the last '+' block ends exactly at the largest offset
    sectors = [3, 7, 8, 100, 2047]
    made = _ddrescuelog(["-b", "512", "-c-+", "-"], "".join(f"{s}\n" for s in sectors))
    last = made.splitlines()[-1].split()
    assert int(last[0], 16) + int(last[1], 16) == MAX_BYTES and last[2] == "+"
    p = parse_ddrescue_mapfile(made.splitlines(), "made.map")
    assert not p.skipped
    assert spans(p) == [(TARGET, 3 * 512, 512), (TARGET, 7 * 512, 1024), (TARGET, 100 * 512, 512),
                        (TARGET, 2047 * 512, 512)]
    # -A annotates every line with a tab and a '#' comment; the same blocks come out
    annotated = subprocess.run(["ddrescuelog", "-A", "-"], input=made, capture_output=True, text=True).stdout
    assert "\t#" in annotated
    assert spans(parse_ddrescue_mapfile(annotated.splitlines(), "a.map")) == spans(p)
    # -l- lists the '-' sectors "like the output of the program badblocks": the e2fs parser agrees byte for byte
    listed = _ddrescuelog(["-b", "512", "-l-", "-"], made)
    e2 = parse_e2fs_badblocks(listed.splitlines(), "list", 512, TARGET)
    assert sorted(s * 512 for s in sectors) == [e.offset for e in e2.extents]
    covered = {o for e in p.extents for o in range(e.offset, e.end, 512)}
    assert covered == {e.offset for e in e2.extents}


def test_ddrescue_real_rescue_in_test_mode(tmp_path):
    need_tool("ddrescue", "ddrescuelog", package="gddrescue")
    # ddrescue --test-mode=FILE reads good/bad sectors from a mapfile instead of the device: a real rescue run,
    # with trimming and scraping, that writes a real mapfile
    bad = [100, 101, 2000]
    testmap = tmp_path / "test.map"
    testmap.write_text(_ddrescuelog(["-b", "512", "-c-+", "-"], "".join(f"{s}\n" for s in bad)))
    src, dst, mapfile = tmp_path / "in", tmp_path / "out", tmp_path / "rescue.map"
    src.write_bytes(os.urandom(1 << 20))
    subprocess.run(["ddrescue", "-q", f"--test-mode={testmap}", str(src), str(dst), str(mapfile)], check=True)
    with open(mapfile, "rb") as fh:
        p = parse_ddrescue_mapfile(fh, "rescue.map")
    assert not p.skipped
    assert spans(p) == [(TARGET, 100 * 512, 1024), (TARGET, 2000 * 512, 512)]
    assert all("status '-'" in e.note for e in p.extents)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(1, 1 << 40), st.sampled_from("?*/-+")), min_size=1, max_size=20),
       st.integers(0, 1 << 40), st.lists(st.sampled_from(["{:#x}", "{:d}", "0{:o}", "{:#X}"]), min_size=1))
def test_ddrescue_roundtrip(blocks, start, bases):
    lines, pos, want = [f"{start:#x} + 1"], start, []
    for i, (size, status) in enumerate(blocks):
        f = bases[i % len(bases)]
        lines.append(f"{f.format(pos) if pos else '0'} {f.format(size)} {status}")
        if status != "+":
            want.append((TARGET, pos, size))
        pos += size
    assert spans(parse_ddrescue_mapfile(lines, "m")) == want


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_ddrescue_random_bytes_only_usage_errors(data):
    only_usage_errors(parse_ddrescue_mapfile, data.splitlines(), "fuzz")


# --- one real failing device: badblocks and ddrescue agree ------------------------------------------------------

def test_real_unreadable_sectors_badblocks_and_ddrescue_agree(tmp_path):
    """A loop device whose backing file is cut short after attaching: reads past the cut fail with EIO (the
    loop driver ends a request that read no data with an error), which gives real bad sectors here."""
    need_kernel()
    need_tool("badblocks", package="e2fsprogs")
    need_tool("ddrescue", package="gddrescue")
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(1 << 20))
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        os.truncate(img, 768 << 10)
        bb = tmp_path / "bb.out"
        subprocess.run(["badblocks", "-b", "4096", "-o", str(bb), dev], check=True, capture_output=True)
        subprocess.run(["ddrescue", "-q", dev, str(tmp_path / "copy"), str(tmp_path / "map")], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
    e2 = parse_e2fs_badblocks(bb.read_text().splitlines(), "bb.out", 4096, TARGET)
    dd = parse_ddrescue_mapfile((tmp_path / "map").read_text().splitlines(), "map")
    assert [e.offset // 4096 for e in e2.extents] == list(range(192, 256))
    assert spans(dd) == [(TARGET, 768 << 10, 256 << 10)]


# --- ndctl list --media-errors ----------------------------------------------------------------------------------

def ndctl_print(doc) -> str:
    """As ndctl prints: json-c JSON_C_TO_STRING_PRETTY (two-space indent, no space after ':')."""
    return json.dumps(doc, indent=2, separators=(",", ":"))


# ndctl-list(1) (Documentation/ndctl/ndctl-list.txt, --media-errors), the raw-mode example, verbatim
MAN_PAGE_RAW = """\
{
  "dev":"namespace7.0",
  "mode":"raw",
  "size":33554432,
  "blockdev":"pmem7",
  "badblock_count":17,
  "badblocks":[
    {
      "offset":4,
      "length":1
    },
    {
      "offset":32768,
      "length":8
    },
    {
      "offset":65528,
      "length":8
    }
  ]
}
"""


def test_ndctl_man_page_raw_example():
    # a raw namespace lists its region's bad blocks, counted from the region start (ndctl/json.c
    # util_namespace_to_json -> util_region_badblocks_to_json); namespace7.0 is in region7 (namespace%d.%d)
    p = parse_ndctl_json(MAN_PAGE_RAW, "ndctl.json")
    r7 = Space(REGION, "region7")
    assert spans(p) == [(r7, 4 * 512, 512), (r7, 32768 * 512, 4096), (r7, 65528 * 512, 4096)]
    assert [e.origin for e in p.extents] == [f"ndctl.json namespace7.0 badblocks[{i}]" for i in range(3)]
    assert "region7 from the name namespace7.0" in p.extents[0].note
    assert sum(e.length for e in p.extents) // 512 == 17  # badblock_count is the sum of lengths


# `ndctl list -R -N -M` (ndctl/list.c: regions, each with its "namespaces"); keys from ndctl/json.c and list.c
REGIONS = [
    {"dev": "region1", "size": 17179869184, "align": 16777216, "available_size": 0,
     "max_available_extent": 0, "type": "pmem", "iset_id": -2506113243053544244,
     "persistence_domain": "memory_controller", "badblock_count": 9,
     "badblocks": [{"offset": 65536, "length": 1, "dimms": ["nmem1"]},
                   {"offset": 1048584, "length": 8, "dimms": ["nmem1", "nmem3"]}],
     "namespaces": [
         {"dev": "namespace1.0", "mode": "fsdax", "map": "dev", "size": 16909336576,
          "uuid": "0d2e9e05-5e8b-4b31-9b4e-2d3e8b1c8a11", "sector_size": 512, "align": 2097152,
          "blockdev": "pmem1", "badblock_count": 8, "badblocks": [{"offset": 917512, "length": 8}]},
     ]},
    {"dev": "region0", "size": 4294967296, "align": 16777216, "available_size": 0, "type": "pmem",
     "badblock_count": 1, "badblocks": [{"offset": 4, "length": 1, "dimms": ["nmem0"]}],
     "namespaces": [
         {"dev": "namespace0.0", "mode": "raw", "size": 4294967296, "sector_size": 512, "blockdev": "pmem0",
          "badblock_count": 1, "badblocks": [{"offset": 4, "length": 1, "dimms": ["nmem0"]}]},
     ]},
    {"dev": "region2", "size": 4294967296, "type": "pmem", "badblock_count": 16,
     "badblocks": [{"offset": 2048, "length": 8, "dimms": ["nmem4"]}, {"offset": 8388608, "length": 8}],
     "namespaces": [
         {"dev": "namespace2.0", "mode": "devdax", "map": "dev", "size": 4225761280,
          "uuid": "83a925dd-42b5-4ac6-8588-6a50bfc0c001", "chardev": "dax2.0", "align": 2097152,
          "badblock_count": 8, "badblocks": [{"offset": 8323072, "length": 8}]},
     ]},
    {"dev": "region3", "size": 4294967296, "type": "pmem", "badblock_count": 3,
     "badblocks": [{"offset": 100, "length": 3}],
     "namespaces": [
         # sector mode: only a count (util_btt_badblocks_to_json passes flags 0: no list)
         {"dev": "namespace3.0", "mode": "sector", "size": 4286578688,
          "uuid": "1c1c8c8e-7b38-4b7a-a1f5-9d3c3c3c3c3c", "sector_size": 4096, "blockdev": "pmem3s",
          "badblock_count": 3},
     ]},
]


def test_ndctl_regions_with_namespaces():
    p = parse_ndctl_json(ndctl_print(REGIONS), "list.json")
    r0, r1, r2, r3 = (Space(REGION, f"region{i}") for i in range(4))
    assert spans(p) == [
        (r1, 65536 * 512, 512), (r1, 1048584 * 512, 4096),
        (Space(BLOCK, "pmem1"), 917512 * 512, 4096),          # fsdax: from /dev/pmem1's start (the data area)
        (r0, 4 * 512, 512),                                   # the raw namespace repeats region0's: kept once
        (r2, 2048 * 512, 4096), (r2, 8388608 * 512, 4096),
        (Space(BLOCK, "dax2.0"), 8323072 * 512, 4096),        # devdax: from the dax device's start
        (r3, 100 * 512, 3 * 512),
    ]
    assert "on nmem1 nmem3" in p.extents[1].note
    assert p.extents[2].note == "pmem1 sector 917512, 8 sectors"
    assert skipped_lines(p) == ["list.json namespace3.0"]
    assert "sector (BTT) mode" in p.skipped[0][1] and p.skipped[0][1].startswith("3 bad sectors")


def test_ndctl_every_shape():
    ns = REGIONS[1]["namespaces"][0]
    want_ns = [(Space(REGION, "region0"), 2048, 512)]
    # a plain array of namespaces (ndctl list -N -M); a single object (ndctl list -u -N -M prints a lone
    # element without the array, util_display_json_array)
    assert spans(parse_ndctl_json(ndctl_print([ns]), "n")) == want_ns
    assert spans(parse_ndctl_json(ndctl_print(ns), "n")) == want_ns
    # -D -R -M without -B: the platform object {"dimms", "regions"} (list_display)
    dimms = [{"dev": "nmem0", "id": "8089-a2-1740-00000001", "handle": 1, "phys_id": 0, "health": {}}]
    both = {"dimms": dimms, "regions": REGIONS}
    assert spans(parse_ndctl_json(ndctl_print(both), "p")) == spans(parse_ndctl_json(ndctl_print(REGIONS), "p"))
    # -D -N: {"dimms", "namespaces"}; -B -R -N: buses with "dimms" and "regions"; -B -N: bus-level "namespaces"
    assert spans(parse_ndctl_json(ndctl_print({"dimms": dimms, "namespaces": [ns]}), "p")) == want_ns
    buses = [{"provider": "ACPI.NFIT", "dev": "ndbus0", "scrub_state": "idle", "dimms": dimms,
              "regions": REGIONS[:2]},
             {"provider": "nfit_test.0", "dev": "ndbus1", "namespaces": [ns]}]
    got = spans(parse_ndctl_json(ndctl_print(buses), "b"))
    assert got == spans(parse_ndctl_json(ndctl_print(REGIONS[:2]), "b"))
    assert parse_ndctl_json("[]", "empty") == Parsed() and parse_ndctl_json("", "empty") == Parsed()
    # without bad blocks a listing is a healthy system, not an error
    assert parse_ndctl_json(ndctl_print([{"dev": "region0", "size": 1, "type": "pmem"}]), "ok") == Parsed()


def test_ndctl_old_mode_names_and_nested_chardev():
    # ndctl before v60 (commit 187113c "complete move to fsdax and devdax") printed "memory" and "dax"
    old = [{"dev": "namespace0.0", "mode": "memory", "size": 1 << 30, "blockdev": "pmem0",
            "badblocks": [{"offset": 16, "length": 8}]},
           # ndctl list -X puts the dax device in "daxregion" (the shape test/daxdev-errors.sh shows)
           {"dev": "namespace6.0", "mode": "dax", "size": 64004096, "uuid": "83a925dd-42b5-4ac6-8588-6a50bfc0c001",
            "daxregion": {"id": 6, "size": 64004096, "align": 4096,
                          "devices": [{"chardev": "dax6.0", "size": 64004096}]},
            "badblocks": [{"offset": 62500, "length": 8}]}]
    assert spans(parse_ndctl_json(ndctl_print(old), "old")) == [(PMEM0, 16 * 512, 4096),
                                                                (Space(BLOCK, "dax6.0"), 62500 * 512, 4096)]


def test_ndctl_block_space_hook():
    doc = ndctl_print([{"dev": "namespace0.0", "mode": "fsdax", "blockdev": "pmem0",
                        "badblocks": [{"offset": 1, "length": 1}]}])
    p = parse_ndctl_json(doc, "n", block_space_for=lambda dev: TARGET if dev == "pmem0" else None)
    assert spans(p) == [(TARGET, 512, 512)]


def test_ndctl_bad_entries_are_skipped():
    doc = [{"dev": "region0", "badblocks": [
        {"offset": 8, "length": 8},       # 0 good
        {"offset": -8, "length": 8},      # 1 negative
        {"offset": "8", "length": 8},     # 2 a string
        {"offset": 8.0, "length": 8},     # 3 a float
        {"offset": 8, "length": 0},       # 4 zero
        {"offset": 8},                    # 5 truncated
        [8, 8],                           # 6 not an object
        {"offset": True, "length": 8},    # 7 a bool is not a number
        {"offset": 1 << 60, "length": 8},  # 8 past 2^63 - 1
        {"offset": 64, "length": 1},      # 9 good
    ]}]
    p = parse_ndctl_json(ndctl_print(doc), "n")
    r0 = Space(REGION, "region0")
    assert spans(p) == [(r0, 8 * 512, 4096), (r0, 64 * 512, 512)]
    assert skipped_lines(p) == [f"n region0 badblocks[{i}]" for i in range(1, 9)]


def test_ndctl_unusable_listings():
    # namespace listed without -M: a count but no offsets
    no_m = ndctl_print([{"dev": "namespace0.0", "mode": "fsdax", "blockdev": "pmem0", "badblock_count": 8}])
    with pytest.raises(UsageError, match="--media-errors"):
        parse_ndctl_json(no_m, "n")
    # a raw namespace whose region cannot be told
    with pytest.raises(UsageError, match="region is unknown"):
        parse_ndctl_json(ndctl_print({"dev": "ns-x", "mode": "raw", "badblocks": [{"offset": 1, "length": 1}]}), "n")
    # ndctl inject-error --status (ndctl/inject-error.c injection_status): pending injections, no device
    with pytest.raises(UsageError, match="inject-error"):
        parse_ndctl_json(ndctl_print({"badblocks": [{"block": 4, "count": 1}]}), "status")
    with pytest.raises(UsageError, match="not ndctl list output"):
        parse_ndctl_json('{"name": "something else"}', "x.json")
    with pytest.raises(UsageError, match="not ndctl list output"):
        parse_ndctl_json("42", "x.json")


@pytest.mark.parametrize("text,where", [
    ('[{"dev":"region0",\n  "badblocks":[{"offset":1 "length":1}]}]', "line 2, column 28"),
    ('{"dev":"region0"', "line 1, column 17"),
    ("not json", "line 1, column 1"),
])
def test_ndctl_malformed_json_says_where(text, where):
    with pytest.raises(UsageError, match=rf"^n\.json: not valid JSON: .*\({where}\)$"):
        parse_ndctl_json(text, "n.json")


_json = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
                     | st.text(max_size=12) | st.sampled_from(["region0", "namespace0.0", "raw", "fsdax", "devdax"]),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(
                         st.sampled_from(["dev", "mode", "badblocks", "offset", "length", "namespaces", "regions",
                                          "blockdev", "chardev", "badblock_count", "daxregion", "devices",
                                          "dimms", "provider", "x"]), c, max_size=5),
                     max_leaves=25)


@settings(max_examples=150)
@given(_json)
def test_ndctl_random_json_only_usage_errors(doc):
    p = only_usage_errors(parse_ndctl_json, json.dumps(doc), "fuzz")
    if p is not None:
        assert all(e.length > 0 and e.end <= MAX_BYTES for e in p.extents)


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_ndctl_random_bytes_only_usage_errors(data):
    only_usage_errors(parse_ndctl_json, data, "fuzz")


# --- kernel log -------------------------------------------------------------------------------------------------

def kmsg(*lines: str) -> Parsed:
    return parse_kmsg(list(lines), "dmesg.txt")


def one(parsed: Parsed) -> Extent:
    assert len(parsed.extents) == 1, parsed
    return parsed.extents[0]


def test_kmsg_memory_failure():
    # mm/memory-failure.c: #define pr_fmt(fmt) "Memory failure: " fmt
    pf = "Memory failure: "
    pfn = 0x8f4c21
    variants = [
        pf + "%#lx: recovery action for %s: %s" % (pfn, "dax page", "Recovered"),       # action_result()
        pf + "%#lx: Sending SIGBUS to %s:%d due to hardware memory corruption" % (pfn, "fio", 4242),  # kill_proc()
        pf + "%#lx: forcibly killing %s:%d because of failure to unmap corrupted page" % (pfn, "db", 7),
        pf + "%#lx: memory outside kernel control" % pfn,                              # memory_failure()
        pf + "%#lx cannot catch tail" % pfn,                                           # no colon after the pfn
        "MCE %#lx: %s page recovery: %s" % (pfn, "dirty LRU", "Recovered"),           # Linux <= 4.x
        pf + "buffer overflow when queuing memory failure at %#lx" % pfn,             # memory_failure_queue()
    ]
    for line in variants:
        e = one(kmsg(line))
        assert (e.space, e.offset, e.length) == (Space(PHYS), pfn << 12, 4096), line
        assert "pfn 0x8f4c21" in e.note
    # every variant names the same page: one extent, from the first line
    p = kmsg(*variants)
    assert spans(p) == [(Space(PHYS), pfn << 12, 4096)] and p.extents[0].origin == "dmesg.txt line 1"
    # C's %#lx prints 0 as "0" (Python would say 0x0)
    assert spans(kmsg(pf + "0: recovery action for free buddy page: Recovered")) == [(Space(PHYS), 0, 4096)]


def test_kmsg_not_memory_failures():
    p = kmsg("Unpoison: %#lx: software-unpoisoned page" % 0x1234,                 # mm/memory-failure.c, unpoison
             "Soft offline: %#lx: page already poisoned" % 0x1234,                # corrected errors: data intact
             "Injecting memory failure at pfn %#lx" % 0x1234,                     # mm/hwpoison-inject.c
             "Memory failure: Unable to find user space address %x in %s" % (0x7f00dead000, "fio"))
    assert p.extents == [] and p.ignored == 4 and not p.skipped


def test_kmsg_mce_and_ghes():
    # arch/x86/kernel/cpu/mce/core.c kill_me_maybe(): pr_err("Uncorrected hardware memory error in user-access at
    # %llx", p->mce_addr) with pr_fmt "mce: ": a physical byte address, no 0x
    addr = 0x3F4C21A80
    e = one(kmsg("mce: Uncorrected hardware memory error in user-access at %x" % addr))
    assert (e.space, e.offset, e.length) == (Space(PHYS), 0x3F4C21000, 4096)
    assert "whole 4096-byte page" in e.note
    # drivers/acpi/apei/ghes.c __ghes_print_estatus() pfx "{%u}" HW_ERR; drivers/firmware/efi/cper.c
    # cper_estatus_print() adds " " per level: "event severity: %s", "Error %d, type: %s", "section_type: memory
    # error", cper_print_mem() "physical_address: 0x%016llx"
    def record(seq, sev, pa):
        pfx = "{%u}[Hardware Error]: " % seq
        return [pfx + "Hardware error from APEI Generic Hardware Error Source: %d" % 1,
                pfx + "event severity: %s" % sev,
                pfx + " Error %d, type: %s" % (0, sev),
                pfx + "  section_type: memory error",
                pfx + "  physical_address: 0x%016x" % pa,
                pfx + "  physical_address_mask: 0x%016x" % 0xFFFFFFFFFFFFF000]
    p = kmsg(*record(1, "corrected", 0x1000), *record(2, "recoverable", 0x2345678),
             "{3}[Hardware Error]:  physical_address: 0x%016x" % 0x9000)  # no severity seen: taken
    assert spans(p) == [(Space(PHYS), 0x2345000, 4096), (Space(PHYS), 0x9000, 4096)]
    assert "severity recoverable" in p.extents[0].note and "severity not in the log" in p.extents[1].note


BLK_FMT = "%s error, dev %s, sector %llu op 0x%x:(%s) flags 0x%x phys_seg %u prio class %u".replace(
    "%llu", "%d").replace("%u", "%d")  # block/blk-mq.c blk_print_req_error()


def test_kmsg_block_layer_errors():
    p = kmsg(BLK_FMT % ("critical medium", "sdb", 1234, 0, "READ", 0x80700, 1, 2),
             BLK_FMT % ("I/O", "nvme0n1", 2048, 1, "WRITE", 0x8800, 2, 0),
             BLK_FMT % ("protection", "sdc", 99, 0, "READ", 0, 1, 2),
             "blk_update_request: %s error, dev %s, sector %d" % ("critical medium", "sdd", 77),   # 4.x
             "end_request: %s error, dev %s, sector %d" % ("I/O", "sde", 5),                       # 3.x
             "print_req_error: %s error, dev %s, sector %d flags %x" % ("I/O", "sdf", 6, 0x80700))  # 4.17+
    assert spans(p) == [(Space(BLOCK, "sdb"), 1234 * 512, 512), (Space(BLOCK, "nvme0n1"), 2048 * 512, 512),
                        (Space(BLOCK, "sdc"), 99 * 512, 512), (Space(BLOCK, "sdd"), 77 * 512, 512),
                        (Space(BLOCK, "sde"), 5 * 512, 512), (Space(BLOCK, "sdf"), 6 * 512, 512)]
    assert "critical medium error" in p.extents[0].note and "no length" in p.extents[0].note
    not_damage = kmsg(BLK_FMT % ("timeout", "sda", 8, 0, "READ", 0, 1, 2),
                      BLK_FMT % ("recoverable transport", "sda", 8, 0, "READ", 0, 1, 2),
                      BLK_FMT % ("I/O", "?", 8, 0, "READ", 0, 1, 2),
                      "I/O error, dev sda, sector 0x10 op 0x0:(READ)",
                      "I/O error, dev sda, sector -5 op 0x0:(READ)",
                      BLK_FMT % ("I/O", "sda", 1, 0, "READ", 0, 1, 2))
    assert spans(not_damage) == [(Space(BLOCK, "sda"), 512, 512)]
    assert skipped_lines(not_damage) == [f"dmesg.txt line {n}" for n in (1, 2, 3, 4, 5)]
    reasons = [why for _, why in not_damage.skipped]
    assert "not damage" in reasons[0] and "dev ?" in reasons[2] and "not a decimal" in reasons[3]
    assert "negative" in reasons[4]


def test_kmsg_buffer_io_error_block_size():
    # fs/buffer.c buffer_io_error(): "Buffer I/O error on dev %pg, logical block %llu%s\n"
    line = "Buffer I/O error on dev %s, logical block %d%s" % ("sda1", 81904, ", async page read")
    e = one(parse_kmsg([line], "k"))
    assert (e.space, e.offset, e.length) == (Space(BLOCK, "sda1"), 81904 * 4096, 4096)
    assert "4096 bytes assumed" in e.note
    e = one(parse_kmsg([line], "k", buffer_block_size=1024))
    assert (e.offset, e.length) == (81904 * 1024, 1024) and "1024 bytes assumed" in e.note
    with pytest.raises(UsageError, match="power of two"):
        parse_kmsg([line], "k", buffer_block_size=1000)
    old = "Buffer I/O error on device %s, logical block %d" % ("md127", 3)  # 2.6-era wording
    assert spans(kmsg(old)) == [(Space(BLOCK, "md127"), 3 * 4096, 4096)]


def test_kmsg_writeback_error():
    # fs/iomap/buffered-io.c iomap_finish_ioend(): "%s: writeback error on inode %lu, offset %lld, sector %llu"
    e = one(kmsg("%s: writeback error on inode %d, offset %d, sector %d" % ("dm-0", 131, 8192, 20480)))
    assert (e.space, e.offset, e.length) == (Space(FS, "dm-0"), 20480 * 512, 512)


XFS = "XFS (%s): "  # fs/xfs/xfs_message.c __xfs_printk(): "%sXFS (%s): %pV\n"


def test_kmsg_xfs_locations():
    dev = "sdb1"
    fs = Space(FS, dev)
    p = kmsg(
        # fs/xfs/xfs_buf.c xfs_buf_ioerror_alert()
        XFS % dev + 'metadata I/O error in "%s" at daddr 0x%x len %d error %d' % (
            "xfs_trans_read_buf_map+0x1c5/0x3c0 [xfs]", 0x1f40, 8, 5),
        # before 5.x: "metadata I/O error: block 0x%llx (\"%s\") error %d numblks %d"; 3.x: "... buf count %zd"
        XFS % dev + 'metadata I/O error: block 0x%x ("%s") error %d numblks %d' % (0x2000, "xfs_trans_read_buf", 5, 16),
        XFS % dev + 'metadata I/O error: block 0x%x ("%s") error %d buf count %d' % (0x3000, "xfs_buf_iodone", 5, 4096),
        # fs/xfs/xfs_error.c xfs_buf_verifier_error(): "Metadata %s detected at %pS, %s block 0x%llx %s"
        XFS % dev + "Metadata %s detected at %s, %s block 0x%x %s" % (
            "CRC error", "xfs_agf_read_verify+0x7a/0x110 [xfs]", "xfs_agf", 0x28001, ""),
        # xfs_buf_corruption_error(): "Metadata corruption detected at %pS, %s block 0x%llx"
        XFS % dev + "Metadata corruption detected at %s, %s block 0x%x" % ("xfs_dabuf_map+0x1a/0x60", "xfs_da3_node",
                                                                          0x4000),
        # 3.x: "Metadata %s detected at %pF, block 0x%llx"
        XFS % dev + "Metadata %s detected at %s, block 0x%x" % ("corruption", "xfs_agi_read_verify+0x5e/0x110 [xfs]",
                                                                0x5002),
        # xfs_buf.c xfs_buftarg_drain()
        XFS % dev + "Corruption Alert: Buffer at daddr 0x%x had permanent write failures!" % 0x6000,
    )
    assert spans(p) == [(fs, 0x1f40 * 512, 4096), (fs, 0x2000 * 512, 16 * 512), (fs, 0x3000 * 512, 4096),
                        (fs, 0x28001 * 512, 512), (fs, 0x4000 * 512, 512), (fs, 0x5002 * 512, 512),
                        (fs, 0x6000 * 512, 512)]
    assert "first sector only" in p.extents[3].note and "xfs_agf" in p.extents[3].note
    assert not p.skipped and not p.inodes


def test_kmsg_xfs_inodes_and_the_rest():
    dev = "dm-3"
    p = kmsg(
        # xfs_error.c xfs_inode_verifier_error(): "Metadata %s detected at %pS, inode 0x%llx %s"
        XFS % dev + "Metadata %s detected at %s, inode 0x%x %s" % ("corruption", "xfs_dinode_verify+0xa0/0x5a0 [xfs]",
                                                                    0x14c, "dinode"),
        # libxfs/xfs_inode_fork.c, libxfs/xfs_bmap.c, xfs_iomap.c, libxfs/xfs_btree.c
        XFS % dev + "corrupt inode %d ((a)extents = %d)." % (332, 77),   # the same inode: kept once
        XFS % dev + "corrupt dinode %d, (btree extents)." % 1027,
        XFS % dev + "Access to block zero in inode %d start_block: %x start_off: %x blkcnt: %x extent-state: %x" % (
            2048, 0, 0x10, 1, 0),
        XFS % dev + "Inode %d fork %d: Corrupt %sbt pointer at level %d index %d." % (4099, 0, "bmap", 1, 3),
        # xfs_log_recover.c xlog_do_io(): the "daddr" is a block of the log
        XFS % dev + "log recovery %s I/O error at daddr 0x%x len %d error %d" % ("read", 0x40, 8, 5),
        # no location: ignored (xfs_fsops.c xfs_do_force_shutdown, xfs_mount.c)
        XFS % dev + "Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x1e4/0x210 "
                    "(fs/xfs/xfs_trans.c:1098).  Shutting down filesystem.",
        XFS % dev + "Please unmount the filesystem and rectify the problem(s)",
        XFS % dev + "Mounting V5 Filesystem 3dd43981-6fc9-4a9c-a135-6b867264bb37",
    )
    assert [(i.ino, i.origin) for i in p.inodes] == [(332, "dmesg.txt line 1"), (1027, "dmesg.txt line 3"),
                                                     (2048, "dmesg.txt line 4"), (4099, "dmesg.txt line 5")]
    assert p.inodes[0] == InodeRef(332, "dmesg.txt line 1", "XFS (dm-3): inode verifier error, inode 0x14c")
    assert skipped_lines(p) == ["dmesg.txt line 6"] and "start of the log" in p.skipped[0][1]
    assert p.ignored == 3 and not p.extents


def test_kmsg_libnvdimm():
    # drivers/nvdimm/badrange.c set_badblock(): dev_dbg(bb->dev, "Found a bad range (0x%llx, 0x%llx)\n",
    # (u64) s * 512, (u64) num * 512) -- bytes from the start of the device holding the list; dev_printk's prefix
    # is "%s %s: " (driver, device). dev_info_once(bb->dev, "%s: failed for sector %llx\n", __func__, s).
    # drivers/nvdimm/pfn_devs.c: dev_dbg(&nd_pfn->dev, "meta: %x badblocks at %llx\n", num_bad, first_bad)
    p = kmsg("nd_region region0: Found a bad range (0x%x, 0x%x)" % (4096 * 512, 8 * 512),
             "nd_pmem namespace0.0: Found a bad range (0x%x, 0x%x)" % (2048 * 512, 8 * 512),
             "nd_pmem namespace1.2: Found a bad range (0x%x, 0x%x)" % (0, 512),
             "nd_pmem pfn0.1: Found a bad range (0x%x, 0x%x)" % (512, 512),
             "nd_region region1: %s: failed for sector %x" % ("set_badblock", 0x1234),
             "nd_pmem pfn2.0: meta: %x badblocks at %x" % (0x10, 0x2008),
             "nd_region region0: Found a bad range (0x%x, 0x%x)" % (100, 512))
    assert spans(p) == [(Space(REGION, "region0"), 4096 * 512, 4096), (Space(BLOCK, "pmem0"), 2048 * 512, 4096),
                        (Space(BLOCK, "pmem1.2"), 0, 512), (Space(REGION, "region1"), 0x1234 * 512, 512),
                        (Space(REGION, "region2"), 0x2008 * 512, 16 * 512)]
    assert skipped_lines(p) == ["dmesg.txt line 4", "dmesg.txt line 7"]


LINE = "Memory failure: %#lx: recovery action for %s: %s" % (0x1234, "dax page", "Recovered")


@pytest.mark.parametrize("prefix", [
    "",                                                         # dmesg -t, journalctl -o cat
    "[ 1234.567890] ",                                          # dmesg
    "[    0.000000] ",
    "[Tue Nov 24 12:44:00 2026] ",                              # dmesg -T
    "[Tue Nov  4 02:44:00 2026] ",
    "<3>[11501.846489] ",                                       # dmesg -r
    "<3>",                                                      # console
    "kern  :err   : [11501.846489] ",                           # dmesg -x
    "2026-11-24T12:44:00,846489+00:00 ",                        # dmesg --time-format iso
    "[ 1234.567890 <    0.000123>] ",                           # dmesg -d
    "3,6316,11501846489,-;",                                    # /dev/kmsg
    "3,6316,11501846489,c,caller=T1;",
    "Nov 24 12:44:00 host kernel: ",                            # journalctl -k, syslog
    "Nov  4 02:44:00 host kernel: [11501.846489] ",             # kern.log with the kernel's own stamp
    "Nov 24 12:44:00.846489 host kernel: ",                     # journalctl -o short-precise
    "2026-11-24T12:44:00+0000 host kernel: ",                   # journalctl -o short-iso
    "2026-11-24T12:44:00.846489+00:00 host kernel: ",           # rsyslog RFC 3339
    "Tue 2026-11-24 12:44:00 UTC host kernel: ",                # journalctl -o short-full
    "1795524240.846489 host kernel: ",                          # journalctl -o short-unix
    "[11501.846489] host kernel: ",                              # journalctl -o short-monotonic
    "[ 1234.567890][  T123] ",                                  # CONFIG_PRINTK_CALLER
    "[ 1234.567890][    C2] ",
])
def test_kmsg_prefix_styles(prefix):
    p = parse_kmsg([prefix + LINE], "k")
    assert spans(p) == [(Space(PHYS), 0x1234 << 12, 4096)], prefix


def test_kmsg_other_programs_and_continuations_are_ignored():
    p = kmsg("Nov 24 12:44:00 host myscript[77]: " + LINE,   # a program quoting the kernel, not the kernel
             " SUBSYSTEM=block",                            # /dev/kmsg dictionary continuation
             " DEVICE=b8:16",
             "00000000: 42 41 44 21 00 00 00 01 00 00 00 01 00 00 50 00  BAD!..........P.",
             "")
    assert p.extents == [] and p.ignored == 5


# Verbatim lines Linux 6.18 logged here (dmesg, dmesg -T/-r/-x/--time-format iso, /dev/kmsg) when an XFS image
# on a loop device had its AG 1 AGF, a directory block and an inode damaged, and when the loop device's backing
# file was cut short under it.
REAL_618 = """\
[ 7504.888676] XFS (loop0): Log I/O Error (0x6) detected at xfs_fs_goingdown+0x63/0xb0 (fs/xfs/xfs_fsops.c:475).  \
Shutting down filesystem.
[11496.188706] XFS (loop0): Metadata CRC error detected at xfs_agf_read_verify+0x7a/0x110, xfs_agf block 0x28001 \n\
[11496.201738] XFS (loop0): metadata I/O error in "xfs_read_agf+0x8b/0x170" at daddr 0x28001 len 1 error 74
[11496.203423] XFS (loop0): Corruption of in-memory data (0x8) detected at xfs_fs_reserve_ag_blocks+0x8e/0x120 \
(fs/xfs/xfs_fsops.c:566).  Shutting down filesystem.
[11501.843432] I/O error, dev loop0, sector 655232 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2
[11501.846489] Buffer I/O error on dev loop0, logical block 81904, async page read
[11510.017503] XFS (loop0): Metadata corruption detected at xfs_dir3_data_reada_verify+0x25/0x70, \
xfs_dir3_data_reada block 0x78 \n\
[11510.043112] XFS (loop0): metadata I/O error in "xfs_da_read_buf+0x105/0x190" at daddr 0x78 len 8 error 74
[11510.046247] XFS (loop0): Metadata corruption detected at __xfs_buf_ioend+0x185/0x590, xfs_inode block 0x140 \
xfs_inode_buf_verify
[11510.059046] XFS (loop0): metadata I/O error in "xfs_imap_to_bp+0x5c/0xe0" at daddr 0x140 len 32 error 117
[11510.067149] XFS (loop0): Uncorrected metadata errors detected; please run xfs_repair.
[11517.760312] XFS (loop0): Metadata corruption detected at xfs_dinode_verify.part.0+0x47f/0x810, inode 0x14c dinode
[Tue Nov 24 12:44:00 2026] Buffer I/O error on dev loop0, logical block 81904, async page read
<1>[11517.760312] XFS (loop0): Metadata corruption detected at xfs_dinode_verify.part.0+0x47f/0x810, inode 0x14c dinode
kern  :err   : [11501.846489] Buffer I/O error on dev loop0, logical block 81904, async page read
2026-11-24T12:44:16,760312+00:00 XFS (loop0): Metadata corruption detected at \
xfs_dinode_verify.part.0+0x47f/0x810, inode 0x14c dinode
1,6346,11510043112,-;XFS (loop0): metadata I/O error in "xfs_da_read_buf+0x105/0x190" at daddr 0x78 len 8 error 74
"""


def test_kmsg_real_linux_618_lines():
    p = parse_kmsg(REAL_618.encode().splitlines(keepends=True), "dmesg.txt")
    fs = Space(FS, "loop0")
    assert spans(p) == [
        (fs, 0x28001 * 512, 512),                        # verifier + I/O error of the 1-sector AGF: one extent
        (Space(BLOCK, "loop0"), 655232 * 512, 512),      # sector 655232 ...
        (Space(BLOCK, "loop0"), 81904 * 4096, 4096),     # ... is logical block 81904 of 4096 bytes: same bytes
        (fs, 0x78 * 512, 512), (fs, 0x78 * 512, 4096),   # directory block: verifier sector, then all 8
        (fs, 0x140 * 512, 512), (fs, 0x140 * 512, 16384),  # inode cluster buffer
    ]
    assert [i.ino for i in p.inodes] == [0x14c]  # /f, inode 332, in four prefix styles: once
    assert p.ignored == 3 and not p.skipped


def test_kmsg_cut_lines_and_nothing_usable():
    p = kmsg("XFS (sda1): metadata I/O error in \"xfs_buf_read\" at dad",
             "critical medium error, dev sdb, sec",
             BLK_FMT % ("critical medium", "sdb", 8, 0, "READ", 0, 1, 2))
    assert spans(p) == [(Space(BLOCK, "sdb"), 8 * 512, 512)]
    assert skipped_lines(p) == ["dmesg.txt line 1", "dmesg.txt line 2"]
    with pytest.raises(UsageError, match=r"^k: no usable entries \(1 line skipped; first: k line 2: 'timeout error'"):
        parse_kmsg(["hello", BLK_FMT % ("timeout", "sdb", 8, 0, "READ", 0, 1, 2)], "k")
    # a log with no reports at all is not an error: nothing to locate
    assert parse_kmsg(["Linux version 6.18.0", "random: crng init done"], "k") == Parsed(ignored=2)


def test_kmsg_undecodable_bytes_do_not_hide_reports():
    p = parse_kmsg([b"\xff\xfe garbage\n", b"usb 1-1: name \xe9\n", LINE.encode() + b"\n"], "k")
    assert spans(p) == [(Space(PHYS), 0x1234 << 12, 4096)] and p.ignored == 2


@settings(max_examples=100)
@given(st.lists(st.integers(0, (1 << 51) - 2), min_size=1, max_size=10), st.sampled_from(["", "[ 5.000001] "]))
def test_kmsg_pfn_roundtrip(pfns, prefix):
    lines = [prefix + "Memory failure: %#lx: recovery action for dax page: Recovered" % p for p in pfns]
    want = []
    for p in pfns:
        if (Space(PHYS), p << 12, 4096) not in want:
            want.append((Space(PHYS), p << 12, 4096))
    assert spans(parse_kmsg(lines, "k")) == want


@settings(max_examples=100)
@given(st.integers(0, MAX_BYTES // 512 - 1), st.sampled_from(["sda", "nvme0n1p2", "dm-0", "md127", "pmem0.1"]))
def test_kmsg_sector_roundtrip(sector, dev):
    p = kmsg(BLK_FMT % ("critical medium", dev, sector, 0, "READ", 0, 1, 2))
    assert spans(p) == [(Space(BLOCK, dev), sector * 512, 512)]


_kernelish = st.sampled_from(["Memory failure: ", "0x", "XFS (sda): ", " error, dev ", "sector ", "daddr 0x",
                              "[Hardware Error]: ", "physical_address: ", "Buffer I/O error on dev ", "{1}",
                              ", logical block ", "nd_region region0: Found a bad range (", "inode 0x", " len ",
                              "Metadata corruption detected at ", " block 0x", "-", "9", "f", ",", " ", "\x00"])


@settings(max_examples=200)
@given(st.lists(st.lists(_kernelish | st.text(max_size=5), max_size=12).map("".join), max_size=8)
       | st.binary(max_size=400).map(lambda b: b.splitlines(keepends=True)))
def test_kmsg_random_lines_only_usage_errors(lines):
    p = only_usage_errors(parse_kmsg, lines, "fuzz")
    if p is not None:
        assert all(e.length > 0 and e.offset >= 0 and e.end <= MAX_BYTES for e in p.extents)


def test_kmsg_100k_lines_fast():
    noise = ["[%5d.%06d] usb 1-1: new high-speed USB device number %d using xhci_hcd" % (i, i, i % 100)
             for i in range(99_000)]
    reports = [BLK_FMT % ("critical medium", "sdb", 8 * i, 0, "READ", 0, 1, 2) for i in range(1000)]
    lines = noise + reports
    t = time.perf_counter()
    p = parse_kmsg(lines, "big")
    elapsed = time.perf_counter() - t
    assert len(p.extents) == 1000 and p.ignored == 99_000
    assert elapsed < 3.0, f"{elapsed:.2f} s for 100k lines"
