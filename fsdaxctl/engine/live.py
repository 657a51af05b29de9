"""Live-system primitives of the corruption-chain engine: mounts, the processes mapping file pages, and actions.

Plain functions and dataclasses, no policy (chain.py decides, act.py asks and logs). Lookups read /proc and never
change anything. Actions return an ActionRecord (one JSON line for the caller's action log) and never raise for
a failed action: a forensic tool reports what it could not do and goes on.

What the kernel does and what userspace can do differ; every difference is said where it happens:
- memory_failure signals the thread find_early_kill_thread() picks, with BUS_MCEERR_AO/AR and si_addr; userspace
  can only send a process-directed signal with si_code SI_USER (signal_mappers);
- invalidate_inode_pages2_range unmaps the pages from every process; posix_fadvise(DONTNEED) only drops clean,
  unmapped page-cache pages, and nothing at all on a DAX inode (invalidate_mappings);
- the kernel shuts XFS down with SHUTDOWN_CORRUPT_ONDISK; XFS_IOC_GOINGDOWN offers FORCE_UMOUNT with or without a
  log force (shutdown_filesystem).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime
import errno
import fcntl
import json
import mmap
import os
import signal
import stat
import struct
import subprocess

from fsdaxctl.device import (MOUNTINFO, Mount, mount_of_path, mounts, mounts_of_device,  # noqa: F401 (re-exported)
                             parse_mountinfo_line, unescape)
from fsdaxctl.live.fsmap import LiveError  # noqa: F401 - one error for every look-up on the live system
from fsdaxctl.live.procs import maps_device, maps_lines, read_all_maps, read_bytes  # noqa: F401 (re-exported)
from fsdaxctl.units import PAGE_SIZE


# --- mounts: fsdaxctl.device (one mountinfo parser for the whole package) ---------------------------------

def real_path(mount_point: str, path: str, ino: int | None = None) -> str:
    """The file on this machine behind a path an answer shows: a live answer shows the machine's path (the
    mount point joined), an offline or --fs-relative one the path from the filesystem root. Whichever names
    inode `ino` on the mounted filesystem wins; without `ino`, a path already under the mount point."""
    mount = mount_point.rstrip("/") or "/"
    joined = os.path.join(mount, path.lstrip("/"))
    under = path == mount or path.startswith(mount + "/")
    candidates = (path, joined) if under else (joined, path)
    if ino is None:
        return candidates[0]
    dev = os.stat(mount).st_dev
    for cand in candidates:
        try:
            st = os.lstat(cand)
        except OSError:
            continue
        if st.st_ino == ino and st.st_dev == dev:
            return cand
    return candidates[0]


# --- DAX -------------------------------------------------------------------------------------------------------

FS_IOC_FSGETXATTR = 0x801C581F        # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820        # _IOW('X', 32, struct fsxattr)
FSXATTR = struct.Struct("=IIIII8x")   # fsx_xflags, fsx_extsize, fsx_nextents, fsx_projid, fsx_cowextsize, pad
FS_XFLAG_DAX = 0x8000
STATX_ATTR_DAX = 0x200000             # include/uapi/linux/stat.h


def dax_option(mount: Mount) -> str:
    """The mount's DAX mode: "always", "inode" or "never".

    xfs_fs_show_options writes ",dax=always" or ",dax=never"; dax=inode is the default (since 5.8) and is not
    shown; kernels before 5.8 wrote a bare ",dax" for always. A dax=always mount on a device without DAX (or
    with fs block size != page size) is turned into dax=never at mount time (xfs_setup_dax_always: "DAX
    unsupported by block device. Turning off DAX.") and shows dax=never: seen on a loop device here.
    Filesystems other than xfs and ext4 without a dax option: never.
    """
    value = mount.option("dax")
    if value is True or value == "always":
        return "always"
    if value in ("never", "inode"):
        return value
    return "inode" if mount.fs_type in ("xfs", "ext4") else "never"


def is_dax_mount(mount: Mount) -> bool:
    """Every regular file's mapping on this mount is DAX (dax=always; see dax_option for dax=inode)."""
    return dax_option(mount) == "always"


def _open_any(path: str) -> int:
    # O_NONBLOCK: a FIFO must not hang the lookup; O_NOCTTY: a tty must not become ours.
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def fsxattr(path: str) -> tuple[int, int, int, int, int]:
    """struct fsxattr of `path` through FS_IOC_FSGETXATTR (fs/ioctl.c, xfs_fill_fsxattr)."""
    try:
        fd = _open_any(path)
    except OSError as e:
        raise LiveError(f"cannot open {path}: {e.strerror}") from None
    try:
        buf = bytearray(FSXATTR.size)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf)
        return FSXATTR.unpack(buf)
    except OSError as e:
        raise LiveError(f"FS_IOC_FSGETXATTR on {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def inode_dax_flag(path: str) -> bool:
    """FS_XFLAG_DAX on the inode (XFS_DIFLAG2_DAX on disk): the dax=inode request, not the state in effect."""
    return bool(fsxattr(path)[0] & FS_XFLAG_DAX)


def set_inode_dax_flag(path: str, on: bool = True) -> None:
    """Set or clear FS_XFLAG_DAX (FS_IOC_FSSETXATTR). Directories pass it on to new children. XFS accepts it
    without DAX hardware (the flag is stored; the mapping stays page cache)."""
    xflags, extsize, _, projid, cowextsize = fsxattr(path)
    xflags = (xflags | FS_XFLAG_DAX) if on else (xflags & ~FS_XFLAG_DAX)
    fd = _open_any(path)
    try:
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, FSXATTR.pack(xflags, extsize, 0, projid, cowextsize))
    except OSError as e:
        raise LiveError(f"FS_IOC_FSSETXATTR on {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def statx_dax(path: str) -> bool | None:
    """STATX_ATTR_DAX (IS_DAX of the in-memory inode: the state in effect), or None where it cannot be asked:
    os.statx exists only from Python 3.15, and kernels before 5.8 do not report the attribute."""
    fn = getattr(os, "statx", None)
    if fn is None:
        return None
    try:
        st = fn(path, getattr(os, "STATX_BASIC_STATS", 0x7FF))
    except OSError:
        return None
    if not getattr(st, "stx_attributes_mask", 0) & STATX_ATTR_DAX:
        return None
    return bool(st.stx_attributes & STATX_ATTR_DAX)


def device_supports_dax(dev: tuple[int, int], sysfs: str = "/sys") -> bool | None:
    """/sys/dev/block/MAJ:MIN/queue/dax (the disk's, for a partition), None if unknown."""
    base = f"{sysfs}/dev/block/{dev[0]}:{dev[1]}"
    for d in (base, base + "/.."):
        try:
            with open(f"{d}/queue/dax") as fh:
                return fh.read().strip() == "1"
        except OSError:
            continue
    return None


@dataclasses.dataclass(frozen=True)
class DaxState:
    dax: bool
    why: str


def mapping_is_dax(path: str, mount: Mount | None = None, sysfs: str = "/sys") -> DaxState:
    """Is this inode's mapping DAX, as xfs_inode_should_enable_dax (fs/xfs/xfs_iops.c) decides:
    dax=never -> no; not a regular file, fs block size != page size or no DAX device (xfs_inode_supports_dax)
    -> no; dax=always -> yes; dax=inode -> FS_XFLAG_DAX.

    STATX_ATTR_DAX answers directly where Python has os.statx. Without it the answer is the on-disk flag, and
    S_DAX is set only when the inode is read in (xfs_diflags_to_iflags(init=true)): a flag changed while the
    inode is cached takes effect once it is evicted, so the flag can be ahead of the mapping.
    """
    direct = statx_dax(path)
    if direct is not None:
        return DaxState(direct, f"STATX_ATTR_DAX is {'set' if direct else 'clear'}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise LiveError(f"cannot stat {path}: {e.strerror}") from None
    if mount is None:
        mount = mount_of_path(path)
    mode = dax_option(mount) if mount else "never"
    if mode == "never":
        return DaxState(False, "mounted dax=never" if mount else "mount not found")
    if not stat.S_ISREG(st.st_mode):
        return DaxState(False, "not a regular file")
    if os.statvfs(path).f_bsize != PAGE_SIZE:
        return DaxState(False, "filesystem block size is not the page size")
    if mount.dev and device_supports_dax(mount.dev, sysfs) is False:
        return DaxState(False, f"device {mount.dev[0]}:{mount.dev[1]} has no DAX (queue/dax is 0)")
    if mode == "always":
        return DaxState(True, "mounted dax=always")
    flag = inode_dax_flag(path)
    return DaxState(flag, f"dax=inode and FS_XFLAG_DAX is {'set' if flag else 'clear'}")


# --- mappers ---------------------------------------------------------------------------------------------------

PF_MCE_PROCESS = 0x00000080   # include/linux/sched.h: the thread has its own policy (prctl PR_MCE_KILL_SET)
PF_MCE_EARLY = 0x08000000     # ... and it is "early kill"


@dataclasses.dataclass(frozen=True)
class Mapper:
    """One VMA of one process (thread group) that maps some of the asked file pages.

    `addresses` are the user addresses of the hit pages, as the kernel computes them for fsdax
    (__add_to_kill -> vma_pgoff_address): vm_start + (pgoff - vm_pgoff) * PAGE_SIZE. `early_kill_tid` is the
    thread memory_failure would send an action-optional SIGBUS to (find_early_kill_thread), None if it would
    send none (the page is only unmapped; the process faults when it touches it).
    """

    pid: int
    comm: str
    vma_start: int
    vma_end: int
    perms: str                 # "rw-s": the last letter is VM_MAYSHARE ('s') or not ('p')
    vma_pgoff: int             # file page at vma_start
    path: str
    first_page: int            # the hit: file pages [first_page, first_page + page_count)
    page_count: int
    addresses: tuple[int, ...]
    early_kill_tid: int | None = None

    @property
    def shared(self) -> bool:
        return self.perms.endswith("s")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["addresses"] = list(self.addresses)
        d["shared"] = self.shared
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Mapper:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["addresses"] = tuple(kw.get("addresses", ()))
        return cls(**kw)


class MapperList(list):
    """find_mappers' answer: a list of Mapper, and `notes` on the processes that could not be read."""

    def __init__(self, items=(), notes=()):
        super().__init__(items)
        self.notes: list[str] = list(notes)


def _stat_flags(stat_line: bytes) -> int:
    """task->flags: field 9 of /proc/PID/stat, counted after the ")" that ends comm (comm may hold spaces)."""
    return int(stat_line[stat_line.rindex(b")") + 2:].split()[6])


def early_kill_thread(pid: int, proc: str = "/proc") -> int | None:
    """The thread find_early_kill_thread() (mm/memory-failure.c) returns for this process: the first thread
    (leader first, then creation order; read here in tid order) with PF_MCE_PROCESS|PF_MCE_EARLY, or without
    PF_MCE_PROCESS while vm.memory_failure_early_kill is 1. None: no action-optional signal (or unreadable)."""
    try:
        sysctl = read_bytes(f"{proc}/sys/vm/memory_failure_early_kill").strip() == b"1"
    except OSError:
        sysctl = False  # no CONFIG_MEMORY_FAILURE: no early kill either
    try:
        tids = sorted(int(t) for t in os.listdir(f"{proc}/{pid}/task") if t.isdigit())
    except OSError:
        return None
    tids.sort(key=lambda t: t != pid)  # the leader first
    for tid in tids:
        try:
            flags = _stat_flags(read_bytes(f"{proc}/{pid}/task/{tid}/stat"))
        except (OSError, ValueError, IndexError):
            continue
        if flags & PF_MCE_PROCESS:
            if flags & PF_MCE_EARLY:
                return tid
        elif sysctl:
            return tid
    return None


def find_mappers(dev: tuple[int, int], ino: int, first_page: int, page_count: int, proc: str = "/proc",
                 page_size: int = PAGE_SIZE, snapshot: tuple | None = None) -> MapperList:
    """Every process with a VMA over file pages [first_page, first_page + page_count) of inode `ino` on the
    filesystem whose superblock is on `dev`, from /proc/PID/maps (fs/proc/task_mmu.c show_map_vma: `start-end
    perms offset MAJ:MIN inode path`, offset = vm_pgoff << PAGE_SHIFT, dev = inode->i_sb->s_dev in hex).

    Like the kernel's vma_interval_tree walk over mapping->i_mmap, this counts a VMA whether or not the page is
    faulted in, and MAP_PRIVATE VMAs too (a page already copied on write is no longer the file's, which maps
    cannot tell). One entry per process and VMA: /proc lists thread-group leaders only and threads share the
    mm, as collect_procs_fsdax walks for_each_process. Processes that exit while being read or whose maps
    cannot be read are left out and named in `.notes`.
    """
    devfield = maps_device(*dev)
    needle = b" %s %d " % (devfield, ino)
    last = first_page + page_count
    found = MapperList()
    all_maps, notes = snapshot if snapshot is not None else read_all_maps(proc)
    found.notes += notes
    for pid, maps in all_maps.items():
        if needle not in maps:  # the fast path: most processes map nothing of this inode
            continue
        hits = []
        for parts in maps_lines(maps, devfield):
            if int(parts[4]) != ino:
                continue
            start, end = (int(x, 16) for x in parts[0].split(b"-"))
            vma_pgoff = int(parts[2], 16) // page_size
            vma_last = vma_pgoff + (end - start) // page_size
            lo, hi = max(first_page, vma_pgoff), min(last, vma_last)
            if lo >= hi:
                continue
            path = os.fsdecode(parts[5]).replace("\\012", "\n") if len(parts) > 5 else ""  # seq_path escapes \n
            addrs = tuple(start + (pg - vma_pgoff) * page_size for pg in range(lo, hi))
            hits.append((start, end, parts[1].decode(), vma_pgoff, path, lo, hi - lo, addrs))
        if not hits:
            continue
        try:
            comm = os.fsdecode(read_bytes(f"{proc}/{pid}/comm").rstrip(b"\n"))
        except OSError:
            comm = ""
        tid = early_kill_thread(pid, proc)
        for start, end, perms, vma_pgoff, path, lo, n, addrs in hits:
            found.append(Mapper(pid, comm, start, end, perms, vma_pgoff, path, lo, n, addrs, tid))
    return found


# --- actions ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ActionRecord:
    """What one action did, for the action log: to_dict() is one flat JSON object (extra keys merged in)."""

    action: str
    target: str
    args: dict
    outcome: str = "done"             # done | failed | gone | skipped | timeout | refused
    error: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    time: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"))

    def to_dict(self) -> dict:
        return {"time": self.time, "action": self.action, "target": self.target, "args": self.args,
                "outcome": self.outcome, "error": self.error, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)


def _oserror(e: OSError) -> str:
    name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    return f"{name}: {e.strerror or e}"


def signal_mappers(mappers, sig: int = signal.SIGBUS) -> list[ActionRecord]:
    """Send `sig` to every process in `mappers`, once per process (os.kill), one record each.

    What the receiver sees is not what memory_failure sends. kill_procs -> kill_proc uses send_sig_mceerr
    (BUS_MCEERR_AO, or force_sig_mceerr BUS_MCEERR_AR for the current task) with si_addr = the page's address
    and si_addr_lsb = the mapping's page shift, thread-directed (send_sig_info: PIDTYPE_PID) at the thread
    find_early_kill_thread chose, once per page and VMA. Userspace cannot forge that: rt_sigqueueinfo refuses a
    si_code >= 0 for another process even for root (kernel/signal.c do_rt_sigqueueinfo: "Not even root can
    pretend to send signals from the kernel"; EPERM here), so the receiver gets si_code SI_USER with our pid,
    no address, and any of its threads may take it (process-directed kill).
    ESRCH (the process is gone) is outcome "gone", EPERM and others "failed"; this process is never signalled.
    """
    by_pid: dict[int, list] = {}
    for m in mappers:
        m = Mapper.from_dict(m) if isinstance(m, dict) else m
        by_pid.setdefault(m.pid, []).append(m)
    name = signal.Signals(sig).name
    records = []
    for pid, ms in by_pid.items():
        addrs = [a for m in ms for a in m.addresses]
        rec = ActionRecord("signal", str(pid), {"signal": name, "comm": ms[0].comm, "addresses": addrs,
                                                "early_kill_tid": ms[0].early_kill_tid})
        rec.extra = {"si_code": "SI_USER",
                     "note": "sent with kill(2): the receiver sees SI_USER and no si_addr; the kernel sends "
                             "BUS_MCEERR_AO/AR with si_addr, which userspace cannot (do_rt_sigqueueinfo)"}
        if pid == os.getpid():
            rec.outcome, rec.error = "skipped", "refusing to signal fsdaxctl itself"
        else:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                rec.outcome, rec.error = "gone", "ESRCH: the process exited"
            except OSError as e:
                rec.outcome, rec.error = "failed", _oserror(e)
        records.append(rec)
    return records


XFS_IOC_GOINGDOWN = 0x8004587D        # _IOR('X', 125, __u32); ext4/f2fs reuse the number, hence the fs check
GOING_FLAGS = {"default": 0, "logflush": 1, "nologflush": 2}


def shutdown_filesystem(mount_point: str, flags: str | int = "logflush",
                        mountinfo: str = MOUNTINFO) -> ActionRecord:
    """Shut the XFS mounted at `mount_point` down: XFS_IOC_GOINGDOWN on the mount point (O_RDONLY|O_DIRECTORY).

    xfs_fs_goingdown (fs/xfs/xfs_fsops.c): DEFAULT freezes the block device (flushing dirty data) and then
    shuts down with SHUTDOWN_FORCE_UMOUNT; LOGFLUSH is SHUTDOWN_FORCE_UMOUNT; NOLOGFLUSH adds
    SHUTDOWN_LOG_IO_ERROR. The default here is LOGFLUSH, the closest to the kernel's answer to damaged metadata,
    SHUTDOWN_CORRUPT_ONDISK: xlog_force_shutdown forces the log to disk unless the reason holds
    SHUTDOWN_LOG_IO_ERROR, so CORRUPT_ONDISK keeps committed transactions (LOGFLUSH does the same, NOLOGFLUSH
    drops them), and neither writes dirty file data (DEFAULT does, onto media known to be bad). No flag gives
    CORRUPT_ONDISK itself: the log says "User initiated shutdown received." and "Metadata I/O Error (0x4)".
    After it every open, read, write and stat on the filesystem fails with EIO (xfs_is_shutdown checks); so does
    a second shutdown (opening the mount point fails).
    """
    code = GOING_FLAGS.get(flags, flags) if isinstance(flags, str) else flags
    rec = ActionRecord("shutdown", mount_point, {"flags": flags, "ioctl": "XFS_IOC_GOINGDOWN", "value": code})
    if code not in GOING_FLAGS.values():
        rec.outcome, rec.error = "refused", f"unknown flags {flags!r} (default, logflush, nologflush)"
        return rec
    try:
        fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        rec.outcome, rec.error = "failed", _oserror(e) + (" (already shut down?)" if e.errno == errno.EIO else "")
        return rec
    try:
        st = os.fstat(fd)
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        fs_types = {m.fs_type for m in mounts(mountinfo) if m.dev == dev}
        if fs_types != {"xfs"}:
            rec.outcome, rec.error = "refused", f"not an XFS mount (filesystem type {', '.join(fs_types) or '?'})"
            return rec
        rec.extra["device"] = f"{dev[0]}:{dev[1]}"
        fcntl.ioctl(fd, XFS_IOC_GOINGDOWN, struct.pack("=I", code))
    except OSError as e:
        rec.outcome, rec.error = "failed", _oserror(e)
    except LiveError as e:
        rec.outcome, rec.error = "failed", str(e)
    finally:
        os.close(fd)
    return rec


OUTPUT_LIMIT = 4096


def decision_json(decision: dict) -> bytes:
    """The exact bytes run_exec writes to the command's stdin: one compact JSON object and a newline, ASCII
    (names that are not UTF-8 travel as \\udcXX escapes, as in fsdaxctl's other JSON)."""
    return (json.dumps(decision, separators=(",", ":"), default=str) + "\n").encode("ascii")


def _clip(data: bytes | None) -> str:
    data = data or b""
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    return text + (f"... ({len(data) - OUTPUT_LIMIT} more bytes)" if len(data) > OUTPUT_LIMIT else "")


def run_exec(argv: list[str], decision: dict, timeout: float = 60) -> ActionRecord:
    """Run `argv` (no shell) with the decision as JSON on stdin (decision_json); record exit status and the
    first OUTPUT_LIMIT bytes of stdout and stderr. On timeout the whole process group is killed: a hook that
    starts children must not keep the pipes open and hang fsdaxctl (start_new_session)."""
    rec = ActionRecord("exec", argv[0] if argv else "", {"argv": list(argv), "timeout": timeout})
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
    except (OSError, ValueError) as e:
        rec.outcome, rec.error = "failed", _oserror(e) if isinstance(e, OSError) else str(e)
        return rec
    try:
        out, err = proc.communicate(decision_json(decision), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        rec.outcome, rec.error = "timeout", f"killed after {timeout} s"
    rec.extra = {"exit_status": proc.returncode, "stdout": _clip(out), "stderr": _clip(err)}
    if rec.outcome == "done" and proc.returncode != 0:
        rec.outcome = "failed"
        rec.error = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                     else f"exit status {proc.returncode}")
    return rec


_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long)
        _libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        _libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    return _libc


def cached_pages(fd: int, first_page: int, page_count: int, page_size: int = PAGE_SIZE) -> int | None:
    """How many of the file pages are in the page cache: mincore(2) on a fresh shared mapping that is never
    touched (so it faults nothing in). None where it cannot be asked. Evidence for a record, not a decision."""
    if page_count <= 0:
        return 0
    try:
        libc = _c()
    except OSError:
        return None
    length = page_count * page_size
    addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, first_page * page_size)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return None
    try:
        vec = (ctypes.c_ubyte * page_count)()
        if libc.mincore(addr, length, vec) != 0:
            return None
        return sum(b & 1 for b in vec)
    finally:
        libc.munmap(addr, length)


