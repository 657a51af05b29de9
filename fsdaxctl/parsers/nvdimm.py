"""NVDIMM on-media layouts (drivers/nvdimm/pfn.h, drivers/nvdimm/label.h), all little-endian.

Declarations only: no reading, no checking (fsdaxctl.discovery.pmem reads and validates the info block). Field names
are the kernel's, so a reviewer can hold this file against pfn.h and label.h line by line. Offsets in comments
are checked by tests/test_pmem.py.
"""

from construct import Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

# --- the pfn / dax info block (struct nd_pfn_sb, pfn.h) ------------------------------------------------
PFN_SIG_LEN = 16
PFN_SIG = b"NVDIMM_PFN_INFO\0"  # fsdax: a pmem block device with struct pages (pfn_devs.c)
DAX_SIG = b"NVDIMM_DAX_INFO\0"  # devdax: a device-dax character device (dax_devs.c)
PFN_MODE_NONE, PFN_MODE_RAM, PFN_MODE_PMEM = 0, 1, 2  # enum nd_pfn_mode (nd.h); RAM = map=mem, PMEM = map=dev
PFN_MODES = {PFN_MODE_NONE: "none", PFN_MODE_RAM: "ram", PFN_MODE_PMEM: "pmem"}

ND_PFN_SB_OFFSET = 4096  # SZ_4K: nd_pfn_validate reads the block at namespace byte 4096 (nvdimm_read_bytes)
ND_PFN_SB_SIZE = 4096    # sizeof(struct nd_pfn_sb) == sizeof(struct nd_gen_sb) == SZ_4K
ND_PFN_SB_CSUM_OFF = 4088

nd_pfn_sb = Struct(
    "signature" / Bytes(PFN_SIG_LEN),  # 0
    "uuid" / Bytes(16),  # 16, the pfn/dax device's own uuid (pfnN.M/uuid)
    "parent_uuid" / Bytes(16),  # 32, the namespace's uuid (all zero for a label-less namespace_io)
    "flags" / Int32ul,  # 48
    "version_major" / Int16ul,  # 52, 1
    "version_minor" / Int16ul,  # 54, 4 since "add page size and struct page size" (nd_pfn_init)
    "dataoff" / Int64ul,  # 56, "relative to namespace_base + start_pad" (pfn.h)
    "npfns" / Int64ul,  # 64
    "mode" / Int32ul,  # 72, PFN_MODE_*
    "start_pad" / Int32ul,  # 76, minor >= 1; deprecated, never written by current kernels
    "end_trunc" / Int32ul,  # 80, minor >= 1
    "align" / Int32ul,  # 84, minor >= 2
    "page_size" / Int32ul,  # 88, minor >= 4
    "page_struct_size" / Int16ul,  # 92, minor >= 4
    "padding" / Bytes(3994),  # 94, zero since minor 3
    "checksum" / Int64ul,  # 4088, nd_sb_checksum: nd_fletcher64 over the block with this field zero
)

# --- the label area (label.h): two index blocks, then label slots ------------------------------------
NSINDEX_SIG_LEN = 16
NSINDEX_SIGNATURE = b"NAMESPACE_INDEX\0"
NSINDEX_ALIGN = 256  # the index with its free bitmap is padded to a multiple of this
NSINDEX_SEQ_MASK = 0x3
NSLABEL_NAME_LEN = 64
NSLABEL_FLAG_ROLABEL, NSLABEL_FLAG_LOCAL, NSLABEL_FLAG_BTT, NSLABEL_FLAG_UPDATING = 0x1, 0x2, 0x4, 0x8

# abstraction_guid of a v1.2 label: which personality claims the namespace (label.h)
NVDIMM_BTT_GUID = "8aed63a2-29a2-4c66-8b12-f05d15d3922a"
NVDIMM_BTT2_GUID = "18633bfc-1735-4217-8ac9-17239282d3f8"
NVDIMM_PFN_GUID = "266400ba-fb9f-4677-bcb0-968f11d0d225"
NVDIMM_DAX_GUID = "97a86d9c-3cdd-4eda-986f-5068b4f80088"

nd_namespace_index = Struct(
    "sig" / Bytes(NSINDEX_SIG_LEN),  # 0
    "flags" / Bytes(3),  # 16
    "labelsize" / Int8ul,  # 19, label size is 128 << labelsize (0: v1.1 128 bytes, 1: v1.2 256 bytes)
    "seq" / Int32ul,  # 20, only the low 2 bits count (NSINDEX_SEQ_MASK)
    "myoff" / Int64ul,  # 24
    "mysize" / Int64ul,  # 32
    "otheroff" / Int64ul,  # 40
    "labeloff" / Int64ul,  # 48
    "nslot" / Int32ul,  # 56
    "major" / Int16ul,  # 60, 1
    "minor" / Int16ul,  # 62, 1 (v1.1) or 2 (v1.2)
    "checksum" / Int64ul,  # 64, nd_fletcher64 over mysize bytes with this field zero
    # 72: u8 free[]: bitmap of free slots, nslot bits, padded to a multiple of NSINDEX_ALIGN
)

# struct nvdimm_efi_label (v1.2, 256 bytes); a v1.1 label is its first 128 bytes with `align` and the three
# reserved bytes read as one zero le32 `unused`, and no checksum of its own.
nd_namespace_label = Struct(
    "uuid" / Bytes(16),  # 0
    "name" / Bytes(NSLABEL_NAME_LEN),  # 16
    "flags" / Int32ul,  # 80
    "nlabel" / Int16ul,  # 84
    "position" / Int16ul,  # 86
    "isetcookie" / Int64ul,  # 88
    "lbasize" / Int64ul,  # 96, 0 for pmem
    "dpa" / Int64ul,  # 104, DIMM physical address of this label's range
    "rawsize" / Int64ul,  # 112
    "slot" / Int32ul,  # 120
    "align" / Int8ul,  # 124 (v1.2)
    "reserved" / Bytes(3),  # 125
    "type_guid" / Bytes(16),  # 128 (v1.2): the NFIT range's type
    "abstraction_guid" / Bytes(16),  # 144 (v1.2): NVDIMM_*_GUID
    "reserved2" / Bytes(88),  # 160
    "checksum" / Int64ul,  # 248 (v1.2): nd_fletcher64 over the 256 bytes with this field zero
)
ND_LABEL_V1_1_SIZE = 128
ND_LABEL_V1_2_SIZE = 256
