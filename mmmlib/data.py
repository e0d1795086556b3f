"""The dataset object every model takes, and a CSV loader that validates a user's file.

A :class:`MediaDataset` holds one tidy frame (one row per period, or per period
and geo) and the names of its columns: date, media (impressions, GRPs, clicks...),
spend (one column per media column, same order), target and controls. Models read
arrays from it with time on axis 0, as the transforms expect:

- national: media and spend ``(T, C)``, target ``(T,)``, controls ``(T, K)``;
- geo panel: media and spend ``(T, C, G)``, target ``(T, G)``, controls ``(T, K, G)``.

See Chapter 0 for the simulated datasets and Chapter 1 for fitting one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["MediaDataset", "MIN_PERIODS", "load_csv", "DATA_FILES_READ"]

DATA_FILES_READ: set[str] = set()
"""Absolute paths of data files read through :func:`load_csv` in this process.

The results registry records them, and the book runner hashes them to decide
whether an executed chapter is stale.
"""


@dataclass(frozen=True)
class MediaDataset:
    """A media panel: one row per period (and geo), with named roles for columns.

    Attributes
    ----------
    frame : pandas.DataFrame
        Sorted by (geo,) date; a default integer index.
    date, target : str
        Column names.
    media, spend : tuple of str
        One spend column per media column, in the same channel order.
    controls : tuple of str
        Extra regressors (price, macro indices...). May be empty.
    geo : str or None
        Geo column for a panel; ``None`` for national data.
    channels : tuple of str
        Display names of the channels (default: the media column names).
    name : str
        Short label used in tables and figure titles.
    """

    frame: pd.DataFrame
    date: str
    media: tuple[str, ...]
    spend: tuple[str, ...]
    target: str
    controls: tuple[str, ...] = ()
    geo: str | None = None
    channels: tuple[str, ...] = field(default=())
    name: str = "dataset"

    def __post_init__(self) -> None:
        if len(self.media) != len(self.spend):
            raise ValueError(
                f"media has {len(self.media)} columns but spend has {len(self.spend)}: "
                "give one spend column per media column, in the same order"
            )
        if not self.channels:
            object.__setattr__(self, "channels", tuple(self.media))
        if len(self.channels) != len(self.media):
            raise ValueError("channels must name each media column once")

    # ----------------------------------------------------------------- shape
    @property
    def dates(self) -> pd.DatetimeIndex:
        """The distinct periods, sorted."""
        return pd.DatetimeIndex(sorted(self.frame[self.date].unique()))

    @property
    def geos(self) -> tuple[str, ...]:
        """Geo labels in sorted order (empty for national data)."""
        if self.geo is None:
            return ()
        return tuple(sorted(self.frame[self.geo].astype(str).unique()))

    @property
    def n_times(self) -> int:
        return len(self.dates)

    @property
    def n_channels(self) -> int:
        return len(self.media)

    # ----------------------------------------------------------------- arrays
    def _array(self, cols: Sequence[str]) -> np.ndarray:
        if not cols:
            shape = (self.n_times, 0) + ((len(self.geos),) if self.geo else ())
            return np.zeros(shape)
        if self.geo is None:
            return self.frame[list(cols)].to_numpy(dtype=np.float64)
        wide = self.frame.pivot(index=self.date, columns=self.geo, values=list(cols))
        arr = wide.to_numpy(dtype=np.float64).reshape(self.n_times, len(cols), len(self.geos))
        return arr

    def media_array(self) -> np.ndarray:
        """Media, ``(T, C)`` or ``(T, C, G)``."""
        return self._array(self.media)

    def spend_array(self) -> np.ndarray:
        """Spend, ``(T, C)`` or ``(T, C, G)``."""
        return self._array(self.spend)

    def controls_array(self) -> np.ndarray:
        """Controls, ``(T, K)`` or ``(T, K, G)``."""
        return self._array(self.controls)

    def target_array(self) -> np.ndarray:
        """Target, ``(T,)`` or ``(T, G)``."""
        arr = self._array([self.target])
        return arr[:, 0] if arr.ndim == 2 else arr[:, 0, :]

    # ----------------------------------------------------------------- splits
    def split(self, n_test: int) -> tuple[MediaDataset, MediaDataset]:
        """Temporal split: all but the last ``n_test`` periods, and those periods."""
        if not 0 < n_test < self.n_times:
            raise ValueError(f"n_test must be in [1, {self.n_times - 1}], got {n_test}")
        cut = self.dates[-n_test]
        before = self.frame[self.frame[self.date] < cut].reset_index(drop=True)
        after = self.frame[self.frame[self.date] >= cut].reset_index(drop=True)
        return self._with_frame(before), self._with_frame(after)

    def _with_frame(self, frame: pd.DataFrame) -> MediaDataset:
        return MediaDataset(
            frame=frame,
            date=self.date,
            media=self.media,
            spend=self.spend,
            target=self.target,
            controls=self.controls,
            geo=self.geo,
            channels=self.channels,
            name=self.name,
        )


# --------------------------------------------------------------------- loader
def _where(i: int) -> str:
    """Describe data row ``i`` (0-based) with its line in the file (header is line 1)."""
    return f"row {i} (line {i + 2} of the file)"


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"column {col!r} is not numeric at {_where(i)}: {df[col].iloc[i]!r}"
        )
    return values.astype(np.float64)


MIN_PERIODS = 8
"""Fewest periods :func:`load_csv` accepts: fewer cannot fit a trend, a season and one
coefficient per channel, whatever the model."""


def _columns(value: str | Sequence[str] | None, role: str) -> list[str]:
    """A role's column names: one name, a sequence of names, or none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    names = list(value)
    for v in names:
        if not isinstance(v, str):
            raise ValueError(f"{role}: column names must be strings, got {v!r}")
    return names


