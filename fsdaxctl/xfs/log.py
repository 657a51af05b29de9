"""Is the internal log clean? Offline answer to "would mounting replay something?".

The log is a ring of 512-byte basic blocks; the first word of every block is the cycle number of the pass that
wrote it (a record header carries it at h_cycle instead). The head is where the cycle drops by one; binary
search finds it in O(log n) reads, as the kernel's xlog_find_head does. The log is clean when the last record
before the head is a lone unmount record (xlog_check_unmount_rec). Torn writes at the head are not
reconstructed: this is a warning, not log recovery.
"""

from __future__ import annotations

from fsdaxctl.errors import FsdaxError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.units import SECTOR

BB = SECTOR  # BBSIZE: the log counts in 512-byte basic blocks
MAX_RECORD_BBS = (256 * 1024) // BB + 8  # the largest log record (iclog) plus its headers


class _Log:
    def __init__(self, fs):
        self.fs = fs
        sb = fs.sb
        # An external log (sb_logstart 0) starts at byte 0 of its own device (--logdev).
        self.dev = fs.dev if sb.sb_logstart else fs.logdev
        self.start = fs.geo.fsb_to_byte(sb.sb_logstart) if sb.sb_logstart else 0
        self.nbb = (sb.sb_logblocks << fs.geo.blocklog) // BB

    def read(self, bb: int, count: int = 1) -> bytes:
        return self.dev.pread(self.start + bb * BB, count * BB, "log" if self.dev is self.fs.dev else "external log")

    def cycle(self, bb: int) -> int:
        buf = self.read(bb)
        word = int.from_bytes(buf[:4], "big")
        return int.from_bytes(buf[4:8], "big") if word == f.XLOG_HEADER_MAGIC_NUM else word

    def head(self) -> int:
        first, last = self.cycle(0), self.cycle(self.nbb - 1)
        if first == last:
            return 0 if first else -1  # wrapped exactly at the end; an all-zero log was never written
        lo, hi = 0, self.nbb - 1  # cycle(lo) == first, cycle(hi) != first
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.cycle(mid) == first:
                lo = mid
            else:
                hi = mid
        return hi

    def last_record_is_unmount(self, head: int) -> bool | None:
        """None when no record header precedes the head within one record's reach."""
        span = min(MAX_RECORD_BBS, self.nbb)
        for back in range(1, span + 1):
            bb = (head - back) % self.nbb
            buf = self.read(bb)
            if int.from_bytes(buf[:4], "big") != f.XLOG_HEADER_MAGIC_NUM:
                continue
            rh = f.XLOG_REC_HEADER.parse(buf)
            hblks = 1
            if rh.h_version & 2 and rh.h_size > f.XLOG_HEADER_CYCLE_SIZE:
                hblks = -(-rh.h_size // f.XLOG_HEADER_CYCLE_SIZE)
            if rh.h_num_logops != 1:
                return False
            data = self.read((bb + hblks) % self.nbb)
            return bool(data[f.XLOG_OP_HEADER_FLAGS_OFF] & f.XLOG_UNMOUNT_TRANS)
        return None


def log_is_clean(fs) -> bool | None:
    """True clean, False dirty, None cannot tell (an external log without --logdev, unreadable)."""
    external = fs.sb.sb_logstart == 0 and not fs.log_problem and getattr(fs, "logdev", None) is not None
    if fs.internal_log is None and not external:  # external and not given, or impossible superblock fields
        return None
    log = _Log(fs)
    head = log.head()
    if head < 0:
        return None
    return log.last_record_is_unmount(head)


def log_warnings(fs) -> list[str]:
    try:
        clean = log_is_clean(fs)
    except FsdaxError as e:
        return [f"cannot read the log to tell whether it is clean: {e}"]
    if clean is False:
        return ["the log is dirty (the filesystem was not unmounted cleanly): changes in the log are not "
                "in the metadata yet, so owners of recently changed blocks may be stale; an internal log is "
                "replayed in memory unless --no-replay is given (mounting a copy also brings the metadata up to "
                "date; xfs_repair -L would throw those changes away)"]
    if clean is None and (fs.internal_log or getattr(fs, "logdev", None) is not None):
        return ["cannot tell whether the log is clean: no log record found before its head"]
    return []
