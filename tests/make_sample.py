#!/usr/bin/env python3
"""Build fsdaxctl/data/sample.img.xz, the small XFS image `--sample` uses (needs root and loop devices).

Deterministic text content, so the image compresses to a few hundred KiB. Run from the repository root:
  python tests/make_sample.py
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.images import loop_mount, mkfs, write_file  # noqa: E402

OUT = "fsdaxctl/data/sample.img.xz"
BS = 4096


def text(name: str, size: int) -> bytes:
    line = f"{name}: the quick brown fox jumps over the lazy dog 0123456789\n".encode()
    return (line * (size // len(line) + 1))[:size]


def main():
    img = "/tmp/fsdaxctl-sample.img"
    mkfs(img, 64 << 20, ["-b", f"size={BS}", "-d", "agcount=2", "-m", "rmapbt=1,reflink=1", "-L", "sample"])
    with loop_mount(img) as m:
        for d in ("srv/db/snapshot", "var/log", "vm", "etc", "home/alice", "data"):
            os.makedirs(os.path.join(m, d))
        db = os.path.join(m, "srv/db/table.dat")
        log = os.path.join(m, "var/log/app.log")
        # Interleaved synced appends fragment both files (several extents each).
        for i in range(8):
            write_file(db, text("table.dat", 128 * 1024), i * 128 * 1024, fsync=True)
            write_file(log, text(f"app.log {i}", 16 * 1024), i * 16 * 1024, fsync=True)
        subprocess.run(["cp", "--reflink=always", db, os.path.join(m, "srv/db/snapshot/table.dat")], check=True)
        write_file(db, text("table.dat v2", 64 * 1024), 256 * 1024, fsync=True)  # copy-on-write: now only partly shared
        vm = os.path.join(m, "vm/disk.raw")
        write_file(vm, text("disk.raw boot", 64 * 1024), 0, fsync=True)
        write_file(vm, text("disk.raw data", 64 * 1024), 512 << 20, fsync=True)  # sparse: a hole of half a GiB
        subprocess.run(["xfs_io", "-c", f"falloc {1 << 20} {1 << 20}", vm], check=True)  # unwritten
        hosts = os.path.join(m, "etc/hosts")
        write_file(hosts, b"127.0.0.1 localhost\n", fsync=True)
        os.link(hosts, os.path.join(m, "etc/hosts.bak"))
        photo = os.path.join(m, "home/alice/report.txt")
        write_file(photo, text("report.txt", 40 * 1024), fsync=True)
        os.setxattr(photo, "user.comment", text("xattr", 6000))  # a remote attr value: attr-fork blocks
        frag = os.path.join(m, "data/many-extents")
        write_file(frag, text("many-extents", 600 * BS), fsync=True)
        # Punch every other block: 300 extents, more than the inode's fork holds -> a bmbt.
        subprocess.run(["xfs_io", *sum((["-c", f"fpunch {(2 * i + 1) * BS} {BS}"] for i in range(300)), []),
                        frag], check=True)
        os.symlink("../srv/db/table.dat", os.path.join(m, "data/table-link"))
        os.sync()
    with open(img, "rb") as fh:
        packed = lzma.compress(fh.read(), preset=9 | lzma.PRESET_EXTREME)
    with open(OUT, "wb") as fh:
        fh.write(packed)
    os.unlink(img)
    print(f"{OUT}: {len(packed)} bytes")


if __name__ == "__main__":
    main()
