"""xfs_db as an oracle: run it read-only and parse its `field = value` output."""

from __future__ import annotations

import re
import subprocess


def run(image: str, *commands: str) -> str:
    args = ["xfs_db", "-r"]
    for c in commands:
        args += ["-c", c]
    return subprocess.run(args + [image], check=True, capture_output=True, text=True).stdout


def fields(image: str, *commands: str) -> dict[str, str]:
    out = {}
    for line in run(image, *commands).splitlines():
        if " = " in line:
            k, v = line.split(" = ", 1)
            out[k.strip()] = v.strip()
    return out


def as_int(text: str):
    """xfs_db's numbers: 0x.., decimal, octal modes (0100644), 'null'; anything else -> None."""
    text = re.sub(r" \(.*\)$", "", text)
    if text == "null":
        return "null"
    try:
        if text.startswith("0x"):
            return int(text, 16)
        if len(text) > 1 and text.startswith("0") and text.isdigit():
            return int(text, 8)
        return int(text)
    except ValueError:
        return None


def convert(image: str, *conversions: str) -> list[int]:
    """`convert` results, e.g. convert(img, 'fsb 8199 daddr') -> [43752]."""
    out = run(image, *(f"convert {c}" for c in conversions))
    return [int(m.group(1)) for m in re.finditer(r"\((\d+)\)", out)]
