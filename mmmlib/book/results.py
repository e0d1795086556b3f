"""The results registry: every headline number of a chapter under a stable key.

Each chapter opens a :class:`Recorder`, adds its headline numbers with
:meth:`Recorder.add` (which also *glues* them, so the prose shows exactly the value
in the file) and calls :meth:`Recorder.save` last, which writes
``book/results/NN_slug.json`` atomically::

    {
      "chapter": "00_worlds",
      "results": {"ch00.easy.roi.tv": {"value": 1.6, "display": "1.60", "unit": "...",
                                       "meaning": "...", "where": "ch00-truth"}, ...},
      "provenance": {"git_commit": ..., "git_dirty": ..., "parameters": {...}, "seed": 0,
                     "versions": {...}, "hardware": {...}, "wall_time_s": 12.3,
                     "peak_rss_mb": 850.0, "data_files": [...]}
    }

A result is cited by its key (see the book's "How to cite" page).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mmmlib.files import atomic_write_text
from mmmlib.runtime import Runtime, check_profile, peak_rss_mb, setup

__all__ = [
    "KEY_PATTERN",
    "Result",
    "Recorder",
    "begin_chapter",
    "load_results",
    "repo_root",
]

KEY_PATTERN = re.compile(r"^ch\d{2}(\.[a-z0-9_]+)+$")
"""Result keys: ``chNN`` then dot-separated lower-case words, e.g. ``ch01.roi.tv.mean``."""

PACKAGES = ("torch", "pyro-ppl", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "mmmlib")


def repo_root() -> Path:
    """The project's root folder (where ``pyproject.toml`` lies)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    """One headline number.

    Attributes
    ----------
    key : str
        Stable key, e.g. ``ch00.easy.roi.tv``.
    value : float | int | str
        The number as computed (rounded only for ``display``).
    display : str
        The text the book shows (``format(value, fmt)``).
    unit : str
        Unit, e.g. ``"sales per unit spend"`` or ``"fraction"``.
    meaning : str
        One line saying what the number is.
    where : str
        MyST label of the section that shows it (empty: the chapter page).
    """

    key: str
    value: float | int | str
    display: str
    unit: str
    meaning: str
    where: str = ""


class _Glued:
    """A value whose plain-text representation is its display string (no quotes)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root()), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that compute the book's numbers."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class Recorder:
    """Collects a chapter's headline numbers, glues them, and writes the results file.

    Parameters
    ----------
    chapter : str
        ``NN_slug``, e.g. ``00_worlds``; keys must start with ``chNN.``.
    parameters : mapping
        The chapter's papermill parameters (recorded as provenance).
    runtime : Runtime
        From :func:`mmmlib.runtime.setup`.
    results_dir : str or Path
        Folder of the results files (the runner passes ``../results``).
    glue : bool
        Glue each number into the notebook with myst-nb (off outside notebooks).
    """

    def __init__(
        self,
        chapter: str,
        parameters: Mapping[str, Any],
        runtime: Runtime,
        results_dir: str | Path = "../results",
        glue: bool = True,
    ) -> None:
        if not re.fullmatch(r"\d{2}_[a-z0-9_]+", chapter):
            raise ValueError(f"chapter must look like '00_worlds', got {chapter!r}")
        self.chapter = chapter
        self.prefix = f"ch{chapter[:2]}."
        self.parameters = dict(parameters)
        self.runtime = runtime
        self.results_dir = Path(results_dir)
        self.glue = glue
        self._results: dict[str, Result] = {}
        self._t0 = time.perf_counter()

    @property
    def results(self) -> dict[str, Result]:
        return dict(self._results)

    def add(
        self,
        key: str,
        value: float | int | str,
        unit: str,
        meaning: str,
        fmt: str = ".4g",
        where: str = "",
    ) -> Result:
        """Record one number and glue its display text under ``key``.

        Parameters
        ----------
        key : str
            Must start with this chapter's prefix (``chNN.``) and match :data:`KEY_PATTERN`.
        value : float, int or str
            The value; numpy scalars are converted.
        unit, meaning : str
            Unit and one-line meaning (both required: a number without them is not citable).
        fmt : str
            Format spec for the displayed text (default four significant digits).
        where : str
            MyST label of the section showing the number.
        """
        if not key.startswith(self.prefix) or not KEY_PATTERN.match(key):
            raise ValueError(
                f"result key {key!r} must start with {self.prefix!r} and match {KEY_PATTERN.pattern}"
            )
        if key in self._results:
            raise ValueError(f"result key {key!r} was already recorded in this chapter")
        if not unit or not meaning:
            raise ValueError(f"result {key!r}: give a unit and a one-line meaning")
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and value != value:  # NaN
            raise ValueError(f"result {key!r} is NaN")
        display = format(value, fmt) if not isinstance(value, str) else value
        res = Result(key=key, value=value, display=display, unit=unit, meaning=meaning, where=where)
        self._results[key] = res
        if self.glue:
            from myst_nb import glue

            glue(key, _Glued(display), display=False)
        return res

    def provenance(self) -> dict[str, Any]:
        """Commit, dirty flag, parameters, seed, versions, hardware, wall time, peak memory, data files."""
        from mmmlib.data import DATA_FILES_READ

        root = repo_root()
        data_files = sorted(
            str(Path(p).resolve().relative_to(root)) if Path(p).resolve().is_relative_to(root) else p
            for p in DATA_FILES_READ
        )
        dirty = _git("status", "--porcelain", "--", "mmmlib", "chapters", "data", "requirements.lock")
        return {
            "git_commit": _git("rev-parse", "HEAD") or "unknown",
            "git_dirty": bool(dirty),
            "parameters": self.parameters,
            "seed": self.runtime.seed,
            "versions": versions(),
            "hardware": self.runtime.hardware,
            "wall_time_s": round(time.perf_counter() - self._t0, 2),
            "peak_rss_mb": peak_rss_mb(),
            "data_files": data_files,
        }

    def save(self) -> Path:
        """Write ``<results_dir>/<chapter>.json`` atomically and return its path."""
        if not self._results:
            raise ValueError(f"chapter {self.chapter}: no results recorded")
        doc = {
            "chapter": self.chapter,
            "results": {k: {f: v for f, v in asdict(r).items() if f != "key"} for k, r in self._results.items()},
            "provenance": self.provenance(),
        }
        path = self.results_dir / f"{self.chapter}.json"
        return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def begin_chapter(
    chapter: str,
    parameters: Mapping[str, Any],
    results_dir: str | Path = "../results",
    threads: int | None = None,
) -> tuple[Runtime, Recorder]:
    """Set up a chapter: seed, threads, device, and an empty results recorder.

    Every chapter's first code cell::

        runtime, results = begin_chapter("00_worlds", dict(profile=profile, seed=seed))

    Parameters
    ----------
    chapter : str
        ``NN_slug``.
    parameters : mapping
        Must contain ``profile`` (``quick`` or ``full``) and ``seed``.
    results_dir : str or Path
        Where :meth:`Recorder.save` writes.
    threads : int, optional
        Thread count (see :func:`mmmlib.runtime.setup`).
    """
    profile = parameters.get("profile")
    try:
        check_profile(profile)
    except ValueError:
        raise ValueError(f"parameter 'profile' must be 'quick' or 'full', got {profile!r}") from None
    seed = parameters.get("seed")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"parameter 'seed' must be a non-negative integer, got {seed!r}")
    runtime = setup(seed=seed, threads=threads)
    return runtime, Recorder(chapter, parameters, runtime, results_dir=results_dir)


def load_results(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Read every ``*.json`` results file of a folder, keyed by chapter."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        out[doc["chapter"]] = doc
    return out
