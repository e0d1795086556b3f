"""Shipped data are what the code says they are."""

from __future__ import annotations

import io

import numpy as np

from mmmlib.data import load_csv
from mmmlib.results import repo_root
from mmmlib.simulate import easy_world

CHANNELS = ["tv", "search", "social", "display"]


def test_example_world_is_regenerated_exactly():
    path = repo_root() / "data" / "example_easy_world.csv"
    buf = io.StringIO()
    easy_world(seed=0).data.frame.to_csv(buf, index=False, float_format="%.6f")
    assert path.read_text() == buf.getvalue()


def test_example_world_loads():
    ds = load_csv(
        repo_root() / "data" / "example_easy_world.csv",
        date="date",
        media=[f"media_{c}" for c in CHANNELS],
        spend=[f"spend_{c}" for c in CHANNELS],
        target="sales",
        controls=["control_0"],
        channels=CHANNELS,
    )
    assert ds.n_times == 156 and ds.channels == tuple(CHANNELS)
    np.testing.assert_allclose(ds.spend_array(), easy_world(seed=0).data.spend_array(), atol=1e-6)
