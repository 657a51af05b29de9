"""--metrics FILE: the Prometheus text exposition format, for node_exporter's textfile collector
(--collector.textfile.directory): written atomically (temporary file and rename, as the collector asks), at most
once a second and at exit. Label values come from fixed vocabularies (sources, owner kinds, impacts, decisions,
action outcomes), so the number of series stays bounded however long the service runs."""

from __future__ import annotations

import os
import time

from fsdaxctl.units import PAGE_SIZE
from fsdaxctl.watch.state import atomic_write

HELP = {
    "fsdaxctl_watch_reports_total": ("counter", "Damage reports seen, by source (repeats included)."),
    "fsdaxctl_watch_events_total": ("counter", "Events reported (new damage or device events), by source."),
    "fsdaxctl_watch_merged_total": ("counter", "Reports of bytes already reported, merged into the first event."),
    "fsdaxctl_watch_owners_hit_total": ("counter", "Owners hit, by owner kind and impact."),
    "fsdaxctl_watch_decisions_total": ("counter", "Decisions of the memory-failure chain, by decision."),
    "fsdaxctl_watch_actions_total": ("counter", "Actions carried out, by action and outcome."),
    "fsdaxctl_watch_uevents_total": ("counter", "Kernel uevents of the block, nd and dax subsystems, by action."),
    "fsdaxctl_watch_failures_total": ("counter", "Reports that could not be resolved (see the event's error)."),
    "fsdaxctl_watch_last_event_timestamp_seconds": ("gauge", "Time of the last event (Unix time)."),
    "fsdaxctl_watch_start_time_seconds": ("gauge", "When this watch process started (Unix time)."),
    "fsdaxctl_watch_filesystems": ("gauge", "Filesystems watched."),
    "fsdaxctl_watch_resident_memory_bytes": ("gauge", "Resident memory of the watch process."),
    "fsdaxctl_watch_open_fds": ("gauge", "Open file descriptors of the watch process."),
}


def _labels(labels: tuple) -> str:
    if not labels:
        return ""
    esc = (lambda v: str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'))
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class Metrics:
    def __init__(self, path: str | None):
        self.path = path
        self.values: dict[tuple[str, tuple], float] = {}
        self.written_at = 0.0
        self.dirty = True
        self.set("fsdaxctl_watch_start_time_seconds", time.time())

    def inc(self, name: str, n: float = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.values[key] = self.values.get(key, 0) + n
        self.dirty = True

    def set(self, name: str, value: float, **labels) -> None:
        self.values[(name, tuple(sorted(labels.items())))] = value
        self.dirty = True

    def text(self) -> str:
        self.set("fsdaxctl_watch_resident_memory_bytes", rss_bytes())
        self.set("fsdaxctl_watch_open_fds", open_fds())
        lines = []
        for name in sorted({k[0] for k in self.values}):
            kind, help_ = HELP.get(name, ("gauge", name))
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            for (n, labels), v in sorted(self.values.items()):
                if n == name:
                    lines.append(f"{name}{_labels(labels)} {v:.17g}")
        return "\n".join(lines) + "\n"

    def write(self, force: bool = False, every: float = 1.0) -> None:
        if not self.path or not (self.dirty or force):
            return
        now = time.monotonic()
        if not force and now - self.written_at < every:
            return
        atomic_write(self.path, self.text())
        self.written_at = now
        self.dirty = False
