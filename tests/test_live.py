"""fsdaxctl.engine.live against the running kernel: real processes mapping real files on a loop-mounted XFS.

Children are small Python programs that mmap page ranges (MAP_SHARED, one MAP_PRIVATE), block SIGBUS and wait
for it with sigtimedwait, so they can write down the siginfo they got (si_code, si_pid) - a handler installed
with signal.signal cannot see si_code. Each writes "ready <mapping address>" when its pages are mapped.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from fsdaxctl.errors import DeviceError
from fsdaxctl.engine import live
from tests.conftest import need_kernel

PS = live.PAGE_SIZE

CHILD = textwrap.dedent("""
    import ctypes, mmap, os, signal, sys, threading, time
    path, first, count, kind, result = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    opts = sys.argv[6:]
    ps = mmap.PAGESIZE
    if "early" in opts:  # prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY): PF_MCE_PROCESS|PF_MCE_EARLY
        ctypes.CDLL(None, use_errno=True).prctl(33, 1, 1, 0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGBUS})  # before any thread: all threads block it
    fd = os.open(path, os.O_RDWR)
    flags = mmap.MAP_SHARED if kind == "shared" else mmap.MAP_PRIVATE
    m = mmap.mmap(fd, count * ps, flags, mmap.PROT_READ | mmap.PROT_WRITE, offset=first * ps)
    for i in range(count):
        m[i * ps]  # fault every page in
    if kind == "private":
        m[0] = 0x21  # one page copied on write: the VMA still maps the file
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if "thread" in opts:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    print("ready", addr, flush=True)
    info = signal.sigtimedwait({signal.SIGBUS}, 60)
    with open(result, "w") as fh:
        fh.write(f"{info.si_signo} {info.si_code} {info.si_pid}\\n" if info else "timeout\\n")
""")


@contextlib.contextmanager
def mounted_abc(img):
    """mkfs a 64 MiB XFS (reflink, rmapbt, 4 KiB blocks) at `img`, mount it, write a and c (16 pages each) and
    b, a reflinked clone of a; yield the mount point (unmounted afterwards)."""
    from tests.images import loop_mount, mkfs

    mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1"])
    with loop_mount(img) as mnt:
        for name, fill in (("a", b"A"), ("c", b"C")):
            with open(os.path.join(mnt, name), "wb") as fh:
                fh.write(fill * (16 * PS))
        subprocess.run(["cp", "--reflink=always", os.path.join(mnt, "a"), os.path.join(mnt, "b")], check=True)
        os.sync()
        yield mnt


@pytest.fixture(scope="module")
def xfs(tmp_path_factory):
    need_kernel()
    with mounted_abc(tmp_path_factory.mktemp("live") / "live.img") as mnt:
        yield mnt


def _devt(path):
    st = os.stat(path)
    return (os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino


class Child:
    def __init__(self, path, first, count, kind="shared", *opts, tmp):
        self.first, self.count = first, count
        self.result = os.path.join(tmp, f"sig-{os.path.basename(path)}-{first}-{count}-{kind}")
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(first), str(count), kind, self.result,
                                      *opts], stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def wait_ready(self):
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["ready"], f"child {self.pid} did not map its pages: {line}"
        self.addr = int(line[1])

    def got(self, timeout=5.0):
        """(signo, si_code, si_pid) once the child has written them, None if it has not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                with open(self.result) as fh:
                    text = fh.read()
                if text.endswith("\n"):
                    return tuple(int(x) for x in text.split())
            time.sleep(0.02)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@contextlib.contextmanager
def child_pool(tmp):
    """start(path, first, count, kind="shared", *opts) -> a ready-to-wait Child; all killed on exit."""
    made = []

    def start(path, first, count, kind="shared", *opts):
        c = Child(path, first, count, kind, *opts, tmp=str(tmp))
        made.append(c)
        return c

    try:
        yield start
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def children(xfs, tmp_path):
    """Start children on the module's mount by file name; always killed at the end."""
    with child_pool(tmp_path) as start:
        yield lambda name, *args: start(os.path.join(xfs, name), *args)


