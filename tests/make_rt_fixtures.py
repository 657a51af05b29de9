#!/usr/bin/env python3
"""Make tests/data/rt/: realtime-device and zoned XFS filesystems, and the kernel's own account of who owns
every byte of them, recorded by a newer Linux kernel in a QEMU guest.

Why a guest: the kernels these tools usually run on (the development host's 6.18 among them) are built
without CONFIG_XFS_RT, so a filesystem with a realtime section cannot even be mounted there, let alone asked
GETFSMAP about its realtime device; and Debian 12's xfsprogs 6.1 cannot make metadir/rtgroups/zoned
filesystems. So a Debian kernel package that has CONFIG_XFS_RT=y, and an xfsprogs (6.15) built from source,
make and populate the filesystems, and the guest's kernel says where everything went.

Not run by CI (it needs root, apt, QEMU and several minutes); it documents and reproduces the committed
fixtures. On a Debian 12 host, as root:

  python3 tests/make_rt_fixtures.py [--work /var/tmp/rt-vm] [--xfsprogs /work/scratch/xfsprogs]
                                    [--suite trixie-backports] [--flavour cloud-amd64] [--only NAME ...]
                                    [--skip-apt] [--crash [--seeds N ...] [--configs C ...]
                                    [--crash-dest DIR] [--crash-readme]]

--only NAME ... makes and records just those filesystems (one guest boot for them alone) and leaves the others'
directories as they are; --skip-apt reuses the kernel packages in WORK/debs (the same kernel as the others').

Steps:
1. apt-get install qemu-system-x86 busybox-static xz-utils cpio kmod coreutils findutils. Debian 12's own
   kernel (6.1) predates realtime groups (6.13) and zoned XFS (6.15), so the kernel comes from another Debian
   suite (--suite, default trixie-backports) through apt's ordinary client with a private configuration under
   WORK/apt (the host's own apt sources and state are left alone): apt-get update there, resolve
   linux-image-FLAVOUR to its versioned package and download (not install) it and, with the split packaging
   of newer kernels, its linux-binary-/linux-modules-/linux-base- parts, into WORK/debs (kept as a cache);
   unpack them into WORK/kroot; refuse a kernel whose config lacks CONFIG_XFS_RT=y. --suite bookworm uses the
   host's own apt sources (6.1: then only the classic realtime filesystems can be mounted).
2. xfsprogs: use mkfs.xfs, xfs_io, xfs_db, xfs_spaceman and xfs_repair from the source tree --xfsprogs
   (running `make io db spaceman repair` there first if one is missing).
3. Build WORK/initramfs.cpio.gz: busybox-static, those xfsprogs binaries, coreutils stat and findutils find
   (for stat -c and find -printf; busybox's lack them), util-linux's blkzone if the host has it, and the
   shared libraries ldd lists, and the modules needed (xfs, virtio_blk, with their dependencies) decompressed
   on the host (busybox insmod does not read .ko.xz/.ko.zst). /init is GUEST_SCRIPT below; /fs.sh, written
   from FILESYSTEMS, calls its do_fs once per filesystem.
4. Boot the kernel under QEMU (TCG by default) with one virtio disk (or, for the rt device of zoned-seq and
   zoned-gaps, an NVMe ZNS namespace: its zone size and zone capacity from the entry) per device of every
   filesystem (sparse, all-zero image files WORK/images/NAME.ROLE.img; the guest finds each by its virtio
   serial) and a results disk. For each filesystem the guest runs mkfs.xfs (with fstests'
   TEST_DIR/TEST_DEV/QA_CHECK_FS set, the only way mkfs.xfs 6.15 makes a filesystem under 300 MB or with a log
   under 64 MB), mounts it, populates it (populate in GUEST_SCRIPT: files on the data device, realtime files
   through an rtinherit directory and through chattr +r, several extents, holes, unwritten extents, an
   extent-btree (bmbt) file, hard links, directories, and on reflink filesystems whole and partial reflinks
   and a copy-on-write overwrite; then the entry's extra populate_EXTRA), syncs, and records: GETFSMAP per
   device (xfs_io fsmap -d/-r/-l, each plain, -v and -m), FIEMAP and bmap -v of every regular file, stat -c
   '%i %s %f %h %n' and xfs_io stat -v (xflags) of every file, find -printf '%i %p'; then unmounts and records
   blkzone report of a zoned device, xfs_db -c 'sb 0' -c print (and the rtgroup superblock where there is
   one) and xfs_repair -n. It writes its results as a tar onto the results disk after every filesystem.
5. Copy out: for each filesystem tests/data/rt/NAME/raw/*.txt (the guest's outputs as they are),
   tests/data/rt/NAME/ROLE.img.xz (the device images after the clean unmount, xz -9) and
   tests/data/rt/NAME/truth.json (the same outputs parsed: see parse_fs); tests/data/rt/raw/ (the guest's
   versions, module loading, dmesg, and the host's QEMU command line and console; with --only, into each
   recorded filesystem's NAME/raw/run/ instead) and tests/data/rt/README.md (every filesystem's row, the ones
   not made by this run as their truth.json says).
Every byte in tests/data/rt/ comes from the guest (its outputs, or the disks it wrote), or is parsed from them.

--crash makes tests/data/rt-crash/ instead (tests/data/rt is left alone): crashed realtime filesystems, for
checking a log replay against the kernel's own recovery. For each of CRASH_CONFIGS (rtgroups, rt-classic,
zoned-external, zoned-internal: no rt device, its realtime section inside the data disk; --configs: some of
them) and each seed (--seeds, default 1-4, zoned-*: 1 and 2), a first boot (WORK/crash/boot1) runs
mkfs.xfs, mounts, makes a few realtime files, holds one open and unlinks it, starts a workload on realtime
files in the background (steps drawn from the seed: writes, appends, overwrites, direct I/O, fallocate,
punch, zero, truncate, unlink, rename, unlink-while-open, reflink copies on rtgroups, freeze/thaw, sync,
fsync; a step the kernel refuses, such as fallocate on zoned, is logged and the workload goes on) and, once
the step drawn from the fixture's name has begun and a drawn delay has passed, runs xfs_io -x -c 'shutdown -f' while it
runs, then unmounts. The host keeps those disks (WORK/crash/crashed: the committed NAME/ROLE.img.xz, the log
dirty). A second boot (WORK/crash/boot2) on copies of them records their sha256 and xfs_logprint -t, mounts
them (the kernel recovers the log; dmesg kept), records the recovered filesystem as `record` does for
tests/data/rt (GETFSMAP of both devices, FIEMAP, stat, paths), unmounts and runs xfs_repair -n. See
tests/data/rt-crash/README.md (written by the run, over every fixture in --crash-dest; --crash --crash-readme
rewrites it alone, without a guest). With --configs (or --seeds other than the defaults) the other fixtures and
the top-level raw/ are left alone, and the run's guest-wide outputs go into each of its fixtures' NAME/raw/run/.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vm import GUEST_PROLOGUE, boot, copy_with_libs, initramfs_tree, pack_initramfs, sh  # noqa: E402  (run as a script: tests/ is not a package path then)

DEST = os.path.join(HERE, "data", "rt")
MiB = 1 << 20
OUT_DISK_SIZE = 64 * MiB
ZNS_ZONE = 16 * MiB  # an emulated ZNS namespace's zone size, and its zones' capacity, unless the entry says

# One entry per filesystem: name (the directory under tests/data/rt), its devices (role -> image size; roles
# data, rt, log), mkfs.xfs options (@RT@ and @LOG@ stand for the guest's device nodes), extra mount options,
# whether it has reflink, and what it is for; extra: a populate_EXTRA function of GUEST_SCRIPT run after the
# common populating (files of that filesystem only); zns: the roles whose device is an emulated NVMe ZNS
# namespace (zones of zone_size bytes, default ZNS_ZONE, of which zone_capacity bytes are writable, default
# all). The data device is 128 MiB (mkfs.xfs's defaults there: 4 AGs of 32 MiB, 4 KiB blocks); 512-byte
# sectors, as virtio disks have.
FILESYSTEMS = [
    dict(name="rt-classic", disks={"data": 128 * MiB, "rt": 96 * MiB},
         mkfs="-m metadir=0,rmapbt=0,reflink=0 -r rtdev=@RT@", mount="rtdev=@RT@", reflink=False,
         about="classic realtime device: one rt bitmap and summary, no rtgroups, no rt rmap (realtime extent "
               "size one block)"),
    dict(name="rt-classic-ext16k-logdev", disks={"data": 128 * MiB, "rt": 96 * MiB, "log": 32 * MiB},
         mkfs="-m metadir=0,rmapbt=0,reflink=0 -r rtdev=@RT@,extsize=16k -l logdev=@LOG@",
         mount="rtdev=@RT@,logdev=@LOG@", reflink=False,
         about="classic realtime device with a 16 KiB realtime extent size, and an external log device"),
    dict(name="rtgroups", disks={"data": 128 * MiB, "rt": 128 * MiB},
         mkfs="-m metadir=1,rmapbt=1,reflink=1 -r rtdev=@RT@,rgcount=4", mount="rtdev=@RT@", reflink=True,
         about="metadata directory tree with 4 realtime groups, each with its rt rmap and refcount btrees "
               "(reflink on the realtime device)"),
    dict(name="rtgroups-3", disks={"data": 128 * MiB, "rt": 128 * MiB},
         mkfs="-m metadir=1,rmapbt=1,reflink=1 -r rtdev=@RT@,rgcount=3", mount="rtdev=@RT@", reflink=True,
         about="as rtgroups but 3 realtime groups of 10923 blocks: a group size that is not a power of two, so "
               "realtime block numbers (group << rgblklog | block in group) are not device blocks"),
    dict(name="zoned-external", disks={"data": 128 * MiB, "rt": 128 * MiB},
         mkfs="-r zoned=1,rtdev=@RT@,rgcount=8", mount="rtdev=@RT@", reflink=False,
         about="zoned realtime device (an ordinary virtio disk, so every zone is conventional) with 8 "
               "realtime groups (zones) of 16 MiB; mkfs.xfs 6.15 turns rmapbt on and reflink off for zoned"),
    dict(name="zoned-seq", disks={"data": 128 * MiB, "rt": 128 * MiB}, zns=["rt"],
         mkfs="-r zoned=1,rtdev=@RT@", mount="rtdev=@RT@", reflink=False,
         about="zoned realtime device that really is zoned: an emulated NVMe ZNS namespace (512-byte blocks) "
               "of 8 sequential-write-required zones of 16 MiB, one realtime group per zone (QEMU keeps the "
               "zones' write pointers in memory only: the image holds the data, not the zone states)"),
    dict(name="zoned-internal", disks={"data": 224 * MiB},
         mkfs="-r zoned=1,start=128m,rgcount=8", mount="", reflink=False,
         about="zoned filesystem with an internal realtime section: one disk, the data section in its first "
               "128 MiB and the realtime section (8 zones of 12 MiB) from rtstart=128 MiB on"),
    dict(name="zoned-gaps", disks={"data": 128 * MiB, "rt": 128 * MiB}, zns=["rt"], zone_capacity=12 * MiB,
         mkfs="-r zoned=1,rtdev=@RT@", mount="rtdev=@RT@", reflink=False, extra="past_zone",
         about="as zoned-seq but the ZNS zones' capacity (12 MiB) is smaller than their size (16 MiB): mkfs.xfs "
               "6.15 sets the ZONE_GAPS incompat feature (0x400) by itself when a zoned rt device's zone "
               "capacity differs from its zone size; each realtime group is one zone, its 3072 blocks "
               "(rgextents, the capacity) at a power-of-two boundary (rgblklog 12: 16 MiB), and the last 4 MiB "
               "of every zone a gap the filesystem does not use; rt/big.dat (14 MiB, more than a zone holds) "
               "has blocks beyond the first group"),
]
MKFS_ENV = {"TEST_DIR": "/mnt", "TEST_DEV": "@DATA@", "QA_CHECK_FS": "xfs"}

MODULES = ["xfs", "virtio_blk"]
XFSPROGS_BINARIES = {"mkfs/mkfs.xfs": "/usr/sbin/mkfs.xfs", "io/xfs_io": "/usr/sbin/xfs_io",
                     "db/xfs_db": "/usr/sbin/xfs_db", "spaceman/xfs_spaceman": "/usr/sbin/xfs_spaceman",
                     "repair/xfs_repair": "/usr/sbin/xfs_repair"}
# coreutils' stat and findutils' find go first in PATH, ahead of busybox's applets
HOST_BINARIES = {"/usr/bin/stat": "/opt/bin/stat", "/usr/bin/find": "/opt/bin/find"}
# util-linux's blkzone (zone sizes, capacities, write pointers and conditions of a zoned device), if the host has it
OPTIONAL_HOST_BINARIES = {"/usr/sbin/blkzone": "/opt/bin/blkzone"}

GUEST_SCRIPT = r"""#!/bin/sh
# /init of the guest: every file under /tmp/out ends up in tests/data/rt (via a tar on the results disk).
""" + GUEST_PROLOGUE + r"""O=/tmp/out
mkdir -p $O
say() { echo "@@ $*"; echo "$*" >> $O/steps.log; }
# run DIR NAME CMD...: stdout to DIR/NAME, stderr to DIR/NAME.stderr (kept only if not empty); logged with rc
run() {
  d=$1; n=$2; shift 2
  "$@" > $d/$n 2> $d/$n.stderr; rc=$?
  [ -s $d/$n.stderr ] || rm -f $d/$n.stderr
  printf '%s\trc=%s\t%s\n' "$n" "$rc" "$*" >> $d/commands.log
  echo "@@ [$n rc=$rc] $*"
  return $rc
}
# p CMD...: a populating step, logged with its rc in $F/populate.log (a refused step is recorded, not fatal)
p() {
  echo "+ $*" >> $F/populate.log
  "$@" >> $F/populate.log 2>&1; rc=$?
  echo "rc=$rc" >> $F/populate.log
  [ $rc = 0 ] || printf '%s\t%s\n' "$rc" "$*" >> $F/populate-failed.txt
  return $rc
}
# dev SERIAL: the virtio disk whose serial is SERIAL, or the namespace of the NVMe controller whose serial it is
dev() {
  for b in /sys/block/vd*; do [ "$(cat $b/serial 2>/dev/null)" = "$1" ] && { echo /dev/${b##*/}; return; }; done
  for b in /sys/block/nvme*; do [ "$(cat $b/device/serial 2>/dev/null | tr -d ' ')" = "$1" ] && { echo /dev/${b##*/}; return; }; done
}
checkpoint() { dmesg > $O/dmesg-full.txt; (cd /tmp && tar cf $RES out) && sync; echo "@@ checkpoint $1"; }

# populate MNT REFLINK
populate() {
  M=$1
  p mkdir -p $M/data $M/rt
  p xfs_io -c 'chattr -t' $M/data  # data-device files, also where mkfs put rtinherit on the root (zoned)
  p xfs_io -c 'chattr +t' $M/rt    # rtinherit: the files and directories made below it are realtime (inherit)
  p mkdir -p $M/data/sub/deeper $M/data/many $M/rt/sub
  p xfs_io -c 'stat -v' $M $M/data $M/rt $M/rt/sub
  # on the data device
  p xfs_io -f -c 'pwrite -S 0xa1 -b 64k 0 64k' -c fsync $M/data/a.dat
  p xfs_io -f -c 'pwrite -S 0xb2 -b 300k 0 300k' -c fsync $M/data/b.dat
  p ln $M/data/a.dat $M/data/sub/a.hard
  echo hello > $M/data/sub/deeper/small.txt
  c=""; i=0; while [ $i -lt 32 ]; do c="$c -c 'pwrite -S 0xc3 $((i * 8))k 4k'"; i=$((i + 1)); done
  p sh -c "xfs_io -f $c -c fsync $M/data/frag.dat"
  i=1; while [ $i -le 40 ]; do : > $M/data/many/an-empty-file-with-a-long-name-$i; i=$((i + 1)); done
  # realtime files (below the rtinherit directory)
  p xfs_io -f -c 'pwrite -S 0x11 -b 256k 0 256k' -c fsync $M/rt/one.dat
  p ln $M/rt/one.dat $M/rt/sub/one.hard
  # several extents without holes: 64 KiB pieces from the last to the first, interleaved with another
  # file's, each written out before the next (the allocator's choice next to the following piece is taken)
  i=7; while [ $i -ge 0 ]; do
    p xfs_io -f -c "pwrite -S 0x22 $((i * 64))k 64k" -c fsync $M/rt/multi.dat
    p xfs_io -f -c "pwrite -S 0x33 $((i * 64))k 64k" -c fsync $M/rt/spacer.dat
    i=$((i - 1)); done
  # holes, and a size past the last extent
  p xfs_io -f -c 'pwrite -S 0x44 0 64k' -c 'pwrite -S 0x44 1m 64k' -c 'pwrite -S 0x44 3m 16k' -c 'truncate 6m' \
      -c fsync $M/rt/sparse.dat
  # unwritten extents: preallocated, partly written, and preallocated past EOF
  p xfs_io -f -c 'falloc 0 512k' -c 'pwrite -S 0x55 128k 64k' -c 'falloc -k 512k 256k' -c fsync $M/rt/prealloc.dat
  # an extent-btree (bmbt) file: 64 separate 4 KiB pieces, 64 KiB apart
  c=""; i=0; while [ $i -lt 64 ]; do c="$c -c 'pwrite -S 0x66 $((i * 64))k 4k'"; i=$((i + 1)); done
  p sh -c "xfs_io -f $c -c fsync $M/rt/bmbt.dat"
  p touch $M/rt/empty.dat
  echo "a small realtime file" > $M/rt/sub/tiny.txt
  # a realtime file outside the rtinherit directory: the flag set on the still empty file
  p xfs_io -f -c 'chattr +r' -c 'pwrite -S 0x77 0 96k' -c fsync $M/data/rtflag.dat
  p ln -s rt/one.dat $M/one.link
  if [ "$2" = 1 ]; then
    p xfs_io -f -c "reflink $M/data/b.dat" -c fsync $M/data/b.refl
    p xfs_io -f -c "reflink $M/rt/one.dat" -c fsync $M/rt/refl-full.dat
    # partial: 128 KiB of one.dat from its offset 64 KiB, into the middle of a file of its own
    p xfs_io -f -c 'pwrite -S 0x88 0 256k' -c fsync -c "reflink $M/rt/one.dat 64k 64k 128k" -c fsync $M/rt/refl-part.dat
    # copy-on-write: overwrite 8 KiB of the whole-file reflink (one.dat keeps its blocks)
    p xfs_io -c 'pwrite -S 0x99 32k 8k' -c fsync $M/rt/refl-full.dat
    # a reflink between the data device and the realtime device is refused (EINVAL): recorded
    p xfs_io -f -c "reflink $M/data/b.dat" $M/rt/from-data.dat
  fi
  p sync
}

# populate_past_zone MNT: a realtime file larger than a zone's capacity, so that it has blocks beyond group 0
populate_past_zone() {
  p xfs_io -f -c 'pwrite -S 0xab -b 1m 0 14m' -c fsync $1/rt/big.dat
  p sync
}

# record F MNT HASLOG
record() {
  F=$1; M=$2
  for w in d r $([ "$3" = 1 ] && echo l); do
    run $F fsmap-$w.txt xfs_io -r -c "fsmap -$w" $M
    run $F fsmap-$w-v.txt xfs_io -r -c "fsmap -$w -v" $M
    run $F fsmap-$w-m.txt xfs_io -r -c "fsmap -$w -m" $M
  done
  run $F fsmap-all-v.txt xfs_io -r -c 'fsmap -v' $M
  # /opt/bin/find and /opt/bin/stat by path: busybox's shell runs its own applets ahead of PATH
  run $F find.txt /opt/bin/find $M -printf '%i %p\n'
  run $F stat.txt /opt/bin/find $M -exec /opt/bin/stat -c '%i %s %f %h %n' {} +
  run $F xfs-stat.txt sh -c "/opt/bin/find $M ! -type l | while read -r f; do echo \"== \$f\"; xfs_io -r -c 'stat -v' \"\$f\"; done"
  run $F fiemap.txt sh -c "/opt/bin/find $M -type f | while read -r f; do echo \"== \$f\"; xfs_io -r -c 'fiemap -v' \"\$f\"; done"
  run $F bmap.txt sh -c "/opt/bin/find $M -type f | while read -r f; do echo \"== \$f\"; xfs_io -r -c 'bmap -v' \"\$f\"; done"
  run $F statfs.txt xfs_io -r -c statfs $M
  run $F info.txt xfs_spaceman -c info $M  # what xfs_info runs (its script needs findmnt, absent here)
  run $F df.txt df -k $M
}

# do_fs IDX NAME REFLINK MKFS-OPTIONS MOUNT-OPTIONS [EXTRA]
do_fs() {
  idx=$1; name=$2; refl=$3
  D=$(dev f${idx}d); R=$(dev f${idx}r); L=$(dev f${idx}l)
  F=$O/$name; mkdir -p $F
  say "$name: data=$D rt=$R log=$L"
  for x in data:$D rt:$R log:$L; do
    r=${x%%:*}; n=${x#*:}; [ -n "$n" ] || continue
    echo "$r $n $(cat /sys/block/${n#/dev/}/dev) $(($(cat /sys/block/${n#/dev/}/size) * 512))"
  done > $F/devices.txt
  opts=$(echo "$4" | sed "s#@RT@#$R#g; s#@LOG@#$L#g")
  mopts=$(echo "$5" | sed "s#@RT@#$R#g; s#@LOG@#$L#g")
  echo "mkfs.xfs -f $opts $D" > $F/mkfs-command.txt
  echo "mount -t xfs ${mopts:+-o $mopts }$D /mnt" > $F/mount-command.txt
  dmesg > /tmp/dmesg.before
  if ! run $F mkfs.txt env TEST_DIR=/mnt TEST_DEV=$D QA_CHECK_FS=xfs mkfs.xfs -f $opts $D; then
    echo "mkfs.xfs refused: $(cat $F/mkfs.txt.stderr 2>/dev/null | head -3 | tr '\n' ' ')" > $F/skipped.txt
    say "$name: SKIPPED (mkfs)"; checkpoint $name; return
  fi
  if ! run $F mount.txt mount -t xfs ${mopts:+-o $mopts} $D /mnt; then
    dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg.txt
    echo "the kernel refused the mount: $(cat $F/mount.txt.stderr 2>/dev/null | head -2 | tr '\n' ' ') dmesg: $(grep -i xfs $F/dmesg.txt | tail -3 | tr '\n' ' ')" > $F/skipped.txt
    say "$name: SKIPPED (mount)"; checkpoint $name; return
  fi
  grep " /mnt " /proc/mounts > $F/proc-mounts.txt
  populate /mnt $refl
  [ -z "$6" ] || populate_$6 /mnt
  record $F /mnt $([ -n "$L" ] && echo 1)
  run $F umount.txt umount /mnt
  # a zoned device's zones as the kernel reports them after the unmount (size, capacity, write pointer, state)
  for x in data:$D rt:$R log:$L; do
    r=${x%%:*}; n=${x#*:}; [ -n "$n" ] || continue
    z=$(cat /sys/block/${n#/dev/}/queue/zoned 2>/dev/null)
    [ -n "$z" ] && [ "$z" != none ] && [ -x /opt/bin/blkzone ] && run $F blkzone-$r.txt /opt/bin/blkzone report $n
  done
  dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg.txt
  dbo="${R:+-R $R} ${L:+-l $L}"
  run $F xfs_db-sb0.txt xfs_db -r $dbo -c 'sb 0' -c print $D
  run $F xfs_db-info.txt xfs_db -r $dbo -c info $D
  grep -q -E '^rgcount = [1-9]' $F/xfs_db-sb0.txt && run $F xfs_db-rtsb.txt xfs_db -r $dbo -c rtsb -c print $D
  run $F xfs_repair-n.txt xfs_repair -n ${R:+-r $R} ${L:+-l $L} $D
  say "$name: done"
  checkpoint $name
}

say "guest up: $(uname -a)"
for m in $(cat /modules.list); do insmod /lib/modules/$(uname -r)/$m 2>> $O/insmod.log || echo "insmod $m failed" >> $O/insmod.log; done
sleep 1
RES=$(dev results)
[ -n "$RES" ] || { echo "@@ no results disk"; poweroff -f; }
cat /proc/cmdline > $O/proc-cmdline.txt
run $O uname.txt uname -a
run $O mkfs-version.txt mkfs.xfs -V
run $O xfs_io-version.txt xfs_io -V
run $O lsblk.txt sh -c 'for b in /sys/block/vd* /sys/block/nvme*; do [ -e $b ] || continue; echo "${b##*/} $(cat $b/serial $b/device/serial 2>/dev/null | tr -d " ") $(cat $b/dev) $(cat $b/size) $(cat $b/queue/logical_block_size) $(cat $b/queue/zoned) $(cat $b/queue/chunk_sectors) $(cat $b/queue/nr_zones 2>/dev/null)"; done'
. /fs.sh
dmesg > $O/dmesg-full.txt
say "done"
cd /tmp && tar cf $RES out && sync
echo "@@GUEST-DONE"
poweroff -f
"""


def apt_options(work, suite):
    """apt's options for a private configuration: sources for SUITE only, lists and cache under WORK/apt."""
    if suite == "bookworm":
        return []
    a = os.path.join(work, "apt")
    for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        os.makedirs(os.path.join(a, d), exist_ok=True)
    with open(os.path.join(a, "etc/sources.list"), "w") as f:
        f.write(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian "
                f"{suite} main\n")
    conf = [f"Dir::Etc::SourceList={a}/etc/sources.list", f"Dir::Etc::SourceParts={a}/etc/sources.list.d",
            f"Dir::Etc::Preferences={a}/etc/preferences", f"Dir::Etc::PreferencesParts={a}/etc/preferences.d",
            f"Dir::State::Lists={a}/lists", f"Dir::Cache={a}/cache", "APT::Architecture=amd64",
            "Debug::NoLocking=1", "APT::Sandbox::User=root"]
    return [x for c in conf for x in ("-o", c)]


def depends(opts, pkg):
    out = subprocess.run(["apt-cache", *opts, "depends", pkg], check=True, capture_output=True, text=True).stdout
    return re.findall(r"^\s*\|?(?:Pre)?Depends: (\S+)$", out, re.M)


def prepare_host(work, suite, flavour, skip_apt):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    debs = os.path.join(work, "debs")
    os.makedirs(debs, exist_ok=True)
    if not skip_apt:
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86", "busybox-static",
           "xz-utils", "zstd", "cpio", "kmod", "coreutils", "findutils", env=env)
        opts = apt_options(work, suite)
        if opts:
            sh("apt-get", *opts, "update", "-qq")
        # linux-image-FLAVOUR -> linux-image-VERSION-FLAVOUR (-> linux-binary-/linux-modules-/linux-base-...)
        image = next(d for d in depends(opts, "linux-image-" + flavour)
                     if re.match(r"linux-image-[0-9].*-" + re.escape(flavour) + "$", d))
        kver = image[len("linux-image-"):]
        pkgs = [image] + [d for d in depends(opts, image)
                          if d.startswith(("linux-binary-", "linux-modules-", "linux-base-")) and d.endswith(kver)]
        with open(os.path.join(debs, "packages.txt"), "w") as f:
            f.write(f"{kver}\n" + "\n".join(pkgs) + "\n")
        for p in pkgs:
            if not glob.glob(os.path.join(debs, p + "_*.deb")):
                sh("apt-get", *opts, "download", p, cwd=debs)
    with open(os.path.join(debs, "packages.txt")) as f:
        kver, *pkgs = f.read().split()
    names = [os.path.basename(glob.glob(os.path.join(debs, p + "_*.deb"))[0]) for p in pkgs]
    kroot = os.path.join(work, "kroot")
    shutil.rmtree(kroot, ignore_errors=True)
    for n in names:
        sh("dpkg-deb", "-x", os.path.join(debs, n), kroot)
    # the modules are in /lib/modules or, in newer packages, /usr/lib/modules; vmlinuz in /boot or beside them
    base = kroot + "/usr" if os.path.isdir(kroot + "/usr/lib/modules/" + kver) else kroot
    mdir = os.path.join(base, "lib/modules", kver)
    vmlinuz = next(p for p in (os.path.join(kroot, "boot", "vmlinuz-" + kver), os.path.join(mdir, "vmlinuz"))
                   if os.path.exists(p))
    config = next(p for p in (os.path.join(kroot, "boot", "config-" + kver), os.path.join(mdir, "config"))
                  if os.path.exists(p))
    with open(config) as f:
        cfg = f.read()
    for want in ("CONFIG_XFS_FS=", "CONFIG_XFS_RT=y"):
        if want not in cfg:
            sys.exit(f"{config} lacks {want}: this kernel cannot mount a realtime XFS filesystem")
    sh("depmod", "-b", base, kver)
    return dict(kver=kver, mdir=mdir, vmlinuz=vmlinuz, debs=names, suite=suite, flavour=flavour,
                config=[l for l in cfg.splitlines() if l.startswith(("CONFIG_XFS", "CONFIG_BLK_DEV_ZONED"))])


def prepare_xfsprogs(src):
    missing = [b.split("/")[0] for b in XFSPROGS_BINARIES if not os.path.exists(os.path.join(src, b))]
    if missing:
        sh("make", *missing, cwd=src)
    ver = {}
    with open(os.path.join(src, "VERSION")) as f:
        for line in f:
            m = re.match(r"PKG_(MAJOR|MINOR|REVISION)=(\d+)", line)
            if m:
                ver[m.group(1)] = m.group(2)
    desc = subprocess.run(["git", "-C", src, "describe", "--tags", "--always"], capture_output=True,
                          text=True).stdout.strip()
    return f"{ver['MAJOR']}.{ver['MINOR']}.{ver['REVISION']}" + (f" ({desc})" if desc else "")


def fs_script(filesystems):
    """/fs.sh: one do_fs call per filesystem; its disks carry the serials f<IDX>d, f<IDX>r, f<IDX>l."""
    lines = []
    for i, fs in enumerate(filesystems):
        lines.append(f"do_fs {i} {fs['name']} {int(fs['reflink'])} '{fs['mkfs']}' '{fs['mount']}'"
                     + (f" {fs['extra']}" if fs.get("extra") else ""))
    return "\n".join(lines) + "\n"


def build_initramfs(work, kern, xfsprogs, filesystems, fs_sh=None, extra=None):
    """WORK/initramfs.cpio.gz; /fs.sh is FS_SH if given, else one do_fs call per filesystem; EXTRA: more
    {source: guest path} binaries (a relative source is in the xfsprogs tree)."""
    root = initramfs_tree(work)
    for b, dest in XFSPROGS_BINARIES.items():
        copy_with_libs(root, os.path.join(xfsprogs, b), dest)
    for b, dest in HOST_BINARIES.items():
        copy_with_libs(root, b, dest)
    for b, dest in (extra or {}).items():
        copy_with_libs(root, os.path.join(xfsprogs, b), dest)
    for b, dest in OPTIONAL_HOST_BINARIES.items():
        if os.path.exists(b):
            copy_with_libs(root, b, dest)
    # modules in dependency order from modules.dep, decompressed
    kver, mdir = kern["kver"], kern["mdir"]
    deps = {}
    with open(os.path.join(mdir, "modules.dep")) as f:
        for line in f:
            k, v = line.split(":", 1)
            deps[re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(k))] = (k, v.split())
    order = []

    def add(name):
        key = name if name in deps else name.replace("_", "-")
        if key not in deps:
            print(f"module {name}: built in", flush=True)
            return
        path, d = deps[key]
        for x in d:
            add(re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(x)))
        if path not in order:
            order.append(path)

    for m in MODULES:
        add(m)
    plain = []
    for p in order:
        src = os.path.join(mdir, p)
        q = re.sub(r"\.(xz|zst|gz)$", "", p)
        dst = os.path.join(root, "lib/modules", kver, q)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tool = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dc"], ".gz": ["gzip", "-dc"]}.get(os.path.splitext(p)[1])
        if tool:
            with open(dst, "wb") as f:
                subprocess.run(tool + [src], check=True, stdout=f)
        else:
            shutil.copy2(src, dst)
        plain.append(q)
    with open(os.path.join(root, "fs.sh"), "w") as f:
        f.write(fs_sh if fs_sh is not None else fs_script(filesystems))
    return pack_initramfs(work, root, mdir, kver, plain, GUEST_SCRIPT)


def run_guest(work, kern, initrd, filesystems, accel, timeout):
    imgdir = os.path.join(work, "images")
    shutil.rmtree(imgdir, ignore_errors=True)
    os.makedirs(imgdir)
    out = os.path.join(work, "out.img")
    drives = [(out, "results", OUT_DISK_SIZE)]
    zns = {}  # serial -> (zone size, zone capacity)
    for i, fs in enumerate(filesystems):
        for role, size in fs["disks"].items():
            drives.append((os.path.join(imgdir, f"{fs['name']}.{role}.img"), f"f{i}{role[0]}", size))
            if role in fs.get("zns", ()):
                zsize = fs.get("zone_size", ZNS_ZONE)
                zns[f"f{i}{role[0]}"] = (zsize, fs.get("zone_capacity", zsize))
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", "max", "-smp", "1", "-m", "1G", "-machine", "pc",
           "-kernel", kern["vmlinuz"], "-initrd", initrd, "-append", "console=ttyS0 panic=-1 oops=panic",
           "-nographic", "-no-reboot"]
    for n, (path, serial, size) in enumerate(drives):
        with open(path, "wb") as f:  # a fresh, sparse, all-zero disk
            f.truncate(size)
        cmd += ["-drive", f"file={path},format=raw,if=none,id=d{n},cache=writeback"]
        if serial in zns:  # an NVMe controller with one zoned namespace
            zsize, zcap = zns[serial]
            cmd += ["-device", f"nvme,id=nvme{n},serial={serial}",
                    "-device", f"nvme-ns,drive=d{n},bus=nvme{n},nsid=1,logical_block_size=512,"
                               f"physical_block_size=512,zoned=true,zoned.zone_size={zsize // MiB}M,"
                               f"zoned.zone_capacity={zcap // MiB}M"]
        else:
            cmd += ["-device", f"virtio-blk-pci,drive=d{n},serial={serial}"]
    boot(cmd, work, timeout)
    return out, imgdir


# ---- parsing the guest's outputs into truth.json ----

FMAP_LINE = re.compile(r"^\s*(\d+): (\d+):(\d+) \[(\d+)\.\.(\d+)\]: (.*) (\d+)$")
FLAGS = {0o1000000: "attr_fork", 0o100000: "shared", 0o10000: "unwritten", 0o1000: "not_begin_stripe_unit",
         0o100: "not_end_stripe_unit", 0o10: "not_begin_stripe_width", 0o1: "not_end_stripe_width"}


def read(path):
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        return f.read()


def parse_fsmap(plain, verbose, machine):
    """GETFSMAP records of one device as xfs_io prints them: plain (owner as xfs_io names it), verbose (the
    same records with their flags and AG/RG columns), machine (-m: special owners as TYPE:CODE). Byte units:
    xfs_io prints 512-byte units, start and end inclusive."""
    recs = {}
    for line in (plain or "").splitlines():
        m = FMAP_LINE.match(line)
        if not m:
            continue
        n, maj, mnr, s, e, owner, total = m.groups()
        r = dict(device=f"{maj}:{mnr}", start=int(s) * 512, length=int(total) * 512, owner=owner, inode=None,
                 fork=None, offset=None, extent_map=False, special=None, flags=[], flags_octal=None)
        assert (int(e) - int(s) + 1) == int(total), line
        om = re.match(r"inode (\d+) (data|attr) (?:(\d+)\.\.(\d+)|(extent map))$", owner)
        if om:
            r["owner"] = f"inode {om.group(1)}"
            r["inode"], r["fork"] = int(om.group(1)), om.group(2)
            if om.group(5):
                r["extent_map"] = True
            else:
                r["offset"] = int(om.group(3)) * 512
        recs[int(n)] = r
    for line in (machine or "").splitlines()[1:]:
        f = line.split(",")
        if len(f) == 9 and int(f[0]) in recs and f[5].startswith("special_"):
            recs[int(f[0])]["special"] = f[5][len("special_"):]
    for line in (verbose or "").splitlines():
        m = re.match(r"^\s*(\d+): (\S+)\s+\[(\d+)\.\.(\d+)\]:", line)
        if not m or int(m.group(1)) not in recs:
            continue
        r = recs[int(m.group(1))]
        assert r["start"] == int(m.group(3)) * 512, line
        g = re.search(r"\s(-?\d+)\s+\((\d+)\.\.(\d+)\)\s+(\d+)(?:\s+([0-7]{5,}))?\s*$", line)
        if g:
            # xfs_io's arithmetic from the geometry, not the kernel's: on the realtime device it subtracts
            # rtstart, so a record before rtstart (zoned-internal) gets a nonsense group number
            r["xfs_io_group"] = int(g.group(1))
            r["xfs_io_group_offset"] = int(g.group(2)) * 512
            fl = g.group(5)
        else:
            t = line.split()
            fl = t[-1] if len(t) > 1 and re.fullmatch(r"0[0-7]{4,}", t[-1]) and t[-2].isdigit() else None
        if fl:
            r["flags_octal"] = fl
            r["flags"] = [name for bit, name in FLAGS.items() if int(fl, 8) & bit]
    return [recs[k] for k in sorted(recs)]


def sections(text):
    """'== PATH' sections of a per-file output -> {PATH: text}"""
    out, cur = {}, None
    for line in (text or "").splitlines():
        if line.startswith("== "):
            cur = line[3:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def parse_fiemap(text):
    ext = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+): \[(\d+)\.\.(\d+)\]:\s+(?:hole|(\d+)\.\.(\d+))\s+(\d+)(?:\s+(0x[0-9a-f]+))?\s*$",
                     line)
        if not m:
            continue
        n, ls, le, ps, pe, tot, fl = m.groups()
        fl = int(fl, 16) if fl else 0
        names = [nm for bit, nm in ((0x1, "last"), (0x2, "unknown"), (0x4, "delalloc"), (0x8, "encoded"),
                                    (0x80, "encrypted"), (0x100, "not_aligned"), (0x200, "data_inline"),
                                    (0x400, "data_tail"), (0x800, "unwritten"), (0x1000, "merged"),
                                    (0x2000, "shared")) if fl & bit]
        ext.append(dict(logical=int(ls) * 512, length=int(tot) * 512,
                        physical=None if ps is None else int(ps) * 512, hole=ps is None, flags=fl,
                        flag_names=names))
    return ext


def parse_kv(text):
    kv = {}
    for line in (text or "").splitlines():
        m = re.match(r"^(\S+) = (.*)$", line.strip())
        if m:
            kv[m.group(1)] = m.group(2)
    return kv


def parse_steps(text):
    """The steps of a log written by GUEST_SCRIPT's p (or the crash workload's w): '+ CMD', what it printed,
    'rc=N' -> [{command, rc, output}]"""
    steps = []
    for line in (text or "").splitlines():
        if line.startswith("+ "):
            steps.append(dict(command=line[2:], rc=None, output=[]))
        elif steps and re.fullmatch(r"rc=\d+", line) and steps[-1]["rc"] is None:
            steps[-1]["rc"] = int(line[3:])
        elif steps:
            steps[-1]["output"].append(line)
    return steps


def refused_steps(steps):
    """The steps refused: a non-zero exit, or an error message (xfs_io goes on after a refused command and may
    still exit 0: "fallocate: Operation not supported")"""
    err = re.compile(r"[A-Za-z_./() -]+: [A-Z][a-z]+( [a-z]+)*")
    return [dict(command=st["command"], rc=st["rc"], errors=[x for x in st["output"] if err.fullmatch(x)])
            for st in steps if st["rc"] or any(err.fullmatch(x) for x in st["output"])]


def parse_fs(gdir, fs, kern, xfsprogs):
    """truth.json of one filesystem from the guest's outputs in GDIR."""
    t = dict(name=fs["name"], about=fs["about"], kernel=None, kernel_packages=kern["debs"],
             kernel_suite=kern["suite"], xfsprogs=xfsprogs, mkfs_options=fs["mkfs"], mount_options=fs["mount"],
             mkfs_env={k: v for k, v in MKFS_ENV.items()},
             units="bytes (xfs_io prints 512-byte units; converted)")
    uname = read(os.path.join(os.path.dirname(gdir), "uname.txt"))
    t["kernel"] = uname.split()[2] if uname else None
    devs = {}
    for line in (read(os.path.join(gdir, "devices.txt")) or "").splitlines():
        role, node, majmin, size = line.split()
        devs[role] = dict(node=node, dev=majmin, size=int(size), image=f"{role}.img.xz")
    for role in devs:
        # blkzone report of a zoned device: its zones in bytes, with the write pointer and condition after umount
        zones = []
        for line in (read(os.path.join(gdir, f"blkzone-{role}.txt")) or "").splitlines():
            m = re.match(r"^\s*start: (0x[0-9a-f]+), len (0x[0-9a-f]+)(?:, cap (0x[0-9a-f]+))?, wptr (0x[0-9a-f]+)"
                         r".*zcond:\s*(\d+)\((\w+)\) \[type: (\d+)\((\w+)\)\]", line)
            if m:
                st, ln, cap, wp, cond, condname, typ, typname = m.groups()
                zones.append(dict(start=int(st, 16) * 512, length=int(ln, 16) * 512,
                                  capacity=int(cap or ln, 16) * 512, write_pointer_offset=int(wp, 16) * 512,
                                  condition=condname, type=typname))
        if zones:
            devs[role]["zones"] = zones
    t["devices"] = devs
    t["mkfs_command"] = (read(os.path.join(gdir, "mkfs-command.txt")) or "").strip()
    t["mount_command"] = (read(os.path.join(gdir, "mount-command.txt")) or "").strip()
    t["mkfs_env"]["TEST_DEV"] = devs.get("data", {}).get("node")
    skipped = read(os.path.join(gdir, "skipped.txt"))
    if skipped:
        t["status"] = "skipped"
        t["reason"] = skipped.strip()
        return t
    t["status"] = "ok"
    t["rt_internal"] = "rt" not in devs
    t["mounted"] = (read(os.path.join(gdir, "proc-mounts.txt")) or "").strip()
    sb = parse_kv(read(os.path.join(gdir, "xfs_db-sb0.txt")))
    t["superblock"] = sb
    t["geometry"] = {k: int(sb[k]) for k in ("blocksize", "sectsize", "dblocks", "rblocks", "rextents", "rextsize",
                                              "agcount", "agblocks", "logstart", "logblocks", "rgcount",
                                              "rgextents", "rtstart", "rgblklog")
                     if k in sb and re.fullmatch(r"\d+", sb[k])}
    t["fsmap"] = {}
    for w, role in (("d", "data"), ("r", "rt"), ("l", "log")):
        plain = read(os.path.join(gdir, f"fsmap-{w}.txt"))
        if plain is None:
            continue
        t["fsmap"][role] = parse_fsmap(plain, read(os.path.join(gdir, f"fsmap-{w}-v.txt")),
                                       read(os.path.join(gdir, f"fsmap-{w}-m.txt")))
    mnt = "/mnt"
    rel = lambda p: p[len(mnt):] or "/"  # noqa: E731
    paths = []
    for line in (read(os.path.join(gdir, "find.txt")) or "").splitlines():
        ino, p = line.split(" ", 1)
        paths.append([int(ino), rel(p)])
    t["paths"] = paths
    files = {}
    for line in (read(os.path.join(gdir, "stat.txt")) or "").splitlines():
        ino, size, mode, nlink, p = line.split(" ", 4)
        mode = int(mode, 16)
        kind = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink"}.get(mode & 0o170000, "other")
        files[rel(p)] = dict(path=rel(p), ino=int(ino), size=int(size), mode=f"{mode:o}", type=kind,
                             nlink=int(nlink))
    for p, text in sections(read(os.path.join(gdir, "xfs-stat.txt"))).items():
        kv = parse_kv(text)
        f = files.setdefault(rel(p), dict(path=rel(p)))
        xf = kv.get("fsxattr.xflags", "").split(None, 1)
        if xf:
            f["xflags"] = xf[0]
            names = xf[1].strip("[]").split(",") if len(xf) > 1 else []
            f["xflags_names"] = [x.strip() for x in names if x.strip()]
            f["realtime"] = bool(int(xf[0], 16) & 0x1)
            f["rtinherit"] = bool(int(xf[0], 16) & 0x100)
        f["extsize"] = int(kv["fsxattr.extsize"]) if kv.get("fsxattr.extsize", "").isdigit() else None
        f["nextents"] = int(kv["fsxattr.nextents"]) if kv.get("fsxattr.nextents", "").isdigit() else None
        f["xfs_stat"] = kv
    for p, text in sections(read(os.path.join(gdir, "fiemap.txt"))).items():
        f = files[rel(p)]
        f["fiemap"] = parse_fiemap(text)
        # the device FIEMAP's physical addresses are on: a realtime file's on the realtime device (with an
        # internal realtime section: the one disk, where the rt section begins at rtstart)
        f["fiemap_device"] = ("data" if t["rt_internal"] else "rt") if f.get("realtime") else "data"
    t["files"] = [files[k] for k in sorted(files)]
    t["populate"] = parse_steps(read(os.path.join(gdir, "populate.log")))
    t["populate_refused"] = refused_steps(t["populate"])
    rep = read(os.path.join(gdir, "commands.log")) or ""
    m = re.search(r"^xfs_repair-n\.txt\trc=(\d+)", rep, re.M)
    t["xfs_repair_n_rc"] = int(m.group(1)) if m else None
    return t


def collect(work, out, imgdir, filesystems, kern, xfsprogs, accel, dest, partial=False):
    """Copy the guest's results into DEST. PARTIAL (--only): the other filesystems' directories and the
    top-level raw/ (the full run's) are left as they are; this run's guest-wide outputs and host files go into
    each of its filesystems' NAME/raw/run/ instead."""
    g = _guest_results(out, os.path.join(work, "guest"), "the guest wrote no results (see WORK/console.log)")
    os.makedirs(dest, exist_ok=True)
    summary = []
    for fs in filesystems:
        d = _fresh(dest, fs["name"])
        src = os.path.join(g, fs["name"])
        if not os.path.isdir(src):
            summary.append((fs["name"], "not reached (the guest stopped before it)"))
            continue
        for p in sorted(glob.glob(os.path.join(src, "*"))):
            shutil.copy2(p, os.path.join(d, "raw", os.path.basename(p)))
        truth = parse_fs(src, fs, kern, xfsprogs)
        summary.append((fs["name"], _keep(d, truth, fs, imgdir)))
    def copy(r):
        for p in sorted(glob.glob(os.path.join(g, "*"))):
            if os.path.isfile(p):
                shutil.copy2(p, os.path.join(r, os.path.basename(p)))
        for f in ("console.log", "qemu-cmdline.txt"):
            shutil.copy2(os.path.join(work, f), os.path.join(r, "host-" + f))

    _run_outputs(dest, [fs["name"] for fs in filesystems], partial, copy, kern, xfsprogs, accel)
    write_readme(dest, FILESYSTEMS, kern, xfsprogs, summary)
    return summary


README = """# Realtime-device and zoned XFS fixtures

Made by `tests/make_rt_fixtures.py` (not run by CI): the filesystems below were made, populated and recorded
inside a QEMU guest (TCG) running a Debian kernel built with `CONFIG_XFS_RT=y`, because the kernels these
tools usually run on (the development host's 6.18 among them) lack it and cannot mount them; and with
xfsprogs {xfsprogs} built from source, because Debian 12's xfsprogs 6.1 cannot make metadir, rtgroups or
zoned filesystems. Everything here comes from that guest: its outputs, the disks it wrote, or JSON parsed
from its outputs.

- kernel: {kver}, from Debian {suite}: {debs}
- xfsprogs: {xfsprogs} (mkfs.xfs, xfs_io, xfs_db, xfs_spaceman, xfs_repair)
- mkfs.xfs ran with fstests' `TEST_DIR`, `TEST_DEV` and `QA_CHECK_FS` set: without them mkfs.xfs 6.15 refuses
  a data section under 300 MB and a log under 64 MB, and these are kept small.

Rebuild (root, Debian 12 host, a few minutes under TCG; the downloaded kernel packages are kept in
`/var/tmp/rt-vm/debs` and reused):

    python3 tests/make_rt_fixtures.py

One filesystem alone, with the same kernel, leaving the others as they are (its run's guest-wide outputs go
into its own `NAME/raw/run/`; `zoned-gaps` was added this way):

    python3 tests/make_rt_fixtures.py --skip-apt --only zoned-gaps

## Filesystems

{table}

Each `NAME/` holds:

- `truth.json`: the mkfs.xfs command and options, kernel and xfsprogs versions, the devices (role, the
  guest's node and major:minor, size, image file; for a zoned device whose report the guest recorded,
  `zones`: start, length, capacity, write_pointer_offset (from the zone's start) in bytes, condition and type
  as `blkzone report` gave them after the unmount), the superblock (`xfs_db -c 'sb 0' -c print`, as text),
  `fsmap`: GETFSMAP records per device (`data`, `rt`, `log`) with `start`/`length`/`offset` in bytes, `owner`
  as xfs_io prints it (`inode N`, or a special owner such as `static fs metadata`), `inode`, `fork`,
  `extent_map` (a bmbt block), `special` (TYPE:CODE), `flags` (`shared`, `unwritten`, `attr_fork`),
  `device` as the plain output prints it (major:minor; where the kernel reports XFS's own device numbers
  instead of a dev_t, as it does for an internal realtime section, 0:1 data, 0:2 log, 0:3 realtime), and
  `xfs_io_group`/`xfs_io_group_offset`, the AG or rtgroup columns of `fsmap -v`: xfs_io's arithmetic from
  the geometry, not the kernel's (for the part of the disk before rtstart that zoned-internal's realtime
  records cover, a nonsense number); `paths` ([inode, path]); `files`: per path its
  stat (inode, size, octal mode, type, nlink), its xflags (`realtime`, `rtinherit`, extsize, nextents) and,
  for regular files, `fiemap` (logical, physical, length in bytes, holes, flags) with `fiemap_device`
  (`rt`: the physical addresses are on the realtime device; with an internal rt section they are on the one
  disk); `populate_refused`: populating steps the kernel refused (rc and command), which are part of the
  truth too (with the error messages); `populate`: every populating step, its rc and output;
  `xfs_repair_n_rc`.
- `raw/`: the guest's text outputs as they are: `fsmap-{{d,r,l}}.txt` (plain), `-v.txt` (verbose), `-m.txt`
  (machine), `fsmap-all-v.txt`, `fiemap.txt`, `bmap.txt`, `stat.txt`, `xfs-stat.txt`, `find.txt`,
  `statfs.txt`, `info.txt`, `mkfs.txt`, `xfs_db-*.txt`, `xfs_repair-n.txt`, `populate.log`, `dmesg.txt`,
  `blkzone-rt.txt` (`zoned-gaps`: the ZNS namespace's zones after the unmount), `commands.log` (every recorded
  command with its rc); `run/` in a fixture recorded alone (`--only`): what `raw/` at the top holds, for its
  run.
- `ROLE.img.xz`: the device images (`data`, `rt`, `log`) after the clean unmount, `xz -9`.

Paths are relative to the mount point (`/mnt` in the guest). The contents (see `populate` in the script's
GUEST_SCRIPT): `data/` (chattr -t: data device) with `a.dat`, `b.dat`, `frag.dat` (32 pieces: bmbt),
`sub/a.hard` (hard link), `many/` (40 empty files), `rtflag.dat` (a realtime file made with chattr +r outside
the rtinherit directory); `rt/` (chattr +t, rtinherit) with `one.dat`, `sub/one.hard`, `multi.dat` and
`spacer.dat` (8 extents each, interleaved), `sparse.dat` (holes, size past the last extent), `prealloc.dat`
(unwritten extents, one past EOF), `bmbt.dat` (64 pieces: bmbt), `empty.dat`, `sub/tiny.txt`; `one.link`
(symlink); on reflink filesystems `data/b.refl`, `rt/refl-full.dat` (then 8 KiB of it overwritten: CoW),
`rt/refl-part.dat` (128 KiB of one.dat inside), and the refused cross-device reflink `rt/from-data.dat`;
on `zoned-gaps` also `rt/big.dat` (14 MiB written at once, more than a zone's capacity: blocks in group 1).

`raw/` at the top: the guest's versions, module loading, disk list, whole dmesg, and the host's QEMU command
line, console log and versions, of the run that made all the filesystems but `zoned-gaps` (whose run's are
in `zoned-gaps/raw/run/`).

## What the kernel refused while populating

{refused}

## Notes

- Classic realtime (metadir=0) cannot have an rmap btree, on either device (mkfs.xfs: "rmapbt not
  supported on realtime devices without metadir feature"; nor reflink), so GETFSMAP reports everything in use
  there as owner `unknown` and only free space precisely; which file holds a block is known from FIEMAP/bmap.
- With realtime groups the realtime device is addressed linearly (group N starts at N * rgextents * rextsize
  blocks), while realtime block numbers inside XFS are group << rgblklog | block: the same only when the group
  size is a power of two (`rtgroups`, `zoned-external`, `zoned-seq`), not in `rtgroups-3` or
  `zoned-internal`. `bmap -v` prints realtime block ranges in 512-byte units of the device address.
- With ZONE_GAPS (incompat 0x400, `zoned-gaps`: features_incompat 0x76b) the device is addressed by the
  realtime block number itself: group N starts at N << rgblklog blocks (the zone's start, N * 16 MiB), not at
  N * rgextents; each group's rgextents (3072 blocks, 12 MiB: the zone capacity) are followed by a gap of
  2^rgblklog - rgextents blocks (1024, 4 MiB) up to the next zone. rblocks (24576) and rextents count the
  capacity only (8 * 3072), not the device size (32768 blocks). mkfs.xfs 6.15 sets ZONE_GAPS by itself when the
  rt device reports a zone capacity smaller than its zone size (there is no option for it).
- `zoned-gaps`' realtime GETFSMAP (91 records): the device addresses are those realtime block numbers (the
  second extent of `rt/big.dat` at 16 MiB, the start of zone 1, right after the first ended at 12 MiB, zone
  0's capacity); the kernel reports the gap between them, [12 MiB, 16 MiB), as `free space` (a record of its
  own), and the gaps of zones 1-5 inside the last `free space` record, [20762624, 96 MiB); and it stops at
  96 MiB, rblocks blocks from the device's start (its end of the device is rtstart + rblocks, as if the
  addressing were linear), so the usable capacity of zones 6 and 7 ([96, 108) and [112, 124) MiB) and the
  gaps after them are in no record at all. xfs_io's `fsmap -v` group columns divide the address by rgextents
  and are wrong there (it puts the gap at group 1 offset 0 and zone 1's first block 1024 blocks into group 1).
- Zoned filesystems refuse fallocate (EOPNOTSUPP): their `rt/prealloc.dat` has a hole where the others have
  unwritten extents. Everything written to a zoned realtime device is written out of place, in zone order.
- `zoned-seq`'s and `zoned-gaps`' realtime images are the data of the ZNS namespace; the zone write pointers
  (and, for `zoned-gaps`, the 12 MiB zone capacity) were QEMU's, in memory, and are not in the image (read as
  a plain file, the zones look conventional and their capacity is unknown; the 128 MiB image holds every
  zone's gap, all zeros). `zoned-gaps/raw/blkzone-rt.txt` and `devices.rt.zones` in its truth.json keep
  what the guest's kernel reported: zone 0 full, zone 1 implicitly open with its write pointer 3892 KiB in,
  zones 2-7 empty, every zone 16 MiB long with a capacity of 12 MiB.
- Which kernel: the newest linux-image-{flavour} of Debian {suite} when made; Debian 12's own 6.1 predates
  realtime groups (6.13) and zoned XFS (6.15).
"""


def write_readme(dest, filesystems, kern, xfsprogs, summary):
    """README.md over every filesystem in FILESYSTEMS: the status of those made by this run from SUMMARY, of the
    others (a --only run) from their truth.json as an earlier run left it."""
    status = dict(summary)
    refused = []
    rows = ["| name | mkfs.xfs options | devices | GETFSMAP records (device as reported) | status |",
            "| --- | --- | --- | --- | --- |"]
    for fs in filesystems:
        devs = ", ".join(f"{r} {s // MiB} MiB" for r, s in fs["disks"].items())
        recs = ""
        tj = os.path.join(dest, fs["name"], "truth.json")
        if os.path.exists(tj):
            with open(tj) as f:
                fsmap = json.load(f).get("fsmap", {})
            recs = ", ".join(f"{role} {len(v)} ({'/'.join(sorted({r['device'] for r in v}))})"
                             for role, v in fsmap.items())
        st = status.get(fs["name"])
        if st is None and os.path.exists(tj):
            with open(tj) as f:
                old = json.load(f)
            st = "ok" if old.get("status") == "ok" else "skipped: " + old.get("reason", "")
        st = st or "not made"
        rows.append(f"| `{fs['name']}` | `{fs['mkfs']}` | {devs} | {recs} | {st} |")
        rows.append(f"| | {fs['about']} | | | |")
        if os.path.exists(tj):
            with open(tj) as f:
                for st in json.load(f).get("populate_refused", []):
                    refused.append(f"- `{fs['name']}`: `{st['command'].replace('/mnt/', '')}`: "
                                   + "; ".join(sorted(set(st["errors"]))) + f" (rc {st['rc']})")
    with open(os.path.join(dest, "README.md"), "w") as f:
        f.write(README.format(xfsprogs=xfsprogs, kver=kern["kver"], suite=kern["suite"], flavour=kern["flavour"],
                              debs=", ".join(f"`{d}`" for d in kern["debs"]), table="\n".join(rows),
                              refused="\n".join(refused) or "nothing"))


# ---- crashed realtime filesystems (--crash): tests/data/rt-crash ----

CRASH_DEST = os.path.join(HERE, "data", "rt-crash")
# The configurations, each recorded with every seed of its seeds (default CRASH_SEEDS; --seeds overrides) as
# CONFIG-sSEED. The data device is 128 MiB (4 AGs of 32 MiB; mkfs.xfs makes the smallest log it allows, 4916
# blocks with rtgroups, 4049 classic and zoned: under 20 MiB), the realtime device 64 MiB (zoned-external: 8
# conventional zones of 8 MiB); zoned-internal has no realtime device: one 224 MiB disk whose realtime section
# (8 zones of 12 MiB) begins at 128 MiB. The files are a few MiB of one repeated byte each.
CRASH_CONFIGS = [  # the FILESYSTEMS entries of the same names, on smaller realtime devices
    dict(next(x for x in FILESYSTEMS if x["name"] == "rtgroups"), disks={"data": 128 * MiB, "rt": 64 * MiB},
         about="metadata directory tree, 4 realtime groups of 16 MiB with rt rmap and refcount btrees "
               "(reflink on the realtime device)"),
    dict(next(x for x in FILESYSTEMS if x["name"] == "rt-classic"), disks={"data": 128 * MiB, "rt": 64 * MiB},
         about="classic realtime device: one rt bitmap and summary, no rtgroups, no rmap, no reflink"),
    dict(next(x for x in FILESYSTEMS if x["name"] == "zoned-external"), disks={"data": 128 * MiB, "rt": 64 * MiB},
         seeds=(1, 2),
         about="zoned realtime device (an ordinary virtio disk: every zone conventional), 8 realtime groups "
               "(zones) of 8 MiB, rt rmap, no reflink; fallocate refused"),
    dict(next(x for x in FILESYSTEMS if x["name"] == "zoned-internal"), seeds=(1, 2),
         about="zoned filesystem with an internal realtime section: one 224 MiB disk, the data section in its "
               "first 128 MiB, the realtime section (8 zones of 12 MiB) from rtstart=128 MiB on; no rt "
               "device, no reflink; fallocate refused"),
]
CRASH_SEEDS = (1, 2, 3, 4)
# xfs_logprint (is the crashed log dirty: its transactions) and coreutils' cp (cp --reflink=always)
CRASH_EXTRA = {"logprint/xfs_logprint": "/usr/sbin/xfs_logprint", "/usr/bin/cp": "/opt/bin/cp"}

# /fs.sh of both boots (sourced by GUEST_SCRIPT, whose run, p, record, dev, say and checkpoint it uses),
# followed by one crash_fs (first boot) or recover_fs (second boot) call per fixture.
CRASH_SCRIPT = r"""
# w CMD...: a workload step, logged as '+ [OP] CMD', what it printed and its rc in $F/workload.log
w() {
  echo "+ [$n] $*" >> $F/workload.log
  "$@" >> $F/workload.log 2>&1; rc=$?
  echo "rc=$rc" >> $F/workload.log
  return $rc
}
# rnd N: RV = the next pseudo-random number in [0, N) from the state S (an LCG: the same seed, the same steps)
rnd() { S=$(( (S * 1103515245 + 12345) % 2147483648 )); RV=$(( (S / 65536) % $1 )); }
# hold FILE: a process keeps FILE open (its pid in /tmp/holders), then FILE is unlinked: an open unlinked inode
hold() {
  sleep 1000000 < $1 & h=$!
  i=0; until ls -l /proc/$h/fd/0 2>/dev/null | grep -q -F "$1" || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
  echo $h >> /tmp/holders
  w rm $1
}

# workload MNT REFLINK SEED: operations on the realtime files below MNT/rt (rtinherit), until /tmp/stop exists
workload() {
  M=$1; S=$3; n=0
  while [ ! -e /tmp/stop ] && [ $n -lt 5000 ]; do
    n=$((n + 1)); echo $n > /tmp/opcount
    rnd 14; f=$M/rt/f$RV.dat; [ $RV -lt 10 ] || f=$M/rt/sub/g$((RV - 10)).dat
    rnd 10; g=$M/rt/f$RV.dat
    rnd 256; pat=$(printf 0x%02x $RV)
    rnd 256; off=$((RV * 4))k
    rnd 32; len=$(( (RV + 1) * 4 ))k
    rnd 100; op=$RV
    # no reflink: its share of the steps goes to writes
    [ "$2" = 1 ] || [ $op -lt 72 ] || [ $op -ge 86 ] || op=$((op - 72))
    if [ $op -lt 22 ]; then w xfs_io -f -c "pwrite -q -S $pat $off $len" $f
    elif [ $op -lt 32 ]; then sz=$(/opt/bin/stat -c %s $f 2>/dev/null || echo 0)
      w xfs_io -f -c "pwrite -q -S $pat $sz $len" $f                    # append
    elif [ $op -lt 40 ]; then w xfs_io -f -c "pwrite -q -S $pat $off $len" -c fsync $f
    elif [ $op -lt 46 ]; then w xfs_io -f -d -c "pwrite -q -S $pat $off $len" $f   # direct I/O
    elif [ $op -lt 49 ]; then w xfs_io -f -c "falloc $off $len" $f
    elif [ $op -lt 52 ]; then w xfs_io -f -c "falloc -k $off $len" $f
    elif [ $op -lt 58 ]; then w xfs_io -c "fpunch $off $len" $f
    elif [ $op -lt 61 ]; then w xfs_io -c "fzero $off $len" $f
    elif [ $op -lt 67 ]; then rnd 1100; w xfs_io -c "truncate $((RV * 1000))" $f
    elif [ $op -lt 72 ]; then w rm -f $f
    elif [ $op -lt 80 ]; then w /opt/bin/cp --reflink=always $g $f      # whole-file reflink copy
    elif [ $op -lt 86 ]; then w xfs_io -f -c "reflink $g $off $off $len" $f   # part of g into f, same offset
    elif [ $op -lt 89 ]; then w mv $g $f
    elif [ $op -lt 92 ]; then [ -e $f ] && hold $f                      # unlinked while open
    elif [ $op -lt 94 ]; then w xfs_io -x -c freeze -c thaw $M   # metadata written back: the log tail moves
    elif [ $op -lt 95 ]; then w sync
    else w xfs_io -c fsync $f
    fi
  done
}

# crash_devices MKFS-OPTIONS MOUNT-OPTIONS: with F, D and R set, record the devices and the commands in F;
# sets opts and mopts (the options with the rt device's node in place of @RT@); R empty: no rt device
crash_devices() {
  for x in data:$D rt:$R; do
    r=${x%%:*}; nd=${x#*:}; [ -n "$nd" ] || continue   # no rt device: a realtime section inside the data disk
    echo "$r $nd $(cat /sys/block/${nd#/dev/}/dev) $(($(cat /sys/block/${nd#/dev/}/size) * 512))"
  done > $F/devices.txt
  opts=$(echo "$1" | sed "s#@RT@#$R#g"); mopts=$(echo "$2" | sed "s#@RT@#$R#g")
  echo "mkfs.xfs -f $opts $D" > $F/mkfs-command.txt
  echo "mount -t xfs ${mopts:+-o $mopts }$D /mnt" > $F/mount-command.txt
}

# crash_fs IDX NAME REFLINK MKFS-OPTIONS MOUNT-OPTIONS SEED K DELAY-MS: mkfs, mount, a few files, one held
# open and unlinked, the workload in the background; once its step K has begun, DELAY-MS later, shutdown -f
# while it runs; then umount. The disks are what the host keeps as the crashed images.
crash_fs() {
  idx=$1; name=$2; refl=$3; seed=$6; k=$7; ms=$8
  D=$(dev f${idx}d); R=$(dev f${idx}r)
  F=$O/$name; mkdir -p $F
  say "$name: crash: data=$D rt=$R seed=$seed shutdown after step $k + $ms ms"
  crash_devices "$4" "$5"
  dmesg > /tmp/dmesg.before
  if ! run $F mkfs.txt env TEST_DIR=/mnt TEST_DEV=$D QA_CHECK_FS=xfs mkfs.xfs -f $opts $D; then
    echo "mkfs.xfs refused: $(head -3 $F/mkfs.txt.stderr 2>/dev/null | tr '\n' ' ')" > $F/skipped.txt
    checkpoint $name; return
  fi
  if ! run $F mount.txt mount -t xfs ${mopts:+-o $mopts} $D /mnt; then
    echo "the kernel refused the mount: $(head -2 $F/mount.txt.stderr 2>/dev/null | tr '\n' ' ')" > $F/skipped.txt
    checkpoint $name; return
  fi
  M=/mnt; n=0
  w mkdir $M/rt
  w xfs_io -c 'chattr +t' $M/rt
  w mkdir $M/rt/sub
  w xfs_io -c 'stat -v' $M/rt $M/rt/sub
  # on disk before the workload: four files, and one that is held open and unlinked once the workload begins
  i=0; while [ $i -lt 4 ]; do
    w xfs_io -f -c "pwrite -q -S 0x1$i -b 256k 0 $(( (i + 1) * 128 ))k" $M/rt/f$i.dat; i=$((i + 1)); done
  w xfs_io -f -c 'pwrite -q -S 0x5a -b 256k 0 512k' -c fsync $M/rt/held.dat
  [ "$refl" = 1 ] && w /opt/bin/cp --reflink=always $M/rt/held.dat $M/rt/held-copy.dat
  w sync
  : > /tmp/holders; rm -f /tmp/stop /tmp/opcount
  hold $M/rt/held.dat
  workload $M $refl $seed > $F/workload.out 2>&1 &
  wpid=$!
  # (the workload rewrites /tmp/opcount at every step: read empty while it does, taken for 0)
  while kill -0 $wpid 2>/dev/null; do
    c=$(cat /tmp/opcount 2>/dev/null); case "$c" in ''|*[!0-9]*) c=0;; esac
    [ $c -lt $k ] || break
    sleep 0.05
  done
  sleep $((ms / 1000)).$(printf %03d $((ms % 1000)))
  c=$(cat /tmp/opcount); [ -n "$c" ] || c=$(cat /tmp/opcount)
  echo "# shutdown -f: step $c of the workload has begun" >> $F/workload.log
  run $F shutdown.txt xfs_io -x -c 'shutdown -f' $M
  touch /tmp/stop
  wait $wpid
  echo "# the workload stopped after step $(cat /tmp/opcount)" >> $F/workload.log
  kill $(cat /tmp/holders) 2>/dev/null; wait
  run $F umount.txt umount $M
  dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg.txt
  say "$name: crashed"
  checkpoint $name
}

# recover_fs IDX NAME MKFS-OPTIONS MOUNT-OPTIONS: the crashed disks (copies): their log, then the mount (the
# kernel's log recovery) and the record of the recovered filesystem, the unmount, xfs_repair -n
recover_fs() {
  idx=$1; name=$2
  D=$(dev f${idx}d); R=$(dev f${idx}r)
  F=$O/$name; mkdir -p $F
  say "$name: recover: data=$D rt=$R"
  crash_devices "$3" "$4"
  run $F sha256-before-mount.txt sha256sum $D $R
  run $F logprint-t.txt xfs_logprint -t $D
  run $F xfs_db-sb0-before-mount.txt xfs_db -r ${R:+-R $R} -c 'sb 0' -c print $D
  dmesg > /tmp/dmesg.before
  if ! run $F mount.txt mount -t xfs ${mopts:+-o $mopts} $D /mnt; then
    dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg.txt
    echo "the kernel refused the mount: $(head -2 $F/mount.txt.stderr 2>/dev/null | tr '\n' ' ') dmesg: $(grep -i xfs $F/dmesg.txt | tail -3 | tr '\n' ' ')" > $F/skipped.txt
    checkpoint $name; return
  fi
  dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg-mount.txt
  grep " /mnt " /proc/mounts > $F/proc-mounts.txt
  record $F /mnt
  run $F umount.txt umount /mnt
  dmesg | tail -n +$(($(wc -l < /tmp/dmesg.before) + 1)) > $F/dmesg.txt
  run $F xfs_db-sb0.txt xfs_db -r ${R:+-R $R} -c 'sb 0' -c print $D
  run $F xfs_db-info.txt xfs_db -r ${R:+-R $R} -c info $D
  grep -q -E '^rgcount = [1-9]' $F/xfs_db-sb0.txt && run $F xfs_db-rtsb.txt xfs_db -r ${R:+-R $R} -c rtsb -c print $D
  run $F xfs_repair-n.txt xfs_repair -n ${R:+-r $R} $D
  say "$name: recovered"
  checkpoint $name
}
"""


def crash_fixtures(seeds=None, configs=None):
    """The fixtures: every configuration (of CONFIGS, names; default all) with every seed (SEEDS, default the
    configuration's own: its seeds, else CRASH_SEEDS); the shutdown's moment (after which workload step, how
    many ms later) drawn from the name."""
    out = []
    for c in CRASH_CONFIGS:
        if configs and c["name"] not in configs:
            continue
        for seed in seeds or c.get("seeds", CRASH_SEEDS):
            rng = random.Random(f"{c['name']}-s{seed}")
            out.append(dict(c, name=f"{c['name']}-s{seed}", config=c["name"], seed=seed,
                            shutdown_after=rng.randrange(100, 301), delay_ms=rng.randrange(0, 1000)))
    return out


def crash_boot(work, kern, initrd, fixtures, accel, timeout, imgdir, fresh):
    """Boot the guest with a results disk and each fixture's disks (f<IDX>d, f<IDX>r) from IMGDIR (made
    sparse and all-zero first if FRESH). Returns the results disk's path."""
    out = os.path.join(work, "out.img")
    drives = [(out, "results", OUT_DISK_SIZE)]
    for i, fx in enumerate(fixtures):
        for role, size in fx["disks"].items():
            drives.append((os.path.join(imgdir, f"{fx['name']}.{role}.img"), f"f{i}{role[0]}", size))
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", "max", "-smp", "1", "-m", "1G", "-machine", "pc",
           "-kernel", kern["vmlinuz"], "-initrd", initrd, "-append", "console=ttyS0 panic=-1 oops=panic",
           "-nographic", "-no-reboot"]
    for n, (path, serial, size) in enumerate(drives):
        if fresh or serial == "results":
            with open(path, "wb") as f:
                f.truncate(size)
        cmd += ["-drive", f"file={path},format=raw,if=none,id=d{n},cache=writeback",
                "-device", f"virtio-blk-pci,drive=d{n},serial={serial}"]
    boot(cmd, work, timeout)
    return out


def run_crash(a, kern, xfsprogs):
    """Both boots and the copying out (see the module's docstring, --crash)."""
    base = os.path.join(a.work, "crash")
    shutil.rmtree(base, ignore_errors=True)
    fixtures = crash_fixtures(a.seeds, a.configs)
    b1, b2, crashed = (os.path.join(base, x) for x in ("boot1", "boot2", "crashed"))
    for d in (b1, b2, crashed, os.path.join(b1, "images"), os.path.join(b2, "images")):
        os.makedirs(d)
    calls = "".join(f"crash_fs {i} {fx['name']} {int(fx['reflink'])} '{fx['mkfs']}' '{fx['mount']}' {fx['seed']} "
                    f"{fx['shutdown_after']} {fx['delay_ms']}\n" for i, fx in enumerate(fixtures))
    initrd = build_initramfs(b1, kern, a.xfsprogs, [], fs_sh=CRASH_SCRIPT + calls, extra=CRASH_EXTRA)
    out1 = crash_boot(b1, kern, initrd, fixtures, a.accel, a.timeout, os.path.join(b1, "images"), fresh=True)
    # the crashed images: the disks as the first boot left them (its QEMU has exited); the second boot
    # mounts copies
    for fx in fixtures:
        for role in fx["disks"]:
            n = f"{fx['name']}.{role}.img"
            sh("cp", "--sparse=always", os.path.join(b1, "images", n), os.path.join(crashed, n))
            sh("cp", "--sparse=always", os.path.join(b1, "images", n), os.path.join(b2, "images", n))
    calls = "".join(f"recover_fs {i} {fx['name']} '{fx['mkfs']}' '{fx['mount']}'\n" for i, fx in enumerate(fixtures))
    initrd = build_initramfs(b2, kern, a.xfsprogs, [], fs_sh=CRASH_SCRIPT + calls, extra=CRASH_EXTRA)
    out2 = crash_boot(b2, kern, initrd, fixtures, a.accel, a.timeout, os.path.join(b2, "images"), fresh=False)
    return collect_crash(base, out1, out2, crashed, fixtures, kern, xfsprogs, a.accel, a.crash_dest,
                         partial=fixtures != crash_fixtures())


def _sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def collect_crash(base, out1, out2, crashed, fixtures, kern, xfsprogs, accel, dest, partial=False):
    """DEST/NAME/: truth.json (the recovered filesystem, parse_fs, with the workload, the shutdown and the log
    recovery), raw/ (the second boot's outputs) and raw/crash/ (the first boot's), ROLE.img.xz (the crashed
    disks); DEST/raw/ (both boots' guest-wide outputs and the host's); DEST/README.md. PARTIAL (not every
    configuration with its default seeds, --configs/--seeds): the other fixtures' directories and DEST/raw/
    are left as they are; this run's guest-wide outputs go into each of its fixtures' NAME/raw/run/."""
    g = {}
    for k, out in (("crash", out1), ("recover", out2)):
        g[k] = _guest_results(out, os.path.join(base, "guest-" + k),
                              f"the {k} boot wrote no results (see {base}/boot*/console.log)")
    os.makedirs(dest, exist_ok=True)
    summary = []
    for fx in fixtures:
        d = _fresh(dest, fx["name"])
        s1, s2 = (os.path.join(g[k], fx["name"]) for k in ("crash", "recover"))
        if not os.path.isdir(s1) or not os.path.isdir(s2):
            summary.append((fx["name"], "not reached (a guest stopped before it)"))
            continue
        for p in sorted(glob.glob(os.path.join(s2, "*"))):
            shutil.copy2(p, os.path.join(d, "raw", os.path.basename(p)))
        shutil.copytree(s1, os.path.join(d, "raw", "crash"))
        t = parse_fs(s2, fx, kern, xfsprogs)
        t.pop("populate", None)
        t.pop("populate_refused", None)
        t["fixture"] = dict(config=fx["config"], seed=fx["seed"], shutdown_after_step=fx["shutdown_after"],
                            delay_ms=fx["delay_ms"])
        t["state"] = ("fsmap, paths and files: the filesystem after the kernel's log recovery (the second "
                      "boot's mount of copies of the crashed disks); the images: the crashed disks, before it")
        skipped = read(os.path.join(s1, "skipped.txt"))
        if skipped:
            t["status"], t["reason"] = "skipped", "first boot: " + skipped.strip()
        wl = read(os.path.join(s1, "workload.log")) or ""
        marks = [x[2:] for x in wl.splitlines() if x.startswith("# ")]
        steps = parse_steps("\n".join(x for x in wl.splitlines() if not x.startswith("# ")))
        for st in steps:
            m = re.match(r"\[(\d+)\] (.*)$", st["command"])
            st["step"], st["command"] = int(m.group(1)), m.group(2).replace("/mnt/", "")
        t["workload"] = steps
        t["workload_seed"] = fx["seed"]
        began = [int(x) for m in marks for x in re.findall(r"step (\d+) of the workload has begun", m)]
        stopped = [int(x) for m in marks for x in re.findall(r"stopped after step (\d+)", m)]
        c1 = read(os.path.join(s1, "commands.log")) or ""
        m = re.search(r"^shutdown\.txt\trc=(\d+)", c1, re.M)
        dm1 = (read(os.path.join(s1, "dmesg.txt")) or "").splitlines()
        t["shutdown"] = dict(command="xfs_io -x -c 'shutdown -f' /mnt", rc=int(m.group(1)) if m else None,
                             step_begun=began[0] if began else None,
                             workload_stopped_after=stopped[0] if stopped else None, notes=marks,
                             dmesg=[x for x in dm1 if "XFS" in x])
        lp = read(os.path.join(s2, "logprint-t.txt")) or ""
        m = re.search(r"log tail: (\d+) head: (\d+) state: <(\w+)>", lp)
        t["crashed_log"] = dict(tail_block=int(m.group(1)), head_block=int(m.group(2)), state=m.group(3),
                                source="xfs_logprint -t of the crashed data device (raw/logprint-t.txt)") \
            if m else None
        t["shutdown"]["freezes_before"] = sum(1 for st in steps if "freeze" in st["command"]
                                              and st["step"] < (t["shutdown"]["step_begun"] or 1 << 30))
        dm2 = (read(os.path.join(s2, "dmesg-mount.txt")) or "").splitlines()
        t["log_recovery"] = dict(ran=any("Starting recovery" in x for x in dm2),
                                 dmesg=[x for x in dm2 if "XFS" in x])
        gsum = {}
        for line in (read(os.path.join(s2, "sha256-before-mount.txt")) or "").splitlines():
            h, node = line.split()
            gsum[node] = h
        t["images_state"] = ("crashed: the disks after shutdown -f and umount in the first boot, their log "
                             "dirty, before any recovery")
        for role in fx["disks"]:
            img = os.path.join(crashed, f"{fx['name']}.{role}.img")
            dv = t["devices"][role]
            dv["sha256"] = _sha256(img)
            dv["guest_sha256_before_mount"] = gsum.get(dv["node"])
            if dv["sha256"] != dv["guest_sha256_before_mount"]:
                sys.exit(f"{fx['name']} {role}: the kept image is not what the second boot mounted")
        summary.append((fx["name"], _keep(d, t, fx, crashed)))
    def copy(r):
        for k, b in (("crash", "boot1"), ("recover", "boot2")):
            for p in sorted(glob.glob(os.path.join(g[k], "*"))):
                if os.path.isfile(p):
                    shutil.copy2(p, os.path.join(r, f"{k}-{os.path.basename(p)}"))
            for f in ("console.log", "qemu-cmdline.txt"):
                shutil.copy2(os.path.join(base, b, f), os.path.join(r, f"{k}-host-{f}"))

    _run_outputs(dest, [fx["name"] for fx in fixtures], partial, copy, kern, xfsprogs, accel)
    write_crash_readme(dest, fixtures, kern, xfsprogs, summary)
    return summary


CRASH_README = """# Crashed realtime XFS filesystems

Made by `tests/make_rt_fixtures.py --crash` (not run by CI), in the same QEMU guest (TCG) as `tests/data/rt`:
a Debian kernel built with `CONFIG_XFS_RT=y` (this machine's own kernel lacks it) and xfsprogs {xfsprogs}
built from source. They are for checking fsdaxctl's in-memory log replay against the kernel's own log
recovery on realtime filesystems: each fixture's images are a filesystem shut down (`xfs_io -x -c 'shutdown -f'`)
while a workload on realtime files was running, its log dirty; its `truth.json` is what the kernel reported
after recovering that log.

- kernel: {kver}, from Debian {suite}: {debs}
- xfsprogs: {xfsprogs} (mkfs.xfs, xfs_io, xfs_db, xfs_spaceman, xfs_repair, xfs_logprint)
- mkfs.xfs ran with fstests' `TEST_DIR`, `TEST_DEV` and `QA_CHECK_FS` set (without them mkfs.xfs 6.15
  refuses a data section under 300 MB and a log under 64 MB); it made the smallest log it allows.

Rebuild (root, Debian 12 host, about {minutes} minutes under TCG; the kernel packages kept in
`/var/tmp/rt-vm/debs` are reused; `tests/data/rt` is left alone):

    python3 tests/make_rt_fixtures.py --skip-apt --crash

Seeds other than the defaults (1-4; `zoned-*`: 1 and 2): `--seeds 5 6`. Only some configurations, leaving the
other fixtures and `raw/` as they are (that run's guest-wide outputs go into each of its fixtures'
`NAME/raw/run/`; the `zoned-*` fixtures were added this way, recorded into a scratch directory and copied in):

    python3 tests/make_rt_fixtures.py --skip-apt --crash --configs zoned-external zoned-internal --seeds 1 2 \\
        --crash-dest /tmp/zcrash
    cp -r /tmp/zcrash/zoned-* tests/data/rt-crash/
    python3 tests/make_rt_fixtures.py --skip-apt --crash --crash-readme   # this README, from every fixture here

The moment of the shutdown is drawn from the fixture's name, but the
workload runs against the clock, so a rebuild shuts down at about, not exactly, the same step, and the images
differ from these.

## How each was made

Two boots of the guest, one disk per device of every fixture:

1. First boot, per fixture: mkfs.xfs, mount; `rt/` made and given rtinherit (`chattr +t`), then `rt/sub/`
   (inherits it); four realtime files `rt/f0.dat`..`rt/f3.dat` (128-512 KiB) and `rt/held.dat` (512 KiB,
   fsync), on `rtgroups` also `rt/held-copy.dat` (`cp --reflink=always` of held.dat: they share their
   blocks); `sync`. Then `rt/held.dat` is opened by a process (`sleep < rt/held.dat`) and unlinked: an open,
   unlinked inode until the end. The workload starts in the background: an endless loop of steps drawn
   from the seed (an LCG in the guest's shell) on `rt/f0.dat`..`rt/f9.dat` and `rt/sub/g0.dat`..`g3.dat`:
   buffered writes (22%), appends (10%), overwrites with fsync (8%), direct-I/O writes (6%), fallocate
   (3%) and fallocate -k (3%), punch holes (6%), zero ranges (3%), truncates to any byte size up to 1.1 MB
   (6%), unlinks (5%), on `rtgroups` whole-file reflink copies with `cp --reflink=always` (8%) and
   partial reflinks with `xfs_io reflink` (6%) (on `rt-classic` and `zoned-*`, which have no reflink, writes
   of the kinds above instead), renames
   over another file (3%), opening a file and unlinking it while held open (3%), freeze and thaw (2%:
   `xfs_io -x -c freeze -c thaw`, which writes the metadata back and so moves the log's tail: the log then
   holds only what came after), `sync` (1%), fsync (5%);
   every step is a separate process with its pattern byte, offset (4 KiB units, up to 1020 KiB) and length
   (4-128 KiB). Once the workload's step K has begun and a further delay has passed (both drawn from the
   name), `xfs_io -x -c 'shutdown -f' /mnt` (the log is forced to disk first, then the filesystem is shut
   down) while the workload runs; then the workload stops (its steps fail with EIO), the holders are
   killed, umount. QEMU exits; the host keeps the disks: the crashed images. A step the kernel refuses
   (on `zoned-*`, fallocate: see below) is logged with its error, like any failed step, and the workload goes on.
2. Second boot, on copies of the crashed disks: `sha256sum` of them (equal to the kept images',
   checked), `xfs_logprint -t` of the log, `xfs_db` `sb 0` print; mount (the kernel recovers the log: its
   dmesg lines below), then the same recording as `tests/data/rt` (GETFSMAP of the data and realtime
   devices, plain, -v and -m; FIEMAP and bmap -v of every file; stat; xfs_io stat -v; find); umount;
   `xfs_db` `sb 0` print, `xfs_repair -n`.

Nothing in the images is zeroed: file data is one repeated byte per write, which xz compresses to nearly
nothing, and the rest of each device is metadata or never written.

## Fixtures

{table}

Log recovery, per fixture (the second boot's mount; the dmesg lines of XFS, `raw/dmesg-mount.txt`):

{recovery}

Workload steps that failed or printed an error before the shutdown, per fixture (`OP: error (count)`; the
file's path as FILE; from `workload` in truth.json):

{refused}

Each `NAME/` holds:

- `data.img.xz`, `rt.img.xz`: the crashed devices (data 128 MiB with its internal log, realtime 64 MiB), `xz -9`;
  their dirty log is what a replay reads. `zoned-internal-*` have no realtime device, only `data.img.xz`: one
  224 MiB disk, the data section (with the log) in its first 128 MiB, the realtime section from
  rtstart = 128 MiB (8 zones of 12 MiB); their `truth.json` has no `rt` device (`rt_internal`: true) and a
  realtime file's FIEMAP is on that disk (`fiemap_device` `data`). `zoned-external-*`'s realtime device is an
  ordinary virtio disk of 64 MiB: 8 conventional zones (realtime groups) of 8 MiB.
- `truth.json`: as in `tests/data/rt` (`devices`, `superblock` and `geometry` after recovery and unmount,
  `fsmap` with `data` and `rt`, `paths`, `files` with stat, xflags and FIEMAP, `xfs_repair_n_rc`), all of it
  the state AFTER the kernel's log recovery; and `state`, `images_state`, `fixture` (config, seed, the step
  after which and the delay in ms after which the shutdown came), `workload_seed`, `workload` (every step
  logged: `step`, `command`, `rc`, `output`; the steps after the shutdown fail), `shutdown` (`step_begun`:
  the workload step that had begun when the shutdown was sent; `workload_stopped_after`; the dmesg lines),
  `log_recovery` (`ran`: the mount printed `Starting recovery`; its dmesg lines), `crashed_log` (the
  crashed log's tail and head block and state as xfs_logprint -t found them), and per device `sha256`
  of the uncompressed crashed image and `guest_sha256_before_mount` (the same, as the second guest read it).
  There is no `populate`: the workload replaces it.
- `raw/`: the second boot's outputs as they are (`logprint-t.txt`: xfs_logprint -t of the crashed log,
  `xfs_db-sb0-before-mount.txt`, `sha256-before-mount.txt`, `dmesg-mount.txt`, `dmesg.txt`, and the
  recording's files, named as in `tests/data/rt`); `raw/crash/`: the first boot's (`mkfs.txt`,
  `workload.log`: every step with its output and rc, and `# ` lines when the shutdown was sent and when the
  workload stopped, `shutdown.txt`, `dmesg.txt`, `commands.log`); `raw/run/` (`zoned-*`, recorded by a
  run of their configurations alone): what `raw/` at the top holds, for that run.

`raw/` at the top: both boots' guest-wide outputs (`crash-*`: the first, `recover-*`: the second; versions,
module loading, disk list, whole dmesg) and the host's QEMU command lines, console logs and versions, of the
run that made `rtgroups-*` and `rt-classic-*`.
"""


def readme_fixtures(dest, fixtures):
    """The fixtures README.md lists: per configuration (in CRASH_CONFIGS' order) its default seeds, the seeds of
    FIXTURES (this run's) and of the fixture directories already in DEST (an earlier run's), by seed."""
    out = []
    for c in CRASH_CONFIGS:
        seeds = set(c.get("seeds", CRASH_SEEDS)) | {fx["seed"] for fx in fixtures if fx["config"] == c["name"]}
        for tj in glob.glob(os.path.join(dest, c["name"] + "-s*", "truth.json")):
            m = re.fullmatch(re.escape(c["name"]) + r"-s(\d+)", os.path.basename(os.path.dirname(tj)))
            if m:
                seeds.add(int(m.group(1)))
        out += crash_fixtures(sorted(seeds), [c["name"]])
    return out


def refused_before_shutdown(t):
    """The workload's steps that failed or printed an error before the shutdown was sent: 'OP: error' -> count
    (OP: xfs_io's command, or the program; the error: what the step printed, its paths as FILE)."""
    began = t.get("shutdown", {}).get("step_begun")
    counts = {}
    for st in t.get("workload", []):
        if (began is not None and st["step"] >= began) or not refused_steps([st]):
            continue
        m = re.search(r"-c '?\"?(\w+)", st["command"])
        op = m.group(1) if m and st["command"].startswith("xfs_io") else st["command"].split()[0].split("/")[-1]
        errs = (sorted({re.sub(r"'?/mnt/[^\s':]*'?", "FILE", x) for x in st["output"] if x.strip()})
                or [f"rc {st['rc']}"])
        key = f"{op}: " + "; ".join(f"`{e}`" for e in errs)
        counts[key] = counts.get(key, 0) + 1
    return counts


def write_crash_readme(dest, fixtures, kern, xfsprogs, summary, minutes=5):
    """README.md over this run's FIXTURES and the fixture directories an earlier run left in DEST (see
    readme_fixtures): the status of this run's from SUMMARY, of the others from their truth.json."""
    status = dict(summary)
    fixtures = readme_fixtures(dest, fixtures)
    rows = ["| name | mkfs.xfs options | seed | shutdown | workload steps (failed before the shutdown) | "
            "freeze+thaw before the shutdown | crashed log (xfs_logprint -t): tail, head block | log recovery | "
            "GETFSMAP records after recovery | files | data.img.xz, rt.img.xz | status |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rec, refused = [], []
    for fx in fixtures:
        tj = os.path.join(dest, fx["name"], "truth.json")
        if not os.path.exists(tj):
            rows.append(f"| `{fx['name']}` | `{fx['mkfs']}` | {fx['seed']} | | | | | | | | | "
                        f"{status.get(fx['name'], 'not made')} |")
            continue
        with open(tj) as f:
            t = json.load(f)
        sd, lr, cl = t.get("shutdown", {}), t.get("log_recovery", {}), t.get("crashed_log")
        began = sd.get("step_begun")
        before = [s for s in t.get("workload", []) if began is None or s["step"] < began]
        failed = sum(1 for s in before if s["rc"])
        sizes = ", ".join(f"{os.path.getsize(os.path.join(dest, fx['name'], r + '.img.xz')) // 1024} KiB"
                          for r in fx["disks"] if os.path.exists(os.path.join(dest, fx["name"], r + ".img.xz")))
        recs = ", ".join(f"{role} {len(v)}" for role, v in t.get("fsmap", {}).items())
        nfiles = sum(1 for x in t.get("files", []) if x.get("type") == "file")
        rows.append(f"| `{fx['name']}` | `{fx['mkfs']}` | {fx['seed']} | after step {fx['shutdown_after']} "
                    f"+ {fx['delay_ms']} ms: step {began} had begun | {len(t.get('workload', []))} logged "
                    f"({failed} of those before step {began} failed) | {sd.get('freezes_before')} | "
                    + (f"{cl['tail_block']}, {cl['head_block']} ({cl['state']})" if cl else "?")
                    + f" | {'ran' if lr.get('ran') else 'NOT run'} | {recs} | {nfiles} | {sizes} | "
                    f"{status.get(fx['name'], t.get('status'))} |")
        lines = [re.sub(r"^\[\s*[\d.]+\] ", "", x) for x in lr.get("dmesg", [])]
        rec.append(f"- `{fx['name']}`: " + "; ".join(f"`{x}`" for x in lines))
        rf = refused_before_shutdown(t)
        refused.append(f"- `{fx['name']}`: " + ("; ".join(f"{k} ({v}x)" for k, v in sorted(rf.items()))
                                                 if rf else "nothing"))
    with open(os.path.join(dest, "README.md"), "w") as f:
        f.write(CRASH_README.format(xfsprogs=xfsprogs, kver=kern["kver"], suite=kern["suite"], minutes=minutes,
                                    debs=", ".join(f"`{d}`" for d in kern["debs"]), table="\n".join(rows),
                                    recovery="\n".join(rec), refused="\n".join(refused)))


def _fresh(dest: str, name: str) -> str:
    """DEST/NAME emptied, with its raw/ directory; its path."""
    d = os.path.join(dest, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "raw"))
    return d


def _guest_results(tar: str, into: str, missing: str) -> str:
    """Unpack the tar the guest wrote into a fresh directory; its `out` directory (exit with `missing` when
    the guest got no result out)."""
    shutil.rmtree(into, ignore_errors=True)
    with tarfile.open(tar) as t:
        t.extractall(into)
    g = os.path.join(into, "out")
    if not os.path.exists(os.path.join(g, "steps.log")):
        sys.exit(missing)
    return g


def _run_outputs(dest: str, names: list[str], partial: bool, copy, kern: dict, xfsprogs: str, accel: str) -> None:
    """A run's guest-wide outputs (`copy(dir)` puts them there) and the host's versions: into DEST/raw, or, for a
    run of only some fixtures, into each one's NAME/raw/run/ (the full run's DEST/raw stays as it is)."""
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    for r in [os.path.join(dest, n, "raw", "run") for n in names] if partial else [os.path.join(dest, "raw")]:
        shutil.rmtree(r, ignore_errors=True)
        os.makedirs(r)
        copy(r)
        with open(os.path.join(r, "host-versions.txt"), "w") as f:
            f.write(f"kernel packages ({kern['suite']}): {' '.join(kern['debs'])}\nkernel: {kern['kver']}\n"
                    f"xfsprogs: {xfsprogs}\n{qv}\naccel: {accel}\n" + "".join(c + "\n" for c in kern["config"]))


def _keep(d: str, truth: dict, fs: dict, imgdir: str) -> str:
    """Write a fixture's truth.json into d and, when it is usable, its images (xz); what became of it."""
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=False)
        f.write("\n")
    if truth["status"] != "ok":
        return "skipped: " + truth["reason"]
    for role in fs["disks"]:
        sh("sh", "-c", f"xz -9 -T1 -c {imgdir}/{fs['name']}.{role}.img > {d}/{role}.img.xz")
    return "ok"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/var/tmp/rt-vm")
    ap.add_argument("--xfsprogs", default="/work/scratch/xfsprogs", help="an xfsprogs source tree, built")
    ap.add_argument("--suite", default="trixie-backports", help="Debian suite to take the kernel from")
    ap.add_argument("--flavour", default="cloud-amd64", help="linux-image-FLAVOUR (cloud-amd64, amd64)")
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--timeout", type=int, default=2400)
    ap.add_argument("--dest", default=DEST)
    ap.add_argument("--only", nargs="*", metavar="NAME",
                    help="make only these filesystems (the others' directories and the top-level raw/ are kept)")
    ap.add_argument("--skip-apt", action="store_true", help="use WORK/debs as downloaded before")
    ap.add_argument("--crash", action="store_true",
                    help="make only the crashed realtime filesystems of tests/data/rt-crash (tests/data/rt is "
                         "left alone)")
    ap.add_argument("--seeds", nargs="+", type=int,
                    help="--crash: the seeds (default: each configuration's own, else %s)"
                         % " ".join(map(str, CRASH_SEEDS)))
    ap.add_argument("--configs", nargs="+", metavar="CONFIG", choices=[c["name"] for c in CRASH_CONFIGS],
                    help="--crash: only these configurations (the other fixtures' directories and the top-level "
                         "raw/ are kept)")
    ap.add_argument("--crash-dest", default=CRASH_DEST)
    ap.add_argument("--crash-readme", action="store_true",
                    help="--crash: no guest; only rewrite CRASH_DEST/README.md from the fixtures there (after "
                         "fixtures recorded into a scratch --crash-dest were copied in)")
    a = ap.parse_args()
    if a.crash:
        if a.only is not None:
            ap.error("--crash and --only do not go together")
        os.makedirs(a.work, exist_ok=True)
        kern = prepare_host(a.work, a.suite, a.flavour, a.skip_apt)
        xfsprogs = prepare_xfsprogs(a.xfsprogs)
        if a.crash_readme:
            write_crash_readme(a.crash_dest, [], kern, xfsprogs, [])
            return
        missing = [b.split("/")[0] for b in CRASH_EXTRA if not b.startswith("/")
                   and not os.path.exists(os.path.join(a.xfsprogs, b))]
        if missing:
            sh("make", *missing, cwd=a.xfsprogs)
        for name, status in run_crash(a, kern, xfsprogs):
            print(f"{name}: {status}")
        return
    unknown = sorted(set(a.only or ()) - {fs["name"] for fs in FILESYSTEMS})
    if unknown:
        ap.error("no such filesystem: " + ", ".join(unknown))
    filesystems = [fs for fs in FILESYSTEMS if not a.only or fs["name"] in a.only]
    os.makedirs(a.work, exist_ok=True)
    kern = prepare_host(a.work, a.suite, a.flavour, a.skip_apt)
    xfsprogs = prepare_xfsprogs(a.xfsprogs)
    initrd = build_initramfs(a.work, kern, a.xfsprogs, filesystems)
    out, imgdir = run_guest(a.work, kern, initrd, filesystems, a.accel, a.timeout)
    for name, status in collect(a.work, out, imgdir, filesystems, kern, xfsprogs, a.accel, a.dest,
                                partial=len(filesystems) < len(FILESYSTEMS)):
        print(f"{name}: {status}")


if __name__ == "__main__":
    main()
