"""Saving and loading fitted models: one file, refused by another mmmlib version.

A fitted :class:`~mmmlib.bayes.model.BayesianMMM` holds its data, scaling and posterior draws;
:func:`save_model` pickles it with the mmmlib version that wrote it, and :func:`load_model` refuses
a file from another version (a model's draws are only meaningful to the code that defined its
parameters). The file is written through a temporary file and a rename, so a crash never leaves a
half-written model.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import mmmlib
from mmmlib.files import atomic_write_bytes

__all__ = ["FORMAT", "load_model", "save_model"]

FORMAT = "mmmlib-model/1"


def save_model(model: Any, path: str | Path) -> Path:
    """Write a fitted model to ``path``.

    Parameters
    ----------
    model : BayesianMMM
        A fitted model (``fit`` called).
    path : str or Path
        Destination file; its folder must exist.

    Returns
    -------
    Path
        The file written.
    """
    if getattr(model, "samples_", None) is None:
        raise ValueError("save_model: the model is not fitted (call fit() first)")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"save_model: folder {path.parent} does not exist")
    payload = {"format": FORMAT, "mmmlib": mmmlib.__version__, "class": type(model).__name__, "model": model}
    atomic_write_bytes(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def load_model(path: str | Path) -> Any:
    """Read a model written by :func:`save_model` with this mmmlib version.

    Only load files you trust: like every pickle, the file can run code when it is read.

    Raises
    ------
    ValueError
        If the file is not an mmmlib model, or was written by another mmmlib version.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            payload = pickle.load(fh)  # noqa: S301 - documented: files the user wrote
    except FileNotFoundError:
        raise ValueError(f"load_model: {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ValueError(f"load_model: {path} is not an mmmlib model file ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"load_model: {path} is not an mmmlib model file (format {FORMAT})")
    if payload["mmmlib"] != mmmlib.__version__:
        raise ValueError(
            f"load_model: {path} was written by mmmlib {payload['mmmlib']}, this is mmmlib {mmmlib.__version__}; "
            "refit the model with this version (its parameters may differ)"
        )
    return payload["model"]
