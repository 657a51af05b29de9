"""Filesystem-relative places turned into byte ranges on the filesystem's device, with the arithmetic in words.

--daddr, --fsblock (segmented), --agno/--agbno and --inode answer "where is this?"; --file PATH --file-offset N
answers the reverse question: which device bytes hold this file range (and locate then says who else shares
them). Everything comes out as stack Extents in the FS space, so the rest of the pipeline treats them like any
other input.
"""

from __future__ import annotations

from fsdaxctl.errors import CorruptError, FsdaxError, UnsupportedError, UsageError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.stack import FS, FS_RT, Extent, Space
from fsdaxctl.units import SECTOR

FS_SPACE = Space(FS)
RT_SPACE = Space(FS_RT)


def _check_inside(fs, byte: int, what: str) -> None:
    section = fs.geo.internal_rt  # a zoned filesystem's realtime section on this device: its bytes too
    if byte >= fs.geo.size and not (section and section[0] <= byte < section[1]):
        raise UsageError(f"{what} is byte {byte}, past the end of the filesystem ({fs.geo.size} bytes)")


def daddr_extent(fs, daddr: int, length: int | None) -> Extent:
    byte = fs.geo.daddr_to_byte(daddr)
    _check_inside(fs, byte, f"--daddr {daddr:#x}")
    n = length or SECTOR
    return Extent(FS_SPACE, byte, n, "--daddr", f"daddr {daddr:#x} (512-byte units) = byte {byte}")


def fsblock_extent(fs, fsb: int, length: int | None) -> Extent:
    geo = fs.geo
    agno, agbno = geo.fsb_to_ag(fsb)
    if not geo.fsb_is_valid(fsb):
        raise UsageError(f"--fsblock {fsb}: AG {agno} block {agbno} is not in the filesystem "
                         f"({geo.agcount} AGs of {geo.agblocks} blocks; fsblocks are agno << {geo.agblklog} | agbno)")
    byte = geo.ag_to_byte(agno, agbno)
    return Extent(FS_SPACE, byte, length or geo.blocksize, "--fsblock",
                  f"fsblock {fsb} = AG {agno} << {geo.agblklog} | agbno {agbno}; ({agno} * {geo.agblocks} + "
                  f"{agbno}) * {geo.blocksize} = byte {byte}")


def agbno_extent(fs, agno: int, agbno: int, length: int | None) -> Extent:
    geo = fs.geo
    if agno >= geo.agcount or agbno >= geo.ag_length(agno):
        raise UsageError(f"--agno {agno} --agbno {agbno}: not in the filesystem ({geo.agcount} AGs, AG {agno} has "
                         f"{geo.ag_length(agno) if agno < geo.agcount else 0} blocks)")
    byte = geo.ag_to_byte(agno, agbno)
    return Extent(FS_SPACE, byte, length or geo.blocksize, "--agno/--agbno",
                  f"AG {agno} block {agbno}: ({agno} * {geo.agblocks} + {agbno}) * {geo.blocksize} = byte {byte}")


def inode_extent(fs, ino: int, origin: str = "--inode", note: str = "", source: str = "", line: int = 0) -> Extent:
    """Where the on-disk inode `ino` lives (its inodesize bytes in its chunk)."""
    geo = fs.geo
    agno, agbno, slot = geo.ino_to_ag(ino)
    if ino <= 0 or agno >= geo.agcount or agbno >= geo.ag_length(agno):
        raise UsageError(f"{origin}: inode {ino} is not in the filesystem (AG {agno} block {agbno} slot {slot})")
    byte = geo.ino_to_byte(ino)
    text = (f"inode {ino} = AG {agno}, block {agbno}, slot {slot}: byte {byte} ({geo.inodesize} bytes)")
    return Extent(FS_SPACE, byte, geo.inodesize, origin, (note + "; " if note else "") + text, source, line)


