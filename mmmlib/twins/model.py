r"""Digital twins of survey respondents: a variational ordinal factor model in Pyro.

After Levy's *Digital Marketing Twins* (Chapter 4), repaired where the source is broken.

**Generative model.** For respondent :math:`i` with covariates :math:`x_i` and brand
:math:`k` with levers :math:`r_{ik\cdot}`:

.. math::

    z_i = \mu_\phi(x_i) + \nu_\phi(x_i)\odot\varepsilon_i,\qquad \varepsilon_i \sim \mathcal N(0, I_L),

    \theta_{ik} = a_k + \sum_m \psi(r_{ikm})^\top W_m + z_i + \zeta_{ik},\qquad \zeta_{ik} \sim \mathcal N(0, I_L),

    P(y_{ikj} \le c) = \sigma\bigl(c_{j,c} - \lambda_j^\top\theta_{ik}\bigr).

:math:`\mu_\phi, \nu_\phi` is the source's covariate encoder (a tanh MLP, point-estimated);
:math:`\psi` a piecewise-linear basis with knots at training quantiles of the levers,
so lever responses may saturate or have thresholds; :math:`W_m`, loadings :math:`\lambda`,
brand positions :math:`a` (summing to zero) and cut-points are Bayesian globals.

**Identification** (the source's β and φ are not identified). The residual
:math:`\zeta` has unit variance, which fixes the scale; each perceptual item loads on the one
dimension its questionnaire assigns it, with a positive loading, which fixes rotation and sign;
outcome items load freely. Cut-points absorb the item intercepts.

**Inference.** SVI with a subsampled respondent plate (the likelihood is scaled up by
:math:`N/B`, not the prior down); a full-rank Gaussian over the globals; and an
*amortised* encoder :math:`q(\varepsilon_i, \zeta_{i\cdot} \mid y_i, x_i, r_i)` for the local
latents (the source's guide indexes them by position in the minibatch; that guide
is kept as ``encoder="batch_position"`` to show what it does). With ``particles`` :math:`k > 1`
the encoder is a proposal: each respondent's latents are integrated by importance sampling
(the importance-weighted bound), and posterior draws resample the proposals by their weights.
A second encoder, trained with everything else frozen on the perceptual answers only, infers a
respondent whose outcome answers are hidden: the posterior predictive of held-out answers.

**Bias correction.** The amortised, importance-weighted fit biases the globals by a few
percent, more than their posterior spread. With ``bootstrap=True`` a parametric bootstrap
measures that bias and removes it from every counterfactual: the fitted model simulates a new
survey (same covariates and levers, every latent known), a second model is fitted to it the same
way, and its error against the known answer is subtracted, draw by draw, which also widens the
interval by the bootstrap's own uncertainty.

**Counterfactuals** follow abduction, action, prediction: infer a respondent's latents from
all their answers, move a brand's levers, and push the same latents through the model.
See Chapter 4.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal, init_to_value
from pyro.optim import ClippedAdam
from torch import nn

from mmmlib.twins.data import SurveyData

__all__ = [
    "TwinConfig",
    "TwinModel",
    "lever_search",
    "ordinal_log_prob",
]

GLOBAL_SITES = ("cut_first", "log_gaps", "lam_perc", "lam_out", "position_raw", "lever_w")
EFFECT_KEYS = ("theta", "lever_w", "loadings", "cuts")
"""What :meth:`TwinModel.counterfactual` reads from a posterior."""
_BIG = 1.0e4


def ordinal_log_prob(u: torch.Tensor, cuts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Log-probability of ordered-logistic answers.

    Parameters
    ----------
    u : Tensor, shape (..., J)
        Utilities.
    cuts : Tensor, shape (..., J, C + 1)
        Cut-points padded with :math:`-\infty` (column 0) and :math:`+\infty` (from each
        item's last category on); large finite values stand in for the infinities.
    y : Tensor of long, shape (..., J)
        Category indices.

    Notes
    -----
    :math:`\log(\sigma(a) - \sigma(b)) = \log\sigma(a) + \log\sigma(-b) + \log(1 - e^{b-a})`,
    stable for :math:`a > b`.
    """
    cuts = cuts.expand(*u.shape, cuts.shape[-1])
    upper = torch.gather(cuts, -1, (y + 1).unsqueeze(-1)).squeeze(-1) - u
    lower = torch.gather(cuts, -1, y.unsqueeze(-1)).squeeze(-1) - u
    return (nn.functional.logsigmoid(upper) + nn.functional.logsigmoid(-lower)
            + torch.log1p(-torch.exp(lower - upper).clamp(max=1 - 1e-7)))


