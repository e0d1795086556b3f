"""Tests of Chapter 6: the scoreboard's worlds, scores, sweeps and command line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mmmlib.data import MediaDataset
from mmmlib.scoreboard import methods as bm
from mmmlib.scoreboard.suite import WORLDS, SuiteWorld, make_world, tvc_multipliers
from mmmlib.worlds.media import easy_world

TINY = bm.SweepSettings(worlds=("easy", "funnel"), seeds=2, methods=("regression",), workers=2)


@pytest.fixture(scope="module")
def worlds() -> dict[str, SuiteWorld]:
    return {w: make_world(w, seed=3) for w in WORLDS}


def test_worlds_share_one_interface(worlds):
    for name, w in worlds.items():
        assert w.name == name and w.data.name == name
        assert w.roi.index.tolist() == list(w.channels) == w.share.index.tolist()
        assert np.isclose(w.share.sum(), 1.0)
        assert (w.roi > 0).all() and w.current.shape == (len(w.channels),)
        train, test = w.split()
        assert train.n_times == w.train_weeks and test.n_times == w.holdout_weeks == 13
        assert w.response(1.2 * w.current) > w.response(w.current) > w.response(0.8 * w.current)


def test_time_varying_world_adds_the_multiplied_contributions(worlds):
    tv, base = worlds["time_varying"], easy_world(seed=3)
    contrib = base.truth.contributions.to_numpy()
    rng = np.random.default_rng([3, 6])
    m = tvc_multipliers(rng, 156, 4, tv.train_weeks)
    assert np.allclose(m[: tv.train_weeks].mean(axis=0), 1.0)
    extra = tv.data.frame["sales"].to_numpy() - base.data.frame["sales"].to_numpy()
    assert np.allclose(extra, (contrib * (m - 1.0)).sum(axis=1))
    spend = base.truth.spend.to_numpy()[: tv.train_weeks].sum(axis=0)
    assert np.allclose(tv.roi.to_numpy(), (contrib * m)[: tv.train_weeks].sum(axis=0) / spend)
    # log-OU steps have the chapter-5 volatility
    steps = np.diff(np.log(tvc_multipliers(np.random.default_rng(0), 5000, 2, 5000)), axis=0)
    assert steps.std() == pytest.approx(0.12, rel=0.05)


def test_funnel_world_sums_days_into_weeks(worlds):
    f = worlds["funnel"]
    daily = f.native.conversions.to_numpy().sum(axis=1)
    assert np.allclose(f.data.frame["sales"].to_numpy(), daily.reshape(-1, 7).sum(axis=1))
    assert np.allclose(f.data.spend_array().reshape(104, -1), f.native.spend.to_numpy().reshape(-1, 7, 4).sum(axis=1))
    # removing a channel's spend (and TV's spillover) costs more than the funnel ever adds linearly
    assert f.roi.min() > 0


def test_make_world_rejects_bad_names():
    with pytest.raises(ValueError, match="world must be one of"):
        make_world("hard")
    with pytest.raises(ValueError, match="holdout_weeks"):
        make_world("easy", holdout_weeks=0)


def _linear_world(noise: float) -> SuiteWorld:
    """Sales exactly linear in spend (plus an intercept): ROI is the slope."""
    rng = np.random.default_rng(0)
    n, roi = 120, np.array([2.0, 0.5])
    spend = rng.uniform(5, 15, size=(n, 2))
    sales = 50 + spend @ roi + noise * rng.normal(size=n)
    frame = pd.DataFrame({"date": pd.date_range("2023-01-02", periods=n, freq="7D"),
                          "spend_a": spend[:, 0], "spend_b": spend[:, 1], "sales": sales})
    data = MediaDataset(frame, "date", ("spend_a", "spend_b"), ("spend_a", "spend_b"), "sales",
                        channels=("a", "b"), name="easy")
    contrib = roi * spend[:107].sum(axis=0)
    idx = pd.Index(["a", "b"], name="channel")
    return SuiteWorld("easy", 0, data, 13, pd.Series(roi, idx), pd.Series(contrib / contrib.sum(), idx),
                      lambda s: float(np.dot(roi, s)), spend[:107].mean(axis=0), None)


def test_regression_recovers_a_linear_world():
    world = _linear_world(noise=0.0)
    fit = bm.fit_method("regression", world, bm.SweepSettings())
    assert np.allclose(fit.roi, [2.0, 0.5])
    s = bm.score(fit, world)
    assert s["roi_mape"] < 1e-8 and s["holdout_mape"] < 1e-8 and s["share_mae"] < 1e-8
    assert s["regret"] == pytest.approx(0.0, abs=1e-6)
    noisy = bm.score(bm.fit_method("regression", _linear_world(noise=2.0), bm.SweepSettings()), _linear_world(2.0))
    assert noisy["roi_coverage"] == 1.0 and 0 < noisy["roi_mape"] < 0.1


def test_score_penalises_a_wrong_budget():
    world = _linear_world(noise=0.0)
    fit = bm.fit_method("regression", world, bm.SweepSettings())
    backwards = replace(fit, response=lambda s: float(np.dot([0.5, 2.0], s)), roi_lo=None, roi_hi=None)
    s = bm.score(backwards, world)
    assert s["regret"] == pytest.approx(2.0)  # moves the whole range the wrong way
    assert np.isnan(s["roi_coverage"])


def test_tasks_and_applicability():
    tasks = bm.make_tasks(bm.SWEEPS["full"])
    # the prior-only reference and four weekly methods everywhere, the funnel model once, lift tests on two
    assert len(tasks) == 5 * 5 * 4 + 5 + 2 * 5
    assert not bm.applies("funnel", "easy") and bm.applies("funnel", "funnel")
    with pytest.raises(ValueError, match="method must be one of"):
        bm.applies("prophet", "easy")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        bm.SweepSettings(seeds=0)
    with pytest.raises(ValueError, match="worlds must be among"):
        bm.SweepSettings(worlds=("moon",))
    with pytest.raises(ValueError, match="does not apply"):
        bm.fit_method("funnel", make_world("easy"), bm.SweepSettings())


def test_sweep_is_the_same_inline_and_in_processes():
    tasks = bm.make_tasks(TINY)
    inline = bm.run_sweep(tasks, bm.InlineExecutor(), progress=False)
    pooled = bm.run_sweep(tasks, progress=False)  # default: two spawned processes
    cols = ["world", "seed", "method", "roi_mape", "share_mae", "roi_coverage", "holdout_mape", "regret"]
    pd.testing.assert_frame_equal(inline[cols], pooled[cols])
    assert (pooled["peak_rss_mb"] > 50).all()
    board = bm.scoreboard(pooled)
    assert board.loc[("easy", "regression"), ("roi_mape", "mean")] == pytest.approx(
        inline.query("world == 'easy'")["roi_mape"].mean())
    assert board.loc[("funnel", "regression"), "seeds"] == 2


def test_failing_task_names_itself():
    bad = bm.Task("easy", 0, "regression", replace(bm.SweepSettings(), bounds_pct=0.3, holdout_weeks=13))
    object.__setattr__(bad, "world", "moon")
    with pytest.raises(RuntimeError, match="regression on moon"):
        bm.run_task(bad)


def test_finite_draws_drops_overflowed_draws():
    class Fitted:
        samples_ = {"roi": torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]]),
                    "coef_media": torch.tensor([[0.1, 0.2], [float("inf"), 0.2], [0.3, 0.4]])}

    mmm = Fitted()
    assert bm.finite_draws(mmm) == 1
    assert mmm.samples_["roi"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert bm.finite_draws(mmm) == 0


def test_executor_from_rejects_unknown_specs():
    with pytest.raises(ValueError, match="executor must be"):
        bm.executor_from("slurm")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        bm.executor_from("local", workers=0)


def test_cli_writes_scores_or_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert bm.main(["--worlds", "moon", "--out", str(out)]) == 2
    assert "worlds must be among" in capsys.readouterr().err and not out.exists()
    code = bm.main(["--worlds", "easy", "--methods", "regression", "--seeds", "2", "--executor", "inline",
                    "--out", str(out)])
    assert code == 0
    rows = pd.read_csv(out)
    assert rows.shape[0] == 2 and set(rows["method"]) == {"regression"}
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


# ------------------------------------------------------------ chapter helpers
def _rows() -> pd.DataFrame:
    """Three methods on one world and two seeds, with scores chosen by hand."""
    return pd.DataFrame({
        "world": ["easy"] * 6, "seed": [0, 0, 0, 1, 1, 1],
        "method": ["regression", "lightweightmmm", "deepcausal"] * 2,
        "roi_mape": [1.0, 0.3, 0.5, 0.9, 0.2, 0.6], "share_mae": [0.1] * 6,
        "roi_coverage": [0.5, 0.75, np.nan, 0.25, 1.0, np.nan],
        "holdout_mape": [0.09, 0.05, 0.04, 0.08, 0.05, 0.03], "regret": [0.5, 0.1, 0.2, 0.4, 0.1, 0.3],
        "seconds": [0.01, 2.0, 20.0] * 2, "peak_rss_mb": [300.0, 900.0, 600.0] * 2,
    })


def test_winners_need_to_beat_the_seed_noise():
    from mmmlib.scoreboard import board as ex

    rows = _rows()
    # two seeds: a paired t-test can separate only a difference that is the same on both seeds
    w = ex.winners(rows, "roi_mape")
    assert w["easy"] == "tie: LightweightMMM model (SVI), DeepCausal"  # 0.2/0.3 apart, not consistently
    rows5 = pd.concat([rows.assign(seed=rows["seed"] + 2 * k) for k in range(3)], ignore_index=True)
    rng = np.random.default_rng(0)
    rows5["roi_mape"] += rng.normal(0, 0.01, len(rows5))
    assert ex.winners(rows5, "roi_mape")["easy"] == "LightweightMMM model (SVI)"  # 6 seeds, consistent gap
    assert ex.winners(rows5, "roi_coverage")["easy"] == "LightweightMMM model (SVI)"  # nearer 0.9 on every seed
    tied = rows5.copy()
    tied.loc[tied["method"] == "deepcausal", "roi_mape"] = (
        tied.loc[tied["method"] == "lightweightmmm", "roi_mape"].to_numpy() + rng.normal(0, 0.05, 6))
    assert ex.winners(tied, "roi_mape")["easy"].startswith("tie:")
    assert ex.winners(rows.iloc[:3], "roi_mape")["easy"].startswith("tie:")  # one seed: no test
    with pytest.raises(ValueError, match="metric must be"):
        ex.winners(rows, "speed")
    check = ex.holdout_vs_roi(_rows())
    assert check["cases"] == 2 and check["picks_best"] == 0.0
    assert check["median_rho"] == pytest.approx(0.5)


def test_record_scoreboard_glues_every_cell(tmp_path):
    from mmmlib.book.results import Recorder
    from mmmlib.runtime import setup
    from mmmlib.scoreboard import board as ex

    rec = Recorder("06_scoreboard", {}, setup(0), tmp_path, glue=False)
    n = ex.record_scoreboard(rec, bm.scoreboard(_rows()))
    assert n == 5 * len(WORLDS) * len(bm.METHODS) and len(rec.results) == 2 * n
    r = rec.results
    assert r["ch06.roi_mape.easy.lightweightmmm"].value == pytest.approx(0.25)
    assert r["ch06.roi_mape_sd.easy.lightweightmmm"].display == f"± {np.std([0.3, 0.2], ddof=1):.2f}"
    assert r["ch06.roi_coverage_sd.easy.deepcausal"].display == ""
    assert r["ch06.roi_coverage.easy.deepcausal"].value == "none"
    assert r["ch06.regret.easy.funnel"].value == "n/a"  # does not apply
    assert r["ch06.regret.funnel.regression"].value == "n/a"  # not in this sweep


def test_funnel_response_is_the_steady_state():
    """With no media effect the funnel settles where A = keep A + M p_ua; a week converts
    7 (1 - lambda) p_ac A* plus the organic base."""
    from mmmlib.scoreboard.suite import funnel_weekly_response

    w = make_world("funnel", seed=0).native
    p = replace(w.truth, beta_ua=np.zeros_like(w.truth.beta_ua), beta_ac=np.zeros_like(w.truth.beta_ac))
    resp = funnel_weekly_response(p, w.true_mask, w.sizes, np.ones(4), w.config.initial_active)
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    p_ua, p_ac, lam = sig(p.alpha_ua), sig(p.alpha_ac), p.forget
    keep = (1 - lam) * (1 - p_ac)
    active = w.sizes * p_ua / (1 - keep + p_ua)
    expected = 7 * ((1 - lam) * p_ac * active).sum() + 7 * p.base.sum()
    assert resp(np.full(4, 5.0)) == pytest.approx(expected, rel=1e-6)


def test_oracle_floor_scores_the_training_window_like_the_board(tmp_path):
    from dataclasses import replace as dc_replace

    from mmmlib.bayes.evaluate import oracle_roi
    from mmmlib.book.results import Recorder
    from mmmlib.runtime import setup
    from mmmlib.scoreboard import board as ex

    settings = dc_replace(bm.SWEEPS["quick"], seeds=2, worlds=("easy", "funnel"))
    floor = ex.oracle_floor(settings)
    assert list(floor["world"]) == ["easy", "easy"] and list(floor["seed"]) == [0, 1]
    assert (floor["roi_mape"] > 0).all() and floor["roi_coverage"].between(0, 1).all()
    # the training window differs from the whole window, and so does the truth scored
    world = make_world("easy", seed=0, holdout_weeks=settings.holdout_weeks)
    whole = oracle_roi(world.native, seed=0)
    train = oracle_roi(world.native, seed=0, weeks=world.data.n_times - world.holdout_weeks)
    assert not np.allclose(whole["true"], train["true"])
    np.testing.assert_allclose(train["true"], world.roi.reindex(train.index))
    with pytest.raises(ValueError, match="weeks must be in"):
        oracle_roi(world.native, weeks=0)
    rec = Recorder("06_scoreboard", {}, setup(0), tmp_path, glue=False)
    ex.record_oracle_floor(rec, floor)
    r = rec.results
    assert r["ch06.roi_mape.easy.oracle"].value == pytest.approx(floor["roi_mape"].mean())
    assert r["ch06.roi_mape.funnel.oracle"].value == "n/a"
    assert r["ch06.roi_coverage_sd.easy.oracle"].display.startswith("± ")


def test_prior_only_is_the_prior_median_and_spend_shares():
    from mmmlib.bayes.model import data_roi_prior

    world = make_world("easy", seed=2)
    fit = bm.fit_method("prior_only", world, bm.SweepSettings())
    train, _ = world.split()
    mu, sigma = data_roi_prior(train)
    np.testing.assert_allclose(fit.roi, np.exp(mu))
    assert (fit.roi_lo < fit.roi).all() and (fit.roi < fit.roi_hi).all()
    np.testing.assert_allclose(np.log(fit.roi_hi / fit.roi_lo), 2 * 1.6448536 * sigma, rtol=1e-6)
    spend = train.spend_array().reshape(train.n_times, -1).sum(axis=0)
    np.testing.assert_allclose(fit.share, spend / spend.sum())
    scores = bm.score(fit, world)
    assert np.isnan(scores["holdout_mape"]) and np.isnan(scores["regret"])
    assert scores["roi_mape"] == pytest.approx(np.mean(np.abs(np.exp(mu) / world.roi.to_numpy() - 1)))


def test_experiments_have_their_own_noise_per_world_and_design():
    from mmmlib.bayes.lift import LiftDesign
    from mmmlib.scoreboard.suite import experiment_seed, run_experiments

    designs = [LiftDesign(0.2, 4, 0.1), LiftDesign(0.2, 4, 0.2), LiftDesign(0.2, 4, 0.4), LiftDesign(-1.0, 4, 0.2)]
    seeds = {experiment_seed(w, s, d) for w in ("easy", "correlated") for s in range(5) for d in designs}
    assert len(seeds) == 2 * 5 * len(designs)
    world = make_world("easy", seed=0)
    a = run_experiments(world, designs[0])
    b = run_experiments(world, designs[2])
    assert a == run_experiments(world, designs[0])  # the same design, world and seed: the same tests
    # measurement errors in standard errors differ between designs (they were identical when
    # every design drew its noise from the same seed)
    from mmmlib.bayes.lift import true_lift

    def z(tests):
        return np.array([(t.lift - true_lift(world.native, t.channel, t.start, t.end, t.spend_change,
                                             post_periods=t.post_periods)) / t.se for t in tests])

    assert not np.allclose(z(a), z(b))
    assert experiment_seed("easy", 0, LiftDesign(-1, 4, 0.2)) == experiment_seed("easy", 0, LiftDesign(-1.0, 4, 0.2))
    for name in ("funnel", "time_varying"):  # no known lifts there
        with pytest.raises(ValueError, match="media world with known lifts"):
            run_experiments(make_world(name, seed=0), designs[0])


def test_paired_difference():
    from mmmlib.scoreboard.board import paired_difference

    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(0.5, 0.2, 10))
    out = paired_difference(base - 0.1 + rng.normal(0, 0.01, 10), base)
    assert out["verdict"] == "lower" and out["diff"] == pytest.approx(-0.1, abs=0.01) and out["n"] == 10
    assert paired_difference(base + rng.normal(0, 0.05, 10), base)["verdict"] == "tie"
    assert paired_difference(base + 0.1 + rng.normal(0, 0.01, 10), base)["verdict"] == "higher"
    assert paired_difference(base.iloc[:1], base.iloc[:1])["verdict"] == "tie"  # one pair tells nothing
    with pytest.raises(ValueError, match="alpha"):
        paired_difference(base, base, alpha=1.5)
