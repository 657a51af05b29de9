"""Kernel log text: the lines that say where damage is, from dmesg, journalctl -k, kern.log or /dev/kmsg.

One anchored regex strips what the log tools put before a message (priority, /dev/kmsg header, timestamp,
syslog host and identifier, caller id); a second, an alternation with one branch per kernel message, is then
matched at the message start. Every branch quotes its format string and source file (Linux 6.12, checked
against lines logged by Linux 6.18 where the machine could produce them; older variants are noted). Lines that
are not damage reports are counted in `ignored`; reports that cannot be used go to `skipped` with the reason.
Identical extents (or inodes) from several lines are kept once, with the first line as their origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import InodeRef, Parsed
from fsdaxctl.inputs.badblocks import finish, numbered_lines
from fsdaxctl.stack import BLOCK, FS, PHYS, REGION, Extent, Space
from fsdaxctl.units import MAX_BYTES, PAGE_SIZE, SECTOR  # PAGE_SIZE: what a pfn counts in, what memory_failure poisons

# What the log tools put before the kernel's own text; every part optional, in the order they nest.
_PREFIX = re.compile(r"""
    (?:<\d{1,3}>)?                                  # "<3>": console level (dmesg -r, serial console)
    (?:\d{1,3},\d+,\d+,[^;]*;)?                     # /dev/kmsg record: "pri,seq,usec,flags[,...];"
    (?:[a-z]+\s*:[a-z]+\s*:\ )?                      # dmesg -x: "kern  :err   : "
    (?:
        # dmesg's own timestamps, then (journalctl -o short-monotonic) maybe "HOST kernel: "
        (?: \[\s*\d+\.\d+(?:\s*<\s*[\d.]+>)?\]\ ?                                  # "[ 1234.567890]", -d
          | \[[A-Z][a-z]{2}\ [A-Z][a-z]{2}\ [\ \d]\d\ \d\d:\d\d:\d\d\ \d{4}\]\ ?   # -T
          | \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d+[+-]\d\d:\d\d\ )                   # --time-format iso (a comma)
        (?:\S+\ kernel:\ ?)?
        # or a syslog / journal header "DATE HOST IDENT[PID]: ", then maybe the kernel's own "[ 1234.567890] "
      | (?: [A-Z][a-z]{2}\ [\ \d]\d\ \d\d:\d\d:\d\d(?:\.\d+)?                      # "Nov 24 12:34:56[.123456]"
          | \d{4}-\d\d-\d\d[T\ ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?      # RFC 3339, short-iso
          | [A-Z][a-z]{2}\ \d{4}-\d\d-\d\d\ \d\d:\d\d:\d\d\ [A-Z]+                # short-full
          | \d{9,}\.\d+ )                                                        # short-unix
        \ \S+\ (?P<ident>[^\s:\[]+)(?:\[\d+\])?:\ ?
        (?:<\d{1,3}>)?(?:\[\s*\d+\.\d+\]\ ?)?
    )?
    (?:\[\s*[TC]\d+\]\ ?)?                           # CONFIG_PRINTK_CALLER: "[  T123] "
""", re.X)

_TOKEN = r"[^\s,()]+"  # a number as printed, validated by the handler (so "0x10" is never read as "0")
_HEX = r"0x[^\s,()]+"

# One branch per message; the outer group names the handler (m.lastgroup).
_MSG = re.compile(rf"""
    # mm/memory-failure.c: #define pr_fmt(fmt) "Memory failure: " fmt; every message about a page starts
    # "%#lx: " (a pfn; C prints 0 as "0"), e.g. action_result(): "%#lx: recovery action for %s: %s\n",
    # kill_proc(): "%#lx: Sending SIGBUS to %s:%d due to hardware memory corruption\n". Before pr_fmt
    # (Linux <= 4.x) the prefix was "MCE %#lx: ", as in "MCE %#lx: %s page recovery: %s\n".
    # memory_failure_queue(): "buffer overflow when queuing memory failure at %#lx\n" (a failed page whose
    # handling was dropped) names one too.
    (?P<mf>(?:Memory\ failure:\ (?:buffer\ overflow\ when\ queuing\ memory\ failure\ at\ )?|MCE\ )
        (?P<mf_pfn>0x[0-9a-fA-F]+|0)(?:[:\ ]|$))
    # arch/x86/kernel/cpu/mce/core.c kill_me_maybe(), pr_fmt "mce: " (internal.h):
    #   "Uncorrected hardware memory error in user-access at %llx" (a physical byte address, no 0x)
  | (?P<mce>mce:\ Uncorrected\ hardware\ memory\ error\ in\ user-access\ at\ (?P<mce_addr>{_TOKEN}))
    # drivers/acpi/apei/ghes.c __ghes_print_estatus(): pfx "{{%u}}" HW_ERR ("[Hardware Error]: "), then
    # drivers/firmware/efi/cper.c: cper_estatus_print() "%s""event severity: %s\n", cper_estatus_print_section()
    # "%s""Error %d, type: %s\n", cper_print_mem() "%s""physical_address: 0x%016llx\n"
  | (?P<ghes>(?:\{{(?P<g_seq>\d+)\}})?\[Hardware\ Error\]:\s+
        (?:physical_address:\ (?P<g_pa>{_TOKEN})
          |event\ severity:\ (?P<g_sev>\w+)
          |Error\ \d+,\ type:\ (?P<g_sec>\w+)))
    # block/blk-mq.c blk_print_req_error() (print_req_error() in blk-core.c before):
    #   "%s error, dev %s, sector %llu op 0x%x:(%s) flags 0x%x phys_seg %u prio class %u\n"
    # with the blk_errors[] name of the status; older kernels put the function first and stop after the
    # sector: "end_request: %s error, dev %s, sector %llu", "blk_update_request: ...", "print_req_error: ...".
  | (?P<blk>(?:\w+:\ )?(?P<b_kind>[A-Za-z][A-Za-z/\ ]*?)\ error,\ dev\ (?P<b_dev>[^,\s]+),
        \ sector\ (?P<b_sector>{_TOKEN}))
    # fs/buffer.c buffer_io_error(): "Buffer I/O error on dev %pg, logical block %llu%s\n" (a partition's own
    # block number, in the block device's soft block size); 2.6 kernels said "on device %s".
  | (?P<bh>Buffer\ I/O\ error\ on\ dev(?:ice)?\ (?P<bh_dev>[^,\s]+),\ logical\ block\ (?P<bh_block>{_TOKEN}))
    # fs/iomap/buffered-io.c iomap_finish_ioend(): "%s: writeback error on inode %lu, offset %lld, sector %llu"
    # (s_id: the filesystem's device; io_sector counts from its start)
  | (?P<wb>(?P<wb_dev>[^\s:]+):\ writeback\ error\ on\ inode\ (?P<wb_ino>{_TOKEN}),\ offset\ {_TOKEN},
        \ sector\ (?P<wb_sector>{_TOKEN}))
    # fs/xfs/xfs_message.c __xfs_printk(): "%sXFS (%s): %pV\n" (s_id); the rest goes to _XFS below
  | (?P<xfs>XFS\ \((?P<x_dev>[^)\s]+)\):\ )
    # libnvdimm, dev_printk prefix "%s %s: " (driver, device) -- drivers/nvdimm/badrange.c set_badblock():
    #   dev_dbg "Found a bad range (0x%llx, 0x%llx)\n" (s * 512, num * 512: byte offset and length from the
    #   start of the badblocks instance's device, NOT physical addresses), dev_info_once "%s: failed for sector
    #   %llx\n" (__func__ = set_badblock, the kernel's list was full); drivers/nvdimm/pfn_devs.c
    #   nd_pfn_clear_memmap_errors(): dev_dbg "meta: %x badblocks at %llx\n" (region sectors)
  | (?P<nd>\S+\ (?P<nd_dev>region\d+|(?:namespace|pfn)\d+\.\d+):\ (?:
        Found\ a\ bad\ range\ \((?P<nd_start>{_HEX}),\ (?P<nd_len>{_HEX})\)
      | set_badblock:\ failed\ for\ sector\ (?P<nd_sector>{_TOKEN})
      | meta:\ (?P<nd_mcount>{_TOKEN})\ badblocks\ at\ (?P<nd_msector>{_TOKEN})))
""", re.X)

_XFS = re.compile(rf"""
    # fs/xfs/xfs_buf.c xfs_buf_ioerror_alert(): "metadata I/O error in \"%pS\" at daddr 0x%llx len %d error %d"
    # (len in 512-byte basic blocks); older kernels: "metadata I/O error: block 0x%llx (\"%s\") error %d
    # numblks %d" (basic blocks), and before xfs_buf had b_length: "... error %d buf count %zd" (bytes).
    (?P<x_io>metadata\ I/O\ error\ in\ "[^"]*"\ at\ daddr\ (?P<xi_daddr>{_HEX})\ len\ (?P<xi_len>{_TOKEN}))
  | (?P<x_io_old>metadata\ I/O\ error:\ block\ (?P<xo_daddr>{_HEX})\ \("[^"]*"\)\ error\ -?\d+
        \ (?:numblks\ (?P<xo_bb>{_TOKEN})|buf\ count\ (?P<xo_bytes>{_TOKEN})))
    # fs/xfs/xfs_error.c xfs_buf_verifier_error(): "Metadata %s detected at %pS, %s block 0x%llx %s" (%s =
    # "CRC error" or "corruption"; then b_ops->name, the buffer's daddr, a caller name or ""), and
    # xfs_buf_corruption_error(): "Metadata corruption detected at %pS, %s block 0x%llx"; 3.x had no ops name.
  | (?P<x_verify>Metadata\ (?:CRC\ error|corruption)\ detected\ at\ .+?,
        \ (?:(?P<xv_ops>\S+)\ )?block\ (?P<xv_daddr>{_HEX})(?:\ |$))
    # xfs_error.c xfs_inode_verifier_error(): "Metadata %s detected at %pS, inode 0x%llx %s"
  | (?P<x_inode>Metadata\ (?:CRC\ error|corruption)\ detected\ at\ .+?,\ inode\ (?P<xn_ino>{_HEX})(?:\ |$))
    # xfs_mount.c xfs_mountfs(): "Failed to read root inode 0x%llx, error %d" (seen here on a poisoned copy)
  | (?P<x_root>Failed\ to\ read\ root\ inode\ (?P<xr_ino>{_HEX}),\ error)
    # xfs_buf.c xfs_buftarg_drain(): "Corruption Alert: Buffer at daddr 0x%llx had permanent write failures!"
  | (?P<x_alert>Corruption\ Alert:\ Buffer\ at\ daddr\ (?P<xa_daddr>{_HEX})\ had\ permanent\ write\ failures)
    # xfs_log_recover.c xlog_do_io(): "log recovery %s I/O error at daddr 0x%llx len %d error %d" -- the
    # "daddr" there is a block of the log (blk_no), added to l_logBBstart only for the I/O itself
  | (?P<x_logio>log\ recovery\ (?:read|write)\ I/O\ error\ at\ daddr\ (?P<xl_daddr>{_HEX}))
    # libxfs/xfs_inode_fork.c: "corrupt inode %llu ((a)extents = %llu).", "corrupt inode %llu (btree).",
    # "corrupt inode %llu (bad size %d for local fork, size = %zd)."; libxfs/xfs_bmap.c: "corrupt dinode %llu,
    # (btree extents)."; xfs_iomap.c xfs_alert_fsblock_zero(): "Access to block zero in inode %llu ...";
    # libxfs/xfs_btree.c: "Inode %llu fork %d: Corrupt %sbt pointer at level %d index %d."
  | (?P<x_ino_dec>(?:corrupt\ d?inode|Access\ to\ block\ zero\ in\ inode)\ (?P<xd_ino>[^\s,()]+?)[,.]?(?:\ |$)
      | Inode\ (?P<xb_ino>{_TOKEN})\ fork\ \d+:\ Corrupt\ \w*bt\ pointer)
""", re.X)

# Words that mark a damage report; a line holding one that matched no branch is reported, not ignored.
_HINT = re.compile(r"Memory failure: 0|Failed to read root inode|"
                   r"error, dev |Buffer I/O error on |metadata I/O error|Metadata (?:CRC error|"
                   r"corruption) detected at|Found a bad range|physical_address: |hardware memory error in user|"
                   r"writeback error on inode")

# block/blk-core.c blk_errors[]: which statuses say the medium is bad at that sector.
#   "critical medium"  BLK_STS_MEDIUM (-ENODATA): SCSI MEDIUM ERROR sense, NVMe unrecovered read error
#   "protection"       BLK_STS_PROTECTION (-EILSEQ): T10 PI guard/ref tag check failed: the data stored at that
#                      sector does not match its checksum, i.e. it is damaged wherever that happened
#   "I/O"              BLK_STS_IOERR (-EIO): the catch-all, which is what most drivers (and loop, virtio) report
#                      for unreadable sectors; cause not stated
# Not damage at a place: timeout, recoverable transport, critical target, reservation conflict / critical
# nexus, critical space allocation, kernel/device resource, nonblocking retry, device offline, dm internal
# retry, zone limits, duration limit, invalid, operation not supported: they say the path, the queue or the
# request failed, not that the medium at that sector is bad.
_BLK_DAMAGE = {
    "critical medium": "critical medium error (BLK_STS_MEDIUM)",
    "protection": "protection information check failed (BLK_STS_PROTECTION)",
    "I/O": "I/O error (BLK_STS_IOERR, cause not stated)",
}

_NS_NAME = re.compile(r"namespace(\d+)\.(\d+)")
_DEC = re.compile(r"\d+")
_HEXNUM = re.compile(r"0[xX][0-9a-fA-F]+")
_BARE_HEX = re.compile(r"[0-9a-fA-F]+")


def _dec(text: str) -> int | str:
    if _DEC.fullmatch(text):
        return int(text) if len(text) <= 40 else f"number too large ({len(text)} digits)"
    if text.startswith("-") and _DEC.fullmatch(text[1:]):
        return f"negative: {text}"
    return f"{text[:30]!r} is not a decimal number"


def _hex(text: str, prefixed: bool = True) -> int | str:
    if (_HEXNUM if prefixed else _BARE_HEX).fullmatch(text):
        return int(text, 16)
    if text.startswith("-"):
        return f"negative: {text}"
    return f"{text[:30]!r} is not a hex number"


class _Kmsg:
    def __init__(self, name: str, buffer_block_size: int):
        self.name = name
        self.bbs = buffer_block_size
        self.out = Parsed()
        self.seen: set = set()
        self.ghes: dict[str | None, str] = {}  # record seq -> severity last printed for it
        self.used = 0
        self.n = 0  # the line being read: its extents carry its number (input order)

    def skip(self, where: str, why: str) -> None:
        self.out.skipped.append((where, why))

    def extent(self, where: str, space: Space, offset: int | str, count: int | str, unit: int, note: str) -> None:
        """`count` units of `unit` bytes from unit `offset` (either may be the reason it is not a number)."""
        for v in (offset, count):
            if isinstance(v, str):
                self.skip(where, v)
                return
        if count == 0:
            self.skip(where, "zero length")
            return
        start, length = offset * unit, count * unit
        if start + length > MAX_BYTES:
            self.skip(where, "past the largest device offset (2^63 - 1 bytes)")
            return
        self.used += 1
        key = (space, start, length)
        if key not in self.seen:
            self.seen.add(key)
            self.out.extents.append(Extent(space, start, length, where, note, self.name, self.n))

    def page(self, where: str, addr: int | str, note: str) -> None:
        if isinstance(addr, str):
            self.skip(where, addr)
            return
        self.extent(where, Space(PHYS), addr // PAGE_SIZE, 1, PAGE_SIZE, note)

    def inode(self, where: str, dev: str, ino: int | str, note: str) -> None:
        if isinstance(ino, str):
            self.skip(where, ino)
            return
        self.used += 1
        key = ("inode", dev, ino)
        if key not in self.seen:
            self.seen.add(key)
            self.out.inodes.append(InodeRef(ino, where, f"XFS ({dev}): {note}", self.name, self.n))

    # -- one line ---------------------------------------------------------------------------------------------
    def line(self, n: int, text: str) -> None:
        p = _PREFIX.match(text)
        ident = p["ident"]
        if ident is not None and ident != "kernel":
            self.out.ignored += 1  # another program's line in a syslog file
            return
        m = _MSG.match(text, p.end())
        where = f"{self.name} line {n}"
        self.n = n
        if m is None:
            if _HINT.search(text, p.end()):
                self.skip(where, "looks like a damage report, but not in a format this parser knows (cut short?)")
            else:
                self.out.ignored += 1
            return
        getattr(self, "_" + m.lastgroup)(m, where, text)

    def _mf(self, m, where, text):
        pfn = m["mf_pfn"]
        value = _hex(pfn) if pfn != "0" else 0
        if isinstance(value, str):
            self.skip(where, value)
            return
        self.extent(where, Space(PHYS), value, 1, PAGE_SIZE, f"Memory failure: pfn {pfn}, one {PAGE_SIZE}-byte page")

    def _mce(self, m, where, text):
        addr = _hex(m["mce_addr"], prefixed=False)
        self.page(where, addr, f"mce: uncorrected memory error at physical address {m['mce_addr']}: "
                               f"the whole {PAGE_SIZE}-byte page holding it")

    def _ghes(self, m, where, text):
        seq = m["g_seq"]
        sev = m["g_sev"] or m["g_sec"]
        if sev is not None:
            self.ghes[seq] = sev
            self.out.ignored += 1
            return
        sev = self.ghes.get(seq)
        if sev == "corrected":
            self.out.ignored += 1  # corrected by the hardware: nothing was lost
            return
        pa = m["g_pa"]
        self.page(where, _hex(pa), f"GHES memory error ({f'severity {sev}' if sev else 'severity not in the log'})"
                                   f" at physical address {pa}: the whole {PAGE_SIZE}-byte page holding it")

    def _blk(self, m, where, text):
        kind, dev = m["b_kind"], m["b_dev"]
        what = _BLK_DAMAGE.get(kind)
        if what is None:
            self.skip(where, f"'{kind} error' is not damage at a sector (block/blk-core.c blk_errors)")
            return
        if dev == "?":
            self.skip(where, "the request had no disk (dev ?)")
            return
        sector = _dec(m["b_sector"])
        self.extent(where, Space(BLOCK, dev), sector, 1, SECTOR,
                    f"{what} at sector {m['b_sector']}; the message gives no length: one sector assumed")

    def _bh(self, m, where, text):
        block = _dec(m["bh_block"])
        self.extent(where, Space(BLOCK, m["bh_dev"]), block, 1, self.bbs,
                    f"Buffer I/O error at logical block {m['bh_block']}; the message gives no block size: "
                    f"{self.bbs} bytes assumed")

    def _wb(self, m, where, text):
        self.extent(where, Space(FS, m["wb_dev"]), _dec(m["wb_sector"]), 1, SECTOR,
                    f"writeback error on inode {m['wb_ino']} at sector {m['wb_sector']} (a write that did not "
                    "reach the disk); no length given: one sector assumed")

    def _nd(self, m, where, text):
        dev = m["nd_dev"]
        # drivers/nvdimm: "region%d", "namespace%d.%d", "pfn%d.%d" all carry the region id first
        # (region_devs.c, namespace_devs.c, pfn_devs.c dev_set_name)
        region = "region" + re.match(r"[a-z]+(\d+)", dev)[1]
        if m["nd_msector"] is not None:
            self.extent(where, Space(REGION, region), _hex(m["nd_msector"], False), _hex(m["nd_mcount"], False),
                        SECTOR, f"{dev}: bad sectors in the pfn metadata (struct page) area, {region} sector "
                                f"{m['nd_msector']} (hex), {m['nd_mcount']} (hex) sectors")
            return
        if dev.startswith("pfn"):
            self.skip(where, f"counts from the start of {dev}'s block device, which the line does not name")
            return
        if dev.startswith("region"):
            space, what = Space(REGION, dev), dev
        else:
            # a raw-mode namespace: its badblocks count from the namespace start = /dev/pmemX[.Y]'s start
            # (namespace_devs.c nvdimm_namespace_disk_name: "pmem%d" for id 0, else "pmem%d.%d")
            r, i = _NS_NAME.fullmatch(dev).groups()
            disk = f"pmem{r}" if i == "0" else f"pmem{r}.{i}"
            space, what = Space(BLOCK, disk), f"{dev} = /dev/{disk}"
        if m["nd_sector"] is not None:
            self.extent(where, space, _hex(m["nd_sector"], False), 1, SECTOR,
                        f"libnvdimm could not record bad sector {m['nd_sector']} (hex) of {what}: its list was full")
            return
        start, length = _hex(m["nd_start"]), _hex(m["nd_len"])
        for v in (start, length):
            if isinstance(v, str):
                self.skip(where, v)
                return
        if start % SECTOR or length % SECTOR:
            self.skip(where, "not whole sectors: set_badblock prints sector * 512 and count * 512")
            return
        self.extent(where, space, start // SECTOR, length // SECTOR, SECTOR,
                    f"libnvdimm bad range bytes {m['nd_start']} + {m['nd_len']} of {what}")

    def _xfs(self, m, where, text):
        dev = m["x_dev"]
        x = _XFS.match(text, m.end())
        if x is None:
            if _HINT.search(text, m.end()):
                self.skip(where, "looks like an XFS damage report, but not in a format this parser knows")
            else:
                self.out.ignored += 1  # mount, unmount, shutdown and hex-dump lines: no location
            return
        fs = Space(FS, dev)
        kind = x.lastgroup
        if kind == "x_io":
            self.extent(where, fs, _hex(x["xi_daddr"]), _dec(x["xi_len"]), SECTOR,
                        f"XFS metadata I/O error at daddr {x['xi_daddr']}, {x['xi_len']} basic blocks")
        elif kind == "x_io_old":
            daddr = _hex(x["xo_daddr"])
            if x["xo_bb"] is not None:
                self.extent(where, fs, daddr, _dec(x["xo_bb"]), SECTOR,
                            f"XFS metadata I/O error at block {x['xo_daddr']}, {x['xo_bb']} basic blocks")
            else:
                nbytes = _dec(x["xo_bytes"])
                count = nbytes if isinstance(nbytes, str) else -(-nbytes // SECTOR)
                self.extent(where, fs, daddr, count, SECTOR,
                            f"XFS metadata I/O error at block {x['xo_daddr']}, {x['xo_bytes']} bytes")
        elif kind == "x_verify":
            ops = x["xv_ops"]
            self.extent(where, fs, _hex(x["xv_daddr"]), 1, SECTOR,
                        f"XFS verifier: {ops + ' ' if ops else ''}block at daddr {x['xv_daddr']}; the message gives "
                        "the buffer's first sector only")
        elif kind == "x_alert":
            self.extent(where, fs, _hex(x["xa_daddr"]), 1, SECTOR,
                        f"XFS: buffer at daddr {x['xa_daddr']} had permanent write failures; no length given: "
                        "its first sector")
        elif kind == "x_inode":
            self.inode(where, dev, _hex(x["xn_ino"]), f"inode verifier error, inode {x['xn_ino']}")
        elif kind == "x_root":
            self.inode(where, dev, _hex(x["xr_ino"]), f"the root inode {x['xr_ino']} could not be read")
        elif kind == "x_logio":
            self.skip(where, f"log block {x['xl_daddr']} counts from the start of the log, which the message does "
                             "not give (the superblock's logstart does)")
        else:  # x_ino_dec
            ino = x["xd_ino"] or x["xb_ino"]
            self.inode(where, dev, _dec(ino), f"corrupt inode {ino}")


def parse_kmsg(lines: Iterable[str | bytes], name: str, buffer_block_size: int = 4096) -> Parsed:
    """Damage reports in kernel log text, one line at a time. `buffer_block_size` is the block size assumed
    for "Buffer I/O error ... logical block N": the block device's soft block size, which block/bdev.c
    set_init_blocksize() makes 4096 for a device whose size is a multiple of 4 KiB (a read through the device's
    page cache), or the block size a filesystem set for its own buffers (ext4's, not XFS's: XFS has none)."""
    if not isinstance(buffer_block_size, int) or buffer_block_size < 512 or buffer_block_size & (buffer_block_size - 1):
        raise UsageError(f"buffer block size {buffer_block_size!r} is not a power of two of at least 512")
    k = _Kmsg(name, buffer_block_size)
    for n, text, _ in numbered_lines(lines, name, k.out, strict_text=False):
        k.line(n, text)
    return finish(k.out, name, k.used)
