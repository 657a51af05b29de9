"""Device-mapper tables (`dmsetup table` text) as offset maps from the underlying devices to the dm device.

A table line is `START LENGTH TARGET ARGS...` in 512-byte sectors of the dm device (drivers/md/dm-table.c);
`dmsetup table` without a device name prefixes each line with `NAME: `. Targets whose sectors land on an
underlying device at a fixed place are mapped (linear, striped, crypt, and the data device of
snapshot-origin is the origin itself); targets without one (zero, error) own no media. Anything else
(mirror, raid, thin, cache, ...) keeps its data in places a table line does not say: refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdaxctl.errors import UnsupportedError, UsageError
from fsdaxctl.stack import BLOCK, Layer, Space
from fsdaxctl.units import SECTOR


@dataclass(frozen=True, slots=True)
class Segment:
    """dm device sectors [start, start + length) come from `device` as `target` describes."""

    start: int         # dm sector
    length: int        # sectors
    target: str        # linear, striped, crypt, zero, error
    devices: tuple     # ((device, sector offset), ...): one for linear/crypt, one per stripe for striped
    chunk: int = 0     # striped: chunk size in sectors
    where: str = ""


MAPPED = {"linear", "striped", "crypt"}
NO_MEDIA = {"zero", "error"}


def _int(text: str, where: str, what: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"{where}: {what} is not a number: {text!r}") from None
    if value < 0 or value > (1 << 63) // SECTOR:
        raise UsageError(f"{where}: {what} out of range: {text}")
    return value


def parse_table(lines, name: str, default_device: str | None = None) -> dict[str, list[Segment]]:
    """{dm device name: segments} from `dmsetup table [DEV]` text. Lines without `NAME:` belong to
    default_device (the name given with the file)."""
    tables: dict[str, list[Segment]] = {}
    for n, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name} line {n}"
        dev, line = _device_of(line, default_device, where)
        if line == "":  # `dmsetup table` prints 'name: ' for a device with no table loaded
            continue
        f = line.split()
        if len(f) < 3:
            raise UsageError(f"{where}: expected 'START LENGTH TARGET ARGS', found {line!r}")
        start, length, target = _int(f[0], where, "start"), _int(f[1], where, "length"), f[2]
        _append(tables, dev, _segment(start, length, target, f[3:], where), where)
    if not tables:
        raise UsageError(f"{name}: no table lines in it")
    return tables


def _device_of(line: str, default_device: str | None, where: str) -> tuple[str, str]:
    """(the dm device a table line is for, the line without its `NAME: ` prefix)."""
    dev = default_device
    head, sep, rest = line.partition(": ")
    if sep and not head[:1].isdigit():
        dev, line = head.strip(), rest.strip()
    if dev is None:
        raise UsageError(f"{where}: which dm device is this table for? give NAME=FILE or `dmsetup table` "
                         "output with names")
    return dev, line


def _segment(start: int, length: int, target: str, args: list[str], where: str) -> Segment:
    """One table line's segment, its target's arguments checked as the target's constructor checks them."""
    if target == "linear":
        if len(args) != 2:
            raise UsageError(f"{where}: linear takes 'DEVICE OFFSET', found {' '.join(args)!r}")
        devs = ((_devname(args[0]), _int(args[1], where, "offset")),)
        return Segment(start, length, target, devs, where=where)
    if target == "striped":
        return _striped(start, length, args, where)
    if target == "crypt":
        # crypt CIPHER KEY IV_OFFSET DEVICE OFFSET [#opts opts...]: ciphertext sector s of the dm device
        # lies at OFFSET + s of DEVICE (dm-crypt.c crypt_map), so the offset map is linear.
        if len(args) < 5:
            raise UsageError(f"{where}: crypt takes 'CIPHER KEY IV_OFFSET DEVICE OFFSET', found "
                             f"{len(args)} argument(s)")
        return Segment(start, length, target, ((_devname(args[3]), _int(args[4], where, "offset")),),
                       where=where)
    if target in NO_MEDIA:
        return Segment(start, length, target, (), where=where)
    raise UnsupportedError(f"{where}: dm target {target!r} is not an offset map fsdaxctl can follow "
                           "(linear, striped, crypt, zero and error are)")


