r"""A brand-tracking survey with known latents and known lever effects: the world of Chapter 4.

Respondents :math:`i` rate every brand :math:`k` of an oligopoly on perceptual Likert items
and on three outcomes (affinity 0–10, satisfaction 1–7, purchase intent 1–5).

**Respondents.** Covariates :math:`x_i \sim \mathcal N(0, I_P)` (demographics, usage) set a
trait through a randomly initialised tanh network, as in the source's simulator,

.. math::

    z_i = s_z\,g(x_i) + \sqrt{1 - s_z^2}\,\varepsilon_i,\qquad \varepsilon_i \sim \mathcal N(0, I_L),

a general disposition on each perception dimension (a generous rater of value, say).

**Levers.** Each respondent-brand pair has marketing levers :math:`r_{ikm}` (advertising
awareness, perceived price advantage, experienced network quality), standardised, with brand
means and a dependence on :math:`x_i` (so a naive comparison of exposed and unexposed respondents
is confounded by who they are).

**Perception.** Brand positions :math:`a_k` (summing to zero) and lever responses
:math:`s_m` (saturating for advertising, linear for price, a threshold for network quality)
with spill-over between dimensions :math:`E`:

.. math::

    \theta_{ik} = a_k + \sum_m s_m(r_{ikm})\,E_{m\cdot} + z_i + \sigma_\zeta\,\zeta_{ik}.

**Answers.** Item :math:`j` with loadings :math:`\lambda_j` (perceptual items load on one
dimension, outcomes on all three) and ordered cut-points :math:`c_j`:

.. math::

    u_{ikj} = \alpha_j + \lambda_j^\top\theta_{ik},\qquad
    P(y_{ikj} \le c) = \sigma(c_{j,c} - u_{ikj}).

The truth kept: :math:`z`, :math:`\theta`, :math:`a`, loadings, cut-points and the lever
response functions, so every counterfactual has a true answer (:meth:`SurveyWorld.true_effect`).
See Chapter 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmmlib.twins.data import SurveyData

__all__ = [
    "LEVER_SHAPES",
    "SurveyConfig",
    "SurveyTruth",
    "SurveyWorld",
    "expected_score",
    "lever_response",
    "ordinal_probs",
    "simulate_survey",
]

DEFAULT_BRANDS: tuple[str, ...] = ("Aurora", "Boreal", "Cirrus", "Delta", "Equinox")
DEFAULT_DIMS: tuple[str, ...] = ("salience", "value", "quality")
DEFAULT_LEVERS: tuple[str, ...] = ("ad awareness", "price advantage", "network quality")
LEVER_SHAPES: tuple[str, ...] = ("saturating", "linear", "threshold")
"""The shape of each lever's true response (:func:`lever_response`), in lever order."""
DEFAULT_OUTCOMES: tuple[tuple[str, int], ...] = (("affinity", 11), ("satisfaction", 7), ("purchase intent", 5))
# How each outcome loads on (salience, value, quality).
OUTCOME_LOADINGS = np.array([[1.0, 0.8, 1.0], [0.3, 0.8, 1.4], [1.2, 1.0, 0.5]])
# Lever m moves dimension m, and some spill-over: advertising lifts perceived quality,
# network quality lifts perceived value.
LEVER_EFFECTS = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, 0.0], [0.0, 0.25, 1.0]])


def lever_response(m: int, r: np.ndarray) -> np.ndarray:
    """True response :math:`s_m(r)` of the perception index to lever ``m`` (standardised units).

    Advertising saturates (:math:`0.9\\tanh r`), price advantage acts linearly (:math:`0.6r`),
    network quality acts as a threshold (:math:`1.4\\,\\sigma(2.5(r - 0.3))`).
    """
    if m == 0:
        return 0.9 * np.tanh(r)
    if m == 1:
        return 0.6 * r
    if m == 2:
        return 1.4 / (1.0 + np.exp(-2.5 * (r - 0.3)))
    raise ValueError(f"lever index must be 0, 1 or 2, got {m}")


