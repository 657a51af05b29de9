#!/usr/bin/env python3
"""Make tests/data/pmem/: real NVDIMM/pmem material from the real Linux kernel and ndctl, in a QEMU guest.

Not run by CI (it needs root, apt, QEMU and several minutes); it documents and reproduces the committed
fixtures. On a Debian 12 host, as root:

  python3 tests/make_pmem_fixtures.py [--work /var/tmp/pmem-vm] [--accel tcg|kvm] [--cpu max,vendor=GenuineIntel]

Steps:
1. apt-get install qemu-system-x86 busybox-static ndctl daxctl xfsprogs coreutils gcc libc6-dev; download
   (not install) Debian's linux-image-6.1.0-*-amd64 .deb and unpack it into WORK/kroot; depmod -b there.
2. Build WORK/initramfs.cpio.gz: busybox-static, ndctl, daxctl, mkfs.xfs, xfs_io, xfs_db, coreutils cp/stat
   (+ the shared libraries ldd lists), the modules needed (nfit, nd_pmem, nd_btt, dax_pmem, device_dax, xfs,
   virtio_blk, hwpoison_inject, with their dependencies) and a small static C program, mfpoke, that maps one
   page of a file, optionally asks for early kill or MADV_HWPOISON, touches the page and reports any SIGBUS.
   /init is GUEST_SCRIPT below.
3. Boot the Debian kernel with four emulated NVDIMMs (one region each, label area at the END of each backing
   file) and a virtio disk the guest writes its results to as a tar:
     nvdimm0 640 MiB: fsdax --map=dev, mkfs.xfs -m rmapbt=1,reflink=1, mount -o dax=always, files, memory
                      failure experiments (hard_offline_page, MADV_HWPOISON, debugfs corrupt-pfn, QEMU "mce")
     nvdimm1 256 MiB: fsdax --map=mem
     nvdimm2 160 MiB: devdax
     nvdimm3 128 MiB: raw 32 MiB + raw 48 MiB (the second not at the region base) + sector (BTT) 32 MiB
   When the guest prints "@@MCE-REQUEST <addr>" the host injects a machine check at that physical address
   through the QEMU monitor (HMP "mce") and the guest records what the kernel did with it.
4. Copy the guest's results and the xz -9 compressed backing files into tests/data/pmem/.
Every byte in tests/data/pmem/ comes from the guest (its outputs, or the NVDIMM backing files it wrote).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vm import GUEST_PROLOGUE, boot, copy_with_libs, initramfs_tree, pack_initramfs, sh  # noqa: E402  (run as a script: tests/ is not a package path then)

DEST = os.path.join(HERE, "data", "pmem")
MiB = 1 << 20
LABEL_SIZE = 128 * 1024
# name, backing file size (bytes, label area included)
# QEMU places the DIMMs back to back and the label area is carved from each; with sizes of N * 16 MiB + the
# label area every region starts 16 MiB aligned (ndctl refuses fsdax/devdax namespaces in a region that is not:
# "namespace1.0 misaligned to 16M, adjust region alignment and retry").
NVDIMMS = [("nvdimm0", 640 * MiB + LABEL_SIZE), ("nvdimm1", 256 * MiB + LABEL_SIZE),
           ("nvdimm2", 160 * MiB + LABEL_SIZE), ("nvdimm3", 128 * MiB + LABEL_SIZE)]
OUT_DISK_SIZE = 64 * MiB

MODULES = ["libnvdimm", "nfit", "nd_btt", "nd_pmem", "dax_pmem", "device_dax", "kmem", "libcrc32c",
           "crc32c_generic", "crc32c-intel", "xfs", "virtio", "virtio_ring", "virtio_pci_modern_dev",
           "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk", "hwpoison-inject"]
BINARIES = ["/usr/bin/ndctl", "/usr/bin/daxctl", "/usr/sbin/mkfs.xfs", "/usr/sbin/xfs_io", "/usr/sbin/xfs_db",
            "/usr/sbin/xfs_info", "/usr/sbin/xfs_spaceman", "/usr/bin/cp", "/usr/bin/stat"]

MFPOKE_C = r"""
/* mfpoke FILE PAGE MODE SECONDS: map page PAGE of FILE (MAP_SHARED), read it, then according to MODE
 *   early   prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY)
 *   late    prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_LATE)
 *   madvise madvise(addr, 4096, MADV_HWPOISON) on the mapped page (then touch it)
 * and read the page every 100 ms for SECONDS seconds. A SIGBUS is reported (si_code, si_addr, si_addr_lsb)
 * and ends the program with exit status 135. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static volatile unsigned char *page;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "mfpoke pid=%d SIGBUS si_code=%d si_addr=%p si_addr_lsb=%d mapped=%p\n",
                     (int)getpid(), si->si_code, si->si_addr, (int)si->si_addr_lsb, (void *)page);
    (void)sig; (void)uc;
    if (write(1, buf, n) < 0) _exit(134);
    _exit(135);
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: mfpoke FILE PAGE MODE SECONDS\n"); return 2; }
    const char *mode = argv[3];
    long pg = atol(argv[2]), secs = atol(argv[4]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { printf("mfpoke open %s: %s\n", argv[1], strerror(errno)); return 3; }
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, pg * 4096);
    if (page == MAP_FAILED) { printf("mfpoke mmap: %s\n", strerror(errno)); return 4; }
    if (!strcmp(mode, "early"))
        printf("mfpoke prctl early rc=%d\n", prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0));
    if (!strcmp(mode, "late"))
        printf("mfpoke prctl late rc=%d\n", prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_LATE, 0, 0));
    printf("mfpoke pid=%d file=%s page=%ld mode=%s addr=%p first=0x%02x mapped\n", (int)getpid(), argv[1], pg,
           mode, (void *)page, page[0]);
    if (!strcmp(mode, "madvise")) {
        int rc = madvise((void *)page, 4096, MADV_HWPOISON);
        printf("mfpoke madvise(MADV_HWPOISON) rc=%d errno=%s\n", rc, rc ? strerror(errno) : "0");
    }
    for (long i = 0; i < secs * 10; i++) {
        unsigned char c = page[(i * 64) % 4096];
        (void)c;
        usleep(100000);
    }
    printf("mfpoke pid=%d survived %ld s, first=0x%02x\n", (int)getpid(), secs, page[0]);
    return 0;
}
"""

GUEST_SCRIPT = r"""#!/bin/sh
# /init of the guest: every file under /tmp/out ends up in tests/data/pmem (via a tar on /dev/vda).
""" + GUEST_PROLOGUE + r"""mount -t debugfs debugfs /sys/kernel/debug
O=/tmp/out
mkdir -p $O
say() { echo "@@ $*"; echo "$*" >> $O/steps.log; }
# run NAME CMD...: stdout to $O/NAME, stderr to $O/NAME.stderr (kept only if not empty); logged with rc
run() {
  n=$1; shift
  "$@" > $O/$n 2> $O/$n.stderr; rc=$?
  [ -s $O/$n.stderr ] || rm -f $O/$n.stderr
  printf '%s\trc=%s\t%s\n' "$n" "$rc" "$*" >> $O/commands.log
  echo "@@ [$n rc=$rc] $*"
  return $rc
}
dmesg_mark() { dmesg > /tmp/dmesg.$1; }
# dmesg_since MARK NAME: the kernel lines printed since dmesg_mark MARK
dmesg_since() { dmesg > /tmp/dmesg.now; n=$(wc -l < /tmp/dmesg.$1); tail -n +$((n + 1)) /tmp/dmesg.now > $O/$2; }

# copy_tree SRC DST: regular files -> their content (empty if unreadable), symlinks -> symlinks (same target),
# directories -> directories; never follows a symlink
copy_tree() {
  (cd "$1" && find . ) | while read -r p; do
    s="$1/$p"; d="$2/$p"
    if [ -L "$s" ]; then ln -s "$(readlink "$s")" "$d"
    elif [ -d "$s" ]; then mkdir -p "$d"
    elif [ -f "$s" ]; then timeout 5 cat "$s" > "$d" 2>/dev/null || : > "$d"
    fi
  done
}
snap_sysfs() {
  t=/tmp/sysfs-$1; mkdir -p $t
  for l in /sys/bus/nd/devices/* /sys/class/block/* /sys/bus/dax/devices/*; do
    [ -L "$l" ] || continue
    mkdir -p "$t$(dirname $l)"; ln -s "$(readlink $l)" "$t$l"
  done
  for b in /sys/bus/nd/devices/ndbus*; do
    r=$(readlink -f $b); mkdir -p "$t$r"; copy_tree "$r" "$t$r"
  done
  for b in /sys/class/block/pmem*; do
    r=$(readlink -f $b); [ -d "$t$r" ] || { mkdir -p "$t$r"; copy_tree "$r" "$t$r"; }
  done
  mkdir -p $t/proc; cat /proc/iomem > $t/proc/iomem; cat /proc/cmdline > $t/proc/cmdline
  (cd /tmp && tar cf $O/sysfs-$1.tar sysfs-$1)  # busybox xz only decompresses: the host runs xz -9
  for b in /sys/block/pmem*; do echo "$b: $(cat $b/badblocks | tr '\n' ';')"; done > $O/badblocks-$1.txt
}
# checkpoint: write what we have so far to the results disk (a later step may take the guest down)
checkpoint() { dmesg > $O/dmesg-full.txt; (cd /tmp && tar cf /dev/vda out) && sync; echo "@@ checkpoint $1"; }
ndlists() {
  run ndctl-list-BDRNv-$1.json ndctl list -BDRNv --media-errors
  run ndctl-list-N-$1.json ndctl list -N --media-errors
  run ndctl-list-R-$1.json ndctl list -R --media-errors
  run ndctl-list-RN-$1.json ndctl list -RN --media-errors
  run daxctl-list-$1.json daxctl list -DRMi
}

say "guest up: $(uname -a)"
for m in $(cat /modules.list); do insmod /lib/modules/$(uname -r)/$m 2>> $O/insmod.log || echo "insmod $m failed" >> $O/insmod.log; done
sleep 2
cat /proc/cmdline > $O/proc-cmdline.txt
grep -E 'flags|vendor_id|model name' /proc/cpuinfo | sort -u > $O/cpuinfo.txt
run ndctl-version.txt ndctl --version
run mkfs-version.txt mkfs.xfs -V
run uname.txt uname -a
ndlists initial
# label areas: initialise them so that namespaces get labels (v1.2)
run ndctl-disable-region-all.txt ndctl disable-region all
run ndctl-init-labels.txt ndctl init-labels -f all
run ndctl-enable-region-all.txt ndctl enable-region all
ndlists labels
# which region is which nvdimm: by size (nvdimm0 640M, 1 256M, 2 160M, 3 128M)
for r in /sys/bus/nd/devices/region*; do echo "$(basename $r) $(cat $r/size) $(cat $r/resource) $(cat $r/mappings 2>/dev/null) $(cat $r/mapping0 2>/dev/null)"; done > $O/regions.txt
reg() { awk -v s=$1 '$2 == s { print $1 }' $O/regions.txt; }
R0=$(reg 671088640); R1=$(reg 268435456); R2=$(reg 167772160); R3=$(reg 134217728)
say "regions: $R0 $R1 $R2 $R3"
run create-fsdax-dev.json ndctl create-namespace -r $R0 --mode=fsdax --map=dev
run create-fsdax-mem.json ndctl create-namespace -r $R1 --mode=fsdax --map=mem
run create-devdax.json ndctl create-namespace -r $R2 --mode=devdax
run create-raw-a.json ndctl create-namespace -r $R3 --mode=raw -s 32M
run create-raw-b.json ndctl create-namespace -r $R3 --mode=raw -s 48M
run create-sector.json ndctl create-namespace -r $R3 --mode=sector -s 32M
sleep 1
ls -l /dev/pmem* /dev/dax* > $O/dev-nodes.txt 2>&1
ndlists namespaces
snap_sysfs namespaces
checkpoint "namespaces"

# the fsdax map=dev namespace of region R0 -> its pmem block device and pfn device
jget() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" $2 | head -1; }
PDEV=$(jget blockdev $O/create-fsdax-dev.json)
if [ -z "$PDEV" ] || [ ! -b /dev/$PDEV ]; then say "FAILED: no fsdax pmem device"; checkpoint fail; poweroff -f; fi
PFN=$(dirname $(dirname $(readlink -f /sys/block/$PDEV)))
say "fsdax map=dev: /dev/$PDEV pfn $PFN"
{ echo "blockdev $PDEV"; echo "pfn_dir $PFN"
  for f in resource size align mode namespace; do echo "pfn.$f $(cat $PFN/$f 2>&1)"; done
  NS=$(cat $PFN/namespace); for f in resource size mode holder; do echo "ns.$f $(cat /sys/bus/nd/devices/$NS/$f 2>&1)"; done
  echo "region.resource $(cat /sys/bus/nd/devices/$R0/resource)"; echo "region.size $(cat /sys/bus/nd/devices/$R0/size)"
  echo "blockdev.size_sectors $(cat /sys/block/$PDEV/size)"
} > $O/fsdax-dev-numbers.txt
PFNRES=$(cat $PFN/resource)

dmesg_mark mkfs
run mkfs.txt mkfs.xfs -f -m rmapbt=1,reflink=1 /dev/$PDEV
run mount.txt mount -o dax=always /dev/$PDEV /mnt
if ! grep -q " /mnt xfs " /proc/mounts; then say "FAILED: mount"; checkpoint fail; poweroff -f; fi
dmesg_since mkfs dmesg-mount.txt
run xfs_info.txt xfs_spaceman -c info /mnt  # what xfs_info runs (its script needs findmnt, absent here)
run mounts.txt cat /proc/mounts
xfs_io -f -c 'pwrite -S 0xa1 -b 1m 0 1m' -c fsync /mnt/a.dat > /dev/null
run cp-reflink.txt cp --reflink=always /mnt/a.dat /mnt/b.dat || xfs_io -f -c 'reflink /mnt/a.dat' /mnt/b.dat
xfs_io -f -c 'pwrite -S 0xc3 -b 256k 0 256k' -c fsync /mnt/c.dat > /dev/null
xfs_io -f -c 'pwrite -S 0xd4 -b 256k 0 256k' -c fsync /mnt/d.dat > /dev/null
xfs_io -f -c 'pwrite -S 0xe5 -b 64k 0 64k' -c fsync /mnt/e.dat > /dev/null
xfs_io -f -c 'pwrite -S 0xf6 -b 64k 0 64k' -c fsync /mnt/f.dat > /dev/null
mkdir /mnt/dir; echo hello > /mnt/dir/small.txt
sync
run ls-li.txt ls -lai /mnt /mnt/dir
run stat.txt stat /mnt/a.dat /mnt/b.dat /mnt/c.dat /mnt/d.dat /mnt/e.dat /mnt/f.dat /mnt/dir /mnt/dir/small.txt
run statx.txt sh -c 'for f in /mnt/*.dat; do echo "== $f"; xfs_io -c "statx -r" $f; done'
run bmap.txt sh -c 'for f in /mnt/*.dat /mnt/dir/small.txt; do echo "== $f"; xfs_io -c "bmap -v" $f; done'
run fiemap.txt sh -c 'for f in /mnt/*.dat; do echo "== $f"; xfs_io -c "fiemap -v" $f; done'
run fsmap-before.txt xfs_io -c 'fsmap -v' /mnt
run fsmap-m-before.txt xfs_io -c 'fsmap -m' /mnt
checkpoint "fsmap-m-before.txt"

# physical address of page PAGE of FILE = pfn resource + 512 * daddr(first extent) + 4096 * PAGE
daddr() { xfs_io -c 'bmap' $1 | awk 'NR == 2 { split($3, a, "\\.\\."); print a[1] }'; }
phys() { d=$(daddr $1); [ -n "$d" ] || { say "FAILED: no daddr for $1"; checkpoint fail; poweroff -f; }
  printf '0x%x' $((PFNRES + 512 * d + 4096 * $2)); }
{ for f in a b c d e f; do echo "$f.dat daddr=$(daddr /mnt/$f.dat) page0_phys=$(phys /mnt/$f.dat 0)"; done; } > $O/file-phys.txt
cat $O/file-phys.txt
echo 0 > /proc/sys/vm/memory_failure_early_kill
cat /proc/sys/vm/memory_failure_early_kill /proc/sys/vm/memory_failure_recovery > $O/vm-memory-failure-sysctls.txt

# experiment 1: hard_offline_page at page 0 of a.dat, shared (reflink) with b.dat; a mapped early-kill, b late
A=$(phys /mnt/a.dat 0)
dmesg_mark e1
mfpoke /mnt/a.dat 0 early 6 > $O/exp1-mfpoke-a-early.txt 2>&1 & P1=$!
mfpoke /mnt/b.dat 0 late 6 > $O/exp1-mfpoke-b-late.txt 2>&1 & P2=$!
sleep 1
say "exp1 hard_offline_page $A"
run exp1-hard-offline.txt sh -c "echo $A > /sys/devices/system/memory/hard_offline_page"
wait $P1; echo "exit status $?" >> $O/exp1-mfpoke-a-early.txt
wait $P2; echo "exit status $?" >> $O/exp1-mfpoke-b-late.txt
dmesg_since e1 exp1-dmesg.txt
run exp1-read-after.txt sh -c 'od -A d -t x1 -N 16 /mnt/a.dat; od -A d -t x1 -N 16 /mnt/b.dat'
checkpoint "exp1-read-after.txt"

# experiment 2: MADV_HWPOISON from the process on its own mapping of c.dat page 1
dmesg_mark e2
say "exp2 madvise c.dat page 1 ($(phys /mnt/c.dat 1))"
mfpoke /mnt/c.dat 1 madvise 3 > $O/exp2-mfpoke-c-madvise.txt 2>&1; echo "exit status $?" >> $O/exp2-mfpoke-c-madvise.txt
dmesg_since e2 exp2-dmesg.txt

# experiment 3: debugfs hwpoison/corrupt-pfn at e.dat page 2, mapped by an early-kill process
E=$(phys /mnt/e.dat 2)
dmesg_mark e3
mfpoke /mnt/e.dat 2 early 5 > $O/exp3-mfpoke-e-early.txt 2>&1 & P1=$!
sleep 1
say "exp3 corrupt-pfn $(printf '0x%x' $((E >> 12)))"
run exp3-corrupt-pfn.txt sh -c "echo $((E >> 12)) > /sys/kernel/debug/hwpoison/corrupt-pfn"
wait $P1; echo "exit status $?" >> $O/exp3-mfpoke-e-early.txt
dmesg_since e3 exp3-dmesg.txt
checkpoint "e3"

# experiment 4: a machine check from the (virtual) hardware at d.dat page 0: the host injects it (QEMU "mce");
# d.dat page 0 is mapped by a late-kill process which touches it again afterwards
D=$(phys /mnt/d.dat 0)
# a corrected/deferred error that QEMU only latches in the bank registers is found by the kernel's MCA poll
for c in /sys/devices/system/machinecheck/machinecheck*/check_interval; do echo 1 > $c; done
run mce-sysfs.txt sh -c 'cd /sys/devices/system/machinecheck/machinecheck0 && grep -r . . 2>/dev/null'
dmesg_mark e4
mfpoke /mnt/d.dat 0 late 12 > $O/exp4-mfpoke-d-late.txt 2>&1 & P1=$!
sleep 1
echo "@@MCE-REQUEST $D"
i=0; while [ $i -lt 20 ] && ! grep -q pmem /tmp/mce-done 2>/dev/null; do sleep 1; i=$((i+1)); dmesg | grep -q 'Memory failure' && cat /sys/block/$PDEV/badblocks > /tmp/mce-done; [ -s /tmp/mce-done ] && break; done
sleep 2
wait $P1; echo "exit status $?" >> $O/exp4-mfpoke-d-late.txt
dmesg_since e4 exp4-dmesg.txt
run exp4-badblocks.txt cat /sys/block/$PDEV/badblocks
run exp4-region-badblocks.txt cat /sys/bus/nd/devices/$R0/badblocks
run exp4-read-after.txt od -A d -t x1 -N 16 /mnt/d.dat
run exp4-read-after-direct.txt xfs_io -d -c 'pread -v 0 512' /mnt/d.dat
run exp4-mfpoke-again.txt mfpoke /mnt/d.dat 0 late 1
ndlists after-mce
checkpoint "after-mce"

