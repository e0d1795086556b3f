"""Chapter 4's experiments: fit digital twins to a simulated survey and check them against the truth.

Every function takes a fitted :class:`~mmmlib.twins.model.TwinModel`, the
:class:`~mmmlib.twins.world.SurveyWorld` and the held-out respondents, and returns a
table; the figures take those tables. See Chapter 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.runtime import check_profile, seed_everything
from mmmlib.twins.factor import choose_n_factors, discretised_log_prob, fit_factor_analysis
from mmmlib.twins.model import TwinConfig, TwinModel, lever_search
from mmmlib.twins.world import SurveyConfig, SurveyWorld, lever_response, simulate_survey
from mmmlib.workers import map_on_cores

__all__ = [
    "TwinSettings",
    "basis_error",
    "effect_table",
    "effects_over_seeds",
    "latent_recovery",
    "linear_effects",
    "plot_effects",
    "plot_latents",
    "plot_lever_curves",
    "plot_search",
    "plot_training",
    "predictive_scores",
    "procrustes",
    "search_table",
    "split_respondents",
]


@dataclass(frozen=True)
class TwinSettings:
    """Sizes of a Chapter 4 run (``quick`` for CI, ``full`` for the book).

    Attributes
    ----------
    n_respondents : int
        Respondents in the simulated survey (each rates every brand).
    test_share : float
        Share of respondents held out from every fit.
    fit : TwinConfig
        The twin model's settings.
    n_draws : int
        Posterior draws for predictions and counterfactuals.
    budget : float
        Budget of the lever search (cost units).
    fa_candidates : tuple of int
        Numbers of factors the baseline chooses from (on a validation split of the training set).
    extra_seeds : int
        Further simulated surveys on which the lever effects and their intervals are checked.
    """

    n_respondents: int
    fit: TwinConfig
    test_share: float = 0.2
    n_draws: int = 200
    budget: float = 1.5
    fa_candidates: tuple[int, ...] = (3, 6, 10, 15, 25, 40)
    extra_seeds: int = 0

    @property
    def source_fit(self) -> TwinConfig:
        """The same fit with the source's guide (local latents indexed by minibatch position), uncorrected."""
        return replace(self.fit, encoder="batch_position", predictive_epochs=0, particles=1, bootstrap=False)

    @classmethod
    def for_profile(cls, profile: str) -> TwinSettings:
        """The chapter's settings for ``quick`` or ``full``."""
        if check_profile(profile) == "quick":
            return cls(n_respondents=3000, fit=TwinConfig(batch_size=100, epochs=40, predictive_epochs=10,
                                                          average_tail=0.3, bootstrap=True), extra_seeds=1)
        return cls(n_respondents=20_000, fit=TwinConfig(batch_size=250, epochs=40, predictive_epochs=15,
                                                        average_tail=0.3, bootstrap=True), extra_seeds=3)