def _striped(start: int, length: int, args: list[str], where: str) -> Segment:
    if len(args) < 4:
        raise UsageError(f"{where}: striped takes 'STRIPES CHUNK DEV OFFSET...', found {' '.join(args)!r}")
    stripes, chunk = _int(args[0], where, "stripes"), _int(args[1], where, "chunk size")
    pairs = args[2:]
    if stripes < 1 or chunk < 1 or len(pairs) < 2 * stripes:
        raise UsageError(f"{where}: striped: {stripes} stripes need {stripes} 'DEV OFFSET' pairs and a "
                         "positive chunk size")
    if length % stripes:  # dm-stripe.c stripe_ctr refuses the same
        raise UsageError(f"{where}: striped: length {length} is not divisible by {stripes} stripes")
    if (length // stripes) % chunk:  # stripe_ctr: "Target length not divisible by chunk size"
        raise UsageError(f"{where}: striped: {length // stripes} sectors per stripe is not a multiple of "
                         f"the chunk size {chunk}")
    devs = tuple((_devname(pairs[2 * i]), _int(pairs[2 * i + 1], where, "offset")) for i in range(stripes))
    return Segment(start, length, "striped", devs, chunk, where)


def _append(tables: dict[str, list[Segment]], dev: str, seg: Segment, where: str) -> None:
    """Add `seg` to `dev`'s table: it may not map onto `dev` itself, and a table covers its device without gaps."""
    if any(d == dev for d, _ in seg.devices):
        raise UsageError(f"{where}: {dev} cannot map onto itself")
    segs = tables.setdefault(dev, [])
    start = seg.start
    if segs and segs[-1].start + segs[-1].length != start:
        raise UsageError(f"{where}: segment starts at sector {start}, but the previous one ends at "
                         f"{segs[-1].start + segs[-1].length} (a table covers the device without gaps)")
    if not segs and start != 0:
        raise UsageError(f"{where}: the first segment of {dev} starts at sector {start}, not 0")
    segs.append(seg)


def _devname(text: str) -> str:
    """'8:16' stays as it is (sysfs names it later); '/dev/sdb' -> 'sdb'; '/dev/mapper/x' -> 'x'."""
    return text.rsplit("/", 1)[-1]


class DmLayer(Layer):
    """Bytes of one underlying device -> the dm device, for every segment that uses that device."""

    kernel_call = "dm map"

    def __init__(self, dm: str, device: str, segments: list[Segment]):
        self.upper, self.lower = Space(BLOCK, device), Space(BLOCK, dm)
        self.name = f"dm {dm}"
        self.device = device
        # (device sector start, sectors, segment, stripe index) for each piece of the device the table uses
        self.uses = []
        for seg in segments:
            for i, (dev, off) in enumerate(seg.devices):
                if dev != device:
                    continue
                n = len(seg.devices)
                per_dev = seg.length // n if seg.target == "striped" else seg.length
                self.uses.append((off, per_dev, seg, i))
        self.uses.sort(key=lambda u: u[0])

    def describe(self) -> str:
        parts = []
        for off, count, seg, i in self.uses:
            kind = (f"stripe {i} of {len(seg.devices)}, chunk {seg.chunk} sectors" if seg.target == "striped"
                    else seg.target)
            parts.append(f"{self.device} sectors {off}..{off + count - 1} -> {self.lower} sectors "
                         f"{seg.start}..{seg.start + seg.length - 1} ({kind})")
        return f"{self.name}: " + "; ".join(parts)

    def map(self, offset, length):
        out = []
        end = offset + length
        pos = offset
        for off, count, seg, i in self.uses:
            lo, hi = off * SECTOR, (off + count) * SECTOR
            if hi <= pos or lo >= end:
                continue
            if pos < lo:
                out.append(self._unused(pos, lo))
            a, b = max(pos, lo), min(end, hi)
            out += self._map_segment(a, b, seg, i, lo)
            pos = b
        if pos < end:
            out.append(self._unused(pos, end))
        return out

    def _unused(self, a, b):
        return self.drop(a, b - a, "unmapped", f"no segment of {self.lower}'s table uses these bytes of "
                                               f"{self.upper}")

    def _map_segment(self, a, b, seg, i, lo):
        dm_base = seg.start * SECTOR
        if seg.target != "striped":
            return [self.hop(dm_base + a - lo, b - a,
                             f"byte {a} - {seg.target} offset {lo} (sector {lo // SECTOR}) + segment start "
                             f"{dm_base} = byte {dm_base + a - lo} of {self.lower} ({seg.where})")]
        # dm-stripe.c stripe_map_sector: chunk c of the segment is on stripe c % n at chunk c // n of it.
        n, chunk = len(seg.devices), seg.chunk * SECTOR
        out = []
        pos = a
        while pos < b:
            rel = pos - lo
            stripe_chunk, within = divmod(rel, chunk)
            take = min(b - pos, chunk - within)
            dm_off = dm_base + (stripe_chunk * n + i) * chunk + within
            out.append(self.hop(dm_off, take,
                                f"byte {pos} - offset {lo} = {rel}: chunk {stripe_chunk} of stripe {i} + {within}; "
                                f"dm chunk {stripe_chunk} * {n} + {i} = {stripe_chunk * n + i} of {chunk} bytes + "
                                f"{within} + segment start {dm_base} = byte {dm_off} of {self.lower}"))
            pos += take
        return _merge(out)


def _merge(hops):
    """Adjacent stripe pieces that land next to each other on the dm device (one stripe) stay one hop."""
    merged = []
    for h in hops:
        if merged and merged[-1].offset + merged[-1].length == h.offset:
            prev = merged.pop()
            h = type(h)(prev.layer, prev.space, prev.offset, prev.length + h.length, prev.arithmetic + "; " +
                        h.arithmetic, prev.recoverable)
        merged.append(h)
    return merged


def dm_layers(tables: dict[str, list[Segment]], rename=lambda name: name) -> list[Layer]:
    """One layer per (dm device, underlying device). `rename` turns '8:16' into a kernel name when known."""
    layers = []
    for dm, segs in tables.items():
        renamed = [Segment(s.start, s.length, s.target, tuple((rename(d), o) for d, o in s.devices), s.chunk,
                           s.where) for s in segs]
        for device in sorted({d for s in renamed for d, _ in s.devices}):
            layers.append(DmLayer(dm, device, renamed))
    return layers
