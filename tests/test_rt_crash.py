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
    devices.attach(fs, None, paths["rt"])
    return fs, rep, L.unlinked_inodes(fs)


def _after_mount(owners, unlinked):
    """A block's owners once the mount has freed unlinked inodes and CoW staging (free if none is left)."""
    left = [o for o in owners if not (o[0] == "cow-staging" or (o[0] == "file" and o[1] in unlinked))]
    return left or [FREE]


def test_every_fixture_was_a_crash_the_kernel_recovered():
    assert len(CRASHED) >= 8 and {n.split("-s")[0] for n in CRASHED} == {"rtgroups", "rt-classic"}


@pytest.mark.parametrize("name", [n for n in CRASHED if n.startswith("rtgroups")])
def test_crashed_rtgroups_agree_with_the_kernels_recovery(unpacked, name):
    """Both devices block for block (owner, inode, file offset, unwritten), nothing unknown, nothing the
    replay could not read: the rt rmap and refcount btrees' logged blocks and metadata-inode roots included."""
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
