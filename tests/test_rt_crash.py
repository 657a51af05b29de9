"""Crashed realtime filesystems against the kernel's own log recovery: tests/data/rt-crash holds filesystems
shut down (`xfs_io -x -c 'shutdown -f'`) while a workload on realtime files ran, recorded in a QEMU guest whose
kernel has CONFIG_XFS_RT (tests/make_rt_fixtures.py --crash); their truth.json is what that kernel's
GETFSMAP, FIEMAP and stat said after it mounted them, that is after its log recovery. fsdaxctl reads the
crashed images, replays the log in memory, and must give the same answer on both devices: block for block
with realtime groups (rt rmap btrees), free space and every realtime file block without them (the kernel's
GETFSMAP of a classic rt device knows only free and unknown). What the mount itself frees (inodes unlinked
while open, CoW staging) is freed in the comparison, as the kernel did."""

from __future__ import annotations

import os

import pytest

from fsdaxctl.ranges import merge_spans
from fsdaxctl.xfs import devices
from fsdaxctl.xfs import logrecover as L
from fsdaxctl.xfs.fs import XfsFilesystem
from tests.test_rt_fixtures import _blocks, _kernel_file_blocks

DATA = os.path.join(os.path.dirname(__file__), "data", "rt-crash")
CRASHED = sorted(n for n in os.listdir(DATA) if os.path.isfile(os.path.join(DATA, n, "truth.json")))
FREE = ("free", None, None, False)


def _replayed(paths):
    fs, rep = L.open_replayed(XfsFilesystem.open(paths["data"]))
    devices.attach(fs, None, paths.get("rt"))  # none: an internal realtime section (zoned)
    return fs, rep, L.unlinked_inodes(fs)


def _after_mount(owners, unlinked):
    """A block's owners once the mount has freed unlinked inodes and CoW staging (free if none is left)."""
    left = [o for o in owners if not (o[0] == "cow-staging" or (o[0] == "file" and o[1] in unlinked))]
    return left or [FREE]


GROUPED = [n for n in CRASHED if n.startswith(("rtgroups", "zoned"))]


def test_every_fixture_was_a_crash_the_kernel_recovered():
    assert len(CRASHED) >= 12 and {n.split("-s")[0] for n in CRASHED} == {
        "rtgroups", "rt-classic", "zoned-external", "zoned-internal"}


@pytest.mark.parametrize("name", GROUPED)
def test_crashed_rtgroups_agree_with_the_kernels_recovery(unpacked, name):
    """Both devices block for block (owner, inode, file offset, unwritten), nothing unknown, nothing the
    replay could not read: the rt rmap and refcount btrees' logged blocks and metadata-inode roots included;
    zoned filesystems too, their realtime section on a device of its own or inside the data device."""
    truth, paths = unpacked(name, "rt-crash")
    assert truth["log_recovery"]
    fs, rep, unlinked = _replayed(paths)
    assert rep.dirty and rep.transactions
    bs = fs.geo.blocksize
    for device in ("rt", "data"):
        omap = devices.owner_map(fs, device)
        size = devices.device_size(fs, device) if device == "rt" else fs.geo.size
        ours, _ = _blocks(omap.pieces(0, size), bs)
        kernel, _ = _blocks(truth["fsmap"][device], bs)
        assert omap.problems == [], omap.problems.lines(5)
        assert not any(o[0] == "unknown" for owners in ours.values() for o in owners)
        ours = {b: _after_mount(o, unlinked) for b, o in ours.items()}
        assert {b: o for b, o in ours.items() if b in kernel} == kernel, device
        assert all(o == [FREE] for b, o in ours.items() if b not in kernel)  # past the kernel's last record


