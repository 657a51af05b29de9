"""Processes of the live system as /proc shows them: who maps which file. One pass over /proc serves a batch
of questions (the engine's mappers of damaged pages, the names' `held_by`)."""

from __future__ import annotations

import os

from fsdaxctl.live.fsmap import LiveError


def read_bytes(path: str) -> bytes:
    with open(path, "rb", buffering=0) as fh:
        return fh.read()


def read_all_maps(proc: str = "/proc") -> tuple[dict[int, bytes], list[str]]:
    """({pid: its /proc/PID/maps}, notes on processes that could not be read): one pass over /proc, which a
    batch of questions can share instead of reading every process once per question."""
    try:
        entries = os.scandir(proc)
    except OSError as e:
        raise LiveError(f"cannot list {proc}: {e.strerror}") from None
    with entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    out, notes = {}, []
    for pid in sorted(pids):
        try:
            out[pid] = read_bytes(f"{proc}/{pid}/maps")
        except FileNotFoundError:
            notes.append(f"process {pid} exited while /proc was read")
        except OSError as e:
            notes.append(f"process {pid}: cannot read its maps: {e.strerror}")
    return out, notes


def maps_device(major: int, minor: int) -> bytes:
    """The device field of a /proc/PID/maps line (seq_put_hex_ll(..., 2): at least two hex digits each)."""
    return f"{major:02x}:{minor:02x}".encode()


def maps_lines(maps: bytes, device: bytes):
    """The fields (start-end, perms, offset, device, inode[, path]) of every line of one process's maps that
    maps a file of `device`."""
    for line in maps.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) >= 5 and parts[3] == device and parts[4] != b"0":
            yield parts
