"""One exception hierarchy; the CLI turns each into one line on stderr and an exit status.

Every error carries the facts a person needs to find the damage (device, daddr, AG, structure,
expected and found), and renders them in one fixed order so messages read alike.
"""

from __future__ import annotations

# Exit status, like fsck: bits (README.md "Exit status").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FILE_DATA = 4
EXIT_METADATA = 8


class FsdaxError(Exception):
    """Base of every error fsdaxctl reports. `exit_status` is what the CLI exits with."""

    exit_status = EXIT_FAILED

    def __init__(self, message: str, **facts):
        super().__init__(message)
        self.message = message
        self.facts = {k: v for k, v in facts.items() if v is not None}

    def __str__(self) -> str:
        parts = [self.message]
        order = ("structure", "device", "daddr", "agno", "agbno", "ino", "line", "expected", "found")
        for key in order:
            if key in self.facts:
                value = self.facts[key]
                if key == "daddr":
                    value = f"{value:#x}"
                parts.append(f"{key} {value}")
        return ": ".join(parts[:1]) + ("" if len(parts) == 1 else " (" + ", ".join(parts[1:]) + ")")


class UsageError(FsdaxError):
    """The command line or an input list is wrong (exit 2)."""

    exit_status = EXIT_USAGE


class DeviceError(FsdaxError, OSError):
    """The target could not be opened or read."""


class TruncatedError(DeviceError):
    """A read ran past the end of the image or device."""


class CorruptError(FsdaxError):
    """A structure failed its verifier: bad magic, CRC, self-address, owner or a value out of range."""


class UnsupportedError(FsdaxError):
    """A valid filesystem this tool will not read (v4, unknown incompat features, NEEDSREPAIR)."""


class NotXfsError(UnsupportedError):
    """No XFS superblock at the start of the target."""


class Problem(str):
    """One thing that could not be read or decided, as the line the user sees (so it prints, compares and
    serialises as that text) with the facts that place it (`structure`, `daddr`, `ino`, ... as FsdaxError's)."""

    facts: dict

    def __new__(cls, what, cause: Exception | None = None, **facts):
        obj = super().__new__(cls, str(what))
        obj.facts = {**getattr(cause, "facts", {}), **getattr(what, "facts", {}),
                     **{k: v for k, v in facts.items() if v is not None}}
        return obj


class Problems(list):
    """The one collector of problems: each reported once, in the order first met. Appending a str, a Problem or
    an FsdaxError keeps its facts; `lines(cap)` spells out the first `cap` and counts the rest."""

    def __init__(self, items=()):
        super().__init__()
        self._seen: set[str] = set()
        self.extend(items)

    def append(self, what, cause: Exception | None = None, **facts) -> None:
        problem = what if isinstance(what, Problem) and not facts and cause is None else Problem(what, cause, **facts)
        if problem not in self._seen:
            self._seen.add(problem)
            super().append(problem)

    add = append

    def __iadd__(self, items):
        self.extend(items)
        return self

    def extend(self, items) -> None:
        for item in items:
            self.append(item)

    def lines(self, cap: int | None = None, more: str = "more problems") -> list[str]:
        if cap is None or len(self) <= cap:
            return list(self)
        return self[:cap] + [f"... and {len(self) - cap} {more}"]
