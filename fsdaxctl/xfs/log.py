"""Is the log clean? The offline answer to "would mounting replay something?".

The head and tail are found as the kernel's xlog_find_tail finds them (fsdaxctl.xfs.logrecover, which also
replays a dirty internal log in memory); the log is clean when the last record before the head is a lone
unmount record (xlog_check_unmount_rec), or when it was never written to.
"""

from __future__ import annotations

from fsdaxctl.errors import FsdaxError


def log_is_clean(fs) -> bool | None:
    """True clean, False dirty, None cannot tell (an external log without --logdev, no record found)."""
    from fsdaxctl.xfs.logrecover import LogReplayError, find_log_ends

    external = fs.sb.sb_logstart == 0 and not fs.log_problem and getattr(fs, "logdev", None) is not None
    if fs.internal_log is None and not external:  # external and not given, or impossible superblock fields
        return None
    try:
        ends = find_log_ends(fs)
    except LogReplayError:
        return None
    return bool(ends["clean"])


def log_warnings(fs) -> list[str]:
    try:
        clean = log_is_clean(fs)
    except FsdaxError as e:
        return [f"cannot read the log to tell whether it is clean: {e}"]
    if clean is False:
        return ["the log is dirty (the filesystem was not unmounted cleanly): changes in the log are not "
                "in the metadata yet, so owners of recently changed blocks may be stale; the log is replayed in "
                "memory (an external one from --logdev) unless --no-replay is given or the filesystem is in use "
                "(mounting a copy also brings the metadata up to date; xfs_repair -L would throw those changes "
                "away)"]
    if clean is None and (fs.internal_log or getattr(fs, "logdev", None) is not None):
        return ["cannot tell whether the log is clean: no log record found before its head"]
    return []