@pytest.mark.parametrize("name", [n for n in CRASHED if n.startswith("rt-classic")])
def test_crashed_classic_rt_agrees_with_the_kernels_recovery(unpacked, name):
    """Free space exactly the kernel's GETFSMAP free space, every realtime file block where its FIEMAP puts
    it (the files the recovery left), the unlinked-while-open files' blocks freed by the mount."""
    truth, paths = unpacked(name, "rt-crash")
    assert truth["log_recovery"]
    fs, rep, unlinked = _replayed(paths)
    assert rep.dirty
    bs = fs.geo.blocksize
    omap = devices.owner_map(fs, "rt")
    pieces = omap.pieces(0, devices.device_size(fs, "rt"))
    assert omap.problems == [] and not [p for p in pieces if p.owner == "unknown"]
    freed = [(p.offset, p.offset + p.length) for p in pieces if p.owner == "file" and p.inode in unlinked]
    ours_free = merge_spans([(p.offset, p.offset + p.length) for p in pieces if p.owner == "free"] + freed)
    kernel_free = merge_spans((r["start"], r["start"] + r["length"]) for r in truth["fsmap"]["rt"]
                              if r["owner"] == "free space")
    assert ours_free == kernel_free
    files = {p.offset + i: (p.inode, p.file_offset + i, p.unwritten) for p in pieces
             if p.owner == "file" and p.inode not in unlinked for i in range(0, p.length, bs)}
    assert files and files == _kernel_file_blocks(truth, bs)


def _finish_with(fs, intents):
    """The effects a replay's end (`_Replayer.finish`) gives for these unfinished intents: (type, regions)."""
    import struct

    out = L.Replay()
    r = L._Replayer(fs, None, out)
    for i, (typ, body) in enumerate(intents):  # as _Replayer.intent records a logged intent
        r.intents[(typ, i + 1)] = ((1 << 32) | (i + 2), i, [struct.pack("<HHIQ", typ, 1, body[0], i + 1) + body[1]])
        out.intents.setdefault(L.INTENTS[typ], [0, 0, 0])[0] += 1
    r.finish()
    return out.effects


