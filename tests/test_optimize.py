"""Budget allocation against problems whose optimum is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from mmmlib.optimize import optimize_budget, regret, truth_response
from mmmlib.worlds import easy_world

A = np.array([3.0, 1.0, 2.0])
CH = ("a", "b", "c")


def log_response(spend: np.ndarray) -> float:
    """sum_c a_c log(1 + s_c): equal marginal returns a_c / (1 + s_c) at the optimum."""
    return float(np.sum(A * np.log1p(spend)))


def test_unbounded_optimum_equalises_marginal_returns():
    current = np.array([5.0, 5.0, 5.0])
    alloc = optimize_budget(log_response, current, CH, lower=np.zeros(3), upper=np.full(3, 15.0))
    # a_c / (1 + s_c) = const and sum s = 15  =>  1 + s_c = a_c * (15 + 3) / sum(a)
    expected = A * 18.0 / A.sum() - 1.0
    np.testing.assert_allclose(alloc.spend, expected, atol=1e-4)
    assert alloc.converged and alloc.uplift > 0
    assert alloc.spend.sum() == pytest.approx(15.0)


def test_bounds_bind_and_budget_holds():
    current = np.array([5.0, 5.0, 5.0])
    alloc = optimize_budget(log_response, current, CH, bounds_pct=0.2)
    assert np.all(alloc.spend >= 4.0 - 1e-9) and np.all(alloc.spend <= 6.0 + 1e-9)
    assert alloc.spend.sum() == pytest.approx(15.0)
    # channel a has the highest return: it hits its upper bound, b its lower
    assert alloc.spend[0] == pytest.approx(6.0) and alloc.spend[1] == pytest.approx(4.0)
    table = alloc.table()
    assert list(table.index) == list(CH) and table.loc["a", "change"] == pytest.approx(0.2)


def test_regret_is_zero_for_the_true_optimum_and_positive_for_a_wrong_model():
    current = np.array([5.0, 5.0, 5.0])
    right = optimize_budget(log_response, current, CH)
    r, best = regret(right, log_response)
    assert r == pytest.approx(0.0, abs=1e-6)

    def wrong(spend):  # believes b is the best channel
        return float(np.sum(A[::-1] * np.log1p(spend)))

    r_wrong, _ = regret(optimize_budget(wrong, current, CH), log_response)
    assert r_wrong > 0.5


def test_true_response_of_a_simulated_world_gains_from_reallocation():
    w = easy_world(seed=0)
    current = w.truth.spend.mean().to_numpy()
    alloc = optimize_budget(truth_response(w.truth), current, w.truth.channels, bounds_pct=0.5)
    assert alloc.uplift > 0 and alloc.spend.sum() == pytest.approx(current.sum())
    assert regret(alloc, truth_response(w.truth))[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budget=100.0), "cannot be met within the bounds"),
        (dict(lower=[6.0, 0, 0], upper=[5.0, 9, 9]), "channel 'a': lower bound"),
        (dict(current=[1.0, 2.0]), "one value per channel"),
    ],
)
def test_bad_problems_are_named(kwargs, match):
    args = dict(response=log_response, current=[5.0, 5.0, 5.0], channels=CH)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        optimize_budget(**args)
