"""What `watch` remembers across restarts (--state FILE): the last /dev/kmsg record handled (per boot), the
badblocks ranges already reported (per attribute), and the damaged bytes already reported (so the same bytes
named again, by another message or after a restart, are merged into the first event instead of repeated).

The file is JSON, written atomically (a temporary file in the same directory, fsync, rename). Handling is at
least once: an event is remembered when its line has been written, and the file is written at most once a
second and at exit, so a crash can repeat the events of its last second, never lose one.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict

from fsdaxctl.errors import FsdaxError

VERSION = 1
DEFAULT_PATH = "/var/lib/fsdaxctl/watch.json"


class State:
    def __init__(self, path: str | None, boot: str, cap: int = 4096):
        self.path = path
        self.boot = boot
        self.cap = cap
        self.kmsg_seq: int | None = None
        self.badblocks: dict[str, list] = {}
        self.handled: OrderedDict[str, dict] = OrderedDict()
        self.dirty = False
        self.saved_at = 0.0
        self.note = ""
        if path:
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            self.note = f"state: {self.path} does not exist yet: starting fresh"
            return
        except (OSError, ValueError) as e:
            raise FsdaxError(f"--state {self.path}: cannot read it ({e}); move it away to start fresh") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise FsdaxError(f"--state {self.path}: not a fsdaxctl watch state file (version {VERSION}); move it "
                             "away to start fresh")
        if data.get("boot_id") == self.boot:  # sequence numbers start again at every boot
            self.kmsg_seq = data.get("kmsg_seq")
        else:
            self.note = "state: saved before the last boot: /dev/kmsg is read from its start"
        self.badblocks = {k: [tuple(r) for r in v] for k, v in (data.get("badblocks") or {}).items()}
        for key, v in (data.get("handled") or {}).items():
            self.handled[key] = v
        while len(self.handled) > self.cap:
            self.handled.popitem(last=False)

    # -- merging ---------------------------------------------------------------------------------------------
    def seen(self, key: str, now: float) -> dict | None:
        """The first event of these bytes if they were handled before (its count goes up), else None."""
        v = self.handled.get(key)
        if v is None:
            return None
        v["count"] = v.get("count", 1) + 1
        v["last"] = now
        self.handled.move_to_end(key)
        self.dirty = True
        return v

    def remember(self, key: str, event_id: str, now: float) -> None:
        self.handled[key] = {"event": event_id, "first": now, "last": now, "count": 1}
        self.handled.move_to_end(key)
        while len(self.handled) > self.cap:  # the oldest are forgotten: bounded memory and file
            self.handled.popitem(last=False)
        self.dirty = True

    def set_kmsg(self, seq: int | None) -> None:
        if seq is not None and seq != self.kmsg_seq:
            self.kmsg_seq = seq
            self.dirty = True

    def set_badblocks(self, path: str, ranges) -> None:
        ranges = [tuple(r) for r in ranges]
        if self.badblocks.get(path) != ranges:
            self.badblocks[path] = ranges
            self.dirty = True

    # -- writing ---------------------------------------------------------------------------------------------
    def save(self, force: bool = False, every: float = 1.0) -> None:
        if not self.path or not self.dirty:
            return
        now = time.monotonic()
        if not force and now - self.saved_at < every:
            return
        data = {"version": VERSION, "boot_id": self.boot, "kmsg_seq": self.kmsg_seq,
                "badblocks": {k: [list(r) for r in v] for k, v in self.badblocks.items()},
                "handled": self.handled}
        atomic_write(self.path, json.dumps(data, separators=(",", ":")) + "\n")
        self.saved_at = now
        self.dirty = False


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so a reader sees the old or the new file, whole, never a part."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