def test_realtime_intents_land_on_the_realtime_device(unpacked):
    """Every kind of intent that names realtime blocks puts its bytes on the realtime device (never the data
    device): extent-free, rmap and refcount intents of the rt kinds, and a bmap intent with the realtime flag.
    A mapping exchange names its files' ranges, which both devices' maps apply to those files' pieces."""
    import struct

    from fsdaxctl.xfs.rt import rtb_to_byte

    truth, paths = unpacked("rtgroups-s1", "rt-crash")
    fs, _, _ = _replayed(paths)
    sb, bs = fs.sb, fs.geo.blocksize
    rtb = (1 << sb.sb_rgblklog) | 7  # group 1, block 7
    at = rtb_to_byte(sb, rtb)
    ext16 = struct.pack("<QQ", rtb, 2)  # xfs_extent_64: start, length (+ pad)
    rmap = struct.pack("<QQQII", 135, rtb, 0, 2, 1)  # owner, start, file offset, length, MAP
    bmap = struct.pack("<QQQII", 135, rtb, 0, 2, L.XFS_BMAP_EXTENT_REALTIME | 1)
    cui = struct.pack("<QII", rtb, 2, 1)
    for typ, body in ((L.XFS_LI_EFI_RT, ext16), (L.XFS_LI_RUI_RT, rmap), (L.XFS_LI_CUI_RT, cui),
                      (L.XFS_LI_BUI, bmap)):
        effects = _finish_with(fs, [(typ, (1, body))])
        phys = [(e.kind, e.device, e.start, e.end) for e in effects if e.ino is None]
        assert phys == [("unknown", "rt", at, at + 2 * bs)], (hex(typ), phys)
    # a plain exchange of 16 blocks of two files (138's from block 10, 139's from 20; 139 has a hole at 20-24):
    # finished exactly, on whichever device the pieces are
    xmi = struct.pack("<QQIIQQQQ", 138, 139, 0, 0, 10, 20, 16, 0)
    effects = _finish_with(fs, [(L.XFS_LI_XMI, (0, xmi + bytes(16)))])  # + xmi_isize1, xmi_isize2
    assert [(e.kind, e.ino, e.ino2, e.off_lo, e.off_hi, e.off2) for e in effects if e.kind == "exchange"] == [
        ("exchange", 138, 139, 10, 25, 20)]
    # the two extent maps may be reshaped (their bmbt blocks unknown) and take a new block
    assert {(e.ino, e.bmbt) for e in effects if e.kind == "unknown"} == {(138, True), (139, True)}
    assert sorted(e.value for e in effects if e.kind == "may-allocate") == [138, 139]  # their extent maps may grow
    size = devices.device_size(fs, "rt")

    def owners():
        return {(p.offset + i, p.inode, (p.file_offset + i) // bs) for p in devices.owner_map(fs, "rt").pieces(0, size)
                if p.owner == "file" for i in range(0, p.length, bs)}

    def moved(b, ino, fb):
        if ino == 138 and 10 <= fb < 26:
            return b, 139, fb + 10
        if ino == 139 and 20 <= fb < 36:
            return b, 138, fb - 10
        return b, ino, fb

    before = owners()
    fs.replay = L.Replay(effects=effects)
    after = owners()
    assert after == {moved(*o) for o in before} and after != before
    assert {fb for _, ino, fb in after if ino == 138 and fb < 26} == set(range(10)) | set(range(15, 26))  # the hole
    # an exchange of file 1's written mappings only (XFS_EXCHMAPS_INO1_WRITTEN): the runs where 138 is written,
    # read from its extent map once the replayed filesystem can be read
    xmi = struct.pack("<QQIIQQQQ", 138, 139, 0, 0, 10, 20, 40, L.XFS_EXCHMAPS_INO1_WRITTEN)
    (e,) = [e for e in _finish_with(fs, [(L.XFS_LI_XMI, (0, xmi + bytes(16)))]) if e.kind.startswith("exchange")]
    assert (e.kind, e.ino, e.ino2) == ("exchange-written", 138, 139)
    from fsdaxctl.xfs.inode import bmap, read_inode

    written = {b for x in bmap(fs, read_inode(fs, 138)) if not x.unwritten
               for b in range(x.startoff, x.startoff + x.blockcount) if 10 <= b < 50}
    runs = L.written_only(fs, e)
    assert written and all(r.kind == "exchange" and r.off2 - r.off_lo == 10 for r in runs)
    assert {b for r in runs for b in range(r.off_lo, r.off_hi + 1)} == written


def test_intents_the_kernel_would_refuse_fail_the_replay(unpacked):
    """An intent extent with a flag bit or operation recovery does not know, a bmap intent of more than one
    extent, an exchange intent with padding set or the wrong size, an xattr intent of the wrong size: the
    kernel's recovery fails the mount on each (xfs_*_validate), so the replay stops with one line, never
    guesses."""
    import struct

    _, paths = unpacked("rtgroups-s1", "rt-crash")
    fs, _, _ = _replayed(paths)
    rmap = struct.pack("<QQQII", 135, 100, 0, 1, 1 | (1 << 20))  # MAP with an unknown bit
    bmap2 = struct.pack("<QQQII", 135, 100, 0, 1, 1) * 2
    cui = struct.pack("<QII", 100, 1, 9)  # refcount operation 9
    xmi = struct.pack("<QQIIQQQQ", 135, 136, 0, 0, 0, 0, 1, 0) + bytes(16)
    bad = [(L.XFS_LI_RUI, (1, rmap)), (L.XFS_LI_BUI, (2, bmap2)), (L.XFS_LI_CUI, (1, cui)),
           (L.XFS_LI_XMI, (1, xmi)), (L.XFS_LI_XMI, (0, xmi + bytes(8))), (L.XFS_LI_ATTRI, (0, bytes(8)))]
    for typ, body in bad:
        with pytest.raises(L._Fatal) as e:
            _finish_with(fs, [(typ, body)])
        assert "\n" not in str(e.value), str(e.value)


def test_a_classic_rt_bitmap_block_is_never_stamped():
    """Without realtime groups an rt bitmap block has no header: one whose first word happens to read 'BMPZ'
    is left as replayed (the kernel attaches no verifier that would stamp an LSN and CRC over its bits); with
    realtime groups the header's LSN and CRC are set."""
    buf = bytearray(b"BMPZ" + b"\xff" * 4092)
    assert not L.stamp(buf, 19, (7 << 32) | 1234, 4096, False) and buf == b"BMPZ" + b"\xff" * 4092
    assert L.stamp(buf, 19, (7 << 32) | 1234, 4096, True) and buf[24:32] == ((7 << 32) | 1234).to_bytes(8, "big")
