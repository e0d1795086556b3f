"""mmmlib.metrics: the tests the book decides its verdicts by, against SciPy."""

from __future__ import annotations

import pandas as pd
import pytest


def test_threshold_verdict_follows_a_one_sample_t_test():
    from scipy import stats

    from mmmlib.metrics import threshold_verdict

    x = [0.31, 0.28, 0.35, 0.30, 0.33]
    out = threshold_verdict(x, 0.20)
    assert out["p"] == pytest.approx(stats.ttest_1samp(x, 0.20).pvalue) and out["verdict"] == "missed"
    assert threshold_verdict(x, 0.50)["verdict"] == "met"
    assert threshold_verdict(x, 0.31)["verdict"] == "not decided"
    assert threshold_verdict(x, 0.20, lower_is_better=False)["verdict"] == "met"
    assert threshold_verdict([4, 4, 4], 3, lower_is_better=False)["verdict"] == "met"
    assert threshold_verdict([2, 2], 3, lower_is_better=False)["verdict"] == "missed"
    assert threshold_verdict([0.1], 0.2)["verdict"] == "not decided"
    with pytest.raises(ValueError, match="no finite"):
        threshold_verdict([float("nan")], 0.2)


def test_paired_difference_is_scipys_paired_t_test():
    from scipy import stats

    from mmmlib.metrics import paired_difference

    a, b = pd.Series([0.5, 0.6, 0.4, 0.55]), pd.Series([0.45, 0.62, 0.30, 0.50])
    out = paired_difference(a, b)
    assert out["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and out["n"] == 4
    assert out["diff"] == pytest.approx(float((a - b).mean()))
