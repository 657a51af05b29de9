"""--policy FILE: what `watch --act` does, per filesystem or path prefix (TOML, read with tomllib).

    default = "report"                     # where no rule matches: report | kill-mappers | shutdown | exec
    signal = "SIGBUS"                      # for kill-mappers
    exec = ["/usr/local/sbin/page-oncall"] # the command for "exec" where a rule gives none (argv, or one
                                           # string split like a shell would; never run through one)

    [[rule]]                               # the first rule that matches a decision decides it
    filesystem = "/srv"                    # mount point, device (/dev/pmem0 or pmem0) or filesystem UUID
    path = "/srv/db/"                      # prefix of a path of the file hit (decisions without a file: no match)
    do = ["kill-mappers", "exec"]          # one word or a list
    exec = "logger -t fsdaxctl"

What each word allows, of the decisions the kernel's chain makes (engine/chain.py): kill-mappers: SIGBUS to the
processes mapping the damaged pages (and, for a device being removed, dropping its mappings); shutdown: the
XFS shutdown the chain decides for damaged metadata or a device going away; exec: the command once per
decision, the decision as JSON on stdin. "report" does nothing. Nothing is done without --act: the policy only
says what --act may do. A mistake in the file is one line naming the key, at start.
"""

from __future__ import annotations

import os
import shlex
import signal as signals
from dataclasses import dataclass, field

from fsdaxctl.errors import UsageError

WORDS = ("report", "kill-mappers", "shutdown", "exec")
TOP_KEYS = ("default", "signal", "exec", "rule")
RULE_KEYS = ("filesystem", "path", "do", "exec")

# Which decisions of the chain each word carries out.
ALLOWS = {"kill-mappers": ("kill-mappers", "invalidate-mappings"), "shutdown": ("shutdown-filesystem",)}


@dataclass
class Rule:
    where: str                     # 'rule[1]' or 'default'
    do: tuple[str, ...]
    filesystem: str | None = None
    path: str | None = None
    exec_argv: list[str] | None = None

    def matches(self, fs_names: set[str], paths) -> bool:
        if self.filesystem is not None and self.filesystem not in fs_names:
            return False
        if self.path is not None:
            base = self.path.rstrip("/") or "/"
            return any(p == base or p.startswith(base.rstrip("/") + "/") for p in paths)
        return True


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    default: Rule = field(default_factory=lambda: Rule("default", ("report",)))
    signal: str = "SIGBUS"
    source: str = "command line"

    def rule_for(self, fs_names: set[str], paths) -> Rule:
        for r in self.rules:
            if r.matches(fs_names, paths):
                return r
        return self.default

    def plan(self, decision: dict, fs_names: set[str]) -> tuple[Rule, list[str]]:
        """(the rule, what it lets --act do for this decision: 'kill-mappers', 'shutdown', 'exec')."""
        rule = self.rule_for(fs_names, decision.get("paths") or ())
        acts = [w for w in rule.do if w in ALLOWS and decision.get("action") in ALLOWS[w]]
        if "exec" in rule.do:
            acts.append("exec")
        return rule, acts


def _argv(value, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = list(value)
    else:
        raise UsageError(f"{where}: a command: a list of strings (argv) or one string")
    if not argv:
        raise UsageError(f"{where}: an empty command")
    return argv


def _do(value, where: str) -> tuple[str, ...]:
    words = [value] if isinstance(value, str) else value
    if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
        raise UsageError(f"{where}: one of {', '.join(WORDS)}, or a list of them")
    for w in words:
        if w not in WORDS:
            raise UsageError(f"{where}: {w!r} is not one of {', '.join(WORDS)}")
    return tuple(dict.fromkeys(words))


def check_signal(name: str, where: str) -> str:
    key = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
    if key not in signals.Signals.__members__:
        raise UsageError(f"{where}: unknown signal {name!r}")
    return key


def load_policy(path: str) -> Policy:
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise UsageError(f"--policy {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--policy {path}: not TOML: {e}") from None
    name = os.path.basename(path)
    for key in data:
        if key not in TOP_KEYS:
            raise UsageError(f"--policy {path}: {key}: unknown key (known: {', '.join(TOP_KEYS)})")
    top_exec = _argv(data["exec"], f"--policy {path}: exec") if "exec" in data else None
    sig = check_signal(data["signal"], f"--policy {path}: signal") if isinstance(data.get("signal"), str) else \
        "SIGBUS"
    if "signal" in data and not isinstance(data["signal"], str):
        raise UsageError(f"--policy {path}: signal: a signal name such as \"SIGBUS\"")
    default_do = _do(data.get("default", "report"), f"--policy {path}: default")
    if "exec" in default_do and top_exec is None:
        raise UsageError(f"--policy {path}: default: \"exec\" needs a top-level exec = [...]")
    rules = []
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise UsageError(f"--policy {path}: rule: write rules as [[rule]] tables")
    for i, r in enumerate(raw_rules, 1):
        where = f"--policy {path}: rule[{i}]"
        if not isinstance(r, dict):
            raise UsageError(f"{where}: a table ([[rule]])")
        for key in r:
            if key not in RULE_KEYS:
                raise UsageError(f"{where}.{key}: unknown key (known: {', '.join(RULE_KEYS)})")
        if "do" not in r:
            raise UsageError(f"{where}.do: missing (what to do: {', '.join(WORDS)})")
        do = _do(r["do"], f"{where}.do")
        for key in ("filesystem", "path"):
            if key in r and (not isinstance(r[key], str) or not r[key]):
                raise UsageError(f"{where}.{key}: a non-empty string")
        if "path" in r and not r["path"].startswith("/"):
            raise UsageError(f"{where}.path: an absolute path prefix (as the machine sees it: /srv/db/)")
        argv = _argv(r["exec"], f"{where}.exec") if "exec" in r else top_exec
        if "exec" in do and argv is None:
            raise UsageError(f"{where}.exec: \"exec\" is in do, but no command is given (here or at the top)")
        rules.append(Rule(f"{name} rule[{i}]", do, r.get("filesystem"), r.get("path"), argv))
    return Policy(rules, Rule(f"{name} default", default_do, exec_argv=top_exec), sig, path)


def command_line_policy(act: bool, exec_cmd: str | None, sig: str) -> Policy:
    """No --policy: --act carries out every action of the kernel's chain (as `locate --act --yes`), --exec runs
    per decision; without --act, report only."""
    sig = check_signal(sig, "--signal")
    if not act:
        return Policy(default=Rule("default", ("report",)), signal=sig)
    do = ("kill-mappers", "shutdown") + (("exec",) if exec_cmd else ())
    argv = _argv(exec_cmd, "--exec") if exec_cmd else None
    return Policy(default=Rule("--act", do, exec_argv=argv), signal=sig)