def test_find_mappers_exact_pages_files_and_processes(xfs, children):
    need_kernel()
    p1 = children("a", 0, 4, "shared", "early")   # pages 0-3 of a
    p2 = children("a", 8, 4, "shared")            # pages 8-11 of a: same file, other pages
    p3 = children("a", 2, 4, "private")           # pages 2-5 of a, MAP_PRIVATE (page 2 copied on write)
    p4 = children("b", 0, 4, "shared")            # the reflinked clone: same blocks, another inode
    p5 = children("c", 0, 16, "shared", "thread")  # a two-thread process
    for c in (p1, p2, p3, p4, p5):
        c.wait_ready()
    dev, ino_a = _devt(os.path.join(xfs, "a"))
    _, ino_b = _devt(os.path.join(xfs, "b"))
    _, ino_c = _devt(os.path.join(xfs, "c"))

    t0 = time.monotonic()
    hit = live.find_mappers(dev, ino_a, 3, 2)  # file pages 3 and 4 of a
    elapsed = time.monotonic() - t0
    assert sorted(m.pid for m in hit) == sorted([p1.pid, p3.pid])
    by_pid = {m.pid: m for m in hit}
    m1, m3 = by_pid[p1.pid], by_pid[p3.pid]
    # vma_start + (pgoff - vma_pgoff) * PAGE_SIZE, checked against the address the child itself mapped
    assert (m1.first_page, m1.page_count, m1.addresses) == (3, 1, (p1.addr + 3 * PS,))
    assert (m3.first_page, m3.page_count, m3.addresses) == (3, 2, (p3.addr + 1 * PS, p3.addr + 2 * PS))
    assert m1.shared and not m3.shared and m1.perms == "rw-s" and m3.perms == "rw-p"
    assert m1.vma_start == p1.addr and m1.vma_pgoff == 0 and m3.vma_pgoff == 2
    assert m1.path == os.path.join(xfs, "a") and m1.comm.startswith("python")
    # early kill as find_early_kill_thread sees it: p1 set PR_MCE_KILL_EARLY, p3 did not
    assert m1.early_kill_tid == p1.pid
    try:  # without a per-thread policy the sysctl decides (absent without CONFIG_MEMORY_FAILURE: no early kill)
        with open("/proc/sys/vm/memory_failure_early_kill") as fh:
            sysctl_early = fh.read().strip() == "1"
    except OSError:
        sysctl_early = False
    assert m3.early_kill_tid == (p3.pid if sysctl_early else None)
    assert elapsed < 2.0, f"reading /proc took {elapsed:.2f} s"

    # the whole of a: three processes, not the clone's mapper
    assert sorted(m.pid for m in live.find_mappers(dev, ino_a, 0, 16)) == sorted([p1.pid, p2.pid, p3.pid])
    assert [m.pid for m in live.find_mappers(dev, ino_a, 12, 4)] == []
    # the clone shares a's blocks, but maps are per inode: only when asked for b's inode
    assert [m.pid for m in live.find_mappers(dev, ino_b, 0, 1)] == [p4.pid]
    # two threads, one process, one entry
    two = live.find_mappers(dev, ino_c, 15, 1)
    assert [m.pid for m in two] == [p5.pid] and len(os.listdir(f"/proc/{p5.pid}/task")) == 2
    assert two[0].addresses == (p5.addr + 15 * PS,)
    # round trip through the dict the engine logs
    assert live.Mapper.from_dict(json.loads(json.dumps(m3.to_dict()))) == m3


def test_signal_mappers_reaches_exactly_the_mappers(xfs, children):
    need_kernel()
    p1 = children("a", 0, 4, "shared")
    p2 = children("a", 8, 4, "shared")
    p3 = children("a", 2, 4, "private")
    p4 = children("b", 0, 4, "shared")
    p5 = children("c", 0, 16, "shared", "thread")
    for c in (p1, p2, p3, p4, p5):
        c.wait_ready()
    dev, ino_a = _devt(os.path.join(xfs, "a"))
    records = live.signal_mappers(live.find_mappers(dev, ino_a, 3, 2))
    assert sorted(int(r.target) for r in records) == sorted([p1.pid, p3.pid])
    for r in records:
        d = json.loads(r.to_json())
        assert d["outcome"] == "done" and d["error"] is None and d["action"] == "signal"
        assert d["args"]["signal"] == "SIGBUS" and d["si_code"] == "SI_USER"
    # kill(2) arrives as SI_USER (0) from us, not BUS_MCEERR_AO (4) as memory_failure would send
    for c in (p1, p3):
        assert c.got() == (signal.SIGBUS, 0, os.getpid())
    time.sleep(0.3)
    for c in (p2, p4, p5):
        assert c.proc.poll() is None and c.got(timeout=0) is None, f"{c.pid} was signalled"

    # a process that is gone: ESRCH is outcome "gone", not an exception
    gone = live.find_mappers(dev, ino_a, 8, 1)
    p2.stop()
    (rec,) = live.signal_mappers(gone)
    assert (rec.outcome, rec.error.split(":")[0]) == ("gone", "ESRCH")


