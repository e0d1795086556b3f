"""Chapter 8's study: experiment designs, their planning in a world, arms and scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mmmlib.bayes.lift import LiftDesign, added_spend, plan_tests
from mmmlib.lift.study import (
    Arm,
    LiftStudySettings,
    fit_arm,
    marginal_roi,
    run_arms,
    run_selection,
    selection_path,
)
from mmmlib.scoreboard.methods import LIFT_WORLDS, SweepSettings, applies, make_tasks
from mmmlib.scoreboard.suite import make_world


def test_marginal_roi_is_the_slope_of_the_response():
    coef = np.array([2.0, 0.5, 1.5])
    assert marginal_roi(lambda s: float(coef @ s), np.array([10.0, 20.0, 5.0])) == pytest.approx(coef)
    curved = marginal_roi(lambda s: float(np.sum(np.sqrt(s))), np.array([4.0, 9.0]))
    assert curved == pytest.approx([0.25, 1 / 6], rel=1e-3)  # d sqrt(s) / ds = 1 / (2 sqrt(s))


def test_a_design_is_checked_and_named():
    assert LiftDesign(0.2, 4, 0.2).label == "+20% for 4 weeks, se 20%"
    assert LiftDesign(-1.0, 4, 0.1).label == "switched off for 4 weeks, se 10%"
    for kwargs, match in [(dict(spend_change=0.0), "spend_change"), (dict(spend_change=-2.0), "spend_change"),
                          (dict(weeks=0), "weeks"), (dict(relative_se=0.0), "relative_se")]:
        with pytest.raises(ValueError, match=match):
            LiftDesign(**kwargs)


def test_tests_are_planned_in_spending_weeks_inside_the_training_data():
    world = make_world("easy", 0)
    design = LiftDesign(0.2, 4, 0.2, post_weeks=4)
    tests = plan_tests(world.native, world.channels, design, seed=3, last_period=world.train_weeks)
    assert [t.channel for t in tests] == list(world.channels)
    spend = world.data.spend_array()
    for t in tests:
        c = list(world.channels).index(t.channel)
        assert t.end + t.post_periods <= world.train_weeks and t.end - t.start == 4
        windows = [spend[s:s + 4, c].sum() for s in range(world.train_weeks - 8 + 1)]
        assert spend[t.start:t.end, c].sum() >= np.median(windows)
        assert added_spend(t, world.data) == pytest.approx(0.2 * spend[t.start:t.end, c].sum())
    again = plan_tests(world.native, world.channels, design, seed=3, last_period=world.train_weeks)
    assert again == tests
    other = plan_tests(world.native, world.channels, design, seed=4, last_period=world.train_weeks)
    assert other != tests
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        plan_tests(world.native, ["radio"], design, seed=0)
    with pytest.raises(ValueError, match="too few"):
        plan_tests(world.native, ["tv"], design, seed=0, last_period=6)


def test_an_arm_is_checked():
    with pytest.raises(ValueError, match="Arm.design"):
        Arm("easy", 0, "plus30")
    with pytest.raises(ValueError, match="Arm.use"):
        Arm("easy", 0, "plus20", use="posterior")
    assert Arm("easy", 0, "off", use="prior").label == "switched off for 4 weeks, se 20%, as ROI prior"
    assert Arm("easy", 0, "plus20+off").label == "+20% for 4 weeks, se 20% and switched off for 4 weeks, se 20%"
    with pytest.raises(ValueError, match="Arm.design"):
        Arm("easy", 0, "plus20+")
    with pytest.raises(ValueError, match="twice"):
        Arm("easy", 0, "plus20+plus20")
    with pytest.raises(ValueError, match="one ROI prior per channel"):
        Arm("easy", 0, "plus20+off", use="prior")


def test_shape_known_without_tests_is_the_books_oracle():
    """With no test the shape-known reader is oracle_roi's least squares: the same ROI error."""
    from mmmlib.bayes.evaluate import oracle_roi
    from mmmlib.lift.study import fit_shape_known

    world = make_world("easy", 1)
    oracle = oracle_roi(world.native, seed=1, weeks=world.train_weeks, draws=20000)
    ours = fit_shape_known(world, [], draws=20000, seed=1)
    assert ours["roi_mape"] == pytest.approx(oracle["abs_pct_error"].mean(), abs=0.02)
    assert ours["roi_coverage"] == pytest.approx(oracle["covered"].mean())


