r"""The national model of :mod:`mmmlib.models.bayes` as a NumPy log density with its gradient.

The same model and priors as :meth:`mmmlib.models.bayes.BayesianMMM._model` (the Pyro
program stays the reference; ``tests/test_bayes_density.py`` checks that both give the
same log density up to a constant, and that this gradient matches finite differences),
written on the unconstrained space with the Jacobians of the transforms:

===========================  =====================  ===========================
site                         prior                  unconstrained by
===========================  =====================  ===========================
``intercept``                HalfNormal(2)          log
``coef_trend``               Normal(0, 1)           identity
``expo_trend``               Uniform(0.5, 1.5)      logit(κ − 0.5)
``sigma``                    Gamma(1, 1)            log
``gamma_seasonality``        Normal(0, 1)           identity
``coef_extra``               Normal(0, 1)           identity
``lag_weight``               Beta(2, 1)             logit
``exponent``                 Beta(9, 1)             logit
``half_max_effective_...``   Gamma(1, 1)            log
``slope``                    Gamma(1, 1)            log
``ad_effect_retention_rate`` Beta(1, 1)             logit
``peak_effect_delay``        HalfNormal(2)          log
``coef_media``               HalfNormal(v_m)        log
``roi`` (``media_prior="roi"``) LogNormal(μ, s)     log
===========================  =====================  ===========================

With ``media_prior="roi"`` the media coefficient is not a parameter: it is the value
that gives channel :math:`m` the sampled ROI over the training window,
:math:`\beta_m = \mathrm{ROI}_m \cdot \text{spend}_m / (\bar y \sum_t f_m(t))`.
With ``media_prior`` ``cost`` or ``flat`` and ``coordinates="roi"``, the prior is still
LightweightMMM's half-normal on :math:`\beta_m`, but the sampler moves in
:math:`u_m = \log \mathrm{ROI}_m` instead of :math:`\log\beta_m`. Since
:math:`\log\beta_m = u_m + \log(\text{spend}_m/\bar y) - \log\sum_t f_m(t)` and the other
parameters are unchanged, the map is a shear with unit Jacobian: the posterior is the same,
only the coordinates differ. In :math:`\log\beta` the posterior has a long curved ridge along
which :math:`\beta_m` trades off against the saturation parameters (NUTS needs its full
tree depth, 1023 gradients per draw); in ROI coordinates that ridge is straight.

The hand-written gradient makes one evaluation about 20 times cheaper than torch's
autograd on this model (which is dominated by per-operation overhead at this size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NationalDensity", "CARRYOVER_LAGS", "geometric_scan"]

CARRYOVER_LAGS = 13
TOEPLITZ_MAX_T = 520  # longer series use the O(T log T) scan instead of the O(T^2) product


def geometric_scan(x: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Un-normalised adstock and its derivative in :math:`\lambda`, by a doubling scan.

    :math:`a_t = x_t + \lambda a_{t-1}` and :math:`b_t = \partial a_t / \partial\lambda
    = \sum_i i \lambda^{i-1} x_{t-i}`, both ``(T, C)``, in :math:`\lceil\log_2 T\rceil`
    vectorised steps (Hillis–Steele: after the step with offset :math:`k` every
    :math:`a_t` holds the terms :math:`i < 2k`).
    """
    a = np.array(x, dtype=np.float64, copy=True)
    b = np.zeros_like(a)
    power, d_power, k = np.asarray(lam, dtype=np.float64), np.ones_like(lam, dtype=np.float64), 1
    T = a.shape[0]
    while k < T:
        b[k:] = b[k:] + power * b[:-k] + d_power * a[:-k]  # uses a before this step's update
        a[k:] = a[k:] + power * a[:-k]
        d_power = 2.0 * power * d_power
        power = power * power
        k *= 2
    return a, b


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _log_sigmoid(u):
    """log sigmoid(u), without underflow."""
    return -np.logaddexp(0.0, -u)


def _log_sigmoid_jacobian(u):
    """log |d sigmoid(u) / du| = log s + log(1 - s), without underflow."""
    return -np.logaddexp(0.0, -u) - np.logaddexp(0.0, u)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class _Site:
    name: str
    size: int
    per_channel: bool


