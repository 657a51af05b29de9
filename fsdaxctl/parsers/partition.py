"""Partition-table layouts: the MBR/EBR (PC BIOS "msdos" label) and the GPT header and entry, all little-endian.

Declarations only: no reading, no checking (fsdaxctl/discovery/partition.py does that). Field names are those of the
kernel's block/partitions/efi.h (legacy_mbr, gpt_mbr_record, gpt_header, gpt_entry), which follow the UEFI
specification (section 5, "GUID Partition Table (GPT) Disk Layout"); the kernel's msdos.c reads the same 16-byte
record (struct msdos_partition) for MBRs and EBRs. Offsets in comments are checked by tests/test_partition.py.
"""

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from fsdaxctl.parsers import derived_struct

# --- MBR and EBR -------------------------------------------------------------------------------------------
MSDOS_MBR_SIGNATURE = 0xAA55  # le16 at byte 510: the bytes 0x55 0xAA
MSDOS_LABEL_MAGIC = b"\x55\xaa"
EFI_PMBR_OSTYPE_EFI_GPT = 0xEE  # the protective MBR's one partition record
GPT_PRIMARY_PARTITION_TABLE_LBA = 1  # where the protective record must start (efi.c pmbr_part_valid)
DOS_EXTENDED_PARTITION = 0x05  # include/linux/msdos_partition.h
WIN98_EXTENDED_PARTITION = 0x0F
LINUX_EXTENDED_PARTITION = 0x85
EXTENDED_TYPES = (DOS_EXTENDED_PARTITION, WIN98_EXTENDED_PARTITION, LINUX_EXTENDED_PARTITION)

gpt_mbr_record = Struct(  # 16 bytes; msdos.c calls the same record struct msdos_partition
    "boot_indicator" / Int8ul,  # 0: 0x80 bootable, 0x00 not; anything else is no partition table (msdos.c)
    "start_head" / Int8ul,  # 1: CHS of the first sector, unused by Linux
    "start_sector" / Int8ul,  # 2
    "start_track" / Int8ul,  # 3
    "os_type" / Int8ul,  # 4: the partition type byte (0x83 Linux, 0x05 extended, 0xEE GPT protective)
    "end_head" / Int8ul,  # 5: CHS of the last sector, unused by Linux
    "end_sector" / Int8ul,  # 6
    "end_track" / Int8ul,  # 7
    "starting_lba" / Int32ul,  # 8: first sector (EBR: relative, see discovery/partition.py)
    "size_in_lba" / Int32ul,  # 12: sectors; 0 = unused record
)
gpt_mbr_record_struct = derived_struct(gpt_mbr_record)  # "<8BII", for iter_unpack over the four records

legacy_mbr = Struct(  # one 512-byte sector: the MBR at LBA 0, and every EBR of an extended partition
    "boot_code" / Bytes(440),  # 0: 440 + 4 + 2 = the "446 bytes of boot code" of older descriptions
    "unique_mbr_signature" / Int32ul,  # 440: the disk identifier (sfdisk's label-id; the kernel's PARTUUID)
    "unknown" / Int16ul,  # 444
    "partition_record" / Array(4, gpt_mbr_record),  # 446
    "signature" / Int16ul,  # 510: MSDOS_MBR_SIGNATURE
)
ebr = legacy_mbr  # an EBR has the MBR's shape: record 1 a logical partition, record 2 the link to the next EBR
MBR_PARTITION_RECORD_OFF = 446
MBR_SIGNATURE_OFF = 510
MBR_SIZE = 512

# --- GPT ---------------------------------------------------------------------------------------------------
GPT_HEADER_SIGNATURE = b"EFI PART"  # the kernel's le64 0x5452415020494645
GPT_HEADER_REVISION_V1 = 0x00010000
GPT_HEADER_CRC_OFF = 16

gpt_header = Struct(  # 92 bytes at the start of its logical block; the rest of the block must be zero
    "signature" / Bytes(8),  # 0: GPT_HEADER_SIGNATURE
    "revision" / Int32ul,  # 8
    "header_size" / Int32ul,  # 12: bytes covered by header_crc32 (92 <= header_size <= logical block size)
    "header_crc32" / Int32ul,  # 16: CRC-32 of header_size bytes, computed with this field zero
    "reserved1" / Int32ul,  # 20
    "my_lba" / Int64ul,  # 24: the LBA of this header (1 for the primary)
    "alternate_lba" / Int64ul,  # 32: the LBA of the other header
    "first_usable_lba" / Int64ul,  # 40
    "last_usable_lba" / Int64ul,  # 48: inclusive
    "disk_guid" / Bytes(16),  # 56: EFI GUID (mixed-endian: uuid.UUID(bytes_le=...))
    "partition_entry_lba" / Int64ul,  # 72: first LBA of the entry array
    "num_partition_entries" / Int32ul,  # 80
    "sizeof_partition_entry" / Int32ul,  # 84: 128 (the kernel accepts nothing else)
    "partition_entry_array_crc32" / Int32ul,  # 88: CRC-32 of num_partition_entries * sizeof_partition_entry bytes
)
GPT_HEADER_SIZE = 92  # sizeof(gpt_header)

gpt_entry = Struct(  # 128 bytes; an entry whose partition_type_guid is all zero is unused
    "partition_type_guid" / Bytes(16),  # 0
    "unique_partition_guid" / Bytes(16),  # 16
    "starting_lba" / Int64ul,  # 32
    "ending_lba" / Int64ul,  # 40: inclusive
    "attributes" / Int64ul,  # 48: bit 0 required to function, bit 2 legacy BIOS bootable, 48-63 type specific
    "partition_name" / Bytes(72),  # 56: UTF-16LE, NUL padded (36 code units)
)
gpt_entry_struct = derived_struct(gpt_entry)  # for iter_unpack over entry arrays of up to 32768 entries
GPT_ENTRY_SIZE = 128  # sizeof(gpt_entry)
