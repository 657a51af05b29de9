"""fsdaxctl watch: from each new media error to its owners and the chosen action, as a service."""

from __future__ import annotations

import sys

import click

from fsdaxctl.errors import UsageError


@click.command("watch")
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option("--once", is_flag=True, help="Process what is there now (the kernel log, badblocks lists) and exit "
                                           "(cron, tests); exit status as locate's, for everything reported.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default=None,
              help="One JSON line per event (default when not on a terminal) or a readable line (on a terminal).")
@click.option("--state", "state", default=None, metavar="FILE",
              help="Remember what was handled across restarts (the last kernel log record, badblocks seen, damaged "
                   "bytes reported). Default /var/lib/fsdaxctl/watch.json; 'none' for nothing.")
@click.option("--metrics", metavar="FILE", help="Write counters here for node_exporter's textfile collector "
                                                "(*.prom in its --collector.textfile.directory), atomically.")
@click.option("--policy", "policy_file", metavar="FILE",
              help="TOML: per filesystem or path prefix, what --act does: report, kill-mappers, shutdown, exec "
                   "(see README).")
@click.option("--act", is_flag=True, help="Carry out what the policy (default: every action of the kernel's chain) "
                                          "allows: the plan is logged first, the chain walked again, then SIGBUS to "
                                          "mappers, XFS shutdown, --exec. Without it, report only.")
@click.option("--exec", "exec_cmd", metavar="CMD",
              help="With --act and no --policy: run CMD once per decision, the decision as JSON on stdin (split like "
                   "a shell would, never run through one).")
@click.option("--signal", "sig", default="SIGBUS", show_default=True, help="With --act: the signal for mappers.")
@click.option("--assume-dax", is_flag=True, help="Treat every mapping (and every device going away) as DAX: "
                                                 "rehearsals on machines without pmem.")
@click.option("--mapping", type=click.Choice(["auto", "dax", "page-cache"]), default="auto", show_default=True,
              help="How file pages are mapped: auto asks the mount and the inode.")
@click.option("--kmsg", default="/dev/kmsg", show_default=True, metavar="FILE|-|off",
              help="The kernel log: /dev/kmsg records (resumed after the last one handled), '-' for text on stdin "
                   "(journalctl -kf -o cat | fsdaxctl watch --kmsg -), 'off'.")
@click.option("--from-now", is_flag=True, help="Without a saved position, start at the end of the kernel log "
                                               "instead of its oldest record.")
@click.option("--kmsg-user", is_flag=True, help="Also take /dev/kmsg records that userspace wrote (drills, tests); "
                                                "by default only the kernel's own records count.")
@click.option("--badblocks", "badblocks", multiple=True, metavar="[DEV=]FILE",
              help="A badblocks list to watch (default: every /sys/block/*/badblocks and nd region badblocks).")
@click.option("--no-badblocks", is_flag=True, help="Watch no badblocks lists.")
@click.option("--poll-interval", default=30.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between re-reads of badblocks lists (the fallback where the kernel does not signal).")
@click.option("--no-uevents", is_flag=True, help="Do not listen to kernel uevents.")
@click.option("--sysfs-root", default="/sys", show_default=True, metavar="DIR", help="Where sysfs is.")
@click.option("--buffer-block-size", default="4096", show_default=True,
              help="Block size of 'Buffer I/O error ... logical block N' lines.")
@click.option("--print-unit", is_flag=True, help="Print the systemd unit shipped with fsdaxctl and exit.")
@click.pass_context
def command(ctx, targets, once, fmt, state, metrics, policy_file, act, exec_cmd, sig, assume_dax, mapping, kmsg,
            from_now, kmsg_user, badblocks, no_badblocks, poll_interval, no_uevents, sysfs_root, buffer_block_size,
            print_unit):
    """Watch for new media errors and say what each one hit, as it happens.

    \b
    Sources: the kernel log (/dev/kmsg: medium errors, memory failures, XFS metadata I/O errors), badblocks
    lists (sysfs, re-read when the kernel signals or every --poll-interval), kernel uevents (pmem/nd devices
    and the disks under watched filesystems: added, removed, changed). Each new error becomes one JSON line:
    its source and time, the owners of the damaged bytes (locate's pieces; from the running kernel where the
    filesystem is mounted), the kernel chain's decision per owner (inject's words) and what was done.
    TARGETs (mount points, devices, NAME=IMAGE) limit what is watched; default: every mounted XFS.

    \b
    Exit status with --once: as locate (4 file data, 8 metadata, 1 a report could not be resolved or an
    action failed); as a service: 0 after SIGTERM.
    """
    from importlib import resources

    from fsdaxctl.units import parse_size
    from fsdaxctl.watch.policy import command_line_policy, load_policy
    from fsdaxctl.watch.resolve import mapping_forced
    from fsdaxctl.watch.service import Options, Watcher
    from fsdaxctl.watch.state import DEFAULT_PATH

    if print_unit:
        click.echo(resources.files("fsdaxctl.watch").joinpath("fsdaxctl-watch.service").read_text(), nl=False)
        ctx.exit(0)
    if exec_cmd and not act:
        raise UsageError("--exec goes with --act")
    if exec_cmd and policy_file:
        raise UsageError("--exec and --policy: put the command in the policy (exec = [...])")
    if badblocks and no_badblocks:
        raise UsageError("--badblocks and --no-badblocks: one or the other")
    if assume_dax and mapping != "auto":
        raise UsageError("--assume-dax and --mapping: one or the other")
    policy = load_policy(policy_file) if policy_file else command_line_policy(act, exec_cmd, sig)
    forced, label = mapping_forced(assume_dax, mapping)
    bbs = parse_size(buffer_block_size, "--buffer-block-size")
    opts = Options(
        targets=list(targets), once=once, fmt=fmt or ("text" if sys.stdout.isatty() else "jsonl"),
        state=None if state == "none" else (state or DEFAULT_PATH), metrics=metrics, policy=policy,
        policy_file=policy_file, act=act, forced=forced, label=label,
        kmsg=None if kmsg == "off" else kmsg, from_now=from_now, kmsg_user=kmsg_user,
        badblocks=[] if no_badblocks else (list(badblocks) or None), poll_interval=poll_interval,
        uevents=not no_uevents, sysfs=sysfs_root, buffer_block_size=bbs)
    ctx.exit(Watcher(opts).run())