class NationalDensity:
    r"""Unconstrained log density and gradient of the national model.

    Parameters
    ----------
    model : str
        ``adstock``, ``hill_adstock`` or ``carryover``.
    media : numpy.ndarray, shape (T, C)
        Media divided by its per-channel mean.
    controls : numpy.ndarray, shape (T, K)
        Standardised controls (K may be 0).
    seasonal : numpy.ndarray, shape (T, F)
        Fourier (and weekday) features (F may be 0).
    t_index : numpy.ndarray, shape (T,)
        Trend index (non-negative).
    target : numpy.ndarray, shape (T,)
        Target divided by its mean.
    cost_prior : numpy.ndarray, shape (C,)
        Half-normal scales of ``coef_media`` (``media_prior`` ``cost`` or ``flat``).
    media_prior : str
        ``cost``/``flat`` (sample ``coef_media``) or ``roi`` (sample ``roi``).
    roi_units : numpy.ndarray, shape (C,), optional
        Total spend over the mean target, :math:`\text{spend}_m / \bar y`: turns an ROI into a
        total scaled contribution. Required for ``media_prior="roi"``.
    roi_prior : tuple of float
        :math:`(\mu, s)` of the LogNormal ROI prior.
    coordinates : str
        ``roi`` (sample log ROI; the default) or ``native`` (sample log ``coef_media``, as
        LightweightMMM does; ``cost``/``flat`` only). The posterior is the same.
    """

    def __init__(
        self,
        model: str,
        media: np.ndarray,
        controls: np.ndarray,
        seasonal: np.ndarray,
        t_index: np.ndarray,
        target: np.ndarray,
        cost_prior: np.ndarray,
        media_prior: str = "cost",
        roi_units: np.ndarray | None = None,
        roi_prior: tuple[float, float] = (0.2, 0.9),
        coordinates: str = "roi",
    ) -> None:
        if model not in ("adstock", "hill_adstock", "carryover"):
            raise ValueError(f"model must be adstock, hill_adstock or carryover, got {model!r}")
        if media_prior not in ("cost", "flat", "roi"):
            raise ValueError(f"media_prior must be cost, flat or roi, got {media_prior!r}")
        if coordinates not in ("roi", "native"):
            raise ValueError(f"coordinates must be 'roi' or 'native', got {coordinates!r}")
        if media_prior == "roi" and coordinates == "native":
            raise ValueError("media_prior='roi' has no native coefficient; use coordinates='roi'")
        if coordinates == "roi" and roi_units is None:
            raise ValueError("ROI coordinates need roi_units (total spend over the mean target)")
        self.model = model
        self.x = np.ascontiguousarray(media, dtype=np.float64)
        self.z_ctrl = np.asarray(controls, dtype=np.float64).reshape(len(self.x), -1)
        self.seasonal = np.asarray(seasonal, dtype=np.float64).reshape(len(self.x), -1)
        self.t = np.asarray(t_index, dtype=np.float64)
        self.y = np.asarray(target, dtype=np.float64)
        self.cost = np.asarray(cost_prior, dtype=np.float64)
        self.media_prior = media_prior
        self.coordinates = coordinates
        self.roi_units = None if roi_units is None else np.asarray(roi_units, dtype=np.float64)
        self.roi_prior = (float(roi_prior[0]), float(roi_prior[1]))
        T, C = self.x.shape
        self.T, self.C = T, C
        self.log_t = np.where(self.t > 0, np.log(np.where(self.t > 0, self.t, 1.0)), 0.0)
        self.x_toeplitz = None
        if model != "carryover" and T <= TOEPLITZ_MAX_T:
            # x_toeplitz[c, t, k] = x[t - k, c]: adstock is then one batched matrix product
            lag = np.arange(T)[:, None] - np.arange(T)[None, :]
            self.x_toeplitz = np.ascontiguousarray(np.where(lag[None] >= 0, self.x.T[:, np.clip(lag, 0, None)], 0.0))
            self.k = np.arange(T, dtype=np.float64)[:, None]
        if model == "carryover":  # lagged media (L, T, C), zero before the first period
            L = CARRYOVER_LAGS
            padded = np.concatenate([np.zeros((L - 1, C)), self.x])
            self.x_lag = np.stack([padded[L - 1 - lag : L - 1 - lag + T] for lag in range(L)])
            self.lags = np.arange(L, dtype=np.float64)[:, None]
        transform_sites = {
            "adstock": ("lag_weight", "exponent"),
            "hill_adstock": ("lag_weight", "half_max_effective_concentration", "slope"),
            "carryover": ("ad_effect_retention_rate", "peak_effect_delay", "exponent"),
        }[model]
        sites = [_Site("intercept", 1, False), _Site("coef_trend", 1, False), _Site("expo_trend", 1, False),
                 _Site("sigma", 1, False)]
        if self.seasonal.shape[1]:
            sites.append(_Site("gamma_seasonality", self.seasonal.shape[1], False))
        if self.z_ctrl.shape[1]:
            sites.append(_Site("coef_extra", self.z_ctrl.shape[1], False))
        sites += [_Site(n, C, True) for n in transform_sites]
        sites.append(_Site("roi" if coordinates == "roi" else "coef_media", C, True))
        self.sites = tuple(sites)
        self.slices: dict[str, slice] = {}
        i = 0
        for s in sites:
            self.slices[s.name] = slice(i, i + s.size)
            i += s.size
        self.dim = i

    # ------------------------------------------------------------ transforms
    def _constrain_one(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained values of one unconstrained vector (scalars as 0-d arrays)."""
        s = self.slices
        p = {
            "intercept": np.exp(z[s["intercept"]][0]),
            "coef_trend": z[s["coef_trend"]][0],
            "expo_trend": 0.5 + _sigmoid(z[s["expo_trend"]][0]),
            "sigma": np.exp(z[s["sigma"]][0]),
        }
        for name in ("gamma_seasonality", "coef_extra"):
            if name in s:
                p[name] = z[s[name]]
        for name in ("lag_weight", "exponent", "ad_effect_retention_rate"):
            if name in s:
                p[name] = _sigmoid(z[s[name]])
                p["_log_" + name] = _log_sigmoid(z[s[name]])  # exact even where the sigmoid underflows
        for name in ("half_max_effective_concentration", "slope", "peak_effect_delay", "coef_media", "roi"):
            if name in s:
                p[name] = np.exp(z[s[name]])
                p["_log_" + name] = z[s[name]]
        return p

    def unconstrain(self, values: dict[str, np.ndarray | float]) -> np.ndarray:
        """The unconstrained vector of a dict of constrained values (e.g. prior medians)."""
        z = np.zeros(self.dim)
        for site in self.sites:
            v = np.broadcast_to(np.asarray(values[site.name], dtype=np.float64), (site.size,))
            if site.name in ("coef_trend", "gamma_seasonality", "coef_extra"):
                u = v
            elif site.name == "expo_trend":
                u = _logit(v - 0.5)
            elif site.name in ("lag_weight", "exponent", "ad_effect_retention_rate"):
                u = _logit(v)
            else:
                u = np.log(v)
            z[self.slices[site.name]] = u
        return z

    def prior_median(self) -> dict[str, np.ndarray | float]:
        """Prior medians of every site (LightweightMMM starts its chains at them)."""
        hn = 0.6744897501960817  # median of HalfNormal(1)
        g1 = math.log(2.0)  # median of Gamma(1, 1)
        med: dict[str, np.ndarray | float] = {
            "intercept": 2.0 * hn,
            "coef_trend": 0.0,
            "expo_trend": 1.0,
            "sigma": g1,
            "gamma_seasonality": 0.0,
            "coef_extra": 0.0,
            "lag_weight": math.sqrt(0.5),  # Beta(2, 1)
            "exponent": 0.5 ** (1.0 / 9.0),  # Beta(9, 1)
            "half_max_effective_concentration": g1,
            "slope": g1,
            "ad_effect_retention_rate": 0.5,
            "peak_effect_delay": 2.0 * hn,
            "coef_media": self.cost * hn,
            "roi": math.exp(self.roi_prior[0]),
        }
        if self.coordinates == "roi" and self.media_prior != "roi":  # the ROI of the median coefficient
            f, _, _ = self._media(self._constrain_one(self.unconstrain({**med, "roi": 1.0})))
            med["roi"] = med["coef_media"] * f.sum(axis=0) / self.roi_units
        return med

    def constrain(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained draws ``{site: (n, ...)}`` of unconstrained draws ``(n, dim)``, with
        ``coef_media`` computed from ``roi`` when the ROI is the parameter."""
        draws = np.atleast_2d(draws)
        per = [self._constrain_one(z) for z in draws]
        out = {k: np.stack([p[k] for p in per]) for k in per[0] if not k.startswith("_")}
        if self.coordinates == "roi":
            out["coef_media"] = np.stack([self._roi_beta(p)[0] for p in per])
        return out

    # -------------------------------------------------------- media transform
    def _media(self, p: dict[str, np.ndarray]):
        """Transformed media ``f`` (T, C), its log, and a closure mapping dL/d(log f) to
        the gradients of the transform's unconstrained parameters."""
        if self.model in ("adstock", "hill_adstock"):
            lam = p["lag_weight"]
            a, b = self._adstock_and_derivative(lam, p["_log_lag_weight"])
            A = a * (1.0 - lam)
            dA_dlam = (1.0 - lam) * b - a
        else:
            tau, theta = p["ad_effect_retention_rate"], p["peak_effect_delay"]
            d2 = (self.lags - theta) ** 2  # (L, C)
            log_tau = p["_log_ad_effect_retention_rate"]
            w = np.exp(d2 * log_tau)
            sw = w.sum(axis=0)
            W = w / sw
            A = np.einsum("ltc,lc->tc", self.x_lag, W)
        pos = A > 0
        logA = np.log(np.where(pos, A, 1.0))

        if self.model == "hill_adstock":
            S = p["slope"]
            q = S * (logA - p["_log_half_max_effective_concentration"])
            f = np.where(pos, _sigmoid(q), 0.0)
            log_f = np.where(pos, -np.logaddexp(0.0, -q), -np.inf)

            def backward(g_log_f: np.ndarray) -> dict[str, np.ndarray]:
                g_q = np.where(pos, g_log_f * (1.0 - f), 0.0)
                g_A = np.where(pos, g_q * S / np.where(pos, A, 1.0), 0.0)
                return {
                    "lag_weight": (g_A * dA_dlam).sum(axis=0) * lam * (1.0 - lam),
                    "half_max_effective_concentration": -S * g_q.sum(axis=0),
                    "slope": (g_q * q).sum(axis=0),
                }

            return f, log_f, backward

        rho = p["exponent"]
        log_f = np.where(pos, rho * logA, -np.inf)
        f = np.exp(log_f)

        def backward(g_log_f: np.ndarray) -> dict[str, np.ndarray]:
            g_A = np.where(pos, g_log_f * rho / np.where(pos, A, 1.0), 0.0)
            grads = {"exponent": np.where(pos, g_log_f * logA, 0.0).sum(axis=0) * rho * (1.0 - rho)}
            if self.model == "adstock":
                grads["lag_weight"] = (g_A * dA_dlam).sum(axis=0) * lam * (1.0 - lam)
            else:
                g_W = np.einsum("tc,ltc->lc", g_A, self.x_lag)
                g_w = (g_W - (g_W * W).sum(axis=0)) / sw
                g_tau = (g_w * w * d2 / tau).sum(axis=0)
                g_theta = (g_w * w * log_tau * (-2.0) * (self.lags - theta)).sum(axis=0)
                grads["ad_effect_retention_rate"] = g_tau * tau * (1.0 - tau)
                grads["peak_effect_delay"] = g_theta * theta
            return grads

        return f, log_f, backward

    def _adstock_and_derivative(self, lam: np.ndarray, log_lam: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Un-normalised adstock and its derivative in lambda, ``(T, C)`` each."""
        if self.x_toeplitz is None:
            return geometric_scan(self.x, lam)
        if log_lam is None:
            log_lam = np.log(lam)
        powers = np.exp(self.k * log_lam)  # lam^k
        d_powers = self.k * np.exp(np.maximum(self.k - 1.0, 0.0) * log_lam)  # k lam^(k-1), 0 at k = 0
        out = np.matmul(self.x_toeplitz, np.stack([powers.T, d_powers.T], axis=-1))  # (C, T, 2)
        return out[..., 0].T, out[..., 1].T

    def _roi_beta(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        f, _, _ = self._media(p)
        total = f.sum(axis=0)
        return p["roi"] * self.roi_units / total, f

    # ---------------------------------------------------------------- density
    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density (up to a constant) and its gradient at the unconstrained ``z``
        (``-inf`` and a zero gradient where it is not finite, e.g. early in warm-up)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._log_density(z)

    def _log_density(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        s = self.slices
        p = self._constrain_one(z)
        grad = np.zeros(self.dim)
        a, ct, kappa, sigma = p["intercept"], p["coef_trend"], p["expo_trend"], p["sigma"]
        u_kappa = z[s["expo_trend"]][0]
        sk = kappa - 0.5
        # priors, with the log-Jacobians of the transforms
        lp = -0.125 * a * a + z[s["intercept"]][0]  # log a = u
        grad[s["intercept"]] = -0.25 * a * a + 1.0
        lp += -0.5 * ct * ct
        grad[s["coef_trend"]] = -ct
        lp += _log_sigmoid_jacobian(u_kappa)
        grad[s["expo_trend"]] = 1.0 - 2.0 * sk
        lp += -sigma + z[s["sigma"]][0]
        grad[s["sigma"]] = 1.0 - sigma
        for name in ("gamma_seasonality", "coef_extra"):
            if name in s:
                v = p[name]
                lp += -0.5 * float(v @ v)
                grad[s[name]] = -v
        if "lag_weight" in p:
            lam = p["lag_weight"]
            u = z[s["lag_weight"]]
            lp += float(np.sum(_log_sigmoid(u) + _log_sigmoid_jacobian(u)))
            grad[s["lag_weight"]] = 2.0 - 3.0 * lam
        if "exponent" in p:
            rho = p["exponent"]
            u = z[s["exponent"]]
            lp += float(np.sum(8.0 * _log_sigmoid(u) + _log_sigmoid_jacobian(u)))
            grad[s["exponent"]] = 9.0 - 10.0 * rho
        for name in ("half_max_effective_concentration", "slope"):
            if name in p:
                v = p[name]
                lp += float(np.sum(-v + z[s[name]]))
                grad[s[name]] = 1.0 - v
        if "ad_effect_retention_rate" in p:
            tau = p["ad_effect_retention_rate"]
            lp += float(np.sum(_log_sigmoid_jacobian(z[s["ad_effect_retention_rate"]])))
            grad[s["ad_effect_retention_rate"]] = 1.0 - 2.0 * tau
            theta = p["peak_effect_delay"]
            lp += float(np.sum(-0.125 * theta * theta + z[s["peak_effect_delay"]]))
            grad[s["peak_effect_delay"]] = 1.0 - 0.25 * theta * theta
        if self.media_prior == "roi":
            mu0, sd0 = self.roi_prior
            u = z[s["roi"]]
            lp += float(np.sum(-0.5 * ((u - mu0) / sd0) ** 2))
            grad[s["roi"]] = -(u - mu0) / sd0**2
        elif self.coordinates == "native":
            beta = p["coef_media"]
            lp += float(np.sum(-0.5 * (beta / self.cost) ** 2 + z[s["coef_media"]]))
            grad[s["coef_media"]] = 1.0 - (beta / self.cost) ** 2

        # mean function
        f, log_f, backward = self._media(p)
        g_log_f_prior = 0.0
        if self.coordinates == "roi":
            # contribution = ROI * units * f / sum(f): the normalised shape, computed in log space
            top = log_f.max(axis=0)
            h = np.exp(log_f - top)
            total = h.sum(axis=0)
            h = h / total
            scale = p["roi"] * self.roi_units
            media_term = h @ scale
            if self.media_prior != "roi":  # half-normal prior on beta = scale / sum(f), unit Jacobian
                log_beta = z[s["roi"]] + np.log(self.roi_units) - top - np.log(total)
                beta = np.exp(log_beta)
                lp += float(np.sum(-0.5 * (beta / self.cost) ** 2 + log_beta))
                g_b = 1.0 - (beta / self.cost) ** 2  # d prior / d log beta
                grad[s["roi"]] = g_b
                g_log_f_prior = -g_b[None, :] * h
        else:
            beta = p["coef_media"]
            media_term = f @ beta
        trend = np.where(self.t > 0, np.exp(kappa * self.log_t), 0.0)
        mu = a + ct * trend + media_term
        if "gamma_seasonality" in p:
            mu = mu + self.seasonal @ p["gamma_seasonality"]
        if "coef_extra" in p:
            mu = mu + self.z_ctrl @ p["coef_extra"]
        e = self.y - mu
        ss = float(e @ e)
        lp += -self.T * z[s["sigma"]][0] - 0.5 * ss / (sigma * sigma)
        r = e / (sigma * sigma)  # dLL/dmu
        grad[s["sigma"]] += -self.T + ss / (sigma * sigma)
        grad[s["intercept"]] += float(r.sum()) * a
        grad[s["coef_trend"]] += float(r @ trend)
        grad[s["expo_trend"]] += ct * float(r @ (trend * self.log_t)) * sk * (1.0 - sk)
        if "gamma_seasonality" in p:
            grad[s["gamma_seasonality"]] += self.seasonal.T @ r
        if "coef_extra" in p:
            grad[s["coef_extra"]] += self.z_ctrl.T @ r
        if self.coordinates == "roi":
            m = r @ h  # (C,)
            grad[s["roi"]] += scale * m
            g_log_f = h * scale[None, :] * (r[:, None] - m[None, :]) + g_log_f_prior
        else:
            grad[s["coef_media"]] += (r @ f) * beta
            g_log_f = r[:, None] * beta[None, :] * f
        for name, g in backward(g_log_f).items():
            grad[s[name]] += g
        if not (np.isfinite(lp) and np.all(np.isfinite(grad))):
            return -math.inf, np.zeros(self.dim)
        return float(lp), grad
