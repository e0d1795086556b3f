"""mmmlib.inference.diagnostics: ArviZ's diagnostics on draws whose answer is known, and the export."""

from __future__ import annotations

import numpy as np
import pytest

from mmmlib.inference.diagnostics import inference_data, summarize_draws


def _ar1(rng, phi, chains, n):
    x = np.zeros((chains, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=chains)
    return x


def test_iid_stuck_and_autocorrelated_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000))
    stuck = iid + np.array([[0.0], [0.0], [3.0], [3.0]])
    phi = 0.9
    ar = _ar1(rng, phi, 4, 4000)
    table = summarize_draws({"iid": iid, "stuck": stuck, "ar": ar})
    assert abs(table.loc["iid", "rhat"] - 1.0) < 0.01
    assert 0.85 * 8000 < table.loc["iid", "ess_bulk"] < 1.15 * 8000
    assert table.loc["stuck", "rhat"] > 1.5
    expected = 16000 * (1 - phi) / (1 + phi)
    assert 0.7 * expected < table.loc["ar", "ess_bulk"] < 1.3 * expected
    # MCSE of the mean is sd / sqrt(ESS)
    np.testing.assert_allclose(table.loc["iid", "mcse_mean"], iid.std() / np.sqrt(table.loc["iid", "ess_bulk"]), rtol=0.05)
    assert (table["ess"] == table[["ess_bulk", "ess_tail"]].min(axis=1)).all()


def test_vector_sites_are_flattened_and_named():
    rng = np.random.default_rng(1)
    table = summarize_draws({"beta": rng.normal(size=(2, 100, 3)), "alpha": rng.normal(size=(2, 100))})
    assert list(table.index) == ["beta[0]", "beta[1]", "beta[2]", "alpha"]


def test_inference_data_keeps_chains_dims_and_stats(tmp_path):
    rng = np.random.default_rng(2)
    idata = inference_data(
        {"beta": rng.normal(size=(2, 50, 3))},
        {"diverging": np.zeros((2, 50), dtype=bool)},
        dims={"beta": ["channel"]},
        coords={"channel": ["tv", "search", "social"]},
        attrs={"model": "hill_adstock"},
    )
    assert idata.posterior["beta"].dims == ("chain", "draw", "channel")
    assert list(idata.posterior["channel"].values) == ["tv", "search", "social"]
    assert idata.posterior.attrs["model"] == "hill_adstock"
    path = tmp_path / "fit.nc"
    idata.to_netcdf(path)
    import arviz as az

    back = az.from_netcdf(path)
    np.testing.assert_array_equal(back.posterior["beta"].values, idata.posterior["beta"].values)


def test_draws_without_a_chain_axis_are_refused():
    with pytest.raises(ValueError, match="'beta'.*chains, draws"):
        inference_data({"beta": np.zeros(10)})


def test_interval_summary_matches_numpy_quantiles():
    from mmmlib.inference.diagnostics import interval_summary

    rng = np.random.default_rng(1)
    draws = rng.normal(size=(2, 500, 3))  # chains x draws x quantities
    out = interval_summary(draws, ["a", "b", "c"], level=0.8)
    flat = draws.reshape(-1, 3)
    np.testing.assert_allclose(out["lo"], np.quantile(flat, 0.1, axis=0))
    np.testing.assert_allclose(out["hi"], np.quantile(flat, 0.9, axis=0))
    np.testing.assert_allclose(out["median"], np.median(flat, axis=0))
    assert list(out.index) == ["a", "b", "c"] and out.index.name == "channel"
    with pytest.raises(ValueError, match="level"):
        interval_summary(draws, ["a", "b", "c"], level=1.0)
