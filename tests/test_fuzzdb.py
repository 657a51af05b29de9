"""The xfs_db fuzz campaign (tests/fuzzdb.py), a fixed sample in CI: damaged filesystems never get a confident
wrong answer. Thousands of cases run outside CI: `python3 tests/fuzzdb.py --images DIR --cases 1500`."""

from __future__ import annotations

import os

import pytest

from tests import fuzzdb

pytestmark = pytest.mark.kernel

CASES_PER_BASE = 25  # about a minute on the 2-core CI machine


@pytest.fixture(scope="module")
def bases(built):
    return [fuzzdb.Base.load(name, *built(name)) for name in fuzzdb.BASES]


def test_fuzzed_filesystems_never_answer_used_bytes_free(bases, tmp_path):
    reps = fuzzdb.campaign(bases, CASES_PER_BASE, seed=20261129, work=str(tmp_path))
    bad = [f"{r['status']}: {r['case']}: {'; '.join(r['problems'])}" for r in reps
           if r["status"] in ("crash", "hang", "wrong")]
    assert bad == []
    s = fuzzdb.summary(reps)
    applied = s["cases"] - s["by_status"].get("not-applied", 0)
    assert applied >= 0.9 * s["cases"], s  # the damage really happened
    assert s["by_status"].get("ok", 0) >= 0.5 * s["cases"], s  # most damaged images still get an answer
    assert s["confined"] >= 10 and s["confined_equal"] >= 0.95 * s["confined"], s


def test_fields_cover_every_record_field(bases):
    """The field lists expand arrays as fstests does: a btree leaf's records, an inode's extents."""
    base = next(b for b in bases if b.rmapbt)
    names = fuzzdb.fields(base.path, ["agf 0", "addr rmaproot"])
    assert {"numrecs", "level", "lsn"} <= set(names)
    assert any(n.startswith("recs[1].") or n.startswith("keys[1].") for n in names), names
    assert os.path.exists(base.path)
