"""load_csv: every bad input fails with a ValueError naming the column and the first bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmmlib.data import DATA_FILES_READ, load_csv
from mmmlib.worlds import easy_world

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


# ------------------------------------------------------------- files that used to load wrongly
def write_text(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "media.csv"
    path.write_text(text, encoding=encoding)
    return path


def test_thousands_separators_are_refused_not_read_as_an_index(tmp_path):
    """'1,500' unquoted in every row used to shift the columns: dates became 1970 timestamps."""
    df = good_frame()
    lines = df.to_csv(index=False).splitlines()
    rows = [line.replace(",", ",1,", 1) for line in lines[1:]]  # one extra field per row
    for body in (rows, [rows[0]] * len(rows)):  # also with identical rows (it used to crash in int())
        path = write_text(tmp_path, "\n".join([lines[0], *body]) + "\n")
        with pytest.raises(ValueError, match=r"^media\.csv: rows have more fields than the header"):
            load_csv(path, **ARGS)


@pytest.mark.parametrize("dates", [list(range(1, 13)), [str(i) for i in range(1, 13)], [20240107.0 + i for i in range(12)]])
def test_numeric_dates_are_refused(tmp_path, dates):
    df = good_frame()
    df["date"] = dates
    with pytest.raises(ValueError, match=r"^media\.csv: column 'date' holds (numbers|a number)"):
        load_csv(write(df, tmp_path), **ARGS)


def test_eight_digit_numbers_are_not_guessed_as_dates(tmp_path):
    df = good_frame()
    df["date"] = pd.to_datetime(df["date"]).dt.strftime("%Y%m%d")
    with pytest.raises(ValueError, match=r"column 'date' holds numbers \('20240107' at row 0"):
        load_csv(write(df, tmp_path), **ARGS)


@pytest.mark.parametrize("text, encoding, match", [
    ("", "utf-8", "the file is empty"),
    ("date,media_tv,media_search,spend_tv,spend_search,control_0,sales\n", "utf-8", "header but no data rows"),
    (None, "utf-16", "not UTF-8 text"),
])
def test_empty_header_only_and_utf16_files_are_named(tmp_path, text, encoding, match):
    text = good_frame().to_csv(index=False) if text is None else text
    with pytest.raises(ValueError, match=rf"^media\.csv: .*{match}"):
        load_csv(write_text(tmp_path, text, encoding), **ARGS)


def test_too_few_periods_are_an_error(tmp_path):
    from mmmlib.data import MIN_PERIODS

    with pytest.raises(ValueError, match=rf"^media\.csv: 1 periods: at least {MIN_PERIODS}"):
        load_csv(write(good_frame(1), tmp_path), **ARGS)
    load_csv(write(good_frame(MIN_PERIODS), tmp_path), **ARGS)


def test_single_column_names_may_be_strings(tmp_path):
    path = write(good_frame(), tmp_path)
    one = load_csv(path, date="date", media="media_tv", spend="spend_tv", target="sales", controls="control_0")
    assert one.media == ("media_tv",) and one.controls == ("control_0",)
    with pytest.raises(ValueError, match="column names must be strings"):
        load_csv(path, date="date", media=["media_tv"], spend=["spend_tv"], target="sales", controls=[1])


def test_every_error_names_the_file(tmp_path):
    for mutate, _ in [(corrupt("sales", 4, np.nan), None), (corrupt("date", 6, "2024-01-07"), None)]:
        with pytest.raises(ValueError, match=r"^media\.csv: column"):
            load_csv(write(mutate(good_frame()), tmp_path), **ARGS)


# ------------------------------------------------------------- fuzz: structural corruptions
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GOOD_TEXT = good_frame(10).round(4).to_csv(index=False)
GOOD = None


def _corrupt(text: str, kind: str, pos: int, char: str) -> str:
    lines = text.splitlines(keepends=True)
    i = 1 + pos % (len(lines) - 1)  # a data line
    p = pos % len(text)
    if kind == "insert":
        return text[:p] + char + text[p:]
    if kind == "delete":
        return text[:p] + text[p + 1:]
    if kind == "replace":
        return text[:p] + char + text[p + 1:]
    if kind == "drop_line":
        return "".join(lines[:i] + lines[i + 1:])
    if kind == "duplicate_line":
        return "".join(lines[:i + 1] + lines[i:])
    if kind == "swap_lines":
        j = 1 + (i % (len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if kind == "truncate":
        return text[:p]
    raise AssertionError(kind)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["insert", "delete", "replace", "drop_line", "duplicate_line", "swap_lines", "truncate"]),
       pos=st.integers(0, 10_000), char=st.sampled_from([",", '"', "x", "-", " ", "\n", ";", "\t", "1", "\x00", "é"]))
def test_corrupted_files_load_identically_or_fail_naming_the_place(tmp_path, kind, pos, char):
    """A corruption of a valid file either leaves its data unchanged (e.g. a space next to a
    number) or raises a ValueError that names the file and says where: a column, a row or line, or
    what is wrong with the file as a whole. It never loads different data silently, except where
    the change is itself a valid value (a digit replaced by another digit: not generated here
    since digits only enter as insertions that make a number longer, which is checked below)."""
    global GOOD
    if GOOD is None:
        GOOD = load_csv(write_text(tmp_path, GOOD_TEXT), **ARGS).frame
    text = _corrupt(GOOD_TEXT, kind, pos, char)
    try:
        loaded = load_csv(write_text(tmp_path, text), **ARGS).frame
    except ValueError as err:
        msg = str(err)
        assert msg.startswith("media.csv: "), msg
        assert any(w in msg for w in ("column", "row", "line", "file", "periods", "field")), msg
        return
    if loaded.equals(GOOD):
        return
    # Loaded something else: only acceptable when the corruption produced another valid file:
    # fewer whole lines (dropped, or the file cut at a line end), the file cut inside its last
    # number (indistinguishable from a shorter number: a CSV has no end marker), or one number
    # changed into another valid one (a digit, a minus sign or a blank inserted or removed).
    n = len(loaded)
    if loaded.shape[1] == GOOD.shape[1] and n <= len(GOOD):
        if kind == "drop_line" and n == len(GOOD) - 1:
            return
        head = GOOD.iloc[:n].reset_index(drop=True)
        differs = (loaded != head).to_numpy()
        if kind == "truncate" and differs[:-1].sum() == 0 and differs[-1, [c != "sales" for c in GOOD.columns]].sum() == 0:
            return
        if n == len(GOOD) and differs.sum() == 0:  # the same numbers (e.g. 0.13 written .13)
            return
        if n == len(GOOD) and differs.sum() == 1 and kind in ("insert", "delete", "replace") and (char in "1- \t" or kind == "delete"):
            return
    raise AssertionError((kind, repr(char), text))