def _ordinal_probs(u: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    """Category probabilities, shape ``u.shape + (C,)``, from padded cut-points (..., C + 1)."""
    cdf = torch.sigmoid(cuts - u.unsqueeze(-1))
    return (cdf[..., 1:] - cdf[..., :-1]).clamp_min(0.0)


@dataclass(frozen=True)
class TwinConfig:
    """Every setting of a digital-twin fit.

    Attributes
    ----------
    hidden : int
        Width of the encoders' hidden layers.
    n_knots : int
        Knots of each lever's piecewise-linear response, evenly spaced in probability from the
        2.5% to the 97.5% training quantile of the levers.
    encoder : str
        ``amortised`` (ours) or ``batch_position`` (the source's guide).
    batch_size : int
        Respondents per SVI step.
    epochs : int
        Passes over the training respondents.
    lr, lr_final : float
        Adam's learning rate at the start and at the end (geometric decay).
    local_covariance : str
        ``full`` (a Cholesky factor per respondent: the trait and the brand residuals are
        strongly correlated a posteriori) or ``diagonal``.
    particles : int
        Local draws per respondent in the objective. 1 is the ELBO; :math:`k > 1` integrates the
        local latents by importance sampling with the encoder as proposal (the IWAE bound), which
        is tighter and biases the globals less.
    average_tail : float
        Share of the final SVI steps whose parameter iterates are averaged into the fitted values
        (Polyak–Ruppert averaging; 0 keeps the last iterate). With minibatches the iterates keep
        wandering along weakly curved directions of the objective; their mean sits closer to the
        optimum than any one of them.
    bootstrap : bool
        Correct counterfactuals by a parametric bootstrap (see :meth:`TwinModel.counterfactual`):
        a second model, fitted the same way to a survey simulated from the first, measures the
        fit's bias. Doubles the fitting time.
    predictive_epochs : int
        Epochs of the second encoder, which infers a respondent from everything but the
        outcome answers (globals frozen), for predicting held-out outcomes.
    dtype : torch.dtype
        Floating type of the fit.
    """

    hidden: int = 128
    n_knots: int = 12
    encoder: str = "amortised"
    batch_size: int = 500
    epochs: int = 60
    lr: float = 0.01
    lr_final: float = 0.001
    local_covariance: str = "full"
    average_tail: float = 0.0
    bootstrap: bool = False
    predictive_epochs: int = 20
    particles: int = 4
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.encoder not in ("amortised", "batch_position"):
            raise ValueError(f"encoder must be 'amortised' or 'batch_position', got {self.encoder!r}")
        if self.local_covariance not in ("full", "diagonal"):
            raise ValueError(f"local_covariance must be 'full' or 'diagonal', got {self.local_covariance!r}")
        for name in ("hidden", "batch_size", "epochs", "particles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_knots < 0:
            raise ValueError(f"n_knots must be non-negative, got {self.n_knots}")
        if not 0.0 <= self.average_tail < 1.0:
            raise ValueError(f"average_tail must lie in [0, 1), got {self.average_tail}")
        if not (self.lr > 0 and self.lr_final > 0):
            raise ValueError("lr and lr_final must be positive")


class _MLP(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int, layers: int = 1) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = n_in
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        mods.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class _Tensors:
    x: torch.Tensor
    basis: torch.Tensor  # (N, K, M, B)
    y: torch.Tensor  # (N, K, J) long
    enc_y: torch.Tensor  # (N, K, J) answers scaled to [-0.5, 0.5]
    levers: torch.Tensor  # (N, K, M)


class _IterateAverage:
    """Running mean of every parameter in the active Pyro store from step ``start`` on
    (Polyak–Ruppert averaging); :meth:`apply` writes the means back."""

    def __init__(self, start: int) -> None:
        self.start, self.step, self.count = start, 0, 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self) -> None:
        self.step += 1
        if self.step <= self.start:
            return
        self.count += 1
        for name, value in pyro.get_param_store().named_parameters():
            if name in self.mean:
                self.mean[name] += (value - self.mean[name]) / self.count
            else:
                self.mean[name] = value.detach().clone()

    @torch.no_grad()
    def apply(self) -> None:
        for name, value in pyro.get_param_store().named_parameters():
            if name in self.mean:
                value.copy_(self.mean[name])


class TwinModel:
    """The digital-twin model: fit on a survey, then predict and answer counterfactuals.

    Parameters
    ----------
    config : TwinConfig, optional

    Examples
    --------
    >>> model = TwinModel(TwinConfig(epochs=40)).fit(train)  # doctest: +SKIP
    >>> model.counterfactual(test, brand=0, delta=[1, 0, 0]).mean()  # doctest: +SKIP
    """

    def __init__(self, config: TwinConfig | None = None) -> None:
        self.config = config or TwinConfig()
        self.history: list[float] = []
        self.predictive_history: list[float] = []
        self.fit_seconds = float("nan")
        self.bootstrap_model: TwinModel | None = None
        self._fitted = False

    # ------------------------------------------------------------------ set-up
    def _shape(self, data: SurveyData) -> None:
        c = self.config
        self.n_brands = len(data.brands)
        self.n_levers = len(data.lever_names)
        self.item_dim = np.asarray(data.item_dim)
        self.n_dims = int(self.item_dim.max()) + 1
        self.perc = np.flatnonzero(self.item_dim >= 0)
        self.out = np.flatnonzero(self.item_dim < 0)
        self.n_cat = np.asarray(data.n_categories)
        self.n_items = len(self.n_cat)
        self.c_max = int(self.n_cat.max())
        self.items, self.brands, self.lever_names = data.items, data.brands, data.lever_names
        lv = data.levers.reshape(-1, self.n_levers)
        q = np.linspace(0.025, 0.975, c.n_knots) if c.n_knots > 1 else np.full(c.n_knots, 0.5)
        self.knots = np.quantile(lv, q, axis=0).T  # (M, n_knots)
        self.basis_mean = self.lever_basis(data.levers).reshape(-1, self.n_levers, 1 + c.n_knots).mean(0)
        self.n_local = self.n_dims * (1 + self.n_brands)
        n_in = data.x.shape[1] + 2 * self.n_brands * self.n_items + self.n_brands * self.n_levers
        self.prior_net = _MLP(data.x.shape[1], c.hidden, 2 * self.n_dims).to(c.dtype)
        d = self.n_local
        self._n_off = d * (d - 1) // 2 if c.local_covariance == "full" else 0
        self.encoders = {}
        for name in ("encoder", "predictive_encoder"):
            net = _MLP(n_in, 2 * c.hidden, 2 * d + self._n_off, layers=2).to(c.dtype)
            with torch.no_grad():  # start near the prior
                net.net[-1].weight.mul_(0.1)
                net.net[-1].bias.zero_()
            self.encoders[name] = net
        # Cut-points start at the marginal cumulative logits of the training answers.
        first, gaps = np.zeros(self.n_items), np.zeros((self.n_items, self.c_max - 2))
        for j, k in enumerate(self.n_cat):
            freq = np.bincount(data.y[..., j].ravel(), minlength=k) + 1.0
            cum = np.cumsum(freq)[:-1] / freq.sum()
            cuts = np.log(cum / (1 - cum))
            first[j] = cuts[0]
            gaps[j, : k - 2] = np.log(np.maximum(np.diff(cuts), 0.05))
        self._init = {"cut_first": torch.tensor(first, dtype=c.dtype), "log_gaps": torch.tensor(gaps, dtype=c.dtype),
                      "lam_perc": torch.ones(len(self.perc), dtype=c.dtype),
                      "lam_out": torch.full((len(self.out), self.n_dims), 0.5, dtype=c.dtype),
                      "position_raw": torch.zeros(self.n_brands - 1, self.n_dims, dtype=c.dtype),
                      "lever_w": torch.zeros(self.n_levers, 1 + c.n_knots, self.n_dims, dtype=c.dtype)}
        if c.encoder == "batch_position":
            self._pos_loc = torch.zeros(c.batch_size, self.n_local, dtype=c.dtype)
            self._pos_scale = torch.ones(c.batch_size, self.n_local, dtype=c.dtype)

    def lever_basis(self, levers: np.ndarray) -> np.ndarray:
        """The lever basis :math:`\\psi`: each lever and its hinges at the knots.

        ``levers`` has shape (..., M); the result (..., M, 1 + n_knots).
        """
        hinge = np.maximum(levers[..., None] - self.knots, 0.0)  # (..., M, n_knots)
        return np.concatenate([levers[..., None], hinge], axis=-1)

    def _tensors(self, data: SurveyData) -> _Tensors:
        if len(data.items) != self.n_items or tuple(data.n_categories) != tuple(self.n_cat) or \
                len(data.brands) != self.n_brands or len(data.lever_names) != self.n_levers:
            raise ValueError("the survey's items, brands or levers differ from those the model was fitted on")
        dt = self.config.dtype
        basis = self.lever_basis(data.levers) - self.basis_mean
        enc_y = data.y / (self.n_cat - 1.0) - 0.5
        return _Tensors(x=torch.tensor(data.x, dtype=dt), basis=torch.tensor(basis, dtype=dt),
                        y=torch.tensor(data.y, dtype=torch.long), enc_y=torch.tensor(enc_y, dtype=dt),
                        levers=torch.tensor(data.levers, dtype=dt))

    # ------------------------------------------------------------------ model pieces
    def _cuts(self, cut_first: torch.Tensor, log_gaps: torch.Tensor) -> torch.Tensor:
        """Padded cut-points, shape (..., J, C_max + 1)."""
        inner = torch.cat([cut_first.unsqueeze(-1), cut_first.unsqueeze(-1)
                           + torch.cumsum(torch.exp(log_gaps), -1)], -1)  # (..., J, C_max - 1)
        col = torch.arange(self.c_max - 1)
        inner = torch.where(torch.as_tensor(col[None, :] < torch.as_tensor(self.n_cat - 1)[:, None]), inner,
                            torch.full_like(inner, _BIG))
        lo = torch.full_like(inner[..., :1], -_BIG)
        hi = torch.full_like(inner[..., :1], _BIG)
        return torch.cat([lo, inner, hi], -1)

    def _loadings(self, lam_perc: torch.Tensor, lam_out: torch.Tensor) -> torch.Tensor:
        """Loading matrix, shape (..., J, L)."""
        batch = lam_perc.shape[:-1]
        lam = torch.zeros(*batch, self.n_items, self.n_dims, dtype=lam_perc.dtype)
        lam[..., self.perc, self.item_dim[self.perc]] = lam_perc
        lam[..., self.out, :] = lam_out
        return lam

    def _position(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw, -raw.sum(-2, keepdim=True)], -2)

    def _prior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.prior_net(x)
        return h[..., : self.n_dims], nn.functional.softplus(h[..., self.n_dims:]) + 1e-3

    def _theta(self, g: dict[str, torch.Tensor], t: _Tensors, idx, eps, zeta) -> torch.Tensor:
        mu, sd = self._prior(t.x[idx])
        z = mu + sd * eps  # (..., B, L)
        shift = torch.einsum("nkmb,...mbl->...nkl", t.basis[idx], g["lever_w"])
        pos = self._position(g["position_raw"])  # (..., K, L)
        return pos.unsqueeze(-3) + shift + z.unsqueeze(-2) + zeta

    def _model(self, t: _Tensors, idx: torch.Tensor, n_total: int, enc_in: torch.Tensor,
               predictive: bool = False) -> None:
        dt = self.config.dtype
        one = torch.ones((), dtype=dt)
        pyro.module("prior_net", self.prior_net)
        g = {
            "cut_first": pyro.sample("cut_first", dist.Normal(0 * one, 3 * one).expand([self.n_items]).to_event(1)),
            "log_gaps": pyro.sample("log_gaps", dist.Normal(0 * one, one).expand([self.n_items, self.c_max - 2])
                                    .to_event(2)),
            "lam_perc": pyro.sample("lam_perc", dist.HalfNormal(3 * one).expand([len(self.perc)]).to_event(1)),
            "lam_out": pyro.sample("lam_out", dist.Normal(0 * one, 2 * one).expand([len(self.out), self.n_dims])
                                   .to_event(2)),
            "position_raw": pyro.sample("position_raw", dist.Normal(0 * one, one)
                                        .expand([self.n_brands - 1, self.n_dims]).to_event(2)),
            "lever_w": pyro.sample("lever_w", dist.Normal(0 * one, one)
                                   .expand([self.n_levers, 1 + self.config.n_knots, self.n_dims]).to_event(3)),
        }
        k = self.config.particles
        with pyro.plate("respondents", n_total, subsample=idx):
            if k == 1:
                local = pyro.sample("local", dist.Normal(0 * one, one).expand([self.n_local]).to_event(1))
            else:  # importance-weighted: the encoder proposes k local draws per respondent
                q = self._register_locals(enc_in, predictive)
                local = q.rsample((k,))
                log_ratio = dist.Normal(0 * one, one).log_prob(local).sum(-1) - q.log_prob(local)
            logp = self._log_lik(g, t, idx, local, predictive)
            if k == 1:
                pyro.factor("answers", logp)
            else:
                pyro.factor("answers", torch.logsumexp(logp + log_ratio, 0) - math.log(k))

    def _log_lik(self, g: dict[str, torch.Tensor], t: _Tensors, idx, local: torch.Tensor,
                 predictive: bool) -> torch.Tensor:
        """Log-likelihood of each respondent's answers given globals and local draws, shape local.shape[:-1]."""
        eps, zeta = self._split(local)
        theta = self._theta(g, t, idx, eps, zeta)
        lam = self._loadings(g["lam_perc"], g["lam_out"])  # (*G, J, L)
        cuts = self._cuts(g["cut_first"], g["log_gaps"])  # (*G, J, C + 1)
        if lam.dim() > 2:  # globals with a leading draw axis: align it with the draw axis of theta
            lam = lam[:, None, None]
            cuts = cuts[:, None, None]
        u = (theta.unsqueeze(-2) * lam).sum(-1)
        logp = ordinal_log_prob(u, cuts, t.y[idx].expand(u.shape))
        if predictive:  # the predictive encoder learns p(latents | everything but outcomes)
            logp = logp[..., self.perc]
        return logp.sum((-1, -2))

    def _split(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split the local vector into the trait innovation (..., L) and the residuals (..., K, L)."""
        L = self.n_dims
        return local[..., :L], local[..., L:].reshape(*local.shape[:-1], self.n_brands, L)

    def _encoder_input(self, t: _Tensors, idx, hide: torch.Tensor) -> torch.Tensor:
        """Encoder input: answers (outcomes zeroed where ``hide``), the hide mask, covariates, levers."""
        ey = t.enc_y[idx].clone()
        show = torch.ones_like(ey)
        show[..., self.out] = 1.0 - hide.to(ey.dtype)
        ey = ey * show
        n = ey.shape[0]
        return torch.cat([ey.reshape(n, -1), show.reshape(n, -1), t.x[idx], t.levers[idx].reshape(n, -1)], -1)

    def _local_params(self, enc_in: torch.Tensor, predictive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Location (n, D) and lower-triangular scale (n, D, D) of q(local | answers, x, levers)."""
        n, d = enc_in.shape[0], self.n_local
        if self.config.encoder == "batch_position":
            reps = math.ceil(n / self._pos_loc.shape[0])
            loc, diag = self._pos_loc.repeat(reps, 1)[:n], self._pos_scale.repeat(reps, 1)[:n]
            return loc, torch.diag_embed(diag)
        h = self.encoders["predictive_encoder" if predictive else "encoder"](enc_in)
        loc, diag = h[:, :d], nn.functional.softplus(h[:, d:2 * d] - 1.0) + 1e-4
        tril = torch.diag_embed(diag)
        if self._n_off:
            rows, cols = torch.tril_indices(d, d, offset=-1)
            tril = tril.index_put((torch.arange(n)[:, None], rows[None], cols[None]), 0.1 * h[:, 2 * d:])
        return loc, tril

    def _register_locals(self, enc_in: torch.Tensor, predictive: bool) -> dist.MultivariateNormal:
        """Register the local guide's parameters with Pyro and return q(local | answers, x, levers)."""
        if self.config.encoder == "batch_position" and not predictive:
            self._pos_loc = pyro.param("pos_loc", self._pos_loc)
            self._pos_scale = pyro.param("pos_scale", self._pos_scale, constraint=dist.constraints.positive)
        else:
            name = "predictive_encoder" if predictive else "encoder"
            pyro.module(name, self.encoders[name])
        loc, tril = self._local_params(enc_in, predictive and self.config.encoder == "amortised")
        return dist.MultivariateNormal(loc, scale_tril=tril)

    def _guide(self, t, idx, n_total, enc_in, predictive: bool = False) -> None:
        self._global_guide(t, idx, n_total, enc_in)
        if self.config.particles == 1:
            q = self._register_locals(enc_in, predictive)
            with pyro.plate("respondents", n_total, subsample=idx):
                pyro.sample("local", q)

    # ------------------------------------------------------------------ fitting
    def fit(self, data: SurveyData, progress: bool = False) -> TwinModel:
        """Fit by SVI on minibatches of respondents.

        Parameters
        ----------
        data : SurveyData
            Training respondents.
        progress : bool
            Show a progress bar over epochs (off in the book).

        Returns
        -------
        TwinModel
            ``self``, fitted; ``history`` holds the mean negative ELBO per answer and epoch. With
            ``config.bootstrap``, ``bootstrap_model`` is a second model fitted the same way to a
            survey simulated from this one; ``fit_seconds`` counts both fits.
        """
        c = self.config
        start = time.perf_counter()
        # Pyro's argument checks cost a fifth of each step and catch nothing the tests do not.
        with pyro.validation_enabled(False):
            self._fit_svi(data, progress)
            if c.bootstrap:
                # Seeds from the global stream: a seeded run simulates the same bootstrap surveys.
                self._bootstrap_seeds = torch.randint(2**31 - 1, (2,)).tolist()
                star, _ = self.simulate(data, self._bootstrap_seeds[0])
                self.bootstrap_model = TwinModel(replace(c, bootstrap=False, predictive_epochs=0))
                self.bootstrap_model.fit(star, progress)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _fit_svi(self, data: SurveyData, progress: bool) -> None:
        """Shape the model to ``data`` and run both SVI phases; sets ``_fitted``."""
        c = self.config
        # Each model keeps its own parameter store, so two fitted models never share names.
        with pyro.get_param_store().scope() as self._param_state:
            self._shape(data)
            t = self._tensors(data)
            n = data.n
            self._global_guide = AutoMultivariateNormal(poutine.block(self._model, expose=list(GLOBAL_SITES)),
                                                        init_loc_fn=init_to_value(values=self._init), init_scale=0.01)
            self.history = self._run_svi(self._model, self._guide, t, n, c.epochs, False, progress)
            if c.encoder == "amortised" and c.predictive_epochs > 0:
                # Second encoder: q(latents | everything but outcomes), all other parameters frozen.
                def trainable(msg: dict) -> bool:
                    return msg["type"] == "param" and not msg["name"].startswith("predictive_encoder")

                self.predictive_history = self._run_svi(poutine.block(self._model, hide_fn=trainable),
                                                        poutine.block(self._guide, hide_fn=trainable),
                                                        t, n, c.predictive_epochs, True, progress)
        if not np.all(np.isfinite(self.history)):
            raise FloatingPointError("the ELBO became non-finite during the fit; lower lr")
        self._fitted = True

    def _run_svi(self, model, guide, t: _Tensors, n: int, epochs: int, predictive: bool,
                 progress: bool) -> list[float]:
        """Epochs of minibatch SVI; returns the negative ELBO per modelled answer and epoch."""
        c = self.config
        steps = max(1, n // c.batch_size)
        optim = ClippedAdam({"lr": c.lr, "lrd": (c.lr_final / c.lr) ** (1.0 / (steps * epochs)), "clip_norm": 10.0})
        svi = SVI(model, guide, optim, Trace_ELBO())
        n_answers = n * self.n_brands * (len(self.perc) if predictive else self.n_items)
        hide = torch.full((c.batch_size, self.n_brands, len(self.out)), predictive)
        history = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, desc="predictive encoder" if predictive else "SVI epochs")
        averaging = _IterateAverage(start=steps * epochs - round(c.average_tail * steps * epochs))
        for _ in range(epochs):
            perm = torch.randperm(n)
            loss = 0.0
            for s in range(steps):
                idx = perm[s * c.batch_size:(s + 1) * c.batch_size]
                loss += svi.step(t, idx, n, self._encoder_input(t, idx, hide[: len(idx)]), predictive)
                averaging.update()
            history.append(loss / steps / n_answers)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.3f}")
        if bar is not None:
            bar.close()
        averaging.apply()
        return history

    # ------------------------------------------------------------------ posterior
    def _check(self) -> None:
        if not self._fitted:
            raise RuntimeError("fit the model first")

    @torch.no_grad()
    def global_draws(self, n_draws: int = 200) -> dict[str, torch.Tensor]:
        """Draws of the global parameters from the fitted Gaussian, stacked on a leading axis."""
        self._check()
        draws: dict[str, list[torch.Tensor]] = {k: [] for k in GLOBAL_SITES}
        with pyro.get_param_store().scope(self._param_state):
            for _ in range(n_draws):
                tr = poutine.trace(self._global_guide).get_trace()
                for k in GLOBAL_SITES:
                    draws[k].append(tr.nodes[k]["value"])
        return {k: torch.stack(v) for k, v in draws.items()}

    @torch.no_grad()
    def posterior(self, data: SurveyData, n_draws: int = 200, hide_outcomes: bool = False,
                  chunk: int = 5) -> dict[str, torch.Tensor]:
        r"""Joint draws of globals and of every respondent's latents.

        Parameters
        ----------
        data : SurveyData
            Respondents (usually held out).
        n_draws : int
            Posterior draws.
        hide_outcomes : bool
            Infer the latents without the outcome answers (for predicting them).
        chunk : int
            Global draws processed at once (memory).

        Notes
        -----
        With ``particles`` :math:`k > 1` the encoder is a proposal, not the posterior: for each
        global draw and respondent, :math:`k` proposals are weighted by
        :math:`p(y, \ell \mid g)/q(\ell \mid y)` and one is resampled.

        Returns
        -------
        dict
            ``theta`` (S, N, K, L), ``z`` (S, N, L), ``u`` (S, N, K, J) utilities, ``cuts``
            (S, J, C + 1), ``loadings`` (S, J, L), ``position`` (S, K, L) and the globals. With
            the bootstrap (and outcomes shown), also ``bootstrap.<key>`` (the bootstrap model's
            draws for a simulated copy of these respondents) and ``simulated.<key>`` (that
            copy's true values, one draw) for each key of :data:`EFFECT_KEYS`.
        """
        self._check()
        t = self._tensors(data)
        g = self.global_draws(n_draws)
        idx = torch.arange(data.n)
        hide = torch.full((data.n, self.n_brands, len(self.out)), bool(hide_outcomes))
        loc, tril = self._local_params(self._encoder_input(t, idx, hide),
                                       hide_outcomes and self.config.encoder == "amortised")
        k = self.config.particles if self.config.encoder == "amortised" else 1
        q = dist.MultivariateNormal(loc, scale_tril=tril)
        locals_ = []
        for s0 in range(0, n_draws, chunk):
            gs = {key: v[s0:s0 + chunk] for key, v in g.items()}
            draw = q.sample((k, len(gs["cut_first"])))  # (k, c, N, D)
            if k > 1:  # sampling-importance-resampling: one of k proposals per respondent and draw
                log_w = (self._log_lik(gs, t, idx, draw, predictive=hide_outcomes)
                         + dist.Normal(0.0, 1.0).log_prob(draw).sum(-1) - q.log_prob(draw))
                pick = dist.Categorical(logits=log_w.permute(1, 2, 0)).sample()  # (c, N)
                draw = torch.gather(draw, 0, pick[None, ..., None].expand(1, *pick.shape, draw.shape[-1]))
            locals_.append(draw[0])
        eps, zeta = self._split(torch.cat(locals_))
        theta = torch.cat([self._theta({key: v[s0:s0 + chunk] for key, v in g.items()}, t, idx,
                                       eps[s0:s0 + chunk], zeta[s0:s0 + chunk]) for s0 in range(0, n_draws, chunk)])
        mu, sd = self._prior(t.x)
        lam = self._loadings(g["lam_perc"], g["lam_out"])
        u = torch.einsum("snkl,sjl->snkj", theta, lam)
        out = dict(g, theta=theta, z=mu + sd * eps, u=u, cuts=self._cuts(g["cut_first"], g["log_gaps"]),
                   loadings=lam, position=self._position(g["position_raw"]))
        if self.bootstrap_model is not None and not hide_outcomes:
            # The bootstrap world's copy of these respondents, and what its model infers about them.
            star, truth = self.simulate(data, self._bootstrap_seeds[1])
            boot = self.bootstrap_model.posterior(star, n_draws, chunk=chunk)
            out |= {f"bootstrap.{k}": boot[k] for k in EFFECT_KEYS} | {f"simulated.{k}": truth[k] for k in EFFECT_KEYS}
        return out

    @torch.no_grad()
    def outcome_predictive(self, data: SurveyData, n_draws: int = 200) -> dict[str, np.ndarray]:
        """Posterior-predictive category probabilities of each outcome item, outcomes hidden.

        The latents are inferred from everything else the respondent answered (perceptions,
        covariates, levers), then the outcome answers are predicted.

        Returns
        -------
        dict
            Item name to an array of shape (N, K, categories).
        """
        post = self.posterior(data, n_draws, hide_outcomes=True)
        out = {}
        for j in self.out:
            p = _ordinal_probs(post["u"][..., j], post["cuts"][:, j].reshape(n_draws, 1, 1, -1)).mean(0)
            out[self.items[j]] = p[..., : int(self.n_cat[j])].double().numpy()
        return out

    @torch.no_grad()
    def simulate(self, data: SurveyData, seed: int) -> tuple[SurveyData, dict[str, torch.Tensor]]:
        """New answers drawn from the fitted model, for the covariates and levers of ``data``.

        The globals sit at their posterior median; each respondent's latents are drawn afresh
        from the model's prior given the covariates and levers. This is the world a parametric
        bootstrap refits, with every latent known.

        Returns
        -------
        data : SurveyData
            ``data`` with the answers replaced.
        truth : dict
            The generating globals and ``theta`` (N, K, L), shaped like a one-draw
            :meth:`posterior` (``theta``, ``lever_w``, ``loadings``, ``cuts`` with a leading
            axis of length 1), so :meth:`counterfactual` gives the bootstrap world's true effects.
        """
        self._check()
        gen = torch.Generator().manual_seed(seed)
        dt = self.config.dtype
        with pyro.get_param_store().scope(self._param_state):
            g = {k: v.detach() for k, v in self._global_guide.median().items()}
        t = self._tensors(data)
        eps = torch.randn(data.n, self.n_dims, generator=gen, dtype=dt)
        zeta = torch.randn(data.n, self.n_brands, self.n_dims, generator=gen, dtype=dt)
        theta = self._theta(g, t, torch.arange(data.n), eps, zeta)  # (N, K, L)
        lam = self._loadings(g["lam_perc"], g["lam_out"])
        cuts = self._cuts(g["cut_first"], g["log_gaps"])
        probs = _ordinal_probs(theta @ lam.T, cuts)  # (N, K, J, C_max)
        y = torch.multinomial(probs.reshape(-1, self.c_max).double(), 1, generator=gen).reshape(probs.shape[:-1])
        truth = {"theta": theta[None], "lever_w": g["lever_w"][None], "loadings": lam[None], "cuts": cuts[None]}
        return replace(data, y=y.numpy().astype(data.y.dtype)), truth

    @torch.no_grad()
    def counterfactual(self, data: SurveyData, brand: int, delta, item: int | None = None,
                       n_draws: int = 200, post: dict[str, torch.Tensor] | None = None,
                       corrected: bool = True) -> np.ndarray:
        r"""Posterior draws of the mean change in the expected answer when a brand's levers move.

        Abduction (the respondents' latents given all their answers), action (the levers of
        ``brand`` move by ``delta``), prediction (same latents, new levers).

        With the bootstrap, draw :math:`s` is corrected to
        :math:`\hat e_s - \hat e^*_s + e^*`: the bootstrap model's draw :math:`\hat e^*_s` of the
        same effect in the simulated survey, whose true value :math:`e^*` is known, measures the
        fit's error. The two fits are independent, so the correction also adds the bootstrap's
        own spread to the interval.

        Parameters
        ----------
        data : SurveyData
            The respondents whose twins are moved.
        brand : int
            Brand index.
        delta : sequence of float
            Change of each lever, in its own units.
        item : int, optional
            Item index; the first outcome (affinity) by default.
        post : dict, optional
            A :meth:`posterior` result to reuse.
        corrected : bool
            Apply the bootstrap correction (when the model has one).

        Returns
        -------
        ndarray, shape (n_draws,)
        """
        self._check()
        delta = np.asarray(delta, dtype=float)
        if delta.shape != (self.n_levers,):
            raise ValueError(f"delta must have one entry per lever {self.lever_names}, got shape {delta.shape}")
        if not 0 <= brand < self.n_brands:
            raise ValueError(f"brand must be an index in 0..{self.n_brands - 1}, got {brand}")
        j = int(self.out[0]) if item is None else int(item)
        post = post if post is not None else self.posterior(data, n_draws)
        draws = self._effect_draws(data, brand, delta, j, post)
        if self.bootstrap_model is None or not corrected:
            return draws
        if "bootstrap.theta" not in post:
            raise ValueError("post holds no bootstrap draws: pass this model's posterior() with the outcomes shown, "
                             "or corrected=False")
        boot = self.bootstrap_model._effect_draws(data, brand, delta, j, {k: post[f"bootstrap.{k}"] for k in EFFECT_KEYS})
        true = self._effect_draws(data, brand, delta, j, {k: post[f"simulated.{k}"] for k in EFFECT_KEYS})
        return draws - boot + true

    def _effect_draws(self, data: SurveyData, brand: int, delta: np.ndarray, j: int,
                      post: dict[str, torch.Tensor]) -> np.ndarray:
        """Draws of the mean change of item ``j``'s expected answer (no correction), shape (S,)."""
        dt = self.config.dtype
        b0 = torch.tensor(self.lever_basis(data.levers[:, brand]), dtype=dt)
        b1 = torch.tensor(self.lever_basis(data.levers[:, brand] + delta), dtype=dt)
        dshift = torch.einsum("nmb,smbl->snl", b1 - b0, post["lever_w"])
        theta = post["theta"][:, :, brand]
        lam = post["loadings"][:, j]  # (S, L)
        cuts = post["cuts"][:, j].unsqueeze(1)  # (S, 1, C + 1)
        score = torch.arange(int(self.n_cat[j]), dtype=dt)
        u0 = (theta * lam.unsqueeze(1)).sum(-1)
        u1 = ((theta + dshift) * lam.unsqueeze(1)).sum(-1)
        e0 = _ordinal_probs(u0, cuts)[..., : len(score)] @ score
        e1 = _ordinal_probs(u1, cuts)[..., : len(score)] @ score
        return (e1 - e0).mean(-1).double().numpy()

    @torch.no_grad()
    def lever_curve(self, lever: int, grid: np.ndarray, n_draws: int = 200) -> np.ndarray:
        """Draws of the fitted response of :math:`\\theta` to one lever, shape (n_draws, len(grid), L)."""
        g = self.global_draws(n_draws)
        basis = self.lever_basis(np.stack([grid] * self.n_levers, -1))[:, lever]  # (G, B)
        basis = torch.tensor(basis - basis[np.argmin(np.abs(grid))], dtype=self.config.dtype)
        return torch.einsum("gb,sbl->sgl", basis, g["lever_w"][:, lever]).double().numpy()