def load_csv(
    path: str | Path,
    date: str,
    media: str | Sequence[str],
    spend: str | Sequence[str],
    target: str,
    controls: str | Sequence[str] = (),
    geo: str | None = None,
    channels: Sequence[str] | None = None,
    name: str | None = None,
) -> MediaDataset:
    """Load and validate a media CSV into a :class:`MediaDataset`.

    Checks, each failing with a :class:`ValueError` that names the file, the column and
    the first bad row: the file is UTF-8 CSV text with a header and every row has as
    many fields as the header (an unquoted thousands separator, ``1,500``, adds one);
    every named column exists; no column is named twice; dates are dates (not numbers
    such as week indices), parse, are sorted (within each geo), unique and regularly
    spaced; values are numeric and not missing; media and spend are non-negative; in a
    panel, every geo has the same dates; there are at least :data:`MIN_PERIODS` periods.

    Parameters
    ----------
    path : str or Path
        The CSV file (header in the first line).
    date, target : str
        Column names.
    media, spend : sequence of str
        Media columns and their spend columns, one each, same order.
    controls : sequence of str
        Extra regressors.
    geo : str, optional
        Geo column of a panel.
    channels : sequence of str, optional
        Display names for the channels.
    name : str, optional
        Label for tables; defaults to the file's stem.

    Returns
    -------
    MediaDataset
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such CSV file: {path}")
    media, spend = _columns(media, "media"), _columns(spend, "spend")
    controls = _columns(controls, "controls")
    try:
        return _load(path, date, media, spend, target, controls, geo, channels, name)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError("the file is empty (no header, no rows)") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"the file is not UTF-8 text ({err.reason} at byte {err.start}); save it as a UTF-8 CSV") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"the file is not a well-formed CSV: {err}") from None
    if not isinstance(df.index, pd.RangeIndex):
        raise ValueError(
            "rows have more fields than the header (from line 2 on): an unquoted thousands separator "
            "('1,500') or a trailing comma? Remove the separators or quote such numbers"
        )
    if df.empty:
        raise ValueError("the file has a header but no data rows")
    return df


def _parse_dates(column: pd.Series, date: str) -> pd.Series:
    """Dates as datetimes; numbers (week indices, Excel serials, epoch counts, and 20240107, which
    could be any of them) are refused rather than read as nanoseconds after 1970."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ValueError(
            f"column {date!r} holds numbers ({str(column.iloc[0])!r} at {_where(0)}), not dates: "
            "give calendar dates such as 2024-01-07"
        )
    text = column.astype("string").str.strip()
    numeric = text.str.fullmatch(r"[+-]?\d+(\.\d*)?")
    if numeric.any():
        i = int(np.flatnonzero(numeric.fillna(False).to_numpy())[0])
        raise ValueError(f"column {date!r} holds a number, not a date, at {_where(i)}: {column.iloc[i]!r}")
    with warnings.catch_warnings():  # "could not infer format": each value is parsed on its own, fine here
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(column, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"column {date!r} has a missing or unparsable date at {_where(i)}: {column.iloc[i]!r}")
    early = parsed.dt.year < 1900
    if early.any():
        i = int(np.flatnonzero(early.to_numpy())[0])
        raise ValueError(f"column {date!r} has an implausible date at {_where(i)}: {column.iloc[i]!r} (before 1900)")
    return parsed