def split_respondents(n: int, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test split of respondent rows (sorted index arrays)."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must lie in (0, 1), got {test_share}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_share))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# --------------------------------------------------------------------------- prediction
def _fa_matrix(world: SurveyWorld, rows: np.ndarray) -> np.ndarray:
    d = world.data
    return np.concatenate([d.y[rows].reshape(len(rows), -1).astype(float), d.levers[rows].reshape(len(rows), -1),
                           d.x[rows]], axis=1)


def predictive_scores(model: TwinModel, world: SurveyWorld, train: np.ndarray, test: np.ndarray,
                      candidates: tuple[int, ...] = (3, 6, 10, 15), n_draws: int = 200,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """Held-out outcome answers predicted from everything else a respondent answered.

    The twin model infers the respondent's latents with the outcomes hidden; linear factor
    analysis (all answers, levers and covariates as one Gaussian vector, the number of factors
    picked on a validation split of the training respondents) conditions on the same columns
    and is discretised to the answer categories; the marginal baseline uses the training
    frequencies of each brand's answers.

    Returns
    -------
    table : DataFrame
        Per outcome item: mean log predictive probability (nats per answer) and mean absolute
        error of the predictive mean, for each method.
    info : dict
        ``n_factors`` chosen and the validation scores.
    """
    d = world.data
    k_b, n_items = len(d.brands), len(d.items)
    xtr, xte = _fa_matrix(world, train), _fa_matrix(world, test)
    fit_rows, valid_rows = split_respondents(len(train), 0.2, seed + 1)
    q, scores = choose_n_factors(xtr[fit_rows], xtr[valid_rows], candidates)
    fa = fit_factor_analysis(xtr, q)
    out_items = list(d.outcome_items)
    hidden = [b * n_items + j for b in range(k_b) for j in out_items]
    mean, sd = fa.conditional(xte, hidden)
    mean, sd = mean.reshape(len(test), k_b, len(out_items)), sd.reshape(1, k_b, len(out_items))
    twin = model.outcome_predictive(d.subset(test), n_draws)
    rows = []
    for o, j in enumerate(out_items):
        name, n_cat = d.items[j], d.n_categories[j]
        y = d.y[test][..., j]
        cats = np.arange(n_cat)
        p = twin[name]
        freq = np.stack([np.bincount(d.y[train, b, j], minlength=n_cat) + 0.5 for b in range(k_b)])
        freq = freq / freq.sum(1, keepdims=True)
        fa_lp = discretised_log_prob(y, mean[..., o], sd[..., o], n_cat)
        fa_mean = np.clip(mean[..., o], 0, n_cat - 1)
        rows.append({
            "item": name, "categories": n_cat,
            "twin log-lik": float(np.mean(np.log(np.take_along_axis(p, y[..., None], -1).clip(1e-12)))),
            "factor analysis log-lik": float(np.mean(fa_lp)),
            "marginal log-lik": float(np.mean(np.log(freq[np.arange(k_b)[None, :], y]))),
            "twin MAE": float(np.mean(np.abs(p @ cats - y))),
            "factor analysis MAE": float(np.mean(np.abs(fa_mean - y))),
        })
    table = pd.DataFrame(rows).set_index("item")
    return table, {"n_factors": float(q), **{f"valid_ll_{k}": v for k, v in scores.items()}}


# --------------------------------------------------------------------------- latents
def procrustes(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Rotate (and reflect) centred ``est`` onto centred ``true``: the orthogonal :math:`R` minimising
    :math:`\\lVert \\hat X R - X \\rVert_F` (latents are identified up to such a map at most)."""
    a, b = est - est.mean(0), true - true.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def latent_recovery(post: dict, world: SurveyWorld, test: np.ndarray) -> pd.DataFrame:
    """Correlation of posterior-mean latents with the true ones, per dimension.

    ``raw`` compares dimension :math:`l` with true dimension :math:`l` as fitted (the design fixes
    rotation and sign); ``after rotation`` first applies the best orthogonal map
    (:func:`procrustes`), so a rotated or sign-flipped solution would show as a gap between the two.
    """
    dims = world.config.dims
    theta = post["theta"].mean(0).double().numpy()  # (N, K, L)
    z = post["z"].mean(0).double().numpy()
    rows = []
    for name, est, true in [("perception θ (respondent × brand)", theta.reshape(-1, len(dims)),
                             world.truth.theta[test].reshape(-1, len(dims))),
                            ("trait z (respondent)", z, world.truth.z[test])]:
        rot = est @ procrustes(est, true)
        for i, dim in enumerate(dims):
            rows.append({"latent": name, "dimension": dim, "raw": np.corrcoef(est[:, i], true[:, i])[0, 1],
                         "after rotation": np.corrcoef(rot[:, i], true[:, i])[0, 1]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- counterfactuals
def effect_table(model: TwinModel, world: SurveyWorld, test: np.ndarray, post: dict,
                 step: float = 1.0) -> pd.DataFrame:
    """Each brand's each lever raised by ``step``: true and estimated change of mean affinity.

    Returns
    -------
    DataFrame
        ``brand``, ``lever``, ``truth``, posterior ``mean``, ``lo``, ``hi`` (90%),
        ``rel_error`` and ``covered``; the same uncorrected (``raw_mean``, ``raw_lo``, ...) when
        the model has a bootstrap correction.
    """
    d = world.data.subset(test)
    rows = []
    for b, brand in enumerate(world.data.brands):
        for m, lever in enumerate(world.data.lever_names):
            delta = np.eye(len(world.data.lever_names))[m] * step
            truth = world.true_effect(test, b, delta)
            row = {"brand": brand, "lever": lever, "truth": truth}
            versions = [("", True), ("raw_", False)] if model.bootstrap_model is not None else [("", True)]
            for prefix, corrected in versions:
                draws = model.counterfactual(d, b, delta, post=post, corrected=corrected)
                lo, hi = np.quantile(draws, [0.05, 0.95])
                row |= {f"{prefix}mean": draws.mean(), f"{prefix}lo": lo, f"{prefix}hi": hi,
                        f"{prefix}rel_error": draws.mean() / truth - 1.0, f"{prefix}covered": bool(lo <= truth <= hi)}
            rows.append(row)
    return pd.DataFrame(rows)


def basis_error(model: TwinModel, world: SurveyWorld, train: np.ndarray, test: np.ndarray,
                step: float = 1.0) -> pd.DataFrame:
    """How well the model's lever basis can represent the true lever responses, fit aside.

    Each lever's true response :math:`s_m` is projected by least squares onto the model's basis
    :math:`\\psi` (with a constant) over the training respondents' levers, all brands pooled. Per
    brand and lever, the effect of a ``step`` on the projected curve is compared with the effect
    on the true one, both averaged over the held-out respondents. Small errors here mean that
    larger errors of the fitted effects come from the fit, not from the shape of the basis.

    Returns
    -------
    DataFrame
        ``brand``, ``lever``, ``true`` and ``projected`` change of :math:`s_m`, ``rel_error``.
    """
    d = world.data
    n_m = len(d.lever_names)
    rows = []
    for m, lever in enumerate(d.lever_names):
        x = d.levers[train][..., m].ravel()
        design = np.column_stack([np.ones(len(x)), model.lever_basis(np.repeat(x[:, None], n_m, 1))[:, m]])
        w, *_ = np.linalg.lstsq(design, lever_response(m, x), rcond=None)
        for b, brand in enumerate(d.brands):
            r = d.levers[test, b, m]
            moved = model.lever_basis(np.repeat((r + step)[:, None], n_m, 1))[:, m]
            now = model.lever_basis(np.repeat(r[:, None], n_m, 1))[:, m]
            projected = float(np.mean((moved - now) @ w[1:]))
            true = float(np.mean(lever_response(m, r + step) - lever_response(m, r)))
            rows.append({"brand": brand, "lever": lever, "true": true, "projected": projected,
                         "rel_error": projected / true - 1.0})
    return pd.DataFrame(rows)


def effects_over_seeds(settings: TwinSettings, seeds: Sequence[int], workers: int | None = None) -> pd.DataFrame:
    """:func:`effect_table` on fresh surveys, one per seed (simulate, split, fit, score).

    Every random stream of survey ``s`` (its simulation, split and fit) is seeded by ``s``, so a
    survey's rows do not depend on what ran before it; the surveys therefore run side by side,
    one per core (``workers``, default :func:`~mmmlib.workers.default_workers`), with the same
    results as one after another. (A twin fit on one thread is no slower than on two.)

    Returns
    -------
    DataFrame
        The effect tables stacked, with a ``seed`` column.
    """
    return pd.concat(map_on_cores(partial(_effects_on_survey, settings), seeds, workers), ignore_index=True)


def _effects_on_survey(settings: TwinSettings, s: int) -> pd.DataFrame:
    """One survey of :func:`effects_over_seeds`."""
    seed_everything(s)
    world = simulate_survey(SurveyConfig(n_respondents=settings.n_respondents), seed=s)
    train, test = split_respondents(world.data.n, settings.test_share, s)
    model = TwinModel(settings.fit).fit(world.data.subset(train))
    post = model.posterior(world.data.subset(test), settings.n_draws)
    return effect_table(model, world, test, post).assign(seed=s)


def linear_effects(world: SurveyWorld, train: np.ndarray, step: float = 1.0) -> pd.DataFrame:
    """What a regression of the affinity answer on the levers says a lever step does.

    Pooled over brands with brand intercepts, once without and once with the respondent
    covariates. Linear in the levers, so it cannot see saturation or thresholds; without the
    covariates it is also confounded by who is exposed to a lever.

    Returns
    -------
    DataFrame
        ``lever``, ``label``, ``style`` (``naive`` or ``adjusted``) and ``estimate`` (change of
        the mean affinity answer per ``step``).
    """
    d = world.data
    j = d.outcome_items[0]
    n, k_b, n_m = len(train), len(d.brands), len(d.lever_names)
    y = d.y[train][..., j].reshape(-1).astype(float)
    frames = []
    for style, label in [("naive", "regression on levers"), ("adjusted", "regression + covariates")]:
        cols = [d.levers[train].reshape(-1, n_m), np.kron(np.ones((n, 1)), np.eye(k_b))]
        if style == "adjusted":
            cols.append(np.repeat(d.x[train], k_b, axis=0))
        beta, *_ = np.linalg.lstsq(np.concatenate(cols, 1), y, rcond=None)
        frames.append(pd.DataFrame({"lever": list(d.lever_names), "label": label, "style": style,
                                    "estimate": beta[:n_m] * step}))
    return pd.concat(frames, ignore_index=True)


def search_table(model: TwinModel, world: SurveyWorld, test: np.ndarray, brand: int, budget: float,
                 step: float = 0.1, n_draws: int = 200) -> tuple[pd.DataFrame, dict[str, float]]:
    """Lever search for one brand (:func:`~mmmlib.twins.model.lever_search`) scored against the truth.

    Returns
    -------
    table : DataFrame
        Every allocation with the posterior of its gain and its ``true gain``, best first.
    summary : dict
        Posterior gain of the chosen allocation, its true gain, the true gain of the truly best
        allocation and the regret (share of the best true gain lost).
    """
    d = world.data.subset(test)
    table = lever_search(model, d, brand, world.cost, budget, step=step, n_draws=n_draws)
    delta_cols = [c for c in table.columns if c.startswith("delta_")]
    table["true gain"] = [world.true_effect(test, brand, row[delta_cols].to_numpy(float)) for _, row in table.iterrows()]
    chosen, best = table.iloc[0], table["true gain"].max()
    summary = {"chosen_mean": float(chosen["mean"]), "chosen_lo": float(chosen["lo"]), "chosen_hi": float(chosen["hi"]),
               "chosen_true": float(chosen["true gain"]), "best_true": float(best),
               "regret": float(1.0 - chosen["true gain"] / best), "chosen_p_best": float(chosen["p_best"])}
    return table, summary


# --------------------------------------------------------------------------- figures
def plot_training(histories: dict[str, list[float]]) -> plt.Figure:
    """Negative ELBO per answer over epochs, one line per fit."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
    for label, h in histories.items():
        ax.plot(np.arange(1, len(h) + 1), h, label=label)
    ax.set(xlabel="epoch", ylabel="negative ELBO per answer (nats)", title="Training: SVI on minibatches of respondents")
    lo = min(min(h) for h in histories.values())
    ax.set_ylim(lo - 0.02, lo + 0.4)
    ax.legend(frameon=False)
    return fig


def plot_latents(post: dict, world: SurveyWorld, test: np.ndarray, max_points: int = 4000, seed: int = 0) -> plt.Figure:
    """Posterior-mean perception against the true one, one panel per dimension."""
    dims = world.config.dims
    est = post["theta"].mean(0).double().numpy().reshape(-1, len(dims))
    true = world.truth.theta[test].reshape(-1, len(dims))
    pick = np.random.default_rng(seed).choice(len(est), min(max_points, len(est)), replace=False)
    fig, axes = plt.subplots(1, len(dims), figsize=(9, 3.2), layout="constrained")
    for ax, i, dim in zip(axes, range(len(dims)), dims, strict=True):
        ax.scatter(true[pick, i], est[pick, i], s=3, alpha=0.3, color="C0", rasterized=True)
        r = np.corrcoef(true[:, i], est[:, i])[0, 1]
        ax.set(title=f"{dim}: r = {r:.2f}", xlabel="true θ")
    axes[0].set_ylabel("posterior mean θ (model units)")
    fig.suptitle("Held-out respondents: inferred brand perceptions against the truth")
    return fig


def plot_effects(table: pd.DataFrame, linear: pd.DataFrame | None = None) -> plt.Figure:
    """Estimated lever effects (90% intervals) against the true effects, per brand and lever.

    With ``raw_mean`` in the table (a bootstrap-corrected model), the uncorrected estimate is
    drawn too, just above its row.
    """
    levers = list(dict.fromkeys(table["lever"]))
    fig, axes = plt.subplots(1, len(levers), figsize=(10, 3.6), sharey=True, layout="constrained")
    for ax, lever in zip(axes, levers, strict=True):
        t = table[table["lever"] == lever].reset_index(drop=True)
        y = np.arange(len(t))
        ax.errorbar(t["mean"], y, xerr=[t["mean"] - t["lo"], t["hi"] - t["mean"]], fmt="o", color="C0",
                    label="twin model, 90% interval", capsize=3)
        ax.scatter(t["truth"], y, marker="x", color="k", zorder=3, label="truth")
        if "raw_mean" in t:
            ax.scatter(t["raw_mean"], y + 0.25, marker="o", facecolors="none", edgecolors="C1", zorder=3,
                       label="before the bootstrap correction")
        if linear is not None:
            for label, est, style in linear[linear["lever"] == lever][["label", "estimate", "style"]].itertuples(
                    index=False):
                ax.axvline(est, color="C3" if style == "naive" else "C2", ls="--", lw=1, label=label)
        ax.set(title=lever, xlabel="change in mean affinity (0–10)")
        ax.set_yticks(y, t["brand"])
    handles = {lab: h for ax in axes for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle("Raising one lever by one standard deviation: the twins' answer against the truth")
    return fig


def plot_lever_curves(model: TwinModel, world: SurveyWorld, n_draws: int = 200) -> plt.Figure:
    """Fitted response of the affinity utility to each lever (90% band) against the true response."""
    grid = np.linspace(-2.5, 2.5, 101)
    j = world.data.outcome_items[0]
    draws_g = model.global_draws(n_draws)
    lam = draws_g["lam_out"][:, 0].double().numpy()  # affinity is the first outcome
    t = world.truth
    fig, axes = plt.subplots(1, len(world.data.lever_names), figsize=(10, 3.2), layout="constrained")
    for m, (ax, name) in enumerate(zip(axes, world.data.lever_names, strict=True)):
        curve = model.lever_curve(m, grid, n_draws)  # (S, G, L)
        du = np.einsum("sgl,sl->sg", curve, lam)
        delta = np.zeros((len(grid), len(world.data.lever_names)))
        delta[:, m] = grid
        zero = np.zeros((1, len(world.data.lever_names)))
        true = np.stack([world.lever_shift(zero, row)[0] for row in delta]) @ t.loadings[j]
        ax.fill_between(grid, *np.quantile(du, [0.05, 0.95], axis=0), alpha=0.3, color="C0", label="twin model, 90%")
        ax.plot(grid, du.mean(0), color="C0")
        ax.plot(grid, true, color="k", ls="--", label="truth")
        ax.set(title=name, xlabel="lever (standard deviations)")
    axes[0].set_ylabel("change of affinity utility (logits)")
    axes[0].legend(frameon=False)
    fig.suptitle("How each lever moves affinity: fitted response curves against the true ones")
    return fig


def plot_search(table: pd.DataFrame, top: int = 12) -> plt.Figure:
    """The best allocations of the lever search: posterior gain (90%) and true gain."""
    t = table.head(top).iloc[::-1].reset_index(drop=True)
    delta_cols = [c for c in t.columns if c.startswith("delta_")]
    labels = [" / ".join(f"{r[c]:.2f}" for c in delta_cols) for _, r in t.iterrows()]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    y = np.arange(len(t))
    ax.errorbar(t["mean"], y, xerr=[t["mean"] - t["lo"], t["hi"] - t["mean"]], fmt="o", capsize=3,
                label="twin model, 90% interval")
    ax.scatter(t["true gain"], y, marker="x", color="k", zorder=3, label="truth")
    ax.set_yticks(y, labels)
    ax.set(xlabel="gain in mean affinity (0–10)", ylabel="lever increase (SD)",
           title=f"Lever search: the {len(t)} best ways to spend the budget\n(rows: "
                 + " / ".join(c.removeprefix("delta_") for c in delta_cols) + ")")
    ax.legend(frameon=False, loc="lower right")
    sns.despine(ax=ax)
    return fig

