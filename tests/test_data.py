"""load_csv: every bad input fails with a ValueError naming the column and the first bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmmlib.data import DATA_FILES_READ, load_csv
from mmmlib.simulate import easy_world

ARGS = dict(
    date="date",
    media=["media_tv", "media_search"],
    spend=["spend_tv", "spend_search"],
    target="sales",
    controls=["control_0"],
)


def good_frame(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-07", periods=n, freq="7D").strftime("%Y-%m-%d"),
            "media_tv": rng.uniform(0, 10, n),
            "media_search": rng.uniform(0, 10, n),
            "spend_tv": rng.uniform(0, 5, n),
            "spend_search": rng.uniform(0, 5, n),
            "control_0": rng.normal(size=n),
            "sales": rng.uniform(50, 100, n),
        }
    )


def write(df: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "media.csv"
    df.to_csv(path, index=False)
    return path


def test_good_file_loads_and_is_recorded(tmp_path):
    path = write(good_frame(), tmp_path)
    ds = load_csv(path, **ARGS)
    assert ds.media_array().shape == (12, 2)
    assert ds.target_array().shape == (12,)
    assert ds.channels == ("media_tv", "media_search")
    assert str(path.resolve()) in DATA_FILES_READ


def test_simulated_world_round_trips_through_csv(tmp_path):
    w = easy_world(seed=0, n_weeks=30, n_geos=3)
    path = tmp_path / "panel.csv"
    w.data.frame.to_csv(path, index=False)
    ds = load_csv(
        path,
        date="date",
        media=list(w.data.media),
        spend=list(w.data.spend),
        target="sales",
        controls=list(w.data.controls),
        geo="geo",
    )
    np.testing.assert_allclose(ds.media_array(), w.data.media_array())
    np.testing.assert_allclose(ds.target_array(), w.data.target_array())


def corrupt(col: str, row: int, value):
    def apply(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return apply


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda df: df.drop(columns="spend_tv"), r"column 'spend_tv' not found"),
        (corrupt("sales", 4, np.nan), r"column 'sales' has a missing value at row 4 \(line 6"),
        (corrupt("spend_search", 7, -1.0), r"column 'spend_search' \(spend\) is negative at row 7"),
        (corrupt("media_tv", 2, -0.5), r"column 'media_tv' \(media\) is negative at row 2"),
        (corrupt("control_0", 3, "high"), r"column 'control_0' is not numeric at row 3"),
        (corrupt("date", 5, "not a date"), r"column 'date' has a missing or unparsable date at row 5"),
        (corrupt("date", 6, "2024-01-07"), r"column 'date' is not sorted: row 6"),
        (corrupt("date", 3, "2024-01-21"), r"column 'date' has a duplicate date at row 3"),
        (corrupt("date", 9, "2024-03-11"), r"column 'date' is not regular: expected a step of 7 days.* at row 9"),
    ],
)
def test_bad_input_names_column_and_row(tmp_path, mutate, pattern):
    path = write(mutate(good_frame()), tmp_path)
    with pytest.raises(ValueError, match=pattern):
        load_csv(path, **ARGS)


def test_geo_with_other_dates_is_named(tmp_path):
    a, b = good_frame(), good_frame()
    a["region"], b["region"] = "north", "south"
    b = b.iloc[:-1]
    path = write(pd.concat([a, b], ignore_index=True), tmp_path)
    with pytest.raises(ValueError, match=r"column 'region': geo 'south' \(first at row 12"):
        load_csv(path, geo="region", **ARGS)


def test_mismatched_media_and_spend(tmp_path):
    path = write(good_frame(), tmp_path)
    with pytest.raises(ValueError, match="one spend column per media column"):
        load_csv(path, **{**ARGS, "spend": ["spend_tv"]})


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        load_csv("/nonexistent/file.csv", **ARGS)


def test_split_is_temporal():
    w = easy_world(seed=0, n_weeks=40)
    train, test = w.data.split(8)
    assert train.n_times == 32 and test.n_times == 8
    assert train.dates.max() < test.dates.min()
    with pytest.raises(ValueError, match="n_test"):
        w.data.split(40)
