"""md arrays as sysfs describes them: /sys/block/mdX/md/ (level, chunk_size, dev-*/{offset,size,slot};
drivers/md/md.c), read into the MdArray that fsdaxctl.stack.md maps.
"""

from __future__ import annotations

import os

from fsdaxctl.errors import UsageError
from fsdaxctl.stack.md import MdArray, Member, checked
from fsdaxctl.units import SECTOR


def read_md_sysfs(root: str, name: str) -> MdArray:
    """The array `name` as sysfs describes it (root: '/sys' or a copy of another machine's)."""
    base = os.path.join(root, "block", name, "md")
    where = f"sysfs {base}"

    def attr(path):
        try:
            with open(os.path.join(base, path)) as fh:
                return fh.read().strip()
        except OSError as e:
            raise UsageError(f"{where}: cannot read {path}: {e.strerror}") from None

    def num(path):
        text = attr(path)
        if not text.isdigit() or len(text) > 20:
            raise UsageError(f"{where}: {path} holds {text[:30]!r}, not a number")
        return int(text)

    level = attr("level")
    chunk = num("chunk_size") if level != "raid1" else 0
    members = []
    try:
        entries = sorted(os.listdir(base))
    except OSError as e:
        raise UsageError(f"{where}: {e.strerror}: is {name} an md array on that machine?") from None
    for entry in entries:
        if not entry.startswith("dev-"):
            continue
        slot = attr(f"{entry}/slot")
        if slot == "none":  # a spare or faulty member holds no array data
            continue
        members.append(Member(entry[4:], num(f"{entry}/slot"), num(f"{entry}/offset") * SECTOR,
                              num(f"{entry}/size") * 1024))
    members.sort(key=lambda m: m.slot)
    return checked(MdArray(name, level, chunk, tuple(members)), where)
