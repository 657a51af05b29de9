"""JSON Schemas (draft 2020-12) of every command's JSON output: locate, fsmap, info, inject, badblocks.

They describe the contract in README.md: fields may be added in later versions (objects stay open), none is
renamed or removed. `fsdaxctl/schemas/NAME.schema.json` in the installed package; load() reads one.
"""

from __future__ import annotations

import json
from importlib import resources

NAMES = ("locate", "fsmap", "info", "inject", "badblocks")


def load(name: str) -> dict:
    return json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text())
