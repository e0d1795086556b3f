"""Shipped data are what the code says they are."""

from __future__ import annotations

import io

import numpy as np

from mmmlib.book.results import repo_root
from mmmlib.data import load_csv
from mmmlib.worlds import easy_world

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


def test_robyn_demo_data_is_the_published_file_and_loads():
    import hashlib

    path = repo_root() / "data" / "robyn_dt_simulated_weekly.csv"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "d541cfa92ca68fbda03ce6c987733e996b3abf44a95f2a32ce6836b9f8258cf1")
    assert (repo_root() / "data" / "LICENSE-robyn.txt").read_text().startswith("MIT License")
    ds = load_csv(path, date="DATE", media=["tv_S", "ooh_S", "print_S", "facebook_I", "search_clicks_P"],
                  spend=["tv_S", "ooh_S", "print_S", "facebook_S", "search_S"], target="revenue",
                  controls=["competitor_sales_B", "newsletter"])
    assert ds.n_times == 208 and ds.spend_array().sum() > 0
