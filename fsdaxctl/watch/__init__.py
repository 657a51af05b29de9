"""`fsdaxctl watch`: a long-lived loop from each new media error to its owners and the chosen action.

    sources (sources.py)    /dev/kmsg records (or journal text), sysfs badblocks, uevents, mountinfo changes
      -> Report             one damage report, or a device event, with where it came from
    merge (state.py)        reports already handled (a state file, across restarts) are merged, not repeated
    resolve (resolve.py)    the report routed through each watched filesystem's device stack; owners from the
                            kernel (GETFSMAP) where it is mounted, from the disk otherwise; the engine's chain
                            decides per owner, exactly as `inject` does
    policy (policy.py)      report, kill-mappers, shutdown, exec: per filesystem or path prefix; only with --act
    act (actions.py)        the dry run logged first, the chain walked again, then the actions
    output (service.py)     one JSON line per event (or a readable line on a terminal), metrics (metrics.py)

No logic of its own beyond merging, remembering and policy: owners come from fsdaxctl.live / fsdaxctl.xfs,
decisions from fsdaxctl.engine.chain, actions from fsdaxctl.engine.live.
"""

__all__ = ["actions", "metrics", "policy", "resolve", "service", "sources", "state"]