def ordinal_probs(u: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Ordered-logistic category probabilities, shape ``u.shape + (len(cuts) + 1,)``."""
    cdf = 1.0 / (1.0 + np.exp(-(cuts - u[..., None])))
    upper = np.concatenate([cdf, np.ones_like(cdf[..., :1])], axis=-1)
    lower = np.concatenate([np.zeros_like(cdf[..., :1]), cdf], axis=-1)
    return upper - lower


def expected_score(u: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Expected category index (0-based) of an ordered-logistic item at utility ``u``."""
    p = ordinal_probs(u, cuts)
    return p @ np.arange(p.shape[-1], dtype=float)


@dataclass(frozen=True)
class SurveyConfig:
    """Settings of a simulated brand-tracking survey.

    Attributes
    ----------
    n_respondents : int
        Respondents; each rates every brand.
    brands : tuple of str
        The brands of the oligopoly.
    dims : tuple of str
        Perception dimensions (latent).
    items_per_dim : int
        Five-point Likert items measuring each dimension.
    levers : tuple of str
        Marketing levers (one per dimension, in the same order).
    outcomes : tuple of (str, int)
        Outcome items and their number of categories.
    n_covariates : int
        Respondent covariates.
    trait_signal : float
        Share :math:`s_z` of the trait's standard deviation explained by covariates.
    residual_scale : float
        :math:`\\sigma_\\zeta`, respondent-brand perception noise.
    lever_confounding : float
        Correlation between a lever and the covariate index that drives it.
    """

    n_respondents: int = 20_000
    brands: tuple[str, ...] = DEFAULT_BRANDS
    dims: tuple[str, ...] = DEFAULT_DIMS
    items_per_dim: int = 4
    levers: tuple[str, ...] = DEFAULT_LEVERS
    outcomes: tuple[tuple[str, int], ...] = DEFAULT_OUTCOMES
    n_covariates: int = 10
    trait_signal: float = 0.7
    residual_scale: float = 0.6
    lever_confounding: float = 0.5

    def __post_init__(self) -> None:
        if self.n_respondents < 10:
            raise ValueError(f"n_respondents must be at least 10, got {self.n_respondents}")
        if len(self.brands) < 2:
            raise ValueError(f"brands needs at least two brands, got {self.brands!r}")
        if len(self.dims) != 3 or len(self.levers) != 3 or len(self.outcomes) != 3:
            raise ValueError("the survey world has exactly three dimensions, three levers and three outcomes")
        if self.items_per_dim < 1:
            raise ValueError(f"items_per_dim must be positive, got {self.items_per_dim}")
        if not 0.0 <= self.trait_signal < 1.0:
            raise ValueError(f"trait_signal must lie in [0, 1), got {self.trait_signal}")
        if not 0.0 <= self.lever_confounding < 1.0:
            raise ValueError(f"lever_confounding must lie in [0, 1), got {self.lever_confounding}")


@dataclass(frozen=True)
class SurveyTruth:
    """The latent state of a simulated survey."""

    z: np.ndarray  # (N, L) respondent traits
    theta: np.ndarray  # (N, K, L) perceptions
    brand_position: np.ndarray  # (K, L), sums to zero over brands
    intercepts: np.ndarray  # (J,)
    loadings: np.ndarray  # (J, L)
    cutpoints: tuple[np.ndarray, ...]  # per item, increasing
    lever_effects: np.ndarray  # (M, L), the matrix E


@dataclass(frozen=True)
class SurveyWorld:
    """A simulated survey: its data, its truth and its configuration."""

    config: SurveyConfig
    data: SurveyData
    truth: SurveyTruth
    seed: int
    cost: np.ndarray = field(default_factory=lambda: np.array([1.0, 1.5, 2.0]))
    """Cost of raising each lever by one standard deviation (budget units), for Chapter 4's search."""

    def lever_shift(self, levers: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """True change of :math:`\\theta` when levers ``(N, M)`` move by ``delta`` ``(M,)``, shape (N, L)."""
        out = np.zeros((levers.shape[0], self.truth.lever_effects.shape[1]))
        for m, dm in enumerate(np.asarray(delta, dtype=float)):
            if dm != 0.0:
                out += (lever_response(m, levers[:, m] + dm) - lever_response(m, levers[:, m]))[:, None] \
                    * self.truth.lever_effects[m]
        return out

    def true_effect(self, rows: np.ndarray, brand: int, delta: np.ndarray, item: int | None = None) -> float:
        """True mean change of the expected answer to ``item`` (default: affinity) for ``brand``.

        The counterfactual of the same respondents: their traits and noise stay, only the
        levers of ``brand`` move by ``delta`` (standard deviations, one per lever).
        """
        j = self.data.outcome_items[0] if item is None else item
        t = self.truth
        theta = t.theta[rows, brand]
        theta_cf = theta + self.lever_shift(self.data.levers[rows, brand], delta)
        u0 = t.intercepts[j] + theta @ t.loadings[j]
        u1 = t.intercepts[j] + theta_cf @ t.loadings[j]
        return float(np.mean(expected_score(u1, t.cutpoints[j]) - expected_score(u0, t.cutpoints[j])))


def _random_tanh_net(rng: np.random.Generator, n_in: int, n_out: int, hidden: int = 16) -> tuple[np.ndarray, ...]:
    w1 = rng.normal(0, 1 / np.sqrt(n_in), (n_in, hidden))
    b1 = rng.normal(0, 0.2, hidden)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), (hidden, n_out))
    return w1, b1, w2


