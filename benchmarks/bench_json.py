#!/usr/bin/env python3
"""Benchmark: the JSON text of a dump's pieces, fsdaxctl's own encoder (render.piece_json: the fixed schema
written with f-strings) next to the standard library's json and orjson (if installed), on the same pieces.

A dump spends most of its time writing text, so a faster encoder would pay, but only if it gives the same
bytes: the JSON contract (README) fixes the key order and the separators. Prints figures; asserts nothing.

    python benchmarks/bench_json.py [--pieces 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pieces(n: int):
    from fsdaxctl.xfs.piece import FILE, FREE, Piece

    out = []
    for i in range(n):  # what a dump is made of: mostly file data, some free space, a few shared pieces
        if i % 10 == 9:
            out.append(Piece(i << 12, 4096, FREE, i % 8))
        else:
            out.append(Piece(i << 12, 4096, FILE, i % 8, 1000 + i, "data", i << 12, False, i % 7 == 0,
                             i % 5 == 0))
    return out


def timed(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(p) for p in items]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", type=int, default=300_000)
    args = ap.parse_args()
    from fsdaxctl.render import piece_json

    items = pieces(args.pieces)
    ours_s, ours = timed(piece_json, items)
    rows = [("render.piece_json (f-strings)", ours_s, True)]
    std_s, std = timed(lambda p: json.dumps(p.to_dict(), ensure_ascii=False), items)
    rows.append(("json.dumps(piece.to_dict())", std_s, std == ours))
    try:
        import orjson
    except ImportError:
        rows.append(("orjson (not installed)", float("nan"), False))
    else:
        orj_s, orj = timed(lambda p: orjson.dumps(p.to_dict()).decode(), items)
        rows.append(("orjson.dumps(piece.to_dict())", orj_s, orj == ours))
    from tabulate import tabulate

    print(f"{args.pieces} pieces")
    print(tabulate([(name, f"{s:.3f} s", f"{s / ours_s:.2f}x", "yes" if same else "no") for name, s, same in rows],
                   headers=["encoder", "time", "vs ours", "same bytes"], tablefmt="github"))


if __name__ == "__main__":
    main()
