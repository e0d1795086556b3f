"""Run the published ``deepcausalmmm`` package (PyPI 1.0.21) on a geo panel, as its authors do.

The package is an optional dependency: ``make venv`` installs it from ``requirements-peers.txt``
with ``--no-deps`` because its metadata pins ``numpy<2`` while its code runs on the numpy 2
the book uses (its other dependencies are in the ``peers`` extra of ``pyproject.toml``).

The driver follows the package's own example pipeline: ``UnifiedDataPipeline.temporal_split``,
``fit_and_transform_training``/``transform_holdout`` (share-of-voice media, zero-padded burn-in
weeks in front of both blocks), ``ModelTrainer`` with the default configuration apart from
what the arguments change. As designed by the package, the trainer reads holdout error
during training (learning-rate schedule, early stopping); we leave that as it is and say so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PeerRun", "PeerUnavailable", "run_deepcausalmmm", "PEER_VERSION"]

PEER_VERSION = "1.0.21"


class PeerUnavailable(ImportError):
    """The ``deepcausalmmm`` package is not installed (or not the pinned version)."""


@dataclass(frozen=True)
class PeerRun:
    """Outputs of one ``deepcausalmmm`` fit, on the original sales scale.

    Attributes
    ----------
    prediction : numpy.ndarray, shape (R, T)
        Train weeks then holdout weeks (each block predicted from its own padded sequence).
    train_weeks : int
    adjacency : numpy.ndarray, shape (C, C)
        The learned "DAG" edge weights (continuous).
    adjacency_thresholded : numpy.ndarray, shape (C, C)
        After the package's own pruning rule (``threshold_dag`` at its configured threshold).
    media_share : float
        Media contributions over the prediction on the training weeks (scaled space).
    seconds : float
        Wall time of the fit.
    config : dict
        The configuration used.
    """

    prediction: np.ndarray
    train_weeks: int
    adjacency: np.ndarray
    adjacency_thresholded: np.ndarray
    media_share: float
    seconds: float
    config: dict


def _import():
    try:
        import deepcausalmmm
        from deepcausalmmm.core.config import get_default_config
        from deepcausalmmm.core.data import UnifiedDataPipeline
        from deepcausalmmm.core.trainer import ModelTrainer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise PeerUnavailable(
            "the peer package deepcausalmmm is not installed; `make venv` installs it "
            f"(requirements-peers.txt, deepcausalmmm=={PEER_VERSION})"
        ) from err
    if getattr(deepcausalmmm, "__version__", "") != PEER_VERSION:
        raise PeerUnavailable(f"deepcausalmmm {PEER_VERSION} expected, found {deepcausalmmm.__version__}")
    logging.getLogger("deepcausalmmm").setLevel(logging.WARNING)
    return get_default_config, UnifiedDataPipeline, ModelTrainer


def run_deepcausalmmm(
    media: np.ndarray,
    controls: np.ndarray,
    sales: np.ndarray,
    holdout_weeks: int,
    epochs: int | None = None,
    hidden: int | None = None,
    dag_mode: str = "notears",
    seed: int = 42,
) -> PeerRun:
    """Fit ``deepcausalmmm`` with its default configuration on a panel and predict both blocks.

    Parameters
    ----------
    media : numpy.ndarray, shape (R, T, C)
    controls : numpy.ndarray, shape (R, T, K)
    sales : numpy.ndarray, shape (R, T)
    holdout_weeks : int
        The last weeks held out (the package's ``holdout_ratio`` is set to give exactly this).
    epochs, hidden : int, optional
        Override ``n_epochs`` and ``hidden_dim`` (defaults 1500 and 280).
    dag_mode : {"notears", "triangular"}
        The package's structure mode (its default is "triangular": the column order).
    seed : int
        Torch seed before the model is built.

    Returns
    -------
    PeerRun
    """
    get_default_config, UnifiedDataPipeline, ModelTrainer = _import()
    media = np.asarray(media, dtype=np.float32)
    controls = np.asarray(controls, dtype=np.float32)
    sales = np.asarray(sales, dtype=np.float32)
    n_r, n_t, n_c = media.shape
    if sales.shape != (n_r, n_t) or controls.shape[:2] != (n_r, n_t):
        raise ValueError(f"shapes disagree: media {media.shape}, controls {controls.shape}, sales {sales.shape}")
    if dag_mode not in ("notears", "triangular"):
        raise ValueError(f"dag_mode must be 'notears' or 'triangular', got {dag_mode!r}")
    config = get_default_config()
    ratio = (holdout_weeks + 0.5) / n_t
    config.update(random_seed=seed, holdout_ratio=ratio, dag_mode=dag_mode, min_train_weeks=20)
    if epochs is not None:
        config["n_epochs"] = int(epochs)
        config["notears_warmup_epochs"] = min(config["notears_warmup_epochs"], int(epochs) // 3)
    if hidden is not None:
        config["hidden_dim"] = int(hidden)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the package builds float32 tensors
    try:
        torch.manual_seed(seed)
        start = time.perf_counter()
        pipeline = UnifiedDataPipeline(config)
        train, hold = pipeline.temporal_split(media, controls, sales)
        if hold["y"].shape[1] != holdout_weeks:
            raise RuntimeError(f"the package split off {hold['y'].shape[1]} weeks, not {holdout_weeks}")
        tr = pipeline.fit_and_transform_training(train)
        ho = pipeline.transform_holdout(hold)
        trainer = ModelTrainer(config)
        model = trainer.create_model(n_c, controls.shape[2], n_r)
        trainer.create_optimizer_and_scheduler()
        trainer.train(
            tr["X_media"], tr["X_control"], tr["R"], tr["y"],
            ho["X_media"], ho["X_control"], ho["R"], ho["y"],
            pipeline=pipeline, verbose=False,
        )
        seconds = time.perf_counter() - start
        model.eval()
        blocks, share = [], 0.0
        with torch.no_grad():
            for part in (tr, ho):
                y_scaled, _, contrib, outputs = model(part["X_media"], part["X_control"], part["R"])
                blocks.append(np.asarray(pipeline.inverse_transform_predictions(y_scaled)))
                if part is tr:
                    pad = pipeline.padding_weeks
                    # contributions come before the model's output scale, the prediction after it
                    # (the package's own inverse transform multiplies them by it)
                    media = contrib[:, pad:].sum() * outputs["prediction_scale"].squeeze()
                    share = float(media / y_scaled[:, pad:].sum())
            adjacency = model.get_dag_adjacency_matrix().cpu().numpy()
            pruned = model.threshold_dag(config.get("notears_threshold", 0.3)).cpu().numpy()
    finally:
        torch.set_default_dtype(previous_dtype)
    return PeerRun(
        prediction=np.concatenate(blocks, axis=1).astype(np.float64),
        train_weeks=n_t - holdout_weeks,
        adjacency=adjacency,
        adjacency_thresholded=pruned,
        media_share=share,
        seconds=seconds,
        config={k: v for k, v in config.items() if not isinstance(v, dict)},
    )
