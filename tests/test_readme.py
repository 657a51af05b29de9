"""README.md's set-up commands: CI runs exactly the documented test command, and the documented main job
runs on the bundled sample."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [ln for ln in block.splitlines() if ln and not ln.startswith("#")]


def test_readme_starts_with_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) == 2
    assert "fsdaxctl locate --sample" in cmds[0]
    assert cmds[1].endswith("python3 -m pytest")


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        ci = fh.read()
    assert readme_commands()[1] in ci.splitlines()
    assert "FSDAXCTL_REQUIRE_KERNEL=1" in ci
