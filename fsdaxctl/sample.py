"""The sample XFS image shipped with fsdaxctl, unpacked once into the user's cache."""

from __future__ import annotations

import hashlib
import lzma
import os
import tempfile
from importlib import resources

from fsdaxctl.errors import DeviceError

SAMPLE = "sample.img.xz"


def sample_image(announce=None) -> str:
    """The unpacked sample's path; `announce(text)` is told where it was unpacked, when it is (first use)."""
    packed = resources.files("fsdaxctl.data").joinpath(SAMPLE).read_bytes()
    tag = hashlib.sha256(packed).hexdigest()[:12]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for cache in (os.path.join(base, "fsdaxctl"), os.path.join(tempfile.gettempdir(), f"fsdaxctl-{os.getuid()}")):
        path = os.path.join(cache, f"sample-{tag}.img")
        if os.path.exists(path):
            return path
        try:
            os.makedirs(cache, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".sample-")
            with os.fdopen(fd, "wb") as out:
                out.write(lzma.decompress(packed))
            os.replace(tmp, path)  # atomic: a concurrent run never sees half an image
            if announce:
                announce(f"--sample: unpacked the sample image ({os.path.getsize(path) >> 20} MiB) to {path}")
            return path
        except OSError:
            continue
    raise DeviceError("cannot unpack the sample image: no writable cache directory")
