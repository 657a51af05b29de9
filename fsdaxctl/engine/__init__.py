"""The corruption-chain engine: the kernel's memory-failure chain for fsdax, as an inspectable object.

flags.py   the kernel's mf_flags and how they are written on the command line
chain.py   events, the walk down the chain (pagemap -> pmem -> holder -> XFS notify_failure -> rmap -> owners),
           the decisions per owner, and the trace of every call
live.py    what acting on a live system needs: mounts, mappers from /proc, signals, the shutdown ioctl, --exec
act.py     carrying decisions out (dry run, confirmation, JSON action log)

The engine uses the device stack and the filesystem model; it never imports the CLI (docs/architecture.md).
"""

__all__ = ["act", "chain", "devices", "flags", "live"]
