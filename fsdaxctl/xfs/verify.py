"""Block verifiers: magic, CRC32c, self-address, owner, uuid. One place, one error shape."""

from __future__ import annotations

import struct

from fsdaxctl.errors import CorruptError


def _crc32c():
    """crc32c's C function, loaded without running the package's __init__: that imports importlib.metadata
    for a version string, a third of this tool's start-up. Falls back to the ordinary import."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    try:
        spec = importlib.util.find_spec("crc32c")
        for folder in spec.submodule_search_locations or ():
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "_crc32c" + suffix)
                if os.path.exists(path):
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                    module = loader.create_module(importlib.util.spec_from_loader("crc32c._crc32c", loader))
                    loader.exec_module(module)
                    sys.modules.setdefault("crc32c._crc32c", module)
                    return module.crc32c
    except (ImportError, AttributeError, OSError):
        pass
    from crc32c import crc32c

    return crc32c


crc32c = _crc32c()

_ZERO4 = b"\0\0\0\0"
_LE32 = struct.Struct("<I")


def xfs_cksum(buf: bytes, crc_off: int) -> int:
    """CRC32c of buf with the 4-byte CRC field at crc_off taken as zero (xfs_start_cksum_safe)."""
    crc = crc32c(buf[:crc_off])
    crc = crc32c(_ZERO4, crc)
    return crc32c(buf[crc_off + 4 :], crc)


def check_crc(buf: bytes, crc_off: int, structure: str, daddr: int) -> None:
    found = _LE32.unpack_from(buf, crc_off)[0]
    expected = xfs_cksum(buf, crc_off)
    if found != expected:
        raise CorruptError(
            "bad CRC", structure=structure, daddr=daddr, expected=f"{expected:#010x}", found=f"{found:#010x}"
        )


def check_magic(found: int, expected: int, structure: str, daddr: int, width: int = 8) -> None:
    if found != expected:
        raise CorruptError(
            "bad magic number",
            structure=structure,
            daddr=daddr,
            expected=_magic_text(expected, width),
            found=_magic_text(found, width),
        )


def _magic_text(value: int, width: int) -> str:
    raw = value.to_bytes(width // 2, "big")
    if all(0x20 < c < 0x7F for c in raw):
        return f"{raw.decode()!r}"
    return f"{value:#0{width + 2}x}"


def check_field(ok: bool, what: str, structure: str, daddr: int, expected, found) -> None:
    if not ok:
        raise CorruptError(f"{what} does not match", structure=structure, daddr=daddr, expected=expected, found=found)
