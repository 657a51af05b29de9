"""Partition tables (GPT, and MBR with its chain of EBRs) read from a disk, the way the kernel reads them.

The table is read as block/partitions/efi.c, msdos.c and core.c read it, so the partitions, their numbers and
their sizes are the ones the kernel would have given the machine, and every place where the kernel would have
done something else (used no GPT at all, skipped or cut a partition) is said in a warning. Damage the kernel
cannot read past is a CorruptError naming the structure.

Reading is the caller's `read(offset, length, what)` (Device.pread or Window.pread); the result is a
fsdaxctl.stack.partition.PartitionTable, from which the pure PartitionLayer is built. Units: the table counts
logical sectors (512 or 4096 bytes); everything here is in bytes.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, replace
from typing import Callable

from fsdaxctl.errors import CorruptError, TruncatedError, UsageError
from fsdaxctl.parsers import partition as f
from fsdaxctl.stack.partition import Partition, PartitionTable
from fsdaxctl.units import SECTOR

DISK_MAX_PARTS = 256  # include/linux/blkdev.h: partition numbers 1..255 (core.c allocate_partitions, state->limit)
KMALLOC_MAX_SIZE = 4 << 20  # the largest GPT entry array is_gpt_valid() accepts (x86-64, 4 KiB pages)
EBR_EMPTY_LINKS = 100  # msdos.c parse_extended(): links followed without finding a logical partition
MAX_OVERLAP_WARNINGS = 8
NULL_GUID = bytes(16)


class _Reader:
    """read() that answers None for bytes past the end of the disk, so a short image is a finding, not a crash."""

    def __init__(self, read: Callable[[int, int, str], bytes], size: int):
        self.read, self.size = read, size

    def get(self, offset: int, length: int, what: str) -> bytes | None:
        if offset < 0 or offset + length > self.size:
            return None
        try:
            return self.read(offset, length, what)
        except TruncatedError:
            return None


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))  # EFI GUIDs: the first three fields little-endian


def _utf16_name(raw: bytes) -> str:
    return raw.decode("utf-16-le", "replace").split("\x00", 1)[0]


def _put(table: PartitionTable, p: Partition) -> None:
    """core.c blk_add_partition(): a partition starting past the end of the disk is ignored, one running past
    it is cut at the end (capacity counts 512-byte sectors)."""
    capacity = table.size - table.size % SECTOR
    if p.size <= 0:
        return
    if p.start >= capacity:
        table.ignored.append((p, "starts past the end of the disk"))
        table.warnings.append(f"partition {p.number} starts at byte {p.start}, past the end of the disk "
                              f"({table.size} bytes): ignored, as the kernel does")
        return
    if p.end > capacity:
        table.warnings.append(f"partition {p.number} (bytes {p.start}+{p.size}) runs past the end of the disk "
                              f"({table.size} bytes): cut to {capacity - p.start} bytes, as the kernel does")
        p = replace(p, size=capacity - p.start)
    table.partitions.append(p)


def _reserve(table: PartitionTable, start: int, size: int, what: str) -> None:
    end = min(start + size, table.size)
    if 0 <= start < end:
        table.reserved.append((start, end - start, what))


# --- GPT ---------------------------------------------------------------------------------------------------

@dataclass
class _Gpt:
    lba: int
    hdr: object  # construct Container of f.gpt_header
    entries: bytes


def _is_gpt_valid(rd: _Reader, lba: int, ss: int, last_lba: int) -> tuple[_Gpt | None, str]:
    """efi.c is_gpt_valid(): the header at `lba` and its entry array, or None and why not.

    One check is soft: usable LBAs past the end of the disk fail the kernel's test, but leave the table readable
    (a truncated image, a shrunk disk): then the _Gpt comes back *with* the reason, for the caller to decide.
    """
    if lba > last_lba:
        return None, f"LBA {lba} is past the end of the disk (last LBA {last_lba}): is the image truncated?"
    raw = rd.get(lba * ss, ss, f"GPT header (LBA {lba})")
    if raw is None:
        return None, "cannot be read: past the end of the disk"
    if raw[:8] != f.GPT_HEADER_SIGNATURE:
        return None, "no 'EFI PART' signature"
    h = f.gpt_header.parse(raw)
    if h.header_size > ss:
        return None, f"header_size {h.header_size} is larger than a sector ({ss} bytes)"
    if h.header_size < f.GPT_HEADER_SIZE:
        return None, f"header_size {h.header_size} is smaller than the header ({f.GPT_HEADER_SIZE} bytes)"
    buf = bytearray(raw[:h.header_size])
    buf[f.GPT_HEADER_CRC_OFF:f.GPT_HEADER_CRC_OFF + 4] = bytes(4)
    crc = zlib.crc32(buf)  # EFI's CRC-32 is the standard (zlib) one: seed ~0, final xor ~0
    if crc != h.header_crc32:
        return None, f"bad header CRC (computed {crc:#010x}, stored {h.header_crc32:#010x})"
    if h.my_lba != lba:
        return None, f"my_lba is {h.my_lba} but the header is at LBA {lba}"
    soft = ""
    if h.first_usable_lba > last_lba or h.last_usable_lba > last_lba:
        soft = (f"usable LBAs {h.first_usable_lba}..{h.last_usable_lba} run past the end of the disk "
                f"(last LBA {last_lba})")
    if h.last_usable_lba < h.first_usable_lba:
        return None, f"last_usable_lba {h.last_usable_lba} < first_usable_lba {h.first_usable_lba}"
    if h.sizeof_partition_entry != f.GPT_ENTRY_SIZE:
        return None, (f"sizeof_partition_entry is {h.sizeof_partition_entry}: the kernel reads only "
                      f"{f.GPT_ENTRY_SIZE}-byte entries")
    pt_size = h.num_partition_entries * h.sizeof_partition_entry
    if pt_size > KMALLOC_MAX_SIZE:
        return None, (f"num_partition_entries {h.num_partition_entries}: an entry array of {pt_size} bytes is "
                      f"more than the kernel reads ({KMALLOC_MAX_SIZE} bytes)")
    if pt_size == 0:
        return None, "num_partition_entries is 0: there is no entry array (the kernel refuses it)"
    if h.partition_entry_lba > last_lba:
        return None, f"partition_entry_lba {h.partition_entry_lba} is past the end of the disk"
    entries = rd.get(h.partition_entry_lba * ss, pt_size, f"GPT entry array (LBA {h.partition_entry_lba})")
    if entries is None:
        return None, f"the entry array at LBA {h.partition_entry_lba} ({pt_size} bytes) runs past the end of the disk"
    crc = zlib.crc32(entries)
    if crc != h.partition_entry_array_crc32:
        return None, (f"bad entry array CRC (LBA {h.partition_entry_lba}: computed {crc:#010x}, stored "
                      f"{h.partition_entry_array_crc32:#010x})")
    return _Gpt(lba, h, entries), soft


def _compare_gpts(p, a, last_lba: int) -> list[str]:
    """efi.c compare_gpts(): the two valid headers should describe the same table, the backup at the end."""
    out = []
    pairs = [("my_lba", "alternate_lba", "the primary's my_lba", "the backup's alternate_lba"),
             ("alternate_lba", "my_lba", "the primary's alternate_lba", "the backup's my_lba")]
    for pf, af, pt, at in pairs:
        if p[pf] != a[af]:
            out.append(f"GPT: {pt} {p[pf]} != {at} {a[af]}")
    for name in ("first_usable_lba", "last_usable_lba", "num_partition_entries", "sizeof_partition_entry",
                 "partition_entry_array_crc32"):
        if p[name] != a[name]:
            out.append(f"GPT: the headers disagree on {name}: primary {p[name]}, backup {a[name]}")
    if p.disk_guid != a.disk_guid:
        out.append(f"GPT: the headers disagree on disk_guid: primary {_guid(p.disk_guid)}, "
                   f"backup {_guid(a.disk_guid)}")
    if p.alternate_lba != last_lba:
        out.append(f"GPT: the primary header puts the backup at LBA {p.alternate_lba}, not at the end of the "
                   f"disk (LBA {last_lba}): was the disk image grown or copied to a larger disk?")
    if a.my_lba != last_lba:
        out.append(f"GPT: the backup header is at LBA {a.my_lba}, not at the end of the disk (LBA {last_lba})")
    return out


def _gpt_sector_size(rd: _Reader, size: int) -> int:
    """Where is "EFI PART"? At LBA 1 (byte 512 or 4096), else at the last LBA (the backup); 512 if nowhere."""
    for ss in (512, 4096):
        if rd.get(ss, 8, "GPT signature") == f.GPT_HEADER_SIGNATURE:
            return ss
    for ss in (512, 4096):
        if size >= 3 * ss and rd.get((size // ss - 1) * ss, 8, "GPT signature") == f.GPT_HEADER_SIGNATURE:
            return ss
    return 512


def _read_gpt(rd: _Reader, table: PartitionTable) -> None:
    ss, size = table.sector_size, table.size
    last_lba = size // ss - 1
    if last_lba < 2:
        raise CorruptError(f"GPT: the disk ({size} bytes) is too small for a GUID partition table",
                           structure="GPT header", daddr=ss // SECTOR)
    p, p_why = _is_gpt_valid(rd, f.GPT_PRIMARY_PARTITION_TABLE_LBA, ss, last_lba)
    a_lba = p.hdr.alternate_lba if p is not None else last_lba
    a, a_why, a_lba = _find_backup(rd, table, a_lba, last_lba)
    p, a = _choose_headers(rd, table, (p, p_why), (a, a_why), a_lba, last_lba)
    use = p or a
    h = use.hdr
    table.disk_id = _guid(h.disk_guid)
    table.usable = (h.first_usable_lba * ss, (h.last_usable_lba + 1) * ss)
    _reserve_gpt(table, p, a, a_lba, last_lba, len(use.entries))
    _add_gpt_entries(table, use, last_lba)


def _find_backup(rd: _Reader, table: PartitionTable, a_lba: int, last_lba: int) -> tuple[_Gpt | None, str, int]:
    """The backup header where the primary puts it, else at the last LBA: (header, why not valid, its LBA)."""
    ss = table.sector_size
    a, a_why = _is_gpt_valid(rd, a_lba, ss, last_lba)
    if (a is None or a_why) and a_lba != last_lba:
        # The kernel (booted with 'gpt') and gdisk also look at the last LBA, where the backup belongs.
        a2, why2 = _is_gpt_valid(rd, last_lba, ss, last_lba)
        if a2 is not None and (a is None or not why2):
            there = a_why or "no valid header there"
            table.warnings.append(f"backup GPT header not at LBA {a_lba} where the primary puts it ({there}): found "
                                  f"at the last LBA {last_lba}")
            return a2, why2, last_lba
    return a, a_why, a_lba


def _choose_headers(rd: _Reader, table: PartitionTable, primary: tuple[_Gpt | None, str],
                    backup: tuple[_Gpt | None, str], a_lba: int, last_lba: int) -> tuple[_Gpt | None, _Gpt | None]:
    """The headers to read the table from, (primary, backup), None for one not used; what the choice means is said
    in a warning. Both damaged: CorruptError."""
    ss = table.sector_size
    (p, p_why), (a, a_why) = primary, backup
    strict_p, strict_a = p is not None and not p_why, a is not None and not a_why
    if not (strict_p or strict_a):
        if p is None and a is None:
            other = 4096 if ss == 512 else 512
            hint = ""
            if rd.get(other, 8, "GPT signature") == f.GPT_HEADER_SIGNATURE:
                hint = f"; there is a GPT signature at byte {other}: is the logical sector size {other}?"
            raise CorruptError(f"GPT: both headers are damaged: primary (LBA 1): {p_why}; backup (LBA {a_lba}): "
                               f"{a_why}{hint}", structure="GPT header", daddr=ss // SECTOR)
        # Intact (CRCs good) but its usable LBAs run past the end: the kernel finds no partitions; we read it
        # and say so, and the partitions past the end are dropped or cut below like the kernel's.
        which, why = ("primary", p_why) if p is not None else ("backup", a_why)
        table.warnings.append(f"the {which} GPT header's {why}: the kernel refuses such a GPT (is the image "
                              "truncated?); read anyway")
        strict_p, strict_a = p is not None, p is None
        kernel_reads_it = False
    else:
        kernel_reads_it = True
    if not strict_p:
        p = None
    if not strict_a:
        a = None
    if p is not None and a is not None:
        table.warnings += _compare_gpts(p.hdr, a.hdr, last_lba)
    elif p is None:
        table.warnings.append(f"primary GPT header is damaged ({p_why}): using the backup at LBA {a_lba}"
                              + ("; the kernel itself does so only when booted with 'gpt', else it finds no "
                                 "partitions" if kernel_reads_it else ""))
    else:
        table.warnings.append(f"backup GPT header (LBA {a_lba}) is damaged or missing ({a_why}): using the primary"
                              + (", as the kernel does" if kernel_reads_it else ""))
    return p, a


def _reserve_gpt(table: PartitionTable, p: _Gpt | None, a: _Gpt | None, a_lba: int, last_lba: int,
                 entries_len: int) -> None:
    """The table's own sectors: where the valid headers say, and for a damaged header where it belongs."""
    ss = table.sector_size
    array_bytes = -(-entries_len // ss) * ss
    _reserve(table, 0, ss, "protective MBR (LBA 0)")
    _reserve(table, ss, ss, "primary GPT header (LBA 1)" + ("" if p else ", damaged"))
    if p is not None:
        _reserve(table, p.hdr.partition_entry_lba * ss, array_bytes,
                 f"primary GPT entry array (LBA {p.hdr.partition_entry_lba})")
    else:
        _reserve(table, 2 * ss, array_bytes, "primary GPT entry array (LBA 2, where it belongs: the header is damaged)")
    if a is not None:
        _reserve(table, a.hdr.partition_entry_lba * ss, array_bytes,
                 f"backup GPT entry array (LBA {a.hdr.partition_entry_lba})")
    elif a_lba * ss >= array_bytes:
        _reserve(table, a_lba * ss - array_bytes, array_bytes,
                 f"backup GPT entry array (before LBA {a_lba}, where it belongs: the backup header is damaged)")
    if a_lba <= last_lba:
        _reserve(table, a_lba * ss, ss, f"backup GPT header (LBA {a_lba})" + ("" if a else ", damaged"))


def _add_gpt_entries(table: PartitionTable, use: _Gpt, last_lba: int) -> None:
    """The partitions of the entry array, each as the kernel takes it (efi.c is_pte_valid, core.c)."""
    ss, h = table.sector_size, use.hdr
    for i, (tguid, uguid, first, last, attrs, name) in enumerate(f.gpt_entry_struct.iter_unpack(use.entries)):
        if tguid == NULL_GUID:
            continue
        part = Partition(i + 1, first * ss, (last - first + 1) * ss, "gpt", _guid(tguid), _utf16_name(name),
                         _guid(uguid), attrs)
        if i >= DISK_MAX_PARTS - 1:
            table.ignored.append((part, f"entry {i + 1}: the kernel reads only the first {DISK_MAX_PARTS - 1}"))
            table.warnings.append(f"GPT entry {i + 1} is in use, but the kernel reads only the first "
                                  f"{DISK_MAX_PARTS - 1} entries: ignored")
            continue
        if first > last_lba or last > last_lba:  # efi.c is_pte_valid()
            table.ignored.append((replace(part, size=max(part.size, 0)), "runs past the end of the disk"))
            table.warnings.append(f"GPT entry {i + 1} (LBA {first}..{last}) runs past the end of the disk (last LBA "
                                  f"{last_lba}): ignored, as the kernel does")
            continue
        if last < first:
            table.ignored.append((replace(part, size=0), "ending_lba < starting_lba"))
            table.warnings.append(f"GPT entry {i + 1}: ending_lba {last} < starting_lba {first}: ignored")
            continue
        if not (h.first_usable_lba <= first and last <= h.last_usable_lba):
            table.warnings.append(f"partition {i + 1} (LBA {first}..{last}) lies outside the GPT's usable LBAs "
                                  f"{h.first_usable_lba}..{h.last_usable_lba}")
        _put(table, part)


# --- MBR ---------------------------------------------------------------------------------------------------

def _records(sector: bytes) -> list[tuple]:
    recs = sector[f.MBR_PARTITION_RECORD_OFF:f.MBR_SIGNATURE_OFF]
    return list(f.gpt_mbr_record_struct.iter_unpack(recs))


def _mbr_partition(number: int, start: int, size: int, rec: tuple) -> Partition:
    return Partition(number, start, size, "mbr", f"0x{rec[4]:02x}", attributes=rec[0])


class _Numbers:
    next = 5  # msdos.c state->next: logical partitions are numbered from 5 on, over all extended partitions


def _parse_extended(rd: _Reader, table: PartitionTable, ext: Partition, numbers: _Numbers) -> None:
    """msdos.c parse_extended(): each EBR holds one logical partition (start relative to this EBR) and a link
    to the next EBR (start relative to the extended partition); entries 3 and 4 only if they fit."""
    ss = table.sector_size
    first = ext.start
    this, this_size = first, ext.size
    loopct = 0
    seen = set()
    while True:
        loopct += 1
        stop = _chain_stop(table, ext, numbers, loopct, this, seen)
        if stop:
            table.warnings.append(stop)
            return
        seen.add(this)
        data = _read_ebr(rd, table, ext, this)
        if data is None:
            return
        _reserve(table, this, ss, f"EBR at sector {this // ss} (extended partition {ext.number})")
        recs = _records(data)
        if _add_logical(table, ext, numbers, recs, this, this_size):
            loopct = 0
        link = next((r for r in recs if r[9] and r[4] in f.EXTENDED_TYPES), None)
        if link is None:
            return
        this, this_size = first + link[8] * ss, link[9] * ss


def _chain_stop(table: PartitionTable, ext: Partition, numbers: _Numbers, loopct: int, this: int,
                seen: set[int]) -> str:
    """Why the kernel stops following the EBR chain before the EBR at byte `this` (empty: it goes on)."""
    ss = table.sector_size
    if loopct > EBR_EMPTY_LINKS:
        return (f"extended partition {ext.number}: {EBR_EMPTY_LINKS} EBR links without a logical "
                "partition: stopped following the chain there, as the kernel does")
    if numbers.next >= DISK_MAX_PARTS:
        return (f"extended partition {ext.number}: the kernel stops at partition "
                f"{DISK_MAX_PARTS - 1}: the rest of the EBR chain is ignored, as the kernel does")
    if this in seen:
        return (f"extended partition {ext.number}: the EBR chain loops back to the EBR at sector "
                f"{this // ss}: stopped there (the kernel would repeat logical partitions up to "
                f"number {DISK_MAX_PARTS - 1})")
    return ""


def _read_ebr(rd: _Reader, table: PartitionTable, ext: Partition, this: int) -> bytes | None:
    """The EBR at byte `this`, or None where the chain ends (past the end of the disk, no 0x55AA: a warning)."""
    ss = table.sector_size
    data = rd.get(this, SECTOR, f"EBR (sector {this // ss})")
    if data is None:
        table.warnings.append(f"extended partition {ext.number}: the EBR at sector {this // ss} is past the end "
                              "of the disk: the chain ends there")
        return None
    if data[f.MBR_SIGNATURE_OFF:f.MBR_SIGNATURE_OFF + 2] != f.MSDOS_LABEL_MAGIC:
        if this == ext.start:
            hint = ""
            big = this // ss * 4096
            if ss == SECTOR and rd.get(big + f.MBR_SIGNATURE_OFF, 2, "EBR signature") == f.MSDOS_LABEL_MAGIC:
                hint = f"; there is one at byte {big}: is the logical sector size 4096?"
            table.warnings.append(f"extended partition {ext.number} holds no logical partitions (no EBR "
                                  f"signature at sector {this // ss}){hint}")
        else:
            table.warnings.append(f"extended partition {ext.number}: the EBR at sector {this // ss} has no "
                                  "0x55AA signature: the chain ends there, as in the kernel")
        return None
    return data


def _add_logical(table: PartitionTable, ext: Partition, numbers: _Numbers, recs: list[tuple], this: int,
                 this_size: int) -> bool:
    """The logical partitions of one EBR's records (numbered on from numbers.next); True if it held any."""
    ss = table.sector_size
    first, first_size = ext.start, ext.size
    found = False
    for i, rec in enumerate(recs):
        start, nr = rec[8], rec[9]
        if not nr or rec[4] in f.EXTENDED_TYPES:
            continue
        offs, size = start * ss, nr * ss
        nxt = this + offs
        if i >= 2 and (offs + size > this_size or nxt < first or nxt + size > first + first_size):
            continue  # "the 3rd and 4th entries sometimes contain random garbage" (msdos.c)
        p = _mbr_partition(numbers.next, nxt, size, rec)
        if nxt < first or nxt + size > first + first_size:
            table.warnings.append(f"logical partition {p.number} (bytes {nxt}+{size}) lies outside its extended "
                                  f"partition {ext.number} (bytes {first}+{first_size})")
        _put(table, p)
        found = True
        numbers.next += 1
        if numbers.next >= DISK_MAX_PARTS:
            break
    return found


def _read_mbr(rd: _Reader, table: PartitionTable, mbr: bytes) -> None:
    ss = table.sector_size
    table.disk_id = f"0x{int.from_bytes(mbr[440:444], 'little'):08x}"
    _reserve(table, 0, ss, "MBR (sector 0)")
    numbers = _Numbers()
    for slot, rec in enumerate(_records(mbr), 1):
        start, nr = rec[8] * ss, rec[9] * ss
        if not nr:
            continue
        p = _mbr_partition(slot, start, nr, rec)
        if rec[4] in f.EXTENDED_TYPES:
            # The kernel also makes a 1 KiB sdaN of it (room for LILO); its bytes are the EBR and unpartitioned.
            table.extended.append(p)
            _parse_extended(rd, table, p, numbers)
            continue
        _put(table, p)
    table.partitions.sort(key=lambda p: p.number)


# --- the table -----------------------------------------------------------------------------------------------

def _sanity_warnings(table: PartitionTable) -> None:
    """Overlaps the kernel accepts silently, but that mean one error hits two partitions or a table."""
    found = []
    parts = sorted(table.partitions, key=lambda p: (p.start, p.number))
    active: list[Partition] = []
    for p in parts:
        active = [q for q in active if q.end > p.start]
        for q in active:
            found.append(f"partitions {q.number} and {p.number} overlap (bytes {p.start}..{min(p.end, q.end) - 1})")
        active.append(p)
    for p in parts:
        for start, size, what in table.reserved:
            if p.start < start + size and start < p.end:
                found.append(f"partition {p.number} overlaps the {what}")
    if len(found) > MAX_OVERLAP_WARNINGS:
        found[MAX_OVERLAP_WARNINGS:] = [f"... and {len(found) - MAX_OVERLAP_WARNINGS} more overlaps"]
    table.warnings += found


def read_partition_table(read: Callable[[int, int, str], bytes], size: int,
                         sector_size: int | None = None) -> PartitionTable | None:
    """The disk's partition table, or None if there is none (no 0x55AA and no GPT header at LBA 1).

    `read(offset, length, what)` reads the disk (Device.pread); `size` is the disk's size in bytes. GPT: the
    sector size is found where "EFI PART" is (512 or 4096) unless given; MBR: 512 unless given. A disk that
    starts with a filesystem is the caller's to recognise first (an XFS superblock has no 0x55AA, but a FAT boot
    sector does, and the kernel tells them apart only by the boot indicators).
    """
    if sector_size is not None and (sector_size < SECTOR or sector_size > 65536 or sector_size & (sector_size - 1)):
        raise UsageError(f"sector size {sector_size}: not a power of two from 512 to 65536")
    rd = _Reader(read, size)
    mbr = rd.get(0, SECTOR, "MBR (sector 0)")
    if mbr is None:
        return None
    signed = mbr[f.MBR_SIGNATURE_OFF:f.MBR_SIGNATURE_OFF + 2] == f.MSDOS_LABEL_MAGIC
    recs = _records(mbr)
    protective = [i for i, r in enumerate(recs) if r[4] == f.EFI_PMBR_OSTYPE_EFI_GPT] if signed else []
    gpt_ss = sector_size or _gpt_sector_size(rd, size)
    gpt_sig = rd.get(gpt_ss, 8, "GPT signature") == f.GPT_HEADER_SIGNATURE

    if protective or (not signed and gpt_sig):
        table = PartitionTable("gpt", gpt_ss, size)
        notes = []
        if not signed:
            notes.append("no protective MBR (sector 0 has no 0x55AA signature): the kernel ignores this GPT "
                         "unless booted with 'gpt'")
        else:
            pmbr = recs[protective[0]]
            if pmbr[8] != f.GPT_PRIMARY_PARTITION_TABLE_LBA:
                notes.append(f"the protective MBR record starts at LBA {pmbr[8]}, not 1: the kernel ignores this GPT "
                             "unless booted with 'gpt'")
            hybrid = [f"{i + 1} (type 0x{r[4]:02x}, sectors {r[8]}+{r[9]})" for i, r in enumerate(recs)
                      if r[4] not in (0, f.EFI_PMBR_OSTYPE_EFI_GPT)]
            if hybrid:
                notes.append("hybrid MBR: MBR records " + ", ".join(hybrid) + " also describe the disk; the GPT is "
                             "used, as the kernel does (other systems may use the MBR records)")
        _read_gpt(rd, table)
        table.warnings[:0] = notes
    elif signed and all(r[0] in (0, 0x80) for r in recs):
        table = PartitionTable("mbr", sector_size or SECTOR, size)
        _read_mbr(rd, table, mbr)
        if gpt_sig:
            table.warnings.append(f"a GPT header is at LBA 1 (byte {gpt_ss}) but the MBR has no protective record: "
                                  "a stale GPT? The MBR is used, as the kernel does")
    else:
        return None  # no 0x55AA, or a boot indicator other than 0/0x80: a boot sector, not a table (msdos.c)
    table.partitions.sort(key=lambda p: p.number)
    _sanity_warnings(table)
    return table
