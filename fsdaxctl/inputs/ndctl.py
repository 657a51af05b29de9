"""`ndctl list --media-errors` (-M) JSON, in every shape ndctl prints it.

Shapes (ndctl/list.c list_display, util/json.c util_display_json_array): a JSON array of namespaces, regions
(each with "namespaces") or buses (each with "dimms", "regions", "namespaces"); an object {"dimms", "regions"}
or {"dimms", "namespaces"} when several kinds are listed without -B; a single object instead of a one-element
array with -u (human). Entries (ndctl/json.c): "badblock_count" (sum of lengths, shown whenever non-zero) and,
with -M, "badblocks": [{"offset", "length"[, "dimms"]}] in 512-byte sectors. What they count from depends on
the object (ndctl/json.c util_namespace_to_json):
  region            region start (regionN/resource); util_region_badblocks_to_json
  fsdax ("memory")  the pfn device's data start = /dev/pmemN byte 0; util_pfn_badblocks_to_json
  devdax ("dax")    the dax device's data start; util_dax_badblocks_to_json
  raw               the *region* start: ndctl lists the whole region's list for a raw namespace
  sector (BTT)      nothing: only a count, which may include BTT metadata; util_btt_badblocks_to_json
("memory" and "dax" are the mode names before ndctl v60, commit 187113c "complete move to fsdax and devdax".)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from fsdaxctl.errors import UsageError
from fsdaxctl.inputs import Parsed
from fsdaxctl.stack import BLOCK, REGION, Extent, Space
from fsdaxctl.units import MAX_BYTES, SECTOR

FSDAX = ("fsdax", "memory")
DEVDAX = ("devdax", "dax")
SECTOR_MODE = ("sector",)
RAW = ("raw",)

# drivers/nvdimm/namespace_devs.c: dev_set_name(dev, "namespace%d.%d", nd_region->id, ...): the region's id.
_NS_NAME = re.compile(r"namespace(?P<region>\d+)\.\d+")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Walk:
    def __init__(self, name: str, block_space_for: Callable[[str], Space | None] | None):
        self.name = name
        self.block_space_for = block_space_for
        self.out = Parsed()
        self.seen: set[tuple[Space, int, int]] = set()
        self.objects = 0  # ndctl objects recognised: buses, regions, namespaces, dimms
        self.entries = 0  # badblocks entries that were well-formed

    def skip(self, where: str, why: str) -> None:
        self.out.skipped.append((where, why))

    # -- structure --------------------------------------------------------------------------------------------
    def any(self, obj, region: str | None) -> None:
        if isinstance(obj, list):
            for item in obj:
                self.any(item, region)
        elif isinstance(obj, dict):
            self.obj(obj, region)

    def obj(self, o: dict, region: str | None) -> None:
        dev = o.get("dev") if isinstance(o.get("dev"), str) else None
        if dev and dev.startswith("region") or (dev is None and "mappings" in o):
            self.objects += 1
            self.region(o, dev)
            self.any(o.get("namespaces"), dev)
        elif dev and dev.startswith("namespace") or "mode" in o:
            self.objects += 1
            self.namespace(o, dev or "namespace?", region)
        elif dev and dev.startswith("nmem"):
            self.objects += 1  # a DIMM: its health is not a location
        else:
            # a bus ("provider", "dev": "ndbusN") or the platform object {"dimms", "regions", "namespaces"}
            containers = [k for k in ("regions", "namespaces", "dimms") if k in o]
            if containers or "provider" in o:
                self.objects += 1
                self.any(o.get("regions"), None)
                self.any(o.get("namespaces"), None)
            elif "badblocks" in o:
                # `ndctl inject-error --status` prints {"badblocks": [{"block", "count"}]}: pending injections
                # of an unnamed namespace, not media errors
                self.objects += 1
                self.skip(f"{self.name} badblocks", "badblocks of no named device (ndctl inject-error --status "
                                                   "output?): give ndctl list --media-errors output")

    # -- one object's list ------------------------------------------------------------------------------------
    def region(self, o: dict, dev: str | None) -> None:
        if dev is None:
            self.no_offsets(o, "region?", "a region without a \"dev\" name")
            return
        self.entries_of(o, dev, Space(REGION, dev), "region sector")

    def namespace(self, o: dict, dev: str, region: str | None) -> None:
        mode = o.get("mode")
        if mode in FSDAX:
            blockdev = o.get("blockdev")
            if not isinstance(blockdev, str) or not blockdev:
                self.no_offsets(o, dev, f"{mode} namespace without a \"blockdev\": its offsets count from "
                                        "/dev/pmemN, which the listing does not name")
                return
            self.entries_of(o, dev, self.block_space(blockdev), f"{blockdev} sector")
        elif mode in DEVDAX:
            chardev = o.get("chardev")
            if not isinstance(chardev, str):
                # ndctl list -X nests it: "daxregion": {"devices": [{"chardev": "dax0.0", ...}]}
                daxregion = o.get("daxregion")
                devices = daxregion.get("devices") if isinstance(daxregion, dict) else None
                devices = devices if isinstance(devices, list) else []
                names = [d.get("chardev") for d in devices if isinstance(d, dict)]
                names = [c for c in names if isinstance(c, str)]
                if len(names) > 1:
                    self.no_offsets(o, dev, f"devdax namespace with {len(names)} dax devices: its offsets count "
                                            "from the namespace's dax resource, not one device")
                    return
                chardev = names[0] if names else None
            if not chardev:
                self.no_offsets(o, dev, "devdax namespace without a \"chardev\" (disabled?): its offsets count "
                                        "from the dax device, which the listing does not name")
                return
            self.entries_of(o, dev, self.block_space(chardev), f"{chardev} sector")
        elif mode in SECTOR_MODE:
            why = ("sector (BTT) mode: ndctl gives only a count, which may include BTT metadata, never offsets "
                   "(ndctl-list(1): convert the namespace to raw mode to list them)")
            self.no_offsets(o, dev, why, even_with_list=True)
        elif mode in RAW:
            if region is None:
                m = _NS_NAME.fullmatch(dev)
                if m is None:
                    self.no_offsets(o, dev, "raw namespace: ndctl lists its region's bad blocks, counted from the "
                                            "region start, and the region is unknown (list with -R -N -M)")
                    return
                region = f"region{m['region']}"
                self.entries_of(o, dev, Space(REGION, region),
                                f"{region} sector", f" ({region} from the name {dev})")
            else:
                self.entries_of(o, dev, Space(REGION, region), f"{region} sector")
        else:
            self.no_offsets(o, dev, f"unknown namespace mode {mode!r}: cannot tell what its offsets count from")

    def block_space(self, devname: str) -> Space:
        if self.block_space_for is not None:
            sp = self.block_space_for(devname)
            if sp is not None:
                return sp
        return Space(BLOCK, devname)

    def no_offsets(self, o: dict, dev: str, why: str, even_with_list: bool = False) -> None:
        """Bad blocks this object reports without usable offsets: one skip per entry, or one for the count."""
        bbs = o.get("badblocks")
        if isinstance(bbs, list) and bbs:
            for i, _ in enumerate(bbs):
                self.skip(f"{self.name} {dev} badblocks[{i}]", why)
            return
        count = o.get("badblock_count")
        if _is_int(count) and count > 0:
            self.skip(f"{self.name} {dev}", f"{count} bad sectors: {why}")

    def entries_of(self, o: dict, dev: str, space: Space, unit: str, how: str = "") -> None:
        bbs = o.get("badblocks")
        if bbs is None:
            count = o.get("badblock_count")
            if _is_int(count) and count > 0:
                self.skip(f"{self.name} {dev}", f"badblock_count {count} but no \"badblocks\" list: run ndctl "
                                                "list with --media-errors (-M)")
            return
        if not isinstance(bbs, list):
            self.skip(f"{self.name} {dev} badblocks", f"\"badblocks\" is not a list but {type(bbs).__name__}")
            return
        for i, e in enumerate(bbs):
            where = f"{self.name} {dev} badblocks[{i}]"
            if not isinstance(e, dict):
                self.skip(where, f"not an object but {type(e).__name__}")
                continue
            off, length = e.get("offset"), e.get("length")
            if off is None or length is None:
                self.skip(where, "truncated: needs \"offset\" and \"length\"")
                continue
            bad = next(((k, v) for k, v in (("offset", off), ("length", length)) if not _is_int(v)), None)
            if bad is not None:
                self.skip(where, f"{bad[0]} {bad[1]!r} is not an integer (512-byte sectors)")
                continue
            if off < 0 or length < 0:
                self.skip(where, f"negative: offset {off}, length {length}")
                continue
            if length == 0:
                self.skip(where, "zero length")
                continue
            if (off + length) * SECTOR > MAX_BYTES:
                self.skip(where, f"past the largest device offset (2^63 - 1 bytes): sector {off} + {length}")
                continue
            self.entries += 1
            key = (space, off * SECTOR, length * SECTOR)
            if key in self.seen:  # a raw namespace repeats its region's list
                continue
            self.seen.add(key)
            dimms = e.get("dimms")
            on = ""
            if isinstance(dimms, list) and dimms and all(isinstance(d, str) for d in dimms):
                on = f", on {' '.join(dimms)}"
            note = f"{unit} {off}, {length} sector{'s' if length != 1 else ''}{on}{how}"
            self.out.extents.append(Extent(space, off * SECTOR, length * SECTOR, where, note))


def parse_ndctl_json(text: str | bytes, name: str,
                     block_space_for: Callable[[str], Space | None] | None = None) -> Parsed:
    """Bad blocks from `ndctl list ... --media-errors` output. `block_space_for(devname)` may name the space
    of a namespace's block or dax device ('pmem0', 'dax0.0'), e.g. the target's own; None keeps Space(BLOCK,
    devname)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{name}: not ndctl JSON: byte {e.start} is not UTF-8") from None
    if not text.strip():
        return Parsed()  # ndctl prints nothing when nothing matches
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{name}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise UsageError(f"{name}: not ndctl JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise UsageError(f"{name}: not ndctl JSON: {str(e)[:80]}") from None
    w = _Walk(name, block_space_for)
    try:
        w.any(doc, None)
    except RecursionError:
        raise UsageError(f"{name}: not ndctl JSON: nested too deeply") from None
    if not w.objects and not (isinstance(doc, list) and not doc):
        raise UsageError(f"{name}: not ndctl list output: no buses, regions, namespaces or dimms in it")
    if not w.out.extents and w.out.skipped and not w.entries:
        where, why = w.out.skipped[0]
        raise UsageError(f"{name}: no usable bad blocks ({len(w.out.skipped)} skipped; first: {where}: {why})")
    return w.out
