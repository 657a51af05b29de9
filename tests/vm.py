"""What the fixture makers that boot a Debian kernel under QEMU share (tests/make_pmem_fixtures.py,
tests/make_rt_fixtures.py): running host commands, copying a binary with its shared libraries into an
initramfs tree, and booting the guest with its console logged and a time limit. Not used by CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

# The start of every guest's /init: busybox's applets, and the kernel's filesystems mounted.
GUEST_PROLOGUE = r"""export PATH=/opt/bin:/sbin:/bin:/usr/sbin:/usr/bin
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
"""


def sh(*cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def copy_with_libs(root, path, dest=None):
    """Copy `path` to root+dest (default the same path) and every shared library ldd lists for it."""
    dest = dest or path
    os.makedirs(os.path.dirname(root + dest), exist_ok=True)
    shutil.copy2(path, root + dest)
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", out):
        real = os.path.realpath(lib)
        os.makedirs(os.path.dirname(root + lib), exist_ok=True)
        if not os.path.exists(root + lib):
            shutil.copy2(real, root + lib)


def boot(cmd: list[str], work: str, timeout: float, on_line=None) -> None:
    """Run the QEMU command line `cmd` (saved to WORK/qemu-cmdline.txt), its console copied to
    WORK/console.log and stdout, killed after `timeout` seconds; `on_line(line)` sees every console line."""
    with open(os.path.join(work, "qemu-cmdline.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout

    def watchdog():
        while proc.poll() is None:
            if time.time() > deadline:
                proc.kill()
            time.sleep(1)

    threading.Thread(target=watchdog, daemon=True).start()
    with open(os.path.join(work, "console.log"), "w") as log:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            sys.stdout.write(line)
            if on_line is not None:
                on_line(line)
    proc.wait()


def pack_initramfs(work: str, root: str, mdir: str, kver: str, modules: list[str], init: str) -> str:
    """Finish the initramfs tree `root` (its modules already copied from `mdir` under lib/modules/KVER, listed
    in load order in `modules`): module metadata and depmod, /modules.list, /init; pack it into
    WORK/initramfs.cpio.gz and return that path."""
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if os.path.exists(os.path.join(mdir, f)):
            shutil.copy2(os.path.join(mdir, f), os.path.join(root, "lib/modules", kver, f))
    sh("depmod", "-b", root, kver)
    with open(os.path.join(root, "modules.list"), "w") as f:
        f.write("\n".join(modules) + "\n")
    with open(os.path.join(root, "init"), "w") as f:
        f.write(init)
    os.chmod(os.path.join(root, "init"), 0o755)
    img = os.path.join(work, "initramfs.cpio.gz")
    sh("sh", "-c", f"cd {root} && find . | cpio -o -H newc --quiet | gzip -1 > {img}")
    return img


def initramfs_tree(work: str) -> str:
    """A fresh WORK/initramfs tree with busybox (its applets are linked by /init): the tree's root."""
    root = os.path.join(work, "initramfs")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "opt/bin", "lib64", "etc", "tmp", "mnt"):
        os.makedirs(os.path.join(root, d))
    shutil.copy2("/bin/busybox", root + "/bin/busybox")
    os.symlink("busybox", root + "/bin/sh")  # for /init's #! line
    return root
