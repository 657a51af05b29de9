"""--act for `watch`: the rules of `locate --act` (engine/act.py), without a terminal to ask.

1. The dry run: what the policy lets --act do for each decision is logged first (stderr, one line each);
2. the chain is walked again (a fresh look at /proc): if it decides anything else (a process started or
   stopped mapping the pages), nothing runs and the event says why;
3. the actions, with engine.live's primitives: SIGBUS to the mappers (kill(2): SI_USER, as `locate --act`),
   dropping mappings for a device being removed, the command per decision (JSON on stdin, no shell), and the
   filesystem shutdown once, after the walk (as xfs_dax_notify_dev_failure does).
Owners of a mounted filesystem already come from its kernel (GETFSMAP), so the disk-versus-kernel check that
`locate --act` needs is not needed here.
"""

from __future__ import annotations

import signal as signals
import sys

from fsdaxctl.engine import live


def _rec(r) -> dict:
    return r if isinstance(r, dict) else r.to_dict()


def plan(hit, policy) -> list[tuple[object, dict, list[str], object]]:
    """[(decision, its output dict, what --act may do for it, the rule)] for the decisions that get anything."""
    out = []
    names = hit.session.names()
    for d in hit.decisions:
        dd = d.to_dict()
        rule, acts = policy.plan(dd, names)
        if acts:
            out.append((d, dd, acts, rule))
    return out


def plan_lines(hit, planned) -> list[str]:
    lines = []
    where = hit.session.mount or hit.session.target
    for d, dd, acts, rule in planned:
        for a in acts:
            if a == "kill-mappers" and d.action == "kill-mappers":
                who = (", ".join(f"{m['pid']} ({m.get('comm', '')})" for m in d.mappers or ())
                       or "nobody maps them now")
                last = d.pgoff + max(d.pgcnt, 1) - 1
                lines.append(f"signal the processes mapping inode {d.inode} pages {d.pgoff}..{last} "
                             f"({', '.join(d.paths) or 'no name'}): {who} [{rule.where}]")
            elif a == "kill-mappers":
                lines.append(f"drop the mappings of inode {d.inode} pages {d.pgoff}..{d.pgoff + max(d.pgcnt, 1) - 1} "
                             f"[{rule.where}]")
            elif a == "shutdown":
                lines.append(f"shut down the filesystem at {where} ({d.shutdown}) [{rule.where}]")
            elif a == "exec":
                lines.append(f"run {' '.join(rule.exec_argv)} for decision {d.action} [{rule.where}]")
    return lines


def carry_out(hit, policy, log=None) -> list[dict]:
    """Act on one Hit as the policy allows; one record per action (the event's `done`)."""
    planned = plan(hit, policy)
    if not planned:
        return []
    log = log or sys.stderr
    for line in plan_lines(hit, planned):
        log.write(f"fsdaxctl: watch: --act will: {line}\n")
    log.flush()
    again = hit.rerun()
    if [d.key() for d in hit.decisions] != [d.key() for d in again]:
        return [{"action": "none", "outcome": "skipped",
                 "error": "the situation changed since the dry run (processes mapping the pages or the decisions "
                          "differ): nothing done"}]
    by_key = {id(d): a for d, a in zip(hit.decisions, again)}
    signum = signals.Signals[policy.signal]
    done = []
    shutdown = None
    mount = hit.session.mount
    for d, dd, acts, rule in planned:
        now = by_key[id(d)]
        for a in acts:
            if a == "kill-mappers" and now.action == "kill-mappers":
                if mount is None:
                    done.append({"decision": d.action, "action": "signal", "outcome": "skipped",
                                 "error": "the filesystem is not mounted here: nobody to signal"})
                    continue
                if not now.mappers:
                    done.append({"decision": d.action, "action": "signal", "outcome": "none",
                                 "note": "nobody maps these pages now"})
                    continue
                for r in live.signal_mappers([live.Mapper.from_dict(m) for m in now.mappers], signum):
                    done.append({"decision": d.action, "rule": rule.where, **_rec(r)})
            elif a == "kill-mappers" and now.action == "invalidate-mappings":
                if mount is None or not now.paths:
                    done.append({"decision": d.action, "action": "invalidate", "outcome": "skipped",
                                 "error": "not mounted here" if mount is None else "the file has no name"})
                    continue
                r = live.invalidate_mappings(now.paths[0], now.pgoff, max(now.pgcnt, 1))
                done.append({"decision": d.action, "rule": rule.where, **_rec(r)})
            elif a == "shutdown":
                shutdown = shutdown or (d, rule)
            elif a == "exec":
                r = live.run_exec(rule.exec_argv, dd)
                done.append({"decision": d.action, "rule": rule.where, **_rec(r)})
    if shutdown is not None:
        d, rule = shutdown
        if mount is None:
            done.append({"decision": d.action, "action": "shutdown", "outcome": "skipped",
                         "error": "the filesystem is not mounted here"})
        else:
            done.append({"decision": d.action, "rule": rule.where, **_rec(live.shutdown_filesystem(mount))})
    return done