def lever_search(model: TwinModel, data: SurveyData, brand: int, cost: np.ndarray, budget: float,
                 step: float = 0.1, n_draws: int = 200, item: int | None = None) -> pd.DataFrame:
    r"""Grid search over lever increases that spend a budget, with the posterior of each gain.

    Every allocation spends the whole budget: shares :math:`w` on a simplex grid of ``step``,
    lever :math:`m` rising by :math:`\delta_m = w_m B / \text{cost}_m`.

    Returns
    -------
    DataFrame
        One row per allocation: ``delta_<lever>``, the gain's posterior ``mean``, ``lo``,
        ``hi`` (90%) and ``p_best`` (share of draws in which this allocation is the best);
        sorted by ``mean``, best first.
    """
    cost = np.asarray(cost, dtype=float)
    if cost.shape != (model.n_levers,) or (cost <= 0).any():
        raise ValueError(f"cost must hold one positive number per lever {model.lever_names}, got {cost}")
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    k = round(1 / step)
    shares = [np.array(w) / k for w in itertools.product(range(k + 1), repeat=model.n_levers) if sum(w) == k]
    post = model.posterior(data, n_draws)
    deltas = [w * budget / cost for w in shares]
    gains = np.stack([model.counterfactual(data, brand, d, item=item, post=post) for d in deltas])  # (A, S)
    best = np.bincount(gains.argmax(0), minlength=len(deltas)) / gains.shape[1]
    frame = pd.DataFrame([{**{f"delta_{n}": d[m] for m, n in enumerate(model.lever_names)},
                           "mean": g.mean(), "lo": np.quantile(g, 0.05), "hi": np.quantile(g, 0.95), "p_best": b}
                          for d, g, b in zip(deltas, gains, best, strict=True)])
    return frame.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