# experiment 5: the same on the second raw namespace of region R3 (not at the region base)
RB=$(jget dev $O/create-raw-b.json)
RBRES=$(cat /sys/bus/nd/devices/$RB/resource)
X=$(printf '0x%x' $((RBRES + 1048576)))
dmesg_mark e5
echo "@@MCE-REQUEST $X"
i=0; while [ $i -lt 20 ]; do sleep 1; i=$((i+1)); dmesg | tail -n +$(($(wc -l < /tmp/dmesg.e5) + 1)) | grep -q -E 'Memory failure|mce' && break; done
sleep 2
dmesg_since e5 exp5-dmesg.txt
echo "raw-b $RB resource $RBRES injected $X" > $O/exp5-where.txt
ndlists after-raw-mce
checkpoint "after-raw-mce"

# experiment 6: metadata: hard_offline_page at the page holding AG 1's AGF (sector 1 of AG 1; with the 4 KiB
# sectors mkfs picks on pmem that is AG block 1, owner "static fs metadata")
run xfs_db-sb0.txt xfs_db -r -c 'sb 0' -c 'print' /dev/$PDEV
AGB=$(awk '$1 == "agblocks" { print $3 }' $O/xfs_db-sb0.txt)
BS=$(awk '$1 == "blocksize" { print $3 }' $O/xfs_db-sb0.txt)
SS=$(awk '$1 == "sectsize" { print $3 }' $O/xfs_db-sb0.txt)
[ -n "$AGB" ] && [ -n "$BS" ] && [ -n "$SS" ] || { say "FAILED: agblocks/blocksize"; checkpoint fail; poweroff -f; }
M=$(printf '0x%x' $((PFNRES + AGB * BS + SS)))
echo "agblocks=$AGB blocksize=$BS sectsize=$SS AG1 AGF byte offset in /dev/$PDEV=$((AGB * BS + SS)) phys=$M" > $O/exp6-where.txt
dmesg_mark e6
mfpoke /mnt/f.dat 0 early 4 > $O/exp6-mfpoke-f-early.txt 2>&1 & P1=$!
sleep 1
say "exp6 hard_offline_page $M (AG 1 AGF)"
run exp6-hard-offline.txt sh -c "echo $M > /sys/devices/system/memory/hard_offline_page"
sleep 1
run exp6-ls-after.txt ls -l /mnt
wait $P1; echo "exit status $?" >> $O/exp6-mfpoke-f-early.txt
dmesg_since e6 exp6-dmesg.txt
run fsmap-after.txt xfs_io -c 'fsmap -v' /mnt
run umount.txt umount /mnt
ndlists final
snap_sysfs final
dmesg > $O/dmesg-full.txt
say "done"
cd /tmp && tar cf /dev/vda out && sync
echo "@@GUEST-DONE"
poweroff -f
"""


def prepare_host(work):
    sh("apt-get", "update", "-qq")
    sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86", "busybox-static",
       "ndctl", "daxctl", "xfsprogs", "coreutils", "gcc", "libc6-dev", "xz-utils", "cpio", "kmod",
       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    os.makedirs(work, exist_ok=True)
    dep = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True, capture_output=True,
                         text=True).stdout
    image = re.search(r"Depends: (linux-image-[0-9.]+-[0-9]+-amd64)", dep).group(1)
    if not glob.glob(os.path.join(work, image + "_*.deb")):
        sh("apt-get", "download", image, cwd=work)
    deb = glob.glob(os.path.join(work, image + "_*.deb"))[0]
    kroot = os.path.join(work, "kroot")
    if not os.path.isdir(kroot):
        sh("dpkg-deb", "-x", deb, kroot)
    kver = image[len("linux-image-"):]
    sh("depmod", "-b", kroot, kver)
    return kroot, kver, os.path.basename(deb)


def build_initramfs(work, kroot, kver):
    root = initramfs_tree(work)
    for b in BINARIES:
        # coreutils' cp (--reflink) and stat go first in PATH, ahead of busybox's applets
        copy_with_libs(root, b, "/opt/bin/" + os.path.basename(b) if b in ("/usr/bin/cp", "/usr/bin/stat") else b)
    src = os.path.join(work, "mfpoke.c")
    with open(src, "w") as f:
        f.write(MFPOKE_C)
    sh("gcc", "-O1", "-static", "-o", root + "/opt/bin/mfpoke", src)
    # modules in dependency order from modules.dep
    mdir = os.path.join(kroot, "lib/modules", kver)
    deps = {}
    with open(os.path.join(mdir, "modules.dep")) as f:
        for line in f:
            k, v = line.split(":", 1)
            deps[os.path.basename(k)[:-3]] = (k, v.split())
    order = []

    def add(name):
        key = name if name in deps else name.replace("_", "-")
        path, d = deps[key]
        for x in d:
            add(os.path.basename(x)[:-3])
        if path not in order:
            order.append(path)

    for m in MODULES:
        add(m)
    for p in order:
        os.makedirs(os.path.dirname(os.path.join(root, "lib/modules", kver, p)), exist_ok=True)
        shutil.copy2(os.path.join(mdir, p), os.path.join(root, "lib/modules", kver, p))
    return pack_initramfs(work, root, mdir, kver, order, GUEST_SCRIPT)


def run_guest(work, kroot, kver, initrd, accel, cpu, timeout):
    for name, size in NVDIMMS:
        p = os.path.join(work, name + ".img")
        with open(p, "wb") as f:  # a fresh, sparse, all-zero backing file
            f.truncate(size)
    out = os.path.join(work, "out.img")
    with open(out, "wb") as f:
        f.truncate(OUT_DISK_SIZE)
    mon = os.path.join(work, "monitor.sock")
    if os.path.exists(mon):
        os.unlink(mon)
    total = sum(s for _, s in NVDIMMS)
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", cpu, "-smp", "1",
           "-machine", "pc,nvdimm=on", "-m", f"2G,slots={len(NVDIMMS)},maxmem={2048 + total // MiB + 1024}M",
           "-kernel", os.path.join(kroot, "boot", "vmlinuz-" + kver), "-initrd", initrd,
           "-append", "console=ttyS0 panic=-1 oops=panic",
           "-nographic", "-no-reboot", "-monitor", f"unix:{mon},server,nowait",
           "-drive", f"file={out},format=raw,if=virtio"]
    for i, (name, size) in enumerate(NVDIMMS):
        cmd += ["-object", f"memory-backend-file,id=mem{i},share=on,mem-path={work}/{name}.img,size={size}",
                "-device", f"nvdimm,id={name},memdev=mem{i},label-size={LABEL_SIZE}"]
    mce_log = []

    def on_line(line):
        m = re.search(r"@@MCE-REQUEST (0x[0-9a-f]+)", line)
        if m and not line.lstrip().startswith("echo"):
            mce_log.append(inject_mce(mon, int(m.group(1), 16), cpu))

    boot(cmd, work, timeout, on_line)
    with open(os.path.join(work, "mce-injections.txt"), "w") as f:
        f.write("".join(mce_log))
    return out


def inject_mce(mon, addr, cpu):
    """HMP: mce [-b] cpu bank status mcgstatus addr misc. A software-recoverable action-optional (SRAO)
    memory error: Intel: VAL|UC|EN|MISCV|ADDRV|S with MCACOD 0x00c0 (memory scrubbing), MCG_STATUS
    MCIP|RIPV, MISC: physical address mode (2 << 6) with the address LSB at bit 12. AMD (no SMCA): bank 4 with
    extended error code 8 (the "DRAM ECC error" the kernel treats as a memory error), as a deferred error."""
    amd = "vendor=GenuineIntel" not in cpu
    if amd:
        # VAL|EN|ADDRV|DEFERRED: QEMU latches a non-UC error without raising #MC; the guest's poll finds it
        bank, status = 4, (1 << 63) | (1 << 60) | (1 << 58) | (1 << 44) | (0x8 << 16) | 0x009f
    else:
        bank, status = 9, (0xBD << 56) | 0x00C0
    cmdline = f"mce -b 0 {bank} {status:#x} 0x5 {addr:#x} {(2 << 6) | 12:#x}"
    s = socket.socket(socket.AF_UNIX)
    s.connect(mon)
    s.settimeout(2)
    got = b""
    try:
        got += s.recv(4096)
    except socket.timeout:
        pass
    s.sendall(cmdline.encode() + b"\n")
    time.sleep(1)
    try:
        got += s.recv(4096)
    except socket.timeout:
        pass
    s.close()
    # keep the monitor's own lines, not its character-by-character echo of the command (escape sequences)
    reply = [x for x in got.decode("utf-8", "replace").splitlines() if "\x1b" not in x]
    return f"{time.strftime('%H:%M:%S')} HMP: {cmdline}\n" + "".join(f"  {x}\n" for x in reply)


def collect(work, out, kver, debname, accel, cpu, dest):
    os.makedirs(dest, exist_ok=True)
    shutil.rmtree(work + "/guest", ignore_errors=True)
    with tarfile.open(out) as t:
        t.extractall(work + "/guest")
    if not os.path.exists(work + "/guest/out/steps.log"):
        sys.exit("the guest wrote no results (see WORK/console.log)")
    for p in sorted(glob.glob(work + "/guest/out/*")):
        if p.endswith(".tar"):
            sh("sh", "-c", f"xz -9 -T1 -c {p} > {os.path.join(dest, os.path.basename(p))}.xz")
        else:
            shutil.copy2(p, os.path.join(dest, os.path.basename(p)))
    for name, _ in NVDIMMS:
        dst = os.path.join(dest, name + ".img.xz")
        sh("sh", "-c", f"xz -9 -T1 -c {work}/{name}.img > {dst}")
    for f in ("console.log", "mce-injections.txt", "qemu-cmdline.txt"):
        shutil.copy2(os.path.join(work, f), os.path.join(dest, "host-" + f))
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    with open(os.path.join(dest, "host-versions.txt"), "w") as f:
        f.write(f"kernel package: {debname} ({kver})\n{qv}\naccel: {accel} cpu: {cpu}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/var/tmp/pmem-vm")
    # TCG by default: on the (nested-virtualised) machine these fixtures were made on, KVM guests hung in the
    # kernel's decompressor, and -cpu host failed ("failed to set MSR 0x10a"); TCG is slow but enough here.
    # An Intel vendor string makes the guest kernel take the Intel machine-check path (SRAO memory error).
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--dest", default=DEST)
    ap.add_argument("--skip-apt", action="store_true")
    a = ap.parse_args()
    cpu = a.cpu or "max,vendor=GenuineIntel"
    if a.skip_apt:
        kroot = os.path.join(a.work, "kroot")
        kver = os.listdir(os.path.join(kroot, "lib/modules"))[0]
        debname = os.path.basename(glob.glob(os.path.join(a.work, "linux-image-*.deb"))[0])
    else:
        kroot, kver, debname = prepare_host(a.work)
    initrd = build_initramfs(a.work, kroot, kver)
    out = run_guest(a.work, kroot, kver, initrd, a.accel, cpu, a.timeout)
    collect(a.work, out, kver, debname, a.accel, cpu, a.dest)


if __name__ == "__main__":
    main()