def _cutpoints(rng: np.random.Generator, n_cat: int) -> np.ndarray:
    base = np.linspace(-2.6, 2.6, n_cat - 1) * (1.0 if n_cat <= 5 else 1.25)
    gaps = np.diff(base)
    jitter = gaps.mean() * rng.uniform(-0.2, 0.2, n_cat - 1)
    return np.sort(base + jitter)


def simulate_survey(config: SurveyConfig | None = None, seed: int = 0) -> SurveyWorld:
    """Simulate a survey world (see the module docstring for the equations).

    Parameters
    ----------
    config : SurveyConfig, optional
        Sizes and strengths; the default is Chapter 4's full world.
    seed : int
        Seed of the world.

    Returns
    -------
    SurveyWorld
    """
    c = config or SurveyConfig()
    rng = np.random.default_rng(seed)
    n, k_b, n_l, n_m = c.n_respondents, len(c.brands), len(c.dims), len(c.levers)
    x = rng.normal(size=(n, c.n_covariates))
    w1, b1, w2 = _random_tanh_net(rng, c.n_covariates, n_l)
    g = np.tanh(x @ w1 + b1) @ w2
    g = (g - g.mean(0)) / g.std(0)
    z = c.trait_signal * g + np.sqrt(1 - c.trait_signal**2) * rng.normal(size=(n, n_l))

    # Levers: brand means, a covariate index per lever (confounding), idiosyncratic variation.
    brand_mean = rng.uniform(-0.6, 0.6, (k_b, n_m))
    drive = x @ rng.normal(size=(c.n_covariates, n_m))
    drive = (drive - drive.mean(0)) / drive.std(0)
    rho = c.lever_confounding
    levers = brand_mean[None] + rho * drive[:, None, :] + np.sqrt(1 - rho**2) * rng.normal(size=(n, k_b, n_m))

    position = rng.normal(0, 0.5, (k_b, n_l))
    position -= position.mean(0)
    shift = np.zeros((n, k_b, n_l))
    for m in range(n_m):
        shift += lever_response(m, levers[..., m])[..., None] * LEVER_EFFECTS[m]
    theta = position[None] + shift + z[:, None, :] + c.residual_scale * rng.normal(size=(n, k_b, n_l))

    item_dim = [d for d in range(n_l) for _ in range(c.items_per_dim)] + [-1] * len(c.outcomes)
    n_items = len(item_dim)
    loadings = np.zeros((n_items, n_l))
    for j, d in enumerate(item_dim[: n_l * c.items_per_dim]):
        loadings[j, d] = rng.uniform(1.4, 2.4)
    loadings[n_l * c.items_per_dim:] = OUTCOME_LOADINGS
    n_cat = [5] * (n_l * c.items_per_dim) + [k for _, k in c.outcomes]
    # Centre utilities so the average respondent sits near the middle of each scale.
    intercepts = -(theta.reshape(-1, n_l).mean(0) @ loadings.T) + rng.normal(0, 0.3, n_items)
    cuts = tuple(_cutpoints(rng, k) for k in n_cat)

    u = intercepts + theta @ loadings.T  # (N, K, J)
    y = np.empty(u.shape, dtype=np.int64)
    logistic = rng.logistic(size=u.shape)
    for j in range(n_items):
        y[..., j] = np.searchsorted(cuts[j], u[..., j] + logistic[..., j])

    items = tuple(f"{c.dims[d]} {q + 1}" for d in range(n_l) for q in range(c.items_per_dim)) + tuple(
        name for name, _ in c.outcomes)
    data = SurveyData(x=x, levers=levers, y=y, n_categories=tuple(n_cat), item_dim=tuple(item_dim), items=items,
                      brands=tuple(c.brands), lever_names=tuple(c.levers))
    truth = SurveyTruth(z=z, theta=theta, brand_position=position, intercepts=intercepts, loadings=loadings,
                        cutpoints=cuts, lever_effects=LEVER_EFFECTS.copy())
    return SurveyWorld(config=c, data=data, truth=truth, seed=seed)