def test_signal_mappers_eperm_unprivileged(xfs, children):
    """A sender without the right to signal root's process gets an EPERM record, per process."""
    need_kernel()
    p = children("c", 0, 1, "shared")
    p.wait_ready()
    dev, ino = _devt(os.path.join(xfs, "c"))
    mappers = live.find_mappers(dev, ino, 0, 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops root and signals (no exec: root's Python may not be runnable as nobody)
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps([x.to_dict() for x in live.signal_mappers(mappers)]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    (rec,) = json.loads(out)
    assert rec["outcome"] == "failed" and rec["error"].startswith("EPERM")
    assert p.proc.poll() is None and p.got(timeout=0.2) is None


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall number known for x86_64/arm64")
def test_userspace_cannot_send_bus_mceerr(xfs, children):
    """Why signal_mappers says SI_USER: rt_sigqueueinfo with si_code BUS_MCEERR_AO (>= 0) to another process is
    EPERM even for root (do_rt_sigqueueinfo)."""
    need_kernel()
    p = children("c", 0, 1, "shared")
    p.wait_ready()
    libc = ctypes.CDLL(None, use_errno=True)
    info = ctypes.create_string_buffer(128)
    ctypes.memmove(info, (ctypes.c_int * 3)(signal.SIGBUS, 0, 4), 12)  # si_signo, si_errno, BUS_MCEERR_AO
    nr = {"x86_64": 129, "aarch64": 138}[platform.machine()]
    assert libc.syscall(nr, p.pid, signal.SIGBUS, info) == -1 and ctypes.get_errno() == errno.EPERM
    assert p.got(timeout=0.2) is None


def test_shutdown_filesystem(tmp_path):
    need_kernel()
    from tests.images import loop_mount, mkfs

    img = tmp_path / "down.img"
    mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "rmapbt=1,reflink=1"])
    with loop_mount(img) as mnt:
        path = os.path.join(mnt, "f")
        with open(path, "wb") as fh:
            fh.write(b"x" * 3 * PS)
        os.sync()
        dev = "%d:%d" % _devt(mnt)[0]
        fd = os.open(path, os.O_RDWR)
        try:
            assert os.pwrite(fd, b"before", 0) == 6 and os.pread(fd, 6, 0) == b"before"
            rec = live.shutdown_filesystem(mnt)
            assert (rec.outcome, rec.error) == ("done", None), rec.to_dict()
            assert rec.args["value"] == 1 and rec.extra["device"] == dev
            # after: writes and reads through an fd opened before fail with EIO, and so does every open
            for op in (lambda: os.pwrite(fd, b"after", 0), lambda: os.pread(fd, 6, 0),
                       lambda: open(path, "rb"), lambda: open(os.path.join(mnt, "new"), "wb"),
                       lambda: os.stat(path), lambda: os.stat(mnt)):
                with pytest.raises(OSError) as e:
                    op()
                assert e.value.errno == errno.EIO
            again = live.shutdown_filesystem(mnt)
            assert again.outcome == "failed" and again.error.startswith("EIO")
        finally:
            os.close(fd)


def test_shutdown_refuses_other_filesystems_and_flags(tmp_path):
    rec = live.shutdown_filesystem(str(tmp_path), flags="sideways")
    assert rec.outcome == "refused" and "unknown flags" in rec.error
    rec = live.shutdown_filesystem("/proc")
    assert rec.outcome == "refused" and "not an XFS mount" in rec.error
    rec = live.shutdown_filesystem(str(tmp_path / "missing"))
    assert rec.outcome == "failed" and rec.error.startswith("ENOENT")


def test_run_exec_gets_the_exact_json(tmp_path):
    out = tmp_path / "stdin.bin"
    decision = {"action": "kill-mappers", "inode": 131, "paths": ["/caf\u00e9", os.fsdecode(b"/\xff bad")],
                "mappers": [{"pid": 1, "addresses": [140000000000000]}]}
    code = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read()); print('hello'); sys.exit(3)"
    rec = live.run_exec([sys.executable, "-c", code], decision)
    assert out.read_bytes() == live.decision_json(decision)
    assert out.read_bytes().count(b"\n") == 1 and json.loads(out.read_bytes()) == decision
    d = json.loads(rec.to_json())
    assert (d["exit_status"], d["stdout"], d["outcome"], d["error"]) == (3, "hello\n", "failed", "exit status 3")
    assert d["args"]["argv"][0] == sys.executable

    rec = live.run_exec([sys.executable, "-c", "import sys; sys.stdin.read(); print('x' * 10000)"], {})
    assert rec.outcome == "done" and rec.extra["exit_status"] == 0 and "more bytes" in rec.extra["stdout"]
    t0 = time.monotonic()
    rec = live.run_exec(["sh", "-c", "sleep 30 & sleep 30"], {}, timeout=0.5)  # a grandchild keeps the pipes
    assert rec.outcome == "timeout" and time.monotonic() - t0 < 10
    rec = live.run_exec([str(tmp_path / "no-such-hook")], {})
    assert rec.outcome == "failed" and rec.error.startswith("ENOENT")


