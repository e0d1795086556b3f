"""The wear-out world family and the particle smoother that knows its dynamics (Chapter 5)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mmmlib.data import DATA_FILES_READ
from mmmlib.tvc import experiment as ex
from mmmlib.tvc.particle import ParticleTVC
from mmmlib.tvc.wearout import WearoutDynamics, simulate_wearout, wearout_multiplier
from mmmlib.tvc.world import TVCConfig, TVCWorld, baseline_features

SMALL = TVCConfig(n_weeks=8, channels=("tv",), controls=("price",), beta_median=(24.0,), decay=(0.6,),
                  on_share=(0.7,), gamma_mean=(-4.0,))


def test_multiplier_wears_out_on_air_only_and_resets_at_a_launch():
    x = np.array([0.5, 0.5, 0.0, 0.0, 0.5, 0.5])[:, None]
    launch = np.array([False, False, False, True, False, True])[:, None]  # week 0 counts as a launch anyway
    jump = np.array([0.0, 0.0, 0.0, 0.0, 0.3, 0.3])[:, None]
    m, e = wearout_multiplier(x, launch, jump, wear_rate=0.4)
    np.testing.assert_allclose(e[:, 0], [0.5, 1.0, 1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(m[:, 0], np.exp([-0.2, -0.4, -0.4, 0.0, 0.3 - 0.2, 0.3 - 0.2]))


def test_wearout_world_is_reproducible_and_its_truth_adds_up():
    w1, p1 = simulate_wearout(n_series=30, seed=4)
    w2, _ = simulate_wearout(n_series=30, seed=4)
    w3, _ = simulate_wearout(n_series=30, seed=5)
    assert isinstance(w1, TVCWorld)
    np.testing.assert_array_equal(w1.sales, w2.sales)
    assert not np.allclose(w1.sales, w3.sales)
    assert p1.launch[:, 0].all()
    mult, _ = wearout_multiplier(w1.media, p1.launch, p1.jump, WearoutDynamics().wear_rate)
    np.testing.assert_allclose(w1.beta, p1.fresh[:, None, :] * mult)
    # off air the coefficient moves only at a launch or a jump
    off = (w1.media[:, 1:] == 0) & ~p1.launch[:, 1:] & (np.diff(p1.jump, axis=1) == 0)
    assert off.any()
    np.testing.assert_allclose(w1.beta[:, 1:][off], w1.beta[:, :-1][off])
    assert np.isfinite(w1.noise).all() and (w1.beta > 0).all()


@pytest.mark.parametrize("bad", [dict(launch_rate=1.5), dict(jump_rate=-0.1), dict(wear_rate=-1.0),
                                 dict(fresh_over_median=0.0)])
def test_dynamics_refuse_impossible_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        WearoutDynamics(**bad)


def _dense_posterior(pf: ParticleTVC, media, controls, sales, mult):
    """The same linear-Gaussian model written as one multivariate normal over every week (no filter):
    the reference for the Kalman filter inside the particle smoother."""
    t, c = media.shape
    k = controls.shape[-1]
    pr = pf.prior
    s = c + k + 4
    # state x_w = (a, gamma_w, base); mean and covariance of the stacked states over weeks
    phi = np.concatenate([np.ones(c), pr.phi[c:]])
    drift = np.concatenate([np.zeros(c), (1 - pr.phi[c:]) * pr.long_run[c:]])
    q = np.concatenate([np.zeros(c), pr.q[c:]])
    m0 = np.concatenate([pf.fresh_mean, pr.m0[c:]])
    v0 = np.zeros((s, s))
    v0[:c, :c] = np.diag(pf.fresh_var)
    v0[c:, c:] = pr.P0[c:, c:]
    a = np.diag(phi)
    means, trans = [m0], [np.eye(s)]  # x_w = mean_w + L_w (x_0 - m0) + sum of noises
    for _ in range(1, t):
        means.append(a @ means[-1] + drift)
        trans.append(a @ trans[-1])
    big = np.zeros((t * s, t * s))
    for i in range(t):
        for j in range(t):
            cross = trans[i] @ v0 @ trans[j].T
            for r in range(1, min(i, j) + 1):
                li = np.linalg.matrix_power(a, i - r)
                lj = np.linalg.matrix_power(a, j - r)
                cross = cross + li @ np.diag(q) @ lj.T
            big[i * s:(i + 1) * s, j * s:(j + 1) * s] = cross
    f = baseline_features(t)
    h = np.zeros((t, t * s))
    for w in range(t):
        h[w, w * s:(w + 1) * s] = np.concatenate([mult[w] * media[w], controls[w], f[w]])
    mu = np.concatenate(means)
    ycov = h @ big @ h.T + pr.r * np.eye(t)
    evidence = stats.multivariate_normal(h @ mu, ycov).logpdf(sales)
    gain = big @ h.T @ np.linalg.inv(ycov)
    post_mean = mu + gain @ (sales - h @ mu)
    post_cov = big - gain @ h @ big
    return evidence, post_mean[:c], np.sqrt(np.diag(post_cov)[:c])


def _small_problem(dynamics: WearoutDynamics, seed: int = 0):
    train, _ = simulate_wearout(SMALL, dynamics, n_series=200, seed=seed)
    test, paths = simulate_wearout(SMALL, dynamics, n_series=3, seed=seed + 1)
    return train, test, paths


def test_given_multipliers_is_the_exact_linear_gaussian_posterior():
    dyn = WearoutDynamics()
    train, test, paths = _small_problem(dyn)
    pf = ParticleTVC.calibrate(train, dyn, n_draws=20000, seed=1)
    mult = test.beta / paths.fresh[:, None, :]
    samples, evidence = pf.given_multipliers(test.media, test.controls, test.sales, mult)
    for i in range(test.n):
        ref_ev, ref_mean, ref_sd = _dense_posterior(pf, test.media[i], test.controls[i], test.sales[i], mult[i])
        assert evidence[i] == pytest.approx(ref_ev, abs=1e-6)
        a = samples.beta[i, :, 0, :] / mult[i, 0]  # the drawn fresh-creative coefficient
        assert np.abs(a.mean(0) - ref_mean).max() < 5 * ref_sd.max() / np.sqrt(20000)
        np.testing.assert_allclose(a.std(0), ref_sd, rtol=0.05)


def test_particle_smoother_agrees_with_enumerating_every_launch_history():
    """Eight weeks, one channel, launches only: the 2^7 launch histories can be enumerated, each
    weighted by its prior and its exact evidence; the particle smoother must find the same
    posterior mean path and evidence."""
    dyn = WearoutDynamics(launch_rate=0.2, jump_rate=0.0, wear_rate=0.8)
    train, test, _ = _small_problem(dyn, seed=3)
    oracle = ParticleTVC.calibrate(train, dyn, n_draws=4000, seed=2)
    t = SMALL.n_weeks
    histories = np.array(list(itertools.product([False, True], repeat=t - 1)))
    launch = np.concatenate([np.ones((len(histories), 1), dtype=bool), histories], axis=1)[..., None]
    log_prior = (histories * np.log(dyn.launch_rate) + ~histories * np.log1p(-dyn.launch_rate)).sum(1)
    pf = ParticleTVC.calibrate(train, dyn, n_particles=4000, n_draws=4000, seed=5)
    got, got_ev = pf._run(test.media, test.controls, test.sales, None)
    for i in range(test.n):
        reps = len(histories)
        mult, _ = wearout_multiplier(np.repeat(test.media[i:i + 1], reps, 0), launch, np.zeros(launch.shape),
                                     dyn.wear_rate)
        samples, ev = oracle.given_multipliers(np.repeat(test.media[i:i + 1], reps, 0),
                                               np.repeat(test.controls[i:i + 1], reps, 0),
                                               np.repeat(test.sales[i:i + 1], reps, 0), mult)
        logpost = log_prior + ev
        total = np.logaddexp.reduce(logpost)
        post = np.exp(logpost - total)
        exact_mean = np.einsum("h,htc->tc", post, samples.beta.mean(1))
        exact_sd = np.sqrt(np.einsum("h,htc->tc", post, (samples.beta**2).mean(1)) - exact_mean**2)
        assert got_ev[i] == pytest.approx(total, abs=0.1)
        assert np.abs(got.beta[i].mean(0) - exact_mean).max() < 0.1 * exact_sd.max()
        np.testing.assert_allclose(got.beta[i].std(0), exact_sd, rtol=0.15)


def test_particle_smoother_checks_its_inputs():
    dyn = WearoutDynamics()
    train, test, _ = _small_problem(dyn)
    pf = ParticleTVC.calibrate(train, dyn, n_particles=10)
    with pytest.raises(ValueError, match="channels"):
        pf.sample(np.concatenate([test.media, test.media], -1), test.controls, test.sales)
    with pytest.raises(ValueError, match="share"):
        pf.sample(test.media, test.controls, test.sales[:, :-1])
    with pytest.raises(ValueError, match="multiplier"):
        pf.given_multipliers(test.media, test.controls, test.sales, test.beta[:, :-1])
    with pytest.raises(ValueError, match="n_particles"):
        ParticleTVC.calibrate(train, dyn, n_particles=0)


def test_floor_study_reruns_the_chapters_rung_and_loads(tmp_path):
    """The study's first run is the chapter's top ladder rung (same worlds, settings and seed):
    its score must equal the chapter's computation; the loader reads what the script writes."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "floor.json"
    subprocess.run([sys.executable, "benchmarks/study_wearout_floor.py", "--quick", "--particles", "100", "200",
                    "--draws", "29", "--out", str(out)], cwd=root, check=True, capture_output=True)
    study = ex.load_floor_study(out)
    assert str(out.resolve()) in DATA_FILES_READ
    assert study.profile == "quick" and study.scored_draws == 19 and study.more_draws == 29 and study.series == 8
    assert list(study.runs["particles"]) == [400, 200, 100, 100] and list(study.runs["seed"]) == [0, 0, 0, 1]
    assert study.runs["corr_more_draws"].isna().tolist() == [True, False, False, False]

    s = ex.DiffusionSettings.for_profile("quick")
    train, _, test, _ = ex.make_wearout_worlds(s, 0)
    sub = test.subset(slice(0, s.ladder_series))
    mine = ex.score_paths(ex.particle_estimate(train, sub, s.wearout, max(s.particle_ladder), s.check_draws, 0), sub)
    assert study.runs.loc[0, "corr"] == pytest.approx(mine["corr"], abs=1e-12)
    assert study.runs.loc[0, "coverage90"] == pytest.approx(mine["coverage90"], abs=1e-12)

    fl = study.floor()  # 400 (the chapter's rung) is the largest count here
    c = study.runs["corr"]
    assert fl["particles"] == 400 and fl["corr"] == c[0] and fl["below"] == 200 and fl["rise"] == pytest.approx(c[0] - c[1])
    assert fl["spread_particles"] == 100 and fl["spread"] == pytest.approx(abs(c[2] - c[3]))

    fig = ex.plot_floor({100: 0.5, 400: c[0]}, study, {"ours": 0.4, "oracle": 1.0}, study.series)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_legend().get_texts()][-2:] == ["ours", "oracle"]
    assert sorted(ax.lines[1].get_xdata()) == sorted(study.runs["particles"])  # one dot per run

    doc = json.loads(out.read_text())
    del doc["oracle"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="'oracle'"):
        ex.load_floor_study(bad)