def test_shape_known_reads_exact_tests_as_the_truth():
    """A test with a tiny standard error pins its channel's scale at the truth; the others are
    untouched."""
    from mmmlib.bayes.lift import LiftTest, true_lift
    from mmmlib.lift.study import fit_shape_known

    world = make_world("easy", 1)
    exact = []
    for ch in world.channels:
        truth = true_lift(world.native, ch, 40, 44, 0.2, post_periods=4)
        exact.append(LiftTest(ch, 40, 44, 0.2, truth, 1e-6 * abs(truth), post_periods=4))
    assert fit_shape_known(world, exact)["roi_mape"] < 1e-4
    assert fit_shape_known(world, exact)["roi_coverage"] == 1.0
    wrong = [LiftTest(t.channel, t.start, t.end, t.spend_change, 2 * t.lift, t.se, post_periods=4) for t in exact]
    assert fit_shape_known(world, wrong)["roi_mape"] == pytest.approx(1.0, abs=1e-3)


def test_measurement_errors_are_those_of_the_arms_tests():
    from mmmlib.lift.study import measurement_errors

    arms = [Arm("easy", 0, "plus20"), Arm("easy", 0, "plus20_se10"), Arm("easy", 0, "plus20+off")]
    errors = measurement_errors(arms)
    assert len(errors) == 4 + 4 + 8
    one, precise = errors[errors["design"] == "plus20"], errors[errors["design"] == "plus20_se10"]
    both = errors[errors["design"] == "plus20+off"]
    # the two-test arm runs the +20% arm's tests (paired), and a design of its own noise
    np.testing.assert_allclose(both["z"].to_numpy()[:4], one["z"].to_numpy())
    assert not np.allclose(one["z"].to_numpy(), precise["z"].to_numpy())
    np.testing.assert_allclose(one["ratio"] - 1, 0.2 * one["z"], rtol=1e-9)


@pytest.fixture(scope="module")
def small():
    return replace(LiftStudySettings.for_profile("quick"), svi_steps=200, draws=100, workers=1)


def test_an_arm_is_fitted_and_scored(small):
    plain = fit_arm(Arm("easy", 0), small)
    tested = fit_arm(Arm("easy", 0, "off", channels=("search",)), small)
    prior = fit_arm(Arm("easy", 0, "off", channels=("search",), use="prior"), small)
    for row in (plain, tested, prior):
        assert {"roi_mape", "roi_coverage", "regret", "mroi_mape", "roi_median.search", "log_roi_sd.search"} <= set(row)
    assert plain["tested"] == 0 and tested["tested"] == 1 and np.isnan(plain["lift_ratio"])
    assert np.isfinite(tested["lift_ratio"]) and np.isnan(prior["lift_ratio"])
    # a switch-off test as a prior pins that channel's ROI: its posterior narrows to about the
    # test's own width (the prior's log-sd)
    from mmmlib.bayes.lift import lift_roi_prior
    from mmmlib.lift.study import DESIGNS
    from mmmlib.scoreboard.suite import run_experiments

    world = make_world("easy", 0)
    (test,) = run_experiments(world, DESIGNS["off"], ("search",))
    _, width = lift_roi_prior(test, world.split()[0])
    assert prior["log_roi_sd.search"] < min(plain["log_roi_sd.search"], 1.5 * width)
    again = fit_arm(Arm("easy", 0, "off", channels=("search",)), small)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in tested.items() if k != "seconds"}


def test_the_selection_starts_every_strategy_from_the_same_fit(small):
    rows = selection_path(0, replace(small, selection_steps=1, selection_use="likelihood"))
    base = [r for r in rows if r["step"] == 0]
    assert {r["strategy"] for r in base} == {"widest", "at_stake", "random"}
    assert len({r["roi_mape"] for r in base}) == 1
    picked = {r["strategy"]: r["tested"] for r in rows if r["step"] == 1}
    widest = max(("tv", "search", "social", "display"), key=lambda c: base[0][f"log_roi_sd.{c}"])
    assert picked["widest"] == widest


def test_arms_and_selection_do_not_depend_on_the_number_of_workers(small):
    """An arm per core gives the rows of one process, in the order given (each arm seeds itself)."""
    arms = [Arm("easy", 1, "off", channels=("search",)), Arm("easy", 0)]
    alone = run_arms(arms, small).drop(columns="seconds")
    paired = run_arms(arms, replace(small, workers=2)).drop(columns="seconds")
    assert list(paired["seed"]) == [1, 0]
    assert alone.equals(paired)
    few = replace(small, selection_seeds=2, selection_steps=1)
    one = run_selection(few).drop(columns="seconds")
    two = run_selection(replace(few, workers=2)).drop(columns="seconds")
    assert one.equals(two) and set(two["seed"]) == {0, 1}


def test_lift_tests_join_the_scoreboard_where_their_truth_is_known():
    assert LIFT_WORLDS == ("easy", "correlated")
    assert applies("bayes_lift", "easy") and not applies("bayes_lift", "funnel")
    assert not applies("bayes_lift", "time_varying")
    tasks = make_tasks(SweepSettings(seeds=1))
    assert {t.world for t in tasks if t.method == "bayes_lift"} == set(LIFT_WORLDS)