def test_invalidate_mappings_on_a_mapped_range(xfs, children):
    need_kernel()
    path = os.path.join(xfs, "inval")
    with open(path, "wb") as fh:
        fh.write(b"i" * 16 * PS)        # one 64 KiB write: XFS caches it in large folios
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        # nobody maps it: every clean page goes
        rec = live.invalidate_mappings(path, 0, 16).to_dict()
        assert (rec["outcome"], rec["cached_pages_before"], rec["cached_pages_after"]) == ("done", 16, 0)
        os.pread(fd, 16 * PS, 0)
        p = children("inval", 0, 4, "shared")  # pages 0-3 mapped (and faulted in) by another process
        p.wait_ready()
        d = json.loads(live.invalidate_mappings(path, 0, 16).to_json())
        assert (d["outcome"], d["error"], d["cached_pages_before"]) == ("done", None, 16)
        # the mapped pages stay (mapping_evict_folio skips mapped folios), and so does the other process's
        # mapping; the rest goes unless it shares a large folio with a mapped page (per folio, not per page)
        assert 4 <= d["cached_pages_after"] <= 16 and live.cached_pages(fd, 0, 4) == 4
        dev, ino = _devt(path)
        assert [m.pid for m in live.find_mappers(dev, ino, 0, 4)] == [p.pid]
    finally:
        os.close(fd)


def test_mount_discovery_real_mounts(xfs, tmp_path):
    need_kernel()
    from tests.images import mkfs

    dev, _ = _devt(xfs)
    (m,) = [m for m in live.mounts_of_device(dev) if m.mount_point == xfs]
    assert (m.fs_type, m.read_only, m.root) == ("xfs", False, "/") and m.source.startswith("/dev/loop")
    assert "rw" in m.mount_options and "inode64" in m.super_options
    assert live.dax_option(m) == "inode" and not live.is_dax_mount(m)  # default dax=inode: not shown
    assert live.mounts_of_device("%d:%d" % dev) == live.mounts_of_device(dev) == live.mounts_of_device(m.source)
    assert live.mount_of_path(os.path.join(xfs, "a")) == m

    # a bind mount at a path with a space, a tab and a non-ASCII name: mountinfo's \ooo escapes undone
    odd = os.path.join(str(tmp_path), "with space\tand caf\u00e9")
    os.mkdir(odd)
    subprocess.run(["mount", "--bind", xfs, odd], check=True)
    try:
        points = {x.mount_point for x in live.mounts_of_device(dev)}
        assert {xfs, odd} <= points
    finally:
        subprocess.run(["umount", odd], check=True)

    # dax=always on a device without DAX: the kernel turns it off and shows dax=never
    img = tmp_path / "dax.img"
    mkfs(img, 64 << 20, ["-b", "size=4096", "-m", "reflink=0"])
    mnt = tempfile.mkdtemp(prefix="fsdaxctl-dax-")
    try:
        subprocess.run(["mount", "-o", "loop,ro,dax=always", str(img), mnt], check=True)
        try:
            (dm,) = live.mounts_of_device(_devt(mnt)[0])
            assert dm.read_only and dm.option("dax") == "never" and live.dax_option(dm) == "never"
            assert not live.mapping_is_dax(mnt, dm).dax
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        shutil.rmtree(mnt, ignore_errors=True)


def test_dax_inode_flag_on_real_xfs(xfs):
    """FS_XFLAG_DAX can be set on XFS without DAX hardware: it is stored and inherited from a directory, but
    the mapping stays page cache (no DAX device)."""
    need_kernel()
    path = os.path.join(xfs, "flagged")
    with open(path, "wb") as fh:
        fh.write(b"d" * PS)
    assert not live.inode_dax_flag(path)
    live.set_inode_dax_flag(path)
    assert live.inode_dax_flag(path)
    d = os.path.join(xfs, "daxdir")
    os.mkdir(d)
    live.set_inode_dax_flag(d)
    with open(os.path.join(d, "child"), "wb") as fh:
        fh.write(b"c")
    assert live.inode_dax_flag(os.path.join(d, "child"))   # xfs_inode_inherit_flags2
    state = live.mapping_is_dax(path)
    assert not state.dax and ("no DAX" in state.why or "STATX_ATTR_DAX" in state.why)
    assert live.statx_dax(path) in (None, False)              # None below Python 3.15 (no os.statx)
    live.set_inode_dax_flag(path, False)
    assert not live.inode_dax_flag(path)
    with pytest.raises(live.LiveError, match="FS_IOC_FSGETXATTR"):
        live.inode_dax_flag("/proc/self/status")