def _load(path, date, media, spend, target, controls, geo, channels, name) -> MediaDataset:
    if not media:
        raise ValueError("media: give at least one media column")
    if len(media) != len(spend):
        raise ValueError(
            f"media has {len(media)} columns but spend has {len(spend)}: give one spend "
            "column per media column, in the same order"
        )
    df = _read(path)
    wanted = [date, target, *media, *spend, *controls] + ([geo] if geo else [])
    seen: set[str] = set()
    for col in wanted:
        if col in seen and col not in (set(media) & set(spend)):
            raise ValueError(f"column {col!r} is named for two roles")
        seen.add(col)
        if col not in df.columns:
            raise ValueError(
                f"column {col!r} not found; columns are: {', '.join(map(str, df.columns))}"
            )

    df[date] = _parse_dates(df[date], date)

    # numbers, missing values, signs
    for col in [target, *media, *spend, *controls]:
        values = _numeric(df, col)
        if values.isna().any():
            i = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"column {col!r} has a missing value at {_where(i)}")
        if not np.isfinite(values.to_numpy()).all():
            i = int(np.flatnonzero(~np.isfinite(values.to_numpy()))[0])
            raise ValueError(f"column {col!r} has a non-finite value at {_where(i)}")
        if col in media or col in spend:
            neg = values < 0
            if neg.any():
                i = int(np.flatnonzero(neg.to_numpy())[0])
                role = "spend" if col in spend else "media"
                raise ValueError(
                    f"column {col!r} ({role}) is negative at {_where(i)}: {values.iloc[i]}"
                )
        df[col] = values

    groups = [(None, df)] if geo is None else list(df.groupby(geo, sort=True))
    if geo is not None and df[geo].isna().any():
        i = int(np.flatnonzero(df[geo].isna().to_numpy())[0])
        raise ValueError(f"column {geo!r} has a missing geo at {_where(i)}")
    step: pd.Timedelta | None = None
    reference: np.ndarray | None = None
    for g, part in groups:
        where_geo = "" if g is None else f" in geo {g!r}"
        d = part[date]
        rows = part.index.to_numpy()
        diffs = d.diff().iloc[1:]
        if (diffs < pd.Timedelta(0)).any():
            j = int(np.flatnonzero((diffs < pd.Timedelta(0)).to_numpy())[0]) + 1
            raise ValueError(f"column {date!r} is not sorted{where_geo}: {_where(int(rows[j]))} goes back in time")
        if (diffs == pd.Timedelta(0)).any():
            j = int(np.flatnonzero((diffs == pd.Timedelta(0)).to_numpy())[0]) + 1
            raise ValueError(f"column {date!r} has a duplicate date{where_geo} at {_where(int(rows[j]))}")
        if len(diffs):
            step = diffs.iloc[0] if step is None else step
            irregular = diffs != step
            if irregular.any():
                j = int(np.flatnonzero(irregular.to_numpy())[0]) + 1
                raise ValueError(
                    f"column {date!r} is not regular{where_geo}: expected a step of {step}, "
                    f"found {diffs.iloc[j - 1]} at {_where(int(rows[j]))}"
                )
        if reference is None:
            reference = d.to_numpy()
        elif len(d) != len(reference) or (d.to_numpy() != reference).any():
            raise ValueError(
                f"column {geo!r}: geo {g!r} (first at {_where(int(rows[0]))}) does not have the same dates as the first geo"
            )

    n_periods = len(reference) if reference is not None else 0
    if n_periods < MIN_PERIODS:
        raise ValueError(f"{n_periods} periods{' per geo' if geo else ''}: at least {MIN_PERIODS} are needed to fit a model")
    if geo is not None:
        df[geo] = df[geo].astype(str)
        df = df.sort_values([geo, date], kind="stable").reset_index(drop=True)
    DATA_FILES_READ.add(str(path.resolve()))
    return MediaDataset(
        frame=df[list(dict.fromkeys(wanted))].reset_index(drop=True),
        date=date,
        media=tuple(media),
        spend=tuple(spend),
        target=target,
        controls=tuple(controls),
        geo=geo,
        channels=tuple(channels) if channels else tuple(media),
        name=name or path.stem,
    )
