"""``python -m mmmlib fit``: a user's CSV to a report folder; saving and loading fitted models."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmmlib
from mmmlib.bayes.persist import load_model, save_model
from mmmlib.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "example_easy_world.csv"
CHANNELS = ("tv", "search", "social", "display")
ARGS = [
    "fit", str(DATA), "--date", "date",
    "--media", *[f"media_{c}" for c in CHANNELS], "--spend", ",".join(f"spend_{c}" for c in CHANNELS),
    "--target", "sales", "--controls", "control_0",
    "--inference", "svi", "--svi-steps", "150", "--draws", "50", "--chains", "2",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "report"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_fit_writes_a_self_contained_report(report):
    names = {p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file()}
    assert {"report.md", "roi.csv", "contribution_share.csv", "contributions.csv", "response_curves.csv",
            "budget.csv", "diagnostics.csv", "prior_vs_posterior.csv", "posterior.nc", "model.pkl",
            "figures/fit.png", "figures/roi.png",
            "figures/response_curves.png"} <= names
    roi = pd.read_csv(report / "roi.csv", index_col="channel")
    assert list(roi.index) == list(CHANNELS) and (roi["lo"] <= roi["median"]).all() and (roi["median"] <= roi["hi"]).all()
    text = (report / "report.md").read_text()
    for fig in ("figures/fit.png", "figures/roi.png", "figures/response_curves.png"):
        assert f"]({fig})" in text and (report / fig).stat().st_size > 5000
    assert "variational inference" in text  # the plain-language verdict on an SVI fit
    assert "## What the data told, and what the prior did" in text and "centred on the data's own units" in text
    table = pd.read_csv(report / "prior_vs_posterior.csv", index_col="channel")
    assert list(table.index) == list(CHANNELS) and (table["prior_sd"] == 0.9).all()
    budget = pd.read_csv(report / "budget.csv", index_col="channel")
    assert budget["planned"].sum() == pytest.approx(budget["current"].sum(), rel=1e-6)
    assert (budget["change"].abs() <= 0.3 + 1e-6).all()
    import arviz as az

    idata = az.from_netcdf(report / "posterior.nc")
    assert "posterior" in idata.groups()
    assert not list(report.parent.glob(".report.*"))  # no staging folder left behind


def test_saved_model_round_trips_and_refuses_another_version(report, tmp_path, monkeypatch):
    model = mmmlib.bayes.model.BayesianMMM.load(report / "model.pkl")
    again = load_model(save_model(model, tmp_path / "m.pkl"))
    pd.testing.assert_frame_equal(model.roi(), again.roi())
    pd.testing.assert_frame_equal(model.predict(model.data_), again.predict(again.data_))
    np.testing.assert_allclose(pd.read_csv(report / "roi.csv", index_col="channel")["median"],
                               model.roi()["median"], rtol=1e-9)
    monkeypatch.setattr(mmmlib, "__version__", "9.9.9")
    with pytest.raises(ValueError, match="written by mmmlib 0.1.0, this is mmmlib 9.9.9"):
        load_model(tmp_path / "m.pkl")
    (tmp_path / "junk.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not an mmmlib model file"):
        load_model(tmp_path / "junk.pkl")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.pkl")


def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    bad = [a if a != "sales" else "revenue" for a in ARGS]
    assert main([*bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "revenue" in err and not out.exists()
    assert main([*ARGS, "--svi-steps", "0", "--out", str(out)]) == 2
    assert "--svi-steps" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([*ARGS, "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="not fitted"):
        save_model(mmmlib.bayes.model.BayesianMMM(), tmp_path / "x.pkl")


def test_channel_names_drop_the_shared_prefix_only():
    from mmmlib.cli import _channel_names, _names

    assert _channel_names(["media_tv", "media_search"]) == ["tv", "search"]
    assert _channel_names(["x_media_tv", "x_media_radio"]) == ["tv", "radio"]
    assert _channel_names(["tv", "search"]) == ["tv", "search"]
    assert _channel_names(["a_1", "b_1"]) == ["a_1", "b_1"]
    assert _names(["a,b", "c", " d , "]) == ["a", "b", "c", "d"]


def test_readme_example_runs(monkeypatch):
    """The README's 'Fit your own data' Python example, as a doctest, from the project root."""
    import doctest

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    result = doctest.testfile(str(root / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_a_prior_in_the_wrong_units_is_flagged(tmp_path, capsys):
    """A target a thousand times the spend (conversions, not revenue) under the fixed ROI prior
    (median 1.2 per unit of spend): media would be 0.1% of the target, the data cannot move the
    prior, and the command says so. The data-centred default does not flag every channel."""
    df = pd.read_csv(DATA)
    df["sales"] *= 1000
    df.to_csv(tmp_path / "conversions.csv", index=False)
    args = [a if a != str(DATA) else str(tmp_path / "conversions.csv") for a in ARGS]
    args[args.index("150")] = "800"
    assert main([*args, "--roi-prior", "0.2,0.9", "--out", str(tmp_path / "fixed")]) == 0
    err = capsys.readouterr().err
    assert err.count("is mostly the prior's") == len(CHANNELS) and "every channel's ROI is mostly its prior" in err
    assert "**Warnings.**" in (tmp_path / "fixed" / "report.md").read_text()
    assert main([*args, "--out", str(tmp_path / "data")]) == 0
    assert "every channel's ROI is mostly its prior" not in capsys.readouterr().err
    for bad in ("0.2", "0.2,-1", "x,y"):
        with pytest.raises(SystemExit):
            main([*args, "--roi-prior", bad, "--out", str(tmp_path / "bad")])
    assert main([*args, "--revenue-per-kpi", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "revenue_per_kpi" in capsys.readouterr().err and not (tmp_path / "bad").exists()