def invalidate_mappings(path: str, first_page: int, page_count: int, page_size: int = PAGE_SIZE) -> ActionRecord:
    """The userspace stand-in for invalidate_inode_pages2_range (what xfs_dax_failure_fn does with
    MF_MEM_PRE_REMOVE): posix_fadvise(POSIX_FADV_DONTNEED) over the pages.

    What that does (mm/fadvise.c generic_fadvise): start writeback of dirty pages without waiting, then drop
    the clean, unlocked, *unmapped* page-cache folios of the range - per folio: a large folio with one page
    mapped stays whole (seen: a file written in one 64 KiB write kept all 16 pages cached while another process
    mapped 4 of them; read back in small folios, exactly those 4 stayed). What it does not: unmap the pages from any
    process (no other process's mapping can be touched from here), drop mapped or dirty pages, or anything at
    all on a DAX inode (IS_DAX: the advice is ignored and 0 returned) - which is exactly the PRE_REMOVE case.
    The kernel's invalidate_inode_pages2_range unmaps the range from every process and drops the pages (DAX
    entries included). The record carries the cached page count before and after (mincore) as evidence.
    """
    rec = ActionRecord("invalidate", path, {"first_page": first_page, "page_count": page_count,
                                            "advice": "POSIX_FADV_DONTNEED"})
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        rec.outcome, rec.error = "failed", _oserror(e)
        return rec
    try:
        before = cached_pages(fd, first_page, page_count, page_size)
        os.posix_fadvise(fd, first_page * page_size, page_count * page_size, os.POSIX_FADV_DONTNEED)
        after = cached_pages(fd, first_page, page_count, page_size)
        rec.extra = {"cached_pages_before": before, "cached_pages_after": after,
                     "note": "advisory: mapped, dirty and DAX pages stay; other processes keep their mappings"}
    except OSError as e:
        rec.outcome, rec.error = "failed", _oserror(e)
    finally:
        os.close(fd)
    return rec


# --- the kernel's own owner map of a mounted filesystem ----------------------------------------------------------

def kernel_data_owners(mount_point: str, start: int, length: int, batch: int = 256) -> set[int]:
    """Inodes whose file data the mounted filesystem's kernel (FS_IOC_GETFSMAP) says lies in [start, start +
    length) of its data device: the live truth, to check an offline answer against before acting on it."""
    from fsdaxctl.live.fsmap import FMR_OF_NOT_DATA, getfsmap

    return {r.owner for r in getfsmap(mount_point, start, start + length, batch=batch)
            if not r.flags & FMR_OF_NOT_DATA and r.physical < start + length and r.physical + r.length > start}


def stale_ranges(mount_point: str, items) -> list[tuple[int, int, set[int], set[int]]]:
    """For each (offset, length, file-data inodes the disk's metadata gave), ask the mounted filesystem's kernel;
    return (offset, length, kernel's inodes, disk's inodes) wherever they differ: there the newest changes are
    still in the log and an offline answer is stale."""
    out = []
    for offset, length, ours in items:
        kernel = kernel_data_owners(mount_point, offset, length)
        if kernel != ours:
            out.append((offset, length, kernel, ours))
    return out
