"""construct declarations of on-disk formats, and the two ways they are read.

Layouts are declared once, with construct, under the kernel's field names. One-off structures are parsed with
the compiled construct; fixed-size records in hot loops are read with a `struct.Struct` *derived* from the same
declaration (see `derived_struct`), so the byte layout is never written twice.
"""

from __future__ import annotations

import struct

import construct


def derived_struct(decl: construct.Struct) -> struct.Struct:
    """A struct.Struct with the same layout as `decl`, for iter_unpack over arrays of records.

    Only plain integer fields of a single byte order are allowed: anything else would make the derived
    struct silently disagree with the declaration, so it is refused here, at import time.
    """
    order = None
    fmt = []
    for sub in decl.subcons:
        field = sub.subcon if isinstance(sub, construct.Renamed) else sub
        if not isinstance(field, construct.FormatField):
            raise TypeError(f"{decl}: field {sub.name!r} is not a plain integer field")
        o, code = field.fmtstr[0], field.fmtstr[1:]
        if order is None:
            order = o
        elif o != order:
            raise TypeError(f"{decl}: field {sub.name!r} has another byte order")
        fmt.append(code)
    st = struct.Struct(order + "".join(fmt))
    if st.size != decl.sizeof():
        raise TypeError(f"{decl}: derived size {st.size} != declared {decl.sizeof()}")
    return st


def field_names(decl: construct.Struct) -> tuple[str, ...]:
    return tuple(sub.name for sub in decl.subcons)
