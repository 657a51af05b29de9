"""Extended attributes of an inode: shortform (in the inode) and leaf blocks (extents or btree attr forks).

Node and remote-value blocks carry no entries: every attr-fork block is read and only leaf blocks are parsed,
which finds every entry whatever the fork's shape. Remote values are not fetched (None): parent pointers and
names never need them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdaxctl.errors import CorruptError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.xfs.inode import Inode, bmap
from fsdaxctl.xfs.verify import check_crc

NAMESPACES = ((f.XFS_ATTR_ROOT, "trusted"), (f.XFS_ATTR_SECURE, "security"), (f.XFS_ATTR_PARENT, "parent"))


@dataclass(frozen=True, slots=True)
class Attr:
    flags: int
    name: bytes
    value: bytes | None  # None: stored in remote value blocks

    @property
    def namespace(self) -> str:
        for bit, ns in NAMESPACES:
            if self.flags & bit:
                return ns
        return "user"


def read_attrs(fs, inode: Inode) -> list[Attr]:
    fmt, lit = inode.fork("attr")
    if fmt is None:
        return []
    if fmt == f.XFS_DINODE_FMT_LOCAL:
        return _shortform(inode, lit)
    out = []
    geo = fs.geo
    for e in bmap(fs, inode, "attr"):
        for i in range(e.blockcount):
            fsb = e.startblock + i
            if not geo.fsb_is_valid(fsb):
                raise CorruptError("attr block outside the filesystem", structure=f"inode {inode.ino}",
                                   found=f"fsblock {fsb}")
            buf = fs.dev.pread(geo.fsb_to_byte(fsb), geo.blocksize, f"xattr block of inode {inode.ino}")
            if int.from_bytes(buf[8:10], "big") == f.XFS_ATTR3_LEAF_MAGIC:
                check_crc(buf, 12, f"xattr leaf block of inode {inode.ino}", geo.fsb_to_daddr(fsb))
                out += leaf_entries(buf)
    return out


def _shortform(inode: Inode, lit: bytes) -> list[Attr]:
    where = f"shortform xattrs of inode {inode.ino}"
    if len(lit) < 4:
        raise CorruptError("shortform xattr header truncated", structure=where)
    totsize, count = int.from_bytes(lit[:2], "big"), lit[2]
    end = min(totsize, len(lit))
    pos, out = 4, []
    for _ in range(count):
        if pos + 3 > end:
            raise CorruptError("shortform xattr entry past the fork", structure=where, found=f"byte {pos}")
        namelen, valuelen, flags = lit[pos], lit[pos + 1], lit[pos + 2]
        if pos + 3 + namelen + valuelen > end:
            raise CorruptError("shortform xattr entry past the fork", structure=where, found=f"byte {pos}")
        name = lit[pos + 3:pos + 3 + namelen]
        out.append(Attr(flags, name, lit[pos + 3 + namelen:pos + 3 + namelen + valuelen]))
        pos += 3 + namelen + valuelen
    return out


def leaf_entries(buf: bytes) -> list[Attr]:
    """The entries of one attr3 leaf block (complete ones only)."""
    count = int.from_bytes(buf[56:58], "big")
    out = []
    for i in range(min(count, (len(buf) - f.XFS_ATTR3_LEAF_HDR_SIZE) // 8)):
        _, nameidx, flags, _ = f.ATTR_LEAF_ENTRY.unpack_from(buf, f.XFS_ATTR3_LEAF_HDR_SIZE + 8 * i)
        if flags & f.XFS_ATTR_INCOMPLETE or nameidx + 9 > len(buf):
            continue
        if flags & f.XFS_ATTR_LOCAL:  # valuelen be16, namelen u8, name, value
            valuelen, namelen = int.from_bytes(buf[nameidx:nameidx + 2], "big"), buf[nameidx + 2]
            name = buf[nameidx + 3:nameidx + 3 + namelen]
            value = buf[nameidx + 3 + namelen:nameidx + 3 + namelen + valuelen]
        else:  # valueblk be32, valuelen be32, namelen u8, name
            namelen = buf[nameidx + 8]
            name, value = buf[nameidx + 9:nameidx + 9 + namelen], None
        out.append(Attr(flags & ~f.XFS_ATTR_LOCAL, name, value))
    return out
