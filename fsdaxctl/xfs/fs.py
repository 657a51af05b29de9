"""Open an XFS v5 filesystem read-only: superblock, geometry, AG headers, verified metadata blocks."""

from __future__ import annotations

import uuid as uuidlib
from collections import OrderedDict
from dataclasses import dataclass

from fsdaxctl.device import Device
from fsdaxctl.errors import CorruptError, NotXfsError, UnsupportedError
from fsdaxctl.parsers import xfs as f
from fsdaxctl.units import SECTOR
from fsdaxctl.xfs.geometry import Geometry
from fsdaxctl.xfs.verify import check_crc, check_field, check_magic

XFS_MIN_BLOCKSIZE_LOG, XFS_MAX_BLOCKSIZE_LOG = 9, 16
XFS_MAX_LOG_BLOCKS = 1024 * 1024  # xfs_log_format.h
XFS_MAX_LOG_BYTES = 2 * 1024 * 1024 * 1024 - 10 * 1024 * 1024  # 2 GiB less XFS_MIN_LOG_BYTES
XFS_MIN_SECTORSIZE_LOG, XFS_MAX_SECTORSIZE_LOG = 9, 15


@dataclass
class AgHeaders:
    agno: int
    agf: object
    agi: object


class XfsFilesystem:
    """A read-only view of one XFS filesystem on a Device.

    Metadata blocks are read on demand and verified (magic, CRC, self-address, uuid); btree nodes are kept in
    a small LRU so a batch of nearby queries reads each block once.
    """

    NODE_CACHE = 512  # parsed btree blocks kept; bounded so a full-device walk stays in constant memory

    def __init__(self, device: Device, *, allow_needsrepair: bool = False):
        self.dev = device
        self.warnings: list[str] = []
        self.sb = self._read_sb(allow_needsrepair)
        self.geo = Geometry.from_sb(self.sb)
        self.uuid = uuidlib.UUID(bytes=self.sb.sb_uuid)
        # Verifiers compare headers with meta_uuid when the user-visible uuid was changed (META_UUID).
        meta = self.sb.sb_meta_uuid if self.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_META_UUID else None
        self.meta_uuid = meta or self.sb.sb_uuid
        self._agf: dict[int, object] = {}
        self._agi: dict[int, object] = {}
        self._nodes: OrderedDict = OrderedDict()
        self.verified: dict = {}  # (tree, agno, agbno) -> (its CRC bytes, last agbno) once its records passed
        self.log_problem, self._internal_log = self._check_log()
        if self.log_problem:
            self.warnings.append(f"superblock: {self.log_problem}: the log's bytes are reported as unknown")
        if device.size < self.geo.size:
            self.warnings.append(
                f"the device ({device.size} bytes) is shorter than the filesystem ({self.geo.size} bytes): "
                "the image is truncated, structures past its end cannot be read"
            )

    @classmethod
    def open(cls, path: str, **kw) -> "XfsFilesystem":
        dev = Device(path)
        try:
            return cls(dev, **kw)
        except BaseException:
            dev.close()
            raise

    def close(self) -> None:
        self.dev.close()
        for dev in getattr(self, "extra_devices", ()):  # --logdev, --rtdev (fsdaxctl.xfs.devices)
            dev.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- features ---
    @property
    def has_rmapbt(self) -> bool:
        return bool(self.sb.sb_features_ro_compat & f.XFS_SB_FEAT_RO_COMPAT_RMAPBT)

    @property
    def has_reflink(self) -> bool:
        return bool(self.sb.sb_features_ro_compat & f.XFS_SB_FEAT_RO_COMPAT_REFLINK)

    @property
    def has_finobt(self) -> bool:
        return bool(self.sb.sb_features_ro_compat & f.XFS_SB_FEAT_RO_COMPAT_FINOBT)

    @property
    def has_ftype(self) -> bool:
        return bool(self.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_FTYPE)

    @property
    def has_parent(self) -> bool:
        return bool(self.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_PARENT)

    @property
    def has_sparse_inodes(self) -> bool:
        return bool(self.sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_SPINODES)

    def feature_names(self) -> list[str]:
        sb = self.sb
        names = ["crc"]
        for table, value in ((f.XFS_SB_FEAT_RO_COMPAT, sb.sb_features_ro_compat),
                             (f.XFS_SB_FEAT_INCOMPAT, sb.sb_features_incompat)):
            names += [name for bit, name in table.items() if value & bit]
        if sb.sb_logstart == 0:
            names.append("external-log")
        if sb.sb_rblocks:
            names.append("realtime")
        return names

    @property
    def internal_log(self) -> tuple[int, int, int] | None:
        """(agno, agbno, blocks) of the internal log, or None (external log, or a log whose superblock fields
        are impossible: `log_problem` says which; nothing is then taken from them)."""
        return None if self.log_problem else self._internal_log

    def _check_log(self) -> tuple[str | None, tuple | None]:
        """The superblock's log fields, checked as xfs_validate_sb_common and xfs_log_mount do: a size in
        range and, for an internal log, a place inside one AG of the data device."""
        sb, geo = self.sb, self.geo
        if not 0 < sb.sb_logblocks <= XFS_MAX_LOG_BLOCKS or sb.sb_logblocks << geo.blocklog > XFS_MAX_LOG_BYTES:
            return f"impossible log size sb_logblocks = {sb.sb_logblocks}", None
        if sb.sb_logstart == 0:
            return None, None
        agno, agbno = geo.fsb_to_ag(sb.sb_logstart)
        if agno >= geo.agcount or agbno + sb.sb_logblocks > geo.ag_length(agno):
            return (f"the internal log (sb_logstart = {sb.sb_logstart}, sb_logblocks = {sb.sb_logblocks}) does "
                    "not fit inside one AG"), None
        return None, (agno, agbno, sb.sb_logblocks)

    @property
    def label(self) -> str:
        return self.sb.sb_fname.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    # --- superblock ---
    def _read_sb(self, allow_needsrepair: bool):
        dev = self.dev
        if dev.size < SECTOR:  # the superblock's first sector (XFS_MIN_SECTORSIZE)
            raise NotXfsError(f"{dev.path} is not XFS: only {dev.size} bytes")
        head = dev.pread(0, SECTOR, "superblock")
        sb = f.XFS_DSB.parse(head)
        if sb.sb_magicnum != f.XFS_SB_MAGIC:
            raise NotXfsError(f"{dev.path} is not XFS: no superblock magic 'XFSB' at byte 0")
        if sb.sb_versionnum & f.XFS_SB_VERSION_NUMBITS != f.XFS_SB_VERSION_5:
            raise UnsupportedError(
                f"XFS v{sb.sb_versionnum & f.XFS_SB_VERSION_NUMBITS} (no metadata CRCs, no rmapbt) is not "
                "supported: fsdaxctl reads v5 filesystems", structure="superblock", daddr=0)
        # Geometry sanity before anything is computed from it (absurd values would mean absurd reads).
        bad = None
        if not XFS_MIN_SECTORSIZE_LOG <= sb.sb_sectlog <= XFS_MAX_SECTORSIZE_LOG \
                or sb.sb_sectsize != 1 << sb.sb_sectlog:
            bad = ("sb_sectsize", sb.sb_sectsize)
        elif not XFS_MIN_BLOCKSIZE_LOG <= sb.sb_blocklog <= XFS_MAX_BLOCKSIZE_LOG \
                or sb.sb_blocksize != 1 << sb.sb_blocklog:
            bad = ("sb_blocksize", sb.sb_blocksize)
        elif sb.sb_blocksize < sb.sb_sectsize:
            bad = ("sb_blocksize < sb_sectsize", sb.sb_blocksize)
        elif sb.sb_agcount == 0 or sb.sb_agblocks < 64:
            bad = ("sb_agcount/sb_agblocks", f"{sb.sb_agcount}/{sb.sb_agblocks}")
        elif sb.sb_agblklog != (sb.sb_agblocks - 1).bit_length():
            bad = ("sb_agblklog", sb.sb_agblklog)
        elif not (sb.sb_agcount - 1) * sb.sb_agblocks < sb.sb_dblocks <= sb.sb_agcount * sb.sb_agblocks:
            bad = ("sb_dblocks", sb.sb_dblocks)
        elif sb.sb_inodesize != 1 << sb.sb_inodelog or sb.sb_inodesize < 256 or sb.sb_inodesize > 2048 \
                or sb.sb_inopblog != sb.sb_blocklog - sb.sb_inodelog:
            bad = ("sb_inodesize", sb.sb_inodesize)
        if bad:
            raise CorruptError("superblock geometry is impossible", structure="superblock", daddr=0,
                               found=f"{bad[0]} = {bad[1]}")
        buf = dev.pread(0, sb.sb_sectsize, "superblock")
        check_crc(buf, f.XFS_SB_CRC_OFF, "superblock", 0)
        unknown = sb.sb_features_incompat & ~(f.XFS_SB_FEAT_INCOMPAT_KNOWN | f.XFS_SB_FEAT_INCOMPAT_ZONED
                                              | f.XFS_SB_FEAT_INCOMPAT_ZONE_GAPS)
        if unknown:
            named = [n for b, n in f.XFS_SB_FEAT_INCOMPAT.items() if unknown & b]
            raise UnsupportedError(
                f"incompatible feature bits {unknown:#x}{' (' + ', '.join(named) + ')' if named else ''} "
                "are not supported", structure="superblock", daddr=0)
        if sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR and not allow_needsrepair:
            raise UnsupportedError(
                "the filesystem is marked NEEDSREPAIR (known inconsistent): run xfs_repair first",
                structure="superblock", daddr=0)
        if sb.sb_inprogress:
            raise UnsupportedError("mkfs did not finish on this filesystem (sb_inprogress)",
                                   structure="superblock", daddr=0)
        ro_unknown = sb.sb_features_ro_compat & ~sum(f.XFS_SB_FEAT_RO_COMPAT)
        if ro_unknown:
            self.warnings.append(f"unknown read-only-compatible feature bits {ro_unknown:#x}: reading anyway")
        if sb.sb_features_log_incompat:
            self.warnings.append("the log holds features in use (sb_features_log_incompat): the log may be dirty")
        return sb

    # --- AG headers ---
    @property
    def readable_agcount(self) -> int:
        """AGs whose headers lie within the device (a truncated image or a lying superblock has fewer)."""
        geo = self.geo
        n = min(geo.agcount, -(-self.dev.size // (geo.agblocks << geo.blocklog)))
        while n and geo.ag_header_byte(n - 1, 4) > self.dev.size:
            n -= 1
        return n

    def ag(self, agno: int) -> AgHeaders:
        return AgHeaders(agno, self.agf(agno), self.agi(agno))

    def agf(self, agno: int):
        """AG agno's free-space header (read once): the roots of bnobt, cntbt, rmapbt, refcountbt."""
        if agno not in self._agf:
            self._agf[agno] = self._read_agf(agno)
        return self._agf[agno]

    def agi(self, agno: int):
        """AG agno's inode header (read once): the roots of inobt and finobt, the unlinked lists."""
        if agno not in self._agi:
            self._agi[agno] = self._read_agi(agno)
        return self._agi[agno]

    def _read_header(self, agno: int, sector: int, decl, magic: int, crc_off: int, structure: str):
        geo = self.geo
        byte = geo.ag_header_byte(agno, sector)
        daddr = geo.byte_to_daddr(byte)
        buf = self.dev.pread(byte, geo.sectsize, f"{structure} of AG {agno}")
        hdr = decl.parse(buf)
        where = f"{structure} of AG {agno}"
        check_magic(buf_be32(buf), magic, where, daddr)
        check_crc(buf, crc_off, where, daddr)
        return hdr, buf, daddr

    def _read_agf(self, agno: int):
        agf, _, daddr = self._read_header(agno, 1, f.XFS_AGF, f.XFS_AGF_MAGIC, f.XFS_AGF_CRC_OFF, "AGF")
        where = f"AGF of AG {agno}"
        check_field(agf.agf_seqno == agno, "agf_seqno", where, daddr, agno, agf.agf_seqno)
        check_field(agf.agf_length == self.geo.ag_length(agno), "agf_length", where, daddr,
                    self.geo.ag_length(agno), agf.agf_length)
        check_field(agf.agf_uuid == self.meta_uuid, "agf_uuid", where, daddr,
                    str(uuidlib.UUID(bytes=self.meta_uuid)), str(uuidlib.UUID(bytes=agf.agf_uuid)))
        return agf

    def _read_agi(self, agno: int):
        agi, _, daddr = self._read_header(agno, 2, f.XFS_AGI, f.XFS_AGI_MAGIC, f.XFS_AGI_CRC_OFF, "AGI")
        where = f"AGI of AG {agno}"
        check_field(agi.agi_seqno == agno, "agi_seqno", where, daddr, agno, agi.agi_seqno)
        check_field(agi.agi_uuid == self.meta_uuid, "agi_uuid", where, daddr,
                    str(uuidlib.UUID(bytes=self.meta_uuid)), str(uuidlib.UUID(bytes=agi.agi_uuid)))
        return agi

    def agfl(self, agno: int) -> list[int]:
        """The agbnos on AG agno's free list, in list order (circular from agf_flfirst)."""
        geo = self.geo
        agf = self.agf(agno)
        _, buf, daddr = self._read_header(agno, 3, f.XFS_AGFL, f.XFS_AGFL_MAGIC, f.XFS_AGFL_CRC_OFF, "AGFL")
        nslots = (geo.sectsize - f.XFS_AGFL_BNO_OFF) // 4
        if agf.agf_flcount > nslots or agf.agf_flfirst >= nslots:
            raise CorruptError("free list indices out of range", structure=f"AGF of AG {agno}",
                               daddr=geo.byte_to_daddr(geo.ag_header_byte(agno, 1)),
                               found=f"flfirst {agf.agf_flfirst} flcount {agf.agf_flcount} of {nslots} slots")
        out = []
        for i in range(agf.agf_flcount):
            slot = (agf.agf_flfirst + i) % nslots
            out.append(int.from_bytes(buf[f.XFS_AGFL_BNO_OFF + 4 * slot: f.XFS_AGFL_BNO_OFF + 4 * slot + 4], "big"))
        return out

    # --- verified metadata blocks ---
    def read_fs_blocks(self, agno: int, agbno: int, count: int, what: str) -> bytes:
        return self.dev.pread(self.geo.ag_to_byte(agno, agbno), count << self.geo.blocklog, what)

    def node_cache_get(self, key):
        node = self._nodes.get(key)
        if node is not None:
            self._nodes.move_to_end(key)
        return node

    VERIFIED_MAX = 1 << 16  # blocks whose records were checked, by CRC: a block read again is not rechecked
    # (about 240 bytes each: bounded so that a dump, which reads every block once, stays in flat memory)

    def remember_verified(self, key, crc: bytes, last: int) -> None:
        if len(self.verified) >= self.VERIFIED_MAX:
            self.verified.clear()
        self.verified[key] = (crc, last)

    def node_cache_put(self, key, node) -> None:
        self._nodes[key] = node
        if len(self._nodes) > self.NODE_CACHE:
            self._nodes.popitem(last=False)


def buf_be32(buf: bytes, off: int = 0) -> int:
    return int.from_bytes(buf[off:off + 4], "big")


def filesystem_info(fs: XfsFilesystem) -> dict:
    """The `filesystem` object of the JSON contract: plain values, bytes for sizes."""
    sb, geo = fs.sb, fs.geo
    info = {
        "type": "xfs",
        "uuid": str(fs.uuid),
        "label": fs.label,
        "block_size": geo.blocksize,
        "sector_size": geo.sectsize,
        "inode_size": geo.inodesize,
        "size": geo.size,
        "ag_count": geo.agcount,
        "ag_size": geo.agblocks << geo.blocklog,
        "log": _log_info(fs),
        "features": fs.feature_names(),
        "device_size": fs.dev.size,
    }
    live = getattr(fs, "live", None)  # mounted here and answered by the running kernel (fsdaxctl.live)
    if live is not None:
        info["mount"] = _mount_info(live)
    rep = getattr(fs, "replay", None)  # the log replayed in memory (fsdaxctl.xfs.logrecover)
    if rep is not None and isinstance(info.get("log"), dict):
        info["log"].update(rep.json())
    if getattr(fs.dev, "start", 0):  # inside a partition or a namespace's data area: where, in TARGET's bytes
        info["target_offset"] = fs.dev.start
    if sb.sb_rblocks:
        info["realtime"] = _rt_info(fs)
    return info


def _rt_info(fs: XfsFilesystem) -> dict:
    """The realtime section: where (a device of its own, or inside the data device from sb_rtstart), how big,
    its extent size and groups (rtgroups, zoned: one group a zone; zone gaps)."""
    from fsdaxctl.xfs.rt import group_blocks, group_stride, has_rtgroups, rt_device_end

    sb, bl = fs.sb, fs.geo.blocklog
    internal = bool(sb.sb_rtstart)
    out = {"internal": internal, "offset": sb.sb_rtstart << bl, "length": sb.sb_rblocks << bl,
           "end": rt_device_end(sb), "extent_size": sb.sb_rextsize << bl,
           "zoned": bool(sb.sb_features_incompat & f.XFS_SB_FEAT_INCOMPAT_ZONED)}
    if has_rtgroups(fs):
        out.update(groups=sb.sb_rgcount, group_size=group_blocks(sb) << bl, group_stride=group_stride(sb) << bl)
    rtdev = getattr(fs, "rtdev", None)
    if rtdev is not None and not internal:
        out["device"] = rtdev.path
    return out


def _log_info(fs: XfsFilesystem) -> dict:
    sb, geo = fs.sb, fs.geo
    if fs.log_problem:
        return {"internal": bool(sb.sb_logstart), "error": fs.log_problem}
    if sb.sb_logstart:
        return {"internal": True, "offset": geo.fsb_to_byte(sb.sb_logstart), "length": sb.sb_logblocks << geo.blocklog}
    return {"internal": False, "length": sb.sb_logblocks << geo.blocklog}


def _mount_info(live) -> dict:
    """Where it is mounted, and the geometry its kernel reports (XFS_IOC_FSGEOMETRY)."""
    from fsdaxctl.live.fsmap import LiveError, fsgeometry

    out = {"point": live.mount_point, "device": live.device, "read_only": live.read_only, "answered_by": "kernel"}
    try:
        g = fsgeometry(live.mount_point)
        out["kernel_geometry"] = {k: g[k] for k in ("blocksize", "agcount", "agblocks", "datablocks", "logblocks",
                                                    "sectsize", "inodesize")}
    except LiveError as e:
        out["kernel_geometry_error"] = str(e)
    return out