MOUNTINFO = [
    "36 35 7:3 / /mnt/pm\\040em rw,relatime shared:7 - xfs /dev/pmem0 rw,dax=always,inode64,noquota",
    "37 35 259:1 / /mnt/inode rw - xfs /dev/nvme0n1p1 ro,inode64",
    "38 35 259:2 / /mnt/never rw - xfs /dev/nvme0n1p2 rw,dax=never",
    "39 35 259:3 /sub /mnt/old\\011tab rw - xfs /dev/pmem1 rw,dax",
    "40 35 259:4 / /mnt/e4 rw - ext4 /dev/pmem2 rw,dax=inode",
    "41 35 0:5 / /dev rw,nosuid - devtmpfs udev rw,size=10k",
    "42 35 259:5 / /mnt/caf\xc3\xa9\\134x rw - xfs /dev/x rw",
]


def test_parse_mountinfo_and_dax_options(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_bytes("\n".join(MOUNTINFO).encode("latin-1") + b"\n")
    ms = {m.mount_id: m for m in live.mounts(str(mi))}
    assert ms[36].mount_point == "/mnt/pm em" and ms[36].optional == ("shared:7",) and ms[36].dev == (7, 3)
    assert [live.dax_option(ms[i]) for i in (36, 37, 38, 39, 40, 41)] == \
        ["always", "inode", "never", "always", "inode", "never"]
    assert [live.is_dax_mount(ms[i]) for i in (36, 37, 38, 39)] == [True, False, False, True]
    assert ms[37].read_only and not ms[36].read_only          # ro on the superblock counts
    assert ms[39].mount_point == "/mnt/old\ttab" and ms[39].root == "/sub"
    assert ms[42].mount_point == "/mnt/caf\u00e9\\x"           # raw UTF-8 stays, \134 is a backslash
    assert [m.mount_id for m in live.mounts_of_device((259, 2), str(mi))] == [38]
    assert ms[36].option("inode64") is True and ms[41].option("size") == "10k" and ms[41].option("dax") is None
    with pytest.raises(DeviceError, match="malformed mountinfo"):
        live.parse_mountinfo_line("1 2 3")
    with pytest.raises(DeviceError, match="not a block device"):
        live.mounts_of_device(str(mi), str(mi))


def test_find_mappers_notes_and_fake_proc(tmp_path):
    """maps parsing on a fake /proc: vanished and unreadable processes are notes, not failures."""
    proc = tmp_path / "proc"
    (proc / "100" / "task" / "100").mkdir(parents=True)
    (proc / "100" / "comm").write_text("db\n")
    (proc / "100" / "task" / "100" / "stat").write_text(
        "100 (db (x)) S 1 1 1 0 -1 %d 0 0\n" % (live.PF_MCE_PROCESS | live.PF_MCE_EARLY))
    (proc / "100" / "maps").write_text(
        "7f0000000000-7f0000004000 rw-s 00002000 103:0a 131                       /srv/a\\012b (deleted)\n"
        "7f0000010000-7f0000011000 r--p 00000000 103:0a 1310                      /srv/other\n"
        "7f0000020000-7f0000022000 r--p 00005000 103:0a 131                       /srv/a\\012b (deleted)\n")
    (proc / "200").mkdir()                                     # exited: no maps
    found = live.find_mappers((259, 10), 131, 3, 4, proc=str(proc), page_size=4096)
    assert [(m.pid, m.comm, m.first_page, m.page_count, m.perms) for m in found] == \
        [(100, "db", 3, 3, "rw-s"), (100, "db", 5, 2, "r--p")]
    assert found[0].addresses == (0x7F0000001000, 0x7F0000002000, 0x7F0000003000)
    assert found[1].addresses == (0x7F0000020000, 0x7F0000021000)
    assert found[0].path == "/srv/a\nb (deleted)" and found[0].early_kill_tid == 100
    assert found.notes == ["process 200 exited while /proc was read"]
