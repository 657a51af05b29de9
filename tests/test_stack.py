"""The device stack's own layers (dm, md, routing): each offset map checked against the bytes it claims to map.

This kernel has no device-mapper and no md (CONFIG_MD is off), so the layouts are built the way the kernel's
documentation defines them (Documentation/admin-guide/device-mapper/linear.rst and striped.rst; md(4) for raid0
chunks and raid1 mirrors): a device whose every 8-byte word holds its own offset is cut into member devices by
that definition, written independently here, and every mapped byte is compared with the byte it is said to be.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsdaxctl.discovery.md import read_md_sysfs
from fsdaxctl.errors import UnsupportedError, UsageError
from fsdaxctl.stack import BLOCK, Dropped, Extent, Hop, Space, Stack
from fsdaxctl.stack.dm import dm_layers, parse_table
from fsdaxctl.stack.md import MdArray, Member, md_layers, parse_md_spec, settle_mirrors

S = 512


def pattern(size: int) -> bytes:
    """Every 8-byte word is its own byte offset: any misplaced byte shows."""
    return b"".join(struct.pack("<Q", i) for i in range(0, size, 8))


def stripe_members(dev: bytes, n: int, chunk: int, offsets: list[int]) -> list[bytearray]:
    """striped.rst: chunk c of the device is chunk c // n of stripe c % n, after each stripe's offset."""
    members = [bytearray(offsets[i] + len(dev) // n) for i in range(n)]
    for c in range(len(dev) // chunk):
        i, k = c % n, c // n
        members[i][offsets[i] + k * chunk:offsets[i] + (k + 1) * chunk] = dev[c * chunk:(c + 1) * chunk]
    return members


def assert_maps_bytes(stack, dev: bytes, member: bytes, name: str, off: int, length: int, data_start: int):
    """Every byte of member `name` in [off, off+length) either lands on the byte of `dev` it holds, or is
    dropped because it lies before the member's data; nothing is lost or invented."""
    r = stack.route(Extent(Space(BLOCK, name), off, length, "test"))
    covered = 0
    for path in r.paths:
        last = path[-1]
        if isinstance(last, Dropped):
            assert last.offset + last.length <= data_start
        else:
            hop = path[1]  # the layer's hop; the path ends with "the filesystem is here"
            start = int(hop.arithmetic.split()[1])  # "byte N - ...": the member byte this piece starts at
            assert off <= start and dev[hop.offset:hop.offset + hop.length] == bytes(member[start:start + hop.length])
        covered += last.length
    assert covered == length


def test_dm_table_text_shapes():
    # `dmsetup table` of one device, and of all devices (NAME: prefix), as dmsetup(8) prints them.
    one = parse_table(["0 2097152 linear 8:16 2048"], "t", "vg-lv")
    assert one["vg-lv"][0].devices == (("8:16", 2048),)
    many = parse_table(["vg-lv: 0 1024 linear 8:16 2048", "vg-lv: 1024 1024 linear 8:32 0",
                        "st: 0 4096 striped 2 128 /dev/sdb 0 /dev/sdc 0"], "t")
    assert [s.start for s in many["vg-lv"]] == [0, 1024]
    assert many["st"][0].devices == (("sdb", 0), ("sdc", 0)) and many["st"][0].chunk == 128


@pytest.mark.parametrize("lines, words", [
    (["0 10 linear sdb"], "linear takes"),
    (["0 10 striped 2 8 sdb 0"], "striped"),
    (["0 9 striped 2 8 sdb 0 sdc 0"], "divisible"),
    (["5 10 linear sdb 0"], "starts at sector 5"),
    (["0 10 linear sdb 0", "20 10 linear sdb 10"], "previous one ends"),
    (["0 x linear sdb 0"], "not a number"),
    (["0 -1 linear sdb 0"], "out of range"),
    (["0 10 linear sdb 99999999999999999999999"], "out of range"),
    ([""], "no table lines"),
    (["0 10 linear /dev/dm-0 0"], "itself"),
])
def test_dm_table_errors_are_one_line(lines, words):
    with pytest.raises(UsageError) as e:
        parse_table(lines, "tbl", "dm-0")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_dm_unsupported_target_named():
    with pytest.raises(UnsupportedError, match="thin"):
        parse_table(["0 10 thin 253:2 1"], "t", "dm-0")


@given(st.integers(1, 4), st.sampled_from([8, 16, 64]), st.data())
def test_dm_striped_maps_every_byte_to_the_same_byte(n, chunk_sectors, data):
    chunk = chunk_sectors * S
    size = n * chunk * 6
    dev = pattern(size)
    offsets = [data.draw(st.integers(0, 8)) * S for _ in range(n)]
    members = stripe_members(dev, n, chunk, offsets)
    table = " ".join(f"m{i} {offsets[i] // S}" for i in range(n))
    layers = dm_layers(parse_table([f"0 {size // S} striped {n} {chunk_sectors} {table}"], "t", "dm-0"))
    stack = Stack(layers, Space(BLOCK, "dm-0"))
    i = data.draw(st.integers(0, n - 1))
    off = data.draw(st.integers(0, len(members[i]) - 1))
    length = data.draw(st.integers(1, len(members[i]) - off))
    assert_maps_bytes(stack, dev, members[i], f"m{i}", off, length, offsets[i])


def test_dm_linear_two_segments_and_gap():
    dev = pattern(64 * S)
    a, b = bytearray(100 * S), bytearray(100 * S)
    a[10 * S:42 * S] = dev[:32 * S]          # dm sectors 0..31 = a sectors 10..41
    b[0:32 * S] = dev[32 * S:64 * S]          # dm sectors 32..63 = b sectors 0..31
    layers = dm_layers(parse_table(["0 32 linear a 10", "32 32 linear b 0"], "t", "dm-0"))
    stack = Stack(layers, Space(BLOCK, "dm-0"))
    r = stack.route(Extent(Space(BLOCK, "a"), 9 * S, 3 * S, "t"))
    kinds = [(type(p[-1]).__name__, p[-1].offset, p[-1].length) for p in r.paths]
    assert ("Hop", 0, 2 * S) in kinds and ("Dropped", 9 * S, S) in kinds
    hop = next(p[-1] for p in r.paths if isinstance(p[-1], Hop))
    assert dev[hop.offset:hop.offset + hop.length] == bytes(a[10 * S:12 * S])
    r = stack.route(Extent(Space(BLOCK, "b"), 31 * S, 2 * S, "t"))
    hop = next(p[-1] for p in r.paths if isinstance(p[-1], Hop))
    assert (hop.offset, hop.length) == (63 * S, S) and dev[63 * S:64 * S] == bytes(b[31 * S:32 * S])
    # the last byte of a's segment and the first byte past it
    r = stack.route(Extent(Space(BLOCK, "a"), 42 * S - 1, 2, "t"))
    assert [(type(p[-1]).__name__, p[-1].length) for p in r.paths] == [("Hop", 1), ("Dropped", 1)]


def raid0_members(dev: bytes, n: int, chunk: int, data_offset: int) -> list[bytearray]:
    """md(4) RAID0: chunk c of the array is chunk c // n of member c % n, after the data offset."""
    return stripe_members(dev, n, chunk, [data_offset] * n)


@given(st.integers(2, 4), st.sampled_from([4096, 65536]), st.data())
def test_md_raid0_maps_member_bytes_to_array_bytes(n, chunk, data):
    size = n * chunk * 4
    dev = pattern(size)
    members = raid0_members(dev, n, chunk, 8192)
    md = parse_md_spec("md0 raid0 chunk=%d %s" % (chunk, " ".join(f"m{i}@8k" for i in range(n))))
    stack = Stack(md_layers(md), Space(BLOCK, "md0"))
    i = data.draw(st.integers(0, n - 1))
    off = data.draw(st.integers(8192, len(members[i]) - 1))
    length = data.draw(st.integers(1, len(members[i]) - off))
    assert_maps_bytes(stack, dev, members[i], f"m{i}", off, length, 8192)


def test_md_raid1_is_recoverable_unless_every_mirror_is_bad():
    md = parse_md_spec("md0 raid1 sdb1@1m sdc1@1m")
    stack = Stack(md_layers(md), Space(BLOCK, "md0"))
    arrays = {"md0": md}
    one = [stack.route(Extent(Space(BLOCK, "sdb1"), (1 << 20) + 4096, 4096, "b"))]
    assert settle_mirrors(one, arrays) == []
    assert one[0].recoverable(one[0].paths[0]).startswith("raid1:")
    both = [stack.route(Extent(Space(BLOCK, "sdb1"), (1 << 20) + 4096, 4096, "b")),
            stack.route(Extent(Space(BLOCK, "sdc1"), (1 << 20) + 6144, 512, "c"))]
    lines = settle_mirrors(both, arrays)
    assert all(r.recoverable(r.paths[0]) == "" for r in both)
    assert lines == ["md0 bytes 6144..6655: bad on every raid1 member, no good copy"]  # only the common bytes
    # the md superblock area before the data offset is not array data
    r = stack.route(Extent(Space(BLOCK, "sdb1"), 4096, 512, "sb"))
    assert isinstance(r.paths[0][-1], Dropped) and r.paths[0][-1].kind == "md-metadata"


def test_md_linear_concatenates_in_slot_order():
    md = parse_md_spec("md0 linear chunk=4k a@1m+64k b@1m+64k")
    stack = Stack(md_layers(md), Space(BLOCK, "md0"))
    r = stack.route(Extent(Space(BLOCK, "b"), (1 << 20) + 100, 10, "t"))
    assert (r.paths[0][-1].offset, r.paths[0][-1].length) == (65536 + 100, 10)
    r = stack.route(Extent(Space(BLOCK, "a"), (1 << 20) + 65536 - 1, 2, "t"))  # last byte of a, then past it
    assert [(type(p[-1]).__name__, p[-1].length) for p in r.paths] == [("Hop", 1), ("Dropped", 1)]


def test_md_sysfs_attributes(tmp_path):
    # drivers/md/md.c: md/level, md/chunk_size (bytes), dev-NAME/{slot,offset (sectors),size (KiB)}
    base = tmp_path / "block" / "md0" / "md"
    for name, slot in (("sdb1", "0"), ("sdc1", "1"), ("sdd1", "none")):
        d = base / f"dev-{name}"
        d.mkdir(parents=True)
        (d / "slot").write_text(slot + "\n")
        (d / "offset").write_text("2048\n")
        (d / "size").write_text("1024\n")
    (base / "level").write_text("raid0\n")
    (base / "chunk_size").write_text("65536\n")
    md = read_md_sysfs(str(tmp_path), "md0")
    assert md == MdArray("md0", "raid0", 65536, (Member("sdb1", 0, 1 << 20, 1 << 20), Member("sdc1", 1, 1 << 20,
                                                                                            1 << 20)))


@pytest.mark.parametrize("spec, words", [
    ("md0 raid5 a b", "raid5"), ("md0 raid0 a b", "chunk"), ("md0", "expected"),
    ("md0 linear a b", "size"), ("md0 raid0 chunk=4k a+8k b+16k", "unequal"), ("md0 raid1 md0 sdc", "itself"),
    ("md0 raid1 sdb sdb", "twice"), ("md0 raid1 @1m sdc", "device name"),
])
def test_md_spec_errors(spec, words):
    with pytest.raises((UsageError, UnsupportedError)) as e:
        parse_md_spec(spec)
    assert words in str(e.value)


def test_stack_refuses_two_layers_from_one_space_and_names_strangers():
    md = parse_md_spec("md0 raid1 sdb1 sdc1")
    with pytest.raises(UsageError, match="two layers"):
        Stack(md_layers(md) + md_layers(parse_md_spec("md1 raid1 sdb1 sdd1")), Space(BLOCK, "md0"))
    stack = Stack(md_layers(md), Space(BLOCK, "md0"))
    r = stack.route(Extent(Space(BLOCK, "sde"), 0, 512, "x"))
    assert r.paths[0][-1].kind == "not-in-stack" and "sde" in r.paths[0][-1].reason
    with pytest.raises(UsageError):
        stack.route(Extent(Space(BLOCK, "sdb1"), -1, 512, "x"))
