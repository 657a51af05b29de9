"""enum mf_flags (include/linux/mm.h) and their spelling on the command line."""

from __future__ import annotations

from fsdaxctl.errors import UsageError

MF_COUNT_INCREASED = 1 << 0
MF_ACTION_REQUIRED = 1 << 1
MF_MUST_KILL = 1 << 2
MF_SOFT_OFFLINE = 1 << 3
MF_UNPOISON = 1 << 4
MF_SW_SIMULATED = 1 << 5
MF_NO_RETRY = 1 << 6
MF_MEM_PRE_REMOVE = 1 << 7

NAMES = {
    "action-required": MF_ACTION_REQUIRED,
    "must-kill": MF_MUST_KILL,
    "sw-simulated": MF_SW_SIMULATED,
    "pre-remove": MF_MEM_PRE_REMOVE,
}
KERNEL_NAMES = {
    MF_COUNT_INCREASED: "MF_COUNT_INCREASED", MF_ACTION_REQUIRED: "MF_ACTION_REQUIRED", MF_MUST_KILL: "MF_MUST_KILL",
    MF_SOFT_OFFLINE: "MF_SOFT_OFFLINE", MF_UNPOISON: "MF_UNPOISON", MF_SW_SIMULATED: "MF_SW_SIMULATED",
    MF_NO_RETRY: "MF_NO_RETRY", MF_MEM_PRE_REMOVE: "MF_MEM_PRE_REMOVE",
}


def parse_flags(text: str | None) -> int:
    """'action-required,pre-remove' -> MF_ACTION_REQUIRED | MF_MEM_PRE_REMOVE; also the kernel's MF_* names."""
    flags = 0
    for word in (text or "").replace("|", ",").split(","):
        word = word.strip()
        if not word or word == "0":
            continue
        key = word.lower().removeprefix("mf_").removeprefix("mem_").replace("_", "-")
        if key not in NAMES:
            raise UsageError(f"--flags: unknown flag {word!r} (one of {', '.join(NAMES)}, or the kernel's MF_* "
                             "names)")
        flags |= NAMES[key]
    return flags


def flags_text(flags: int) -> str:
    """The kernel's spelling: 'MF_ACTION_REQUIRED|MF_MUST_KILL', or '0'."""
    names = [name for bit, name in KERNEL_NAMES.items() if flags & bit]
    return "|".join(names) or "0"
