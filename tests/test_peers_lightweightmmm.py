"""mmmlib.bayes.lwmm: the driver of LightweightMMM 0.1.9 in its own environment.

The agreement of the port with the original is measured in Chapter 1 (full profile); here the
driver's contract: a missing or failing environment is a clear error, and, where the environment
exists (``make peers-lwmm``), a short fit returns ROI draws shaped by chain whose posterior agrees
with the port's.
"""

from __future__ import annotations

import stat

import numpy as np
import pytest

from mmmlib.bayes import lwmm as lw
from mmmlib.worlds import easy_world


def test_missing_environment_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv(lw.ENV_VAR, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(lw.PeerUnavailable, match="make peers-lwmm"):
        lw.run_lightweightmmm(easy_world(0, n_weeks=20).data)


def test_a_failing_fit_reports_its_stderr(monkeypatch, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named lightweight_mmm' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(lw.ENV_VAR, str(fake))
    with pytest.raises(lw.PeerUnavailable, match=r"exit 3[\s\S]*No module named lightweight_mmm"):
        lw.run_lightweightmmm(easy_world(0, n_weeks=20).data)


def test_geo_data_and_unknown_models_are_refused():
    with pytest.raises(ValueError, match="national"):
        lw.run_lightweightmmm(easy_world(0, n_weeks=20, n_geos=2).data)
    with pytest.raises(ValueError, match="model"):
        lw.run_lightweightmmm(easy_world(0, n_weeks=20).data, model="linear")


def _available() -> bool:
    try:
        lw.lightweightmmm_python()
    except lw.PeerUnavailable:
        return False
    return True


@pytest.mark.skipif(not _available(), reason="LightweightMMM environment absent (make peers-lwmm)")
def test_original_and_port_agree_on_a_small_world():
    from mmmlib.bayes.lightweight import AGREEMENT_Z, compare_with_lightweightmmm
    from mmmlib.bayes.model import BayesianMMM
    from mmmlib.runtime import setup

    setup(0)
    w = easy_world(1, n_weeks=52)
    port = BayesianMMM("adstock").fit(w.data, num_warmup=300, num_samples=400, chains=2, seed=0)
    agreement = compare_with_lightweightmmm(port, w, num_warmup=300, num_samples=400, chains=2, seed=0)
    assert agreement.original.roi_draws.shape == (2, 400, 4)
    assert np.isfinite(agreement.table["z"]).all()
    assert agreement.max_abs_z <= AGREEMENT_Z, agreement.table.to_string()