def lookup_path(fs, path: str) -> int:
    """The inode of PATH (absolute, from the filesystem root), reading directories like the kernel's lookup."""
    from fsdaxctl.xfs.dir import is_dir, read_dir
    from fsdaxctl.xfs.inode import read_inode

    ino = fs.sb.sb_rootino
    walked = ""
    for part in [p for p in path.split("/") if p and p != "."]:
        inode = read_inode(fs, ino)
        if not is_dir(inode):
            raise UsageError(f"--file {path}: {walked or '/'} is not a directory")
        if part == "..":
            parent, _ = read_dir(fs, inode)
            ino = parent or ino
        else:
            _, entries = read_dir(fs, inode)
            name = part.encode("utf-8", "surrogateescape")
            match = next((e for e in entries if e.name == name), None)
            if match is None:
                raise UsageError(f"--file {path}: no {part!r} in {walked or '/'} (paths are from the root of the "
                                 "filesystem, not of this machine)")
            ino = match.ino
        walked += "/" + part
    return ino


def file_extents(fs, path: str, file_offset: int, length: int) -> tuple[list[Extent], list[str]]:
    """Device bytes of PATH's bytes [file_offset, file_offset + length): one extent per mapping, and notes for
    holes (no device bytes: nothing there to damage)."""
    from fsdaxctl.xfs.inode import bmap, read_inode

    geo = fs.geo
    try:
        ino = lookup_path(fs, path)
        inode = read_inode(fs, ino)
        fmt, _ = inode.fork("data")
        realtime = bool(inode.core.di_flags & f.XFS_DIFLAG_REALTIME)
        if realtime and not fs.sb.sb_rblocks:
            raise CorruptError(f"--file {path}: inode {ino} is flagged as a realtime file, but this filesystem has "
                               "no realtime device: its extents cannot be placed (xfs_repair clears the flag)",
                               structure=f"inode {ino}")
        if fmt == f.XFS_DINODE_FMT_LOCAL:
            raise UsageError(f"--file {path}: its contents live inside inode {ino} (local format): no blocks of "
                             f"its own; --inode {ino} says where that inode is")
        extents = bmap(fs, inode, "data")
    except (UsageError, UnsupportedError, CorruptError):
        raise
    except FsdaxError as e:
        raise UsageError(f"--file {path}: {e}") from None
    end = file_offset + length
    out, holes = [], []
    pos = file_offset
    for ext in sorted(extents, key=lambda e: e.startoff):
        lo, hi = ext.startoff << geo.blocklog, (ext.startoff + ext.blockcount) << geo.blocklog
        if hi <= pos or lo >= end:
            continue
        if lo > pos:
            holes.append(f"{path} bytes {pos}..{lo - 1} are a hole: no device bytes")
        a, b = max(pos, lo), min(end, hi)
        # A realtime file's extents count realtime blocks, not fsblocks.
        base = _rtb_to_byte(fs, ext.startblock) if realtime else geo.fsb_to_byte(ext.startblock)
        byte = base + (a - lo)
        state = " unwritten" if ext.unwritten else ""
        unit, space = ("rt block", RT_SPACE) if realtime else ("fsblock", FS_SPACE)
        if realtime and geo.internal_rt is not None:  # the realtime section is TARGET's: through its stack
            space = FS_SPACE
        out.append(Extent(space, byte, b - a, f"--file {path}",
                          f"inode {ino} file bytes {a}..{b - 1}: extent at file block {ext.startoff} -> {unit} "
                          f"{ext.startblock}{state}; byte {base} + {a - lo} = byte {byte}"))
        pos = b
    if pos < end:
        holes.append(f"{path} bytes {pos}..{end - 1} are a hole or past the last extent: no device bytes")
    return out, holes


def _rtb_to_byte(fs, rtb: int) -> int:
    from fsdaxctl.xfs.rt import rtb_to_byte

    return rtb_to_byte(fs.sb, rtb)
