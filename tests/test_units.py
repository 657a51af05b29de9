"""Unit arithmetic: sizes people type, and every XFS unit conversion, against xfs_db's `convert`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsdaxctl.errors import UsageError
from fsdaxctl.units import human, parse_size
from fsdaxctl.xfs.fs import XfsFilesystem
from fsdaxctl.xfs.geometry import Geometry
from tests import xfsdb


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("4096", 4096), ("512s", 262144), ("1s", 512), ("4k", 4096), ("4KiB", 4096), ("4kb", 4096),
    ("1m", 1 << 20), ("2g", 2 << 30), ("0x1000", 4096), (" 8 ", 8), ("3T", 3 << 40), ("1MiB", 1 << 20),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1", "4q", "k", "1.5k", "0x", "12 34", "9" * 30, "8e", "0xfffffffffffffffff"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text, "--offset")


@given(st.integers(0, (1 << 40)), st.sampled_from(["", "s", "k", "m", "g"]))
def test_parse_size_multiplies(n, suffix):
    mult = {"": 1, "s": 512, "k": 1024, "m": 1 << 20, "g": 1 << 30}[suffix]
    if n * mult > (1 << 63) - 1:  # past loff_t: refused, not wrapped
        with pytest.raises(UsageError):
            parse_size(f"{n}{suffix}")
    else:
        assert parse_size(f"{n}{suffix}") == n * mult


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
                                    (4 << 20, "4 MiB"), (3 << 40, "3 TiB")])
def test_human(n, text):
    assert human(n) == text


def geometries():
    @st.composite
    def build(draw):
        blocklog = draw(st.integers(9, 16))
        inodelog = draw(st.integers(8, min(11, blocklog)))
        agblocks = draw(st.integers(64, 1 << 20))
        agcount = draw(st.integers(1, 64))
        last = draw(st.integers(1, agblocks))
        return Geometry(blocksize=1 << blocklog, blocklog=blocklog, sectsize=512, agblocks=agblocks,
                        agblklog=(agblocks - 1).bit_length(), agcount=agcount,
                        dblocks=(agcount - 1) * agblocks + last, inodesize=1 << inodelog,
                        inopblog=blocklog - inodelog)
    return build()


@settings(max_examples=500)
@given(geo=geometries(), data=st.data())
def test_unit_roundtrips(geo, data):
    agno = data.draw(st.integers(0, geo.agcount - 1))
    agbno = data.draw(st.integers(0, geo.ag_length(agno) - 1))
    fsb = geo.ag_to_fsb(agno, agbno)
    assert geo.fsb_to_ag(fsb) == (agno, agbno)
    assert geo.fsb_is_valid(fsb)
    byte = geo.ag_to_byte(agno, agbno)
    assert byte < geo.size
    assert geo.byte_to_ag(byte) == (agno, agbno)
    assert geo.byte_to_ag(byte + geo.blocksize - 1) == (agno, agbno)
    assert geo.fsb_to_byte(fsb) == byte
    assert geo.ag_to_daddr(agno, agbno) == byte >> 9
    slot = data.draw(st.integers(0, (1 << geo.inopblog) - 1))
    ino = geo.ag_to_ino(agno, agbno, slot)
    assert geo.ino_to_ag(ino) == (agno, agbno, slot)
    assert geo.ino_to_byte(ino) == byte + slot * geo.inodesize


def test_conversions_match_xfs_db(odd_ag_image):
    """Non-power-of-two AGs make segmented fsblocks differ from linear blocks: the trap xfs_db gets right."""
    img = odd_ag_image
    with XfsFilesystem.open(img) as fs:
        geo = fs.geo
        assert geo.agblocks != 1 << geo.agblklog
        probes = [(a, b) for a in range(geo.agcount) for b in (0, 1, 17, geo.ag_length(a) - 1)]
        convs = []
        for agno, agbno in probes:
            convs += [f"agno {agno} agbno {agbno} fsb", f"agno {agno} agbno {agbno} daddr",
                      f"agno {agno} agbno {agbno} byte"]
        got = xfsdb.convert(img, *convs)
        for i, (agno, agbno) in enumerate(probes):
            fsb, daddr, byte = got[3 * i:3 * i + 3]
            assert geo.ag_to_fsb(agno, agbno) == fsb
            assert geo.ag_to_daddr(agno, agbno) == daddr
            assert geo.ag_to_byte(agno, agbno) == byte
            assert geo.fsb_to_byte(fsb) == byte
        inos = [geo.ag_to_ino(a, b, s) for a, b in probes[:6] for s in (0, 3)]
        got = xfsdb.convert(img, *[c for ino in inos for c in (f"ino {ino} agno", f"ino {ino} agbno",
                                                                  f"ino {ino} offset")])
        for i, ino in enumerate(inos):
            assert geo.ino_to_ag(ino) == tuple(got[3 * i:3 * i + 3])


@settings(max_examples=300)
@given(geo=geometries(), data=st.data())
def test_agnos_touched_is_every_ag_of_every_block(geo, data):
    ranges = data.draw(st.lists(st.tuples(st.integers(0, geo.size + (1 << 20)), st.integers(1, 1 << 22)),
                                max_size=4))
    want = set()
    for off, length in ranges:
        for byte in range(off - off % geo.blocksize, min(off + length, geo.size), geo.blocksize):
            want.add(geo.byte_to_ag(byte)[0])
    assert geo.agnos_touched(ranges) == want


# Lines of a ranges file as users and scripts write them: plain decimals (the fast path) and everything near
# them that is not one (units, hex, other digits, comments, huge or zero values, a device name).
_field = st.one_of(st.integers(0, 1 << 64).map(str), st.sampled_from(["0", "007", "4k", "0x10", "1b", "٣", "²",
                                                                       "-1", "1e3", "9" * 25]))
_line = st.builds(lambda dev, a, b, sep, tail: f"{dev}{a}{sep}{b}{tail}", st.sampled_from(["", "rt ", "log "]),
                  _field, _field, st.sampled_from([" ", "\t", "  "]), st.sampled_from(["", "\n", " # x\n", "\r\n"]))


@settings(max_examples=400)
@given(_line)
def test_a_ranges_line_reads_the_same_by_either_parse(line):
    """iter_ranges reads plain 'OFFSET LENGTH' byte lines without the unit grammar: exactly what the full
    parse of the line gives, or the same error."""
    from fsdaxctl.ranges import _parse_line, iter_ranges

    def outcome(f):
        try:
            return f()
        except UsageError as e:
            return str(e)

    fast = outcome(lambda: list(iter_ranges([line], "r.txt", 4096)))
    full = outcome(lambda: [_parse_line(line, "r.txt", 1, 4096)])
    assert fast == full
