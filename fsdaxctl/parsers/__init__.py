"""construct declarations of on-disk formats, and the two ways they are read.

Layouts are declared once, with construct, under the kernel's field names. One-off structures are parsed with
the compiled construct; fixed-size records in hot loops are read with a `struct.Struct` *derived* from the same
declaration (see `derived_struct`), so the byte layout is never written twice.

This module: `compiled`, `derived_struct`, `field_names`. The declarations: parsers.xfs, parsers.partition,
parsers.nvdimm.
"""

from __future__ import annotations

import struct

import construct

__all__ = ["compiled", "derived_struct", "field_names"]


class compiled:  # noqa: N801 - reads like construct's own .compile()
    """A construct declaration compiled on first use: compiling a dozen of them at import was a sixth of the
    tool's start-up, and most runs parse only a few kinds. Anything else is the compiled parser's."""

    def __init__(self, decl: construct.Construct):
        self.decl = decl
        self._parser = None

    def _compiled(self):
        if self._parser is None:
            self._parser = self.decl.compile()
        return self._parser

    def parse(self, data):
        return self._compiled().parse(data)

    def __getattr__(self, name):
        return getattr(self._compiled(), name)


def derived_struct(decl: construct.Struct, until: str | None = None, start: str | None = None) -> struct.Struct:
    """A struct.Struct with the same layout as `decl` (or its fields from `start`, before `until`), for iter_unpack over
    arrays of records and for headers read in hot loops (construct's parse contexts hold reference cycles).

    Only integer fields of a single byte order and fixed-size Bytes are allowed: anything else would make the
    derived struct silently disagree with the declaration, so it is refused here, at import time.
    """
    order = None
    fmt = []
    size = 0
    started = start is None
    for sub in decl.subcons:
        if sub.name == until:
            break
        started = started or sub.name == start
        if not started:
            continue
        field = sub.subcon if isinstance(sub, construct.Renamed) else sub
        if isinstance(field, construct.Bytes) and isinstance(field.length, int):
            fmt.append(f"{field.length}s")
        elif isinstance(field, construct.FormatField):
            o, code = field.fmtstr[0], field.fmtstr[1:]
            if order is None:
                order = o
            elif o != order:
                raise TypeError(f"{decl}: field {sub.name!r} has another byte order")
            fmt.append(code)
        else:
            raise TypeError(f"{decl}: field {sub.name!r} is neither an integer nor fixed-size bytes")
        size += sub.sizeof()
    else:
        if until is not None:
            raise TypeError(f"{decl}: no field {until!r}")
    st = struct.Struct((order or ">") + "".join(fmt))
    if st.size != size:
        raise TypeError(f"{decl}: derived size {st.size} != declared {size}")
    return st


def field_names(decl: construct.Struct, until: str | None = None, start: str | None = None) -> tuple[str, ...]:
    names = tuple(sub.name for sub in decl.subcons)
    names = names[:names.index(until)] if until else names
    return names[names.index(start):] if start else names
