"""Fit LightweightMMM 0.1.9 inside its own environment (run as a script, never imported).

Usage: ``python _lwmm_worker.py IN.npz OUT.npz``. This file imports nothing from ``mmmlib``:
it runs under the peer environment's Python (JAX, NumPyro, LightweightMMM and their 2023 pins),
which has no torch. ``IN.npz`` holds the raw arrays and the settings written by
:func:`mmmlib.bayes.lwmm.run_lightweightmmm`; ``OUT.npz`` receives the posterior draws.

The steps are those of LightweightMMM's README: media, target and costs divided by their means
with ``preprocessing.CustomScaler`` (the costs then multiplied by ``multiply_by``, 0.15 in the
README and every demo notebook), ``LightweightMMM(model_name).fit(...)`` with the scaled costs as
the media prior, and ``get_posterior_metrics`` for ROI and contribution share.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(path_in: str, path_out: str) -> None:
    import numpy as np

    arrays = dict(np.load(path_in, allow_pickle=False))
    settings = json.loads(str(arrays.pop("settings")))
    chains = int(settings["chains"])
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={chains}")

    import jax.numpy as jnp
    import numpyro
    from lightweight_mmm import lightweight_mmm, preprocessing

    numpyro.set_host_device_count(chains)
    media = jnp.asarray(arrays["media"])
    target = jnp.asarray(arrays["target"])
    costs = jnp.asarray(arrays["costs"])
    extra = arrays.get("extra_features")
    media_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    target_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean)
    cost_scaler = preprocessing.CustomScaler(divide_operation=jnp.mean, multiply_by=float(settings["cost_multiplier"]))
    media_scaled = media_scaler.fit_transform(media)
    target_scaled = target_scaler.fit_transform(target)
    costs_scaled = cost_scaler.fit_transform(costs)

    mmm = lightweight_mmm.LightweightMMM(model_name=settings["model"])
    t0 = time.perf_counter()
    mmm.fit(
        media=media_scaled,
        media_prior=costs_scaled,
        target=target_scaled,
        extra_features=None if extra is None or extra.shape[1] == 0 else jnp.asarray(extra),
        degrees_seasonality=int(settings["degrees_seasonality"]),
        seasonality_frequency=int(settings["seasonality_frequency"]),
        number_warmup=int(settings["num_warmup"]),
        number_samples=int(settings["num_samples"]),
        number_chains=chains,
        target_accept_prob=float(settings["target_accept_prob"]),
        seed=int(settings["seed"]),
    )
    seconds = time.perf_counter() - t0
    share, roi = mmm.get_posterior_metrics(cost_scaler=cost_scaler, target_scaler=target_scaler)
    out = {
        "roi": np.asarray(roi),
        "share": np.asarray(share),
        "seconds": np.asarray(seconds),
        "divergences": np.asarray(int(np.asarray(mmm._mcmc.get_extra_fields()["diverging"]).sum())),
    }
    by_chain = mmm._mcmc.get_samples(group_by_chain=True)
    for name in settings["sites"]:
        if name in by_chain:
            out[f"site_{name}"] = np.asarray(by_chain[name])
    out["roi_by_chain"] = np.asarray(roi).reshape(chains, -1, np.asarray(roi).shape[-1])
    tmp = path_out + ".part.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path_out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: _lwmm_worker.py IN.npz OUT.npz")
    main(sys.argv[1], sys.argv[2])
