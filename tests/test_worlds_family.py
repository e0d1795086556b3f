"""mmmlib.worlds.family: worlds whose true ROIs, transforms and spend patterns are drawn per seed."""

from __future__ import annotations

import numpy as np
import pytest

from mmmlib.worlds.family import EVALUATION_SEEDS, ROI_RANGE, TUNING_SEEDS, drawn_world, family_spec


def test_a_seed_gives_one_world():
    a, b = drawn_world(7, n_weeks=52), drawn_world(7, n_weeks=52)
    assert a.config == b.config
    np.testing.assert_array_equal(a.data.target, b.data.target)
    assert drawn_world(8, n_weeks=52).config != a.config


def test_the_simulated_world_returns_the_drawn_rois():
    spec = family_spec(3)
    world = drawn_world(3)
    drawn = {c.name: c.roi for c in spec.channels}
    for name, roi in world.truth.roi.items():
        assert roi == pytest.approx(drawn[name], rel=1e-6), name


def test_truth_varies_across_the_family_and_stays_in_range():
    specs = [family_spec(s) for s in EVALUATION_SEEDS]
    rois = np.array([[c.roi for c in s.channels] for s in specs])
    assert rois.min() >= ROI_RANGE[0] and rois.max() <= ROI_RANGE[1]
    assert rois.min() < 0.4 and rois.max() > 2.5  # the family spans the range, not a point
    assert np.corrcoef(rois[:, 0], rois[:, 1])[0, 1] ** 2 < 0.5  # channels drawn independently
    assert all(s.channels[0].pattern == "flighted" for s in specs)
    assert {c.pattern for s in specs for c in s.channels[1:]} == {"always_on", "correlated"}
    assert len({round(s.noise_cv, 6) for s in specs}) == len(specs)


def test_no_fixed_prior_median_sits_near_every_worlds_truth():
    # the ROI prior's median exp(0.2) scores about 0.49 on the preset worlds; on the family it cannot
    errors = []
    for s in EVALUATION_SEEDS:
        roi = np.array([c.roi for c in family_spec(s).channels])
        errors.append(np.mean(np.abs(np.exp(0.2) - roi) / roi))
    assert np.mean(errors) > 0.6


def test_seeds_are_split_once_and_bad_input_is_named():
    assert not set(TUNING_SEEDS) & set(EVALUATION_SEEDS) and len(EVALUATION_SEEDS) >= 20
    with pytest.raises(ValueError, match="seed"):
        family_spec(-1)
    with pytest.raises(ValueError, match="n_channels"):
        family_spec(0, n_channels=5)
    assert drawn_world(2, n_weeks=40, n_geos=3).config.n_geos == 3
