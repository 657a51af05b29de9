"""Shared fixtures: real images made by mkfs.xfs, and the rule that kernel-oracle tests may not skip in CI.

FSDAXCTL_REQUIRE_KERNEL=1 (set by .ci/run) turns "loop mounts are impossible here" from a skip into a failure,
so a CI run cannot pass without having compared against the kernel.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI runs the same property-test and fuzz examples every time (derandomized), so a submission cannot fail on
# a draw nobody has seen; local runs stay random and keep finding new cases (and store them in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REQUIRE_KERNEL = os.environ.get("FSDAXCTL_REQUIRE_KERNEL") == "1"


def need_kernel():
    """Skip (or, under FSDAXCTL_REQUIRE_KERNEL=1, fail) unless loop-mounting XFS works here."""
    from tests.kernel import can_loop_mount

    ok, why = can_loop_mount()
    if not ok:
        if REQUIRE_KERNEL:
            pytest.fail(f"kernel-oracle test cannot run but FSDAXCTL_REQUIRE_KERNEL=1: {why}", pytrace=False)
        pytest.skip(f"kernel-oracle tests need root and loop mounts: {why}")


def need_tool(*names, package: str = ""):
    """Skip (or, under FSDAXCTL_REQUIRE_KERNEL=1, fail: CI installs them) unless every tool is installed."""
    import shutil

    for name in names:
        if shutil.which(name) is None:
            why = f"{name} not found" + (f" (apt-get install -y {package})" if package else "")
            if REQUIRE_KERNEL:
                pytest.fail(f"{why} but FSDAXCTL_REQUIRE_KERNEL=1", pytrace=False)
            pytest.skip(why)


@pytest.fixture(scope="session")
def mkfs_image(tmp_path_factory):
    """An empty 64 MiB v5 filesystem (rmapbt, reflink, 4 AGs): mkfs only, no mount, no root needed."""
    from tests.images import mkfs

    path = tmp_path_factory.mktemp("mkfs") / "empty.img"
    mkfs(path, 64 << 20, ["-b", "size=4096", "-d", "agcount=4", "-m", "rmapbt=1,reflink=1"])
    return str(path)


@pytest.fixture(scope="session")
def odd_ag_image(tmp_path_factory):
    """AGs of 5001 blocks (not a power of two) and a short last AG: segmented fsblocks != linear blocks."""
    from tests.images import mkfs

    path = tmp_path_factory.mktemp("mkfs") / "odd.img"
    blocks = 5001 * 4 + 4500
    mkfs(path, blocks * 4096, ["-b", "size=4096", "-d", f"agsize={5001 * 4096},size={blocks * 4096}",
                               "-m", "rmapbt=1,reflink=1"])
    return str(path)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """built(config) -> (image path, kernel record): tests/images.py configs, built once per session on a
    real loop mount, with the kernel's GETFSMAP, paths (os.walk) and FIEMAP recorded."""
    from tests import images

    cache = {}

    def get(name):
        if name not in cache:
            need_kernel()
            path = str(tmp_path_factory.mktemp(name) / f"{name}.img")
            cache[name] = (path, images.build_and_record(path, name))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory):
    """name -> (truth, {role: image path}) of a realtime fixture in tests/data/rt (QEMU-recorded), each image
    unpacked once per run."""
    import json
    import lzma

    cache = {}

    def get(name, where="rt"):  # where: tests/data/rt, or tests/data/rt-crash (crashed, dirty logs)
        data = os.path.join(os.path.dirname(__file__), "data", where)
        if (where, name) not in cache:
            truth = json.load(open(os.path.join(data, name, "truth.json")))
            out = tmp_path_factory.mktemp(name)
            paths = {}
            for role, dev in truth["devices"].items():
                paths[role] = str(out / f"{role}.img")
                with lzma.open(os.path.join(data, name, dev["image"])) as src, open(paths[role], "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            cache[where, name] = truth, paths
        return cache[where, name]

    return get
