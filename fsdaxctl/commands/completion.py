"""fsdaxctl completion: print the shell completion script (click's own) for bash, zsh or fish."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell):
    """Print the completion script for SHELL (bash, zsh or fish) on stdout.

    \b
    Install it once:
      bash:  fsdaxctl completion bash > ~/.local/share/bash-completion/completions/fsdaxctl
             (or /etc/bash_completion.d/fsdaxctl; bash 4.4 or later)
      zsh:   fsdaxctl completion zsh > "${fpath[1]}/_fsdaxctl"   (then: autoload -U compinit; compinit)
      fish:  fsdaxctl completion fish > ~/.config/fish/completions/fsdaxctl.fish
    Or for this shell only: eval "$(fsdaxctl completion bash)".
    """
    from click.shell_completion import get_completion_class

    from fsdaxctl.cli import cli

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "fsdaxctl", "_FSDAXCTL_COMPLETE").source())
