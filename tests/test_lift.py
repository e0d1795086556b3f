"""Lift tests: simulated from a world's truth, observed by the Bayesian model through its own response."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

from mmmlib.bayes.lift import (
    LiftTest,
    added_spend,
    lift_arrays,
    lift_roi_prior,
    simulate_lift_test,
    true_lift,
)
from mmmlib.bayes.model import BayesianMMM
from mmmlib.runtime import setup
from mmmlib.worlds import easy_world


@pytest.fixture(scope="module")
def world():
    return easy_world(seed=3, n_weeks=60)


def test_a_test_is_checked_where_it_is_made_and_against_the_data():
    for kwargs, match in [(dict(start=5, end=5), "start < end"), (dict(spend_change=0.0), "non-zero"),
                          (dict(spend_change=-1.5), ">= -1"), (dict(se=0.0), "se must be"),
                          (dict(post_periods=-1), "post_periods")]:
        args = dict(channel="tv", start=0, end=4, spend_change=0.2, lift=1.0, se=0.1) | kwargs
        with pytest.raises(ValueError, match=match):
            LiftTest(**args)
    test = LiftTest("tv", 50, 58, 0.2, 1.0, 0.1)
    with pytest.raises(ValueError, match="after the data's 52 periods"):
        lift_arrays([test], ["tv"], 52)
    with pytest.raises(ValueError, match="unknown channel 'tv'"):
        lift_arrays([test], ["radio"], 60)
    with pytest.raises(ValueError, match="unknown geos"):
        lift_arrays([LiftTest("tv", 0, 4, 0.2, 1.0, 0.1, geos=("geo_09",))], ["tv"], 60, ("geo_00", "geo_01"))


def test_true_lift_is_the_worlds_counterfactual_and_the_measurement_is_noisy_around_it(world):
    up = true_lift(world, "tv", 20, 24, 0.2)
    assert up > 0 and true_lift(world, "tv", 20, 24, -0.2) < 0
    assert true_lift(world, "tv", 20, 24, 0.2, post_periods=8) > up  # the carry-over after the test
    draws = [simulate_lift_test(world, "tv", 20, 4, 0.2, relative_se=0.2, seed=s).lift for s in range(400)]
    assert np.mean(draws) == pytest.approx(up, rel=0.05) and np.std(draws) == pytest.approx(0.2 * up, rel=0.15)


@pytest.mark.parametrize("geos", [1, 3])
def test_the_likelihood_term_is_the_models_predicted_lift(geos):
    """The lift observed inside the Pyro program, at one posterior draw, equals predict_lift's
    value for that draw, which is computed another way (contributions of the changed data)."""
    world = easy_world(seed=3, n_weeks=60, n_geos=geos)
    names = None if geos == 1 else ("geo_00", "geo_02")
    tests = [simulate_lift_test(world, "search", 30, 4, 0.3, relative_se=0.1, seed=1, geos=names, post_periods=3),
             simulate_lift_test(world, "tv", 10, 6, -0.5, relative_se=0.1, seed=2, geos=names)]
    setup(0)
    mmm = BayesianMMM(media_prior="cost").fit(world.data, inference="svi", svi_steps=150, num_samples=20, chains=1,
                                              seed=0, lift_tests=tests, backend="pyro")
    assert mmm.backend_ == "pyro" and mmm.lift_tests_ == tuple(tests)
    prep = mmm._prepare(mmm.data_)
    draw = {k: v[3] for k, v in mmm.samples_.items() if k != "coef_media" or mmm.media_prior != "roi"}
    conditioned = pyro.poutine.condition(mmm._model, data=draw)
    trace = pyro.poutine.trace(conditioned).get_trace(prep.media, prep.controls, prep.seasonal, prep.t_index,
                                                      target=prep.target)
    inside = trace.nodes["lift"]["fn"].mean.detach().numpy()
    outside = np.array([mmm.predict_lift(t)[3] for t in tests])
    np.testing.assert_allclose(inside, outside, rtol=1e-9)


def _lift_density(world, model, prior, tests, coordinates):
    mmm = BayesianMMM(model, media_prior=prior, trend_index="unit")
    mmm._scales(world.data)
    arr = lift_arrays(tests, world.data.channels, world.data.n_times)
    mmm.lift_ = {k: torch.as_tensor(v) for k, v in arr.items()}
    mmm.lift_["target_scale"] = torch.as_tensor(float(mmm.target_scale_))
    prep = mmm._prepare(world.data)
    return mmm, prep, mmm._density(prep, coordinates)


LIFT_CASES = [("hill_adstock", "roi", "level"), ("hill_adstock", "cost", "native"), ("adstock", "cost", "roi"),
              ("carryover", "roi", "roi"), ("carryover", "cost", "native")]


def _two_tests(world):
    return [simulate_lift_test(world, "search", 30, 4, 0.3, relative_se=0.1, seed=1, post_periods=3),
            simulate_lift_test(world, "tv", 10, 6, -1.0, relative_se=0.1, seed=2),
            simulate_lift_test(world, "search", 45, 3, 0.5, relative_se=0.1, seed=3)]


@pytest.mark.parametrize(("model", "prior", "coordinates"), LIFT_CASES)
def test_the_numpy_density_has_the_pyro_programs_lift_term(world, model, prior, coordinates):
    """With lift tests, the NumPy density and Pyro's potential of the program still differ by a
    constant only (and that constant is not the one without tests: the term is really there)."""
    from pyro.infer.mcmc.util import initialize_model

    if coordinates == "level":
        coordinates = "roi"  # the level coordinate is a change of variables tested in test_bayes_density
    mmm, prep, d = _lift_density(world, model, prior, _two_tests(world), coordinates)
    _, potential_fn, _, _ = initialize_model(mmm._model, model_args=(prep.media, prep.controls, prep.seasonal, prep.t_index),
                                             model_kwargs={"target": prep.target})
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(3):
        z = rng.normal(scale=0.4, size=d.dim)
        params = {}
        for site in d.sites:
            v = torch.as_tensor(z[d.slices[site.name]])
            params[site.name] = v.reshape(()) if site.name in ("intercept", "coef_trend", "expo_trend", "sigma") else v
        if prior != "roi" and coordinates == "roi":  # Pyro's site is log beta: beta = roi * units / sum f
            beta = d._roi_beta(d._constrain_one(z))[0]
            params["coef_media"] = torch.as_tensor(np.log(beta))
            del params["roi"]
        gaps.append(d(z)[0] + float(potential_fn(params)))
    if prior != "roi" and coordinates == "roi":
        return  # a change of variables with a Jacobian: the gradient test below covers it
    assert max(gaps) - min(gaps) < 1e-8 * max(1.0, abs(gaps[0]))


@pytest.mark.parametrize(("model", "prior", "coordinates"), LIFT_CASES)
def test_the_lift_terms_gradient_matches_finite_differences(world, model, prior, coordinates):
    _, _, d = _lift_density(world, model, prior, _two_tests(world), coordinates)
    _, _, plain = _lift_density(world, model, prior, [_two_tests(world)[0]], coordinates)
    z = np.random.default_rng(0).normal(scale=0.5, size=d.dim)
    lp, grad = d(z)
    assert lp != plain(z)[0]
    fd = np.array([(d(z + 1e-6 * e)[0] - d(z - 1e-6 * e)[0]) / 2e-6 for e in np.eye(d.dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


def test_accurate_tests_pin_what_they_measure(world):
    """With a precise go-dark test on every channel, each channel's posterior predicted lift sits
    at the measured one and is far narrower than without the tests. (What that does to ROI over
    the whole window, which also depends on the response's shape away from the test, is measured
    in the experiments chapter, not asserted here.)"""
    tests = [simulate_lift_test(world, ch, 30, 6, -1.0, relative_se=0.05, seed=k, post_periods=6)
             for k, ch in enumerate(world.data.channels)]
    kw = dict(inference="svi", svi_steps=1500, num_samples=200, chains=1, seed=0)
    setup(0)
    plain = BayesianMMM(media_prior="roi").fit(world.data, **kw)
    setup(0)
    tested = BayesianMMM(media_prior="roi").fit(world.data, lift_tests=tests, **kw)
    for t in tests:
        with_test, without = tested.predict_lift(t), plain.predict_lift(t)
        assert np.median(with_test) == pytest.approx(t.lift, abs=3 * t.se), t.channel
        assert np.std(with_test) < 0.5 * np.std(without), t.channel


def test_lift_tests_are_read_from_a_csv_and_used_by_the_command(tmp_path, capsys):
    from pathlib import Path

    from mmmlib.bayes.lift import load_lift_tests
    from mmmlib.cli import main
    from mmmlib.data import load_csv

    data_csv = Path(__file__).resolve().parents[1] / "data" / "example_easy_world.csv"
    cols = dict(date="date", media=[f"media_{c}" for c in ("tv", "search", "social", "display")],
                spend=[f"spend_{c}" for c in ("tv", "search", "social", "display")], target="sales",
                controls=["control_0"], channels=["tv", "search", "social", "display"])
    data = load_csv(data_csv, **cols)
    d = data.dates
    (tmp_path / "tests.csv").write_text(
        "channel,start,end,spend_change,lift,se,post_periods\n"
        f"tv,{d[40].date()},{d[43].date()},0.2,150.0,30.0,4\n"
        f"search,{d[60].date()},{d[61].date()},-1,-300,40,\n")
    tests = load_lift_tests(tmp_path / "tests.csv", d)
    assert tests[0] == LiftTest("tv", 40, 44, 0.2, 150.0, 30.0, None, 4)
    assert tests[1].start == 60 and tests[1].end == 62 and tests[1].post_periods == 0
    (tmp_path / "bad.csv").write_text(f"channel,start,end,spend_change,lift,se\ntv,{d[1].date()},2031-01-01,0.2,1,1\n")
    with pytest.raises(ValueError, match=r"bad.csv, row 0 \(line 2\): end date 2031-01-01 is not one of the data"):
        load_lift_tests(tmp_path / "bad.csv", d)
    args = ["fit", str(data_csv), "--date", "date", "--media", *cols["media"], "--spend", *cols["spend"],
            "--target", "sales", "--controls", "control_0", "--inference", "svi", "--svi-steps", "100",
            "--draws", "20", "--chains", "1"]
    assert main([*args, "--lift-tests", str(tmp_path / "tests.csv"), "--out", str(tmp_path / "r")]) == 0
    (tmp_path / "radio.csv").write_text(f"channel,start,end,spend_change,lift,se\nradio,{d[1].date()},{d[2].date()},0.2,1,1\n")
    assert main([*args, "--lift-tests", str(tmp_path / "radio.csv"), "--out", str(tmp_path / "r2")]) == 2
    assert "unknown channel 'radio'" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_a_test_becomes_a_lognormal_roi_prior_with_its_return_and_standard_error(world):
    data = world.data
    c = list(data.channels).index("tv")
    spend = data.spend_array()[20:24, c].sum()
    test = LiftTest("tv", 20, 24, 0.2, lift=3.0 * 0.2 * spend, se=0.6 * 0.2 * spend)  # return 3, se 0.6
    assert added_spend(test, data) == pytest.approx(0.2 * spend)
    mu, sigma = lift_roi_prior(test, data)
    mean = np.exp(mu + sigma**2 / 2)
    sd = mean * np.sqrt(np.expm1(sigma**2))
    assert mean == pytest.approx(3.0) and sd == pytest.approx(0.6)
    assert lift_roi_prior(test, data, revenue_per_kpi=2.0)[0] == pytest.approx(mu + np.log(2.0))
    dark = LiftTest("tv", 20, 24, -1.0, lift=-1.5 * spend, se=0.1 * spend)  # switched off: return 1.5
    assert np.exp(sum(lift_roi_prior(dark, data) * np.array([1.0, 0.0])) + lift_roi_prior(dark, data)[1] ** 2 / 2) \
        == pytest.approx(1.5)
    with pytest.raises(ValueError, match="opposite sign"):
        lift_roi_prior(LiftTest("tv", 20, 24, 0.2, lift=-1.0, se=1.0), data)
    with pytest.raises(ValueError, match="not a channel of the data"):
        lift_roi_prior(LiftTest("radio", 20, 24, 0.2, lift=1.0, se=1.0), data)


@pytest.mark.parametrize(("model", "prior", "coordinates"), LIFT_CASES)
def test_the_lift_term_survives_extreme_parameters(world, model, prior, coordinates):
    """Far in the tails (transforms that underflow or overflow) the density is finite or -inf,
    never an exception: NUTS's early warm-up visits such points."""
    _, _, d = _lift_density(world, model, prior, _two_tests(world), coordinates)
    rng = np.random.default_rng(5)
    for _ in range(50):
        lp, grad = d(rng.normal(scale=30.0, size=d.dim))
        assert lp == -np.inf or (np.isfinite(lp) and np.isfinite(grad).all())
