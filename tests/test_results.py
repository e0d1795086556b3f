"""The results registry: keys, atomic writes, provenance."""

from __future__ import annotations

import json
import os

import pytest
import torch

from mmmlib.book.results import Recorder, begin_chapter, load_results
from mmmlib.files import atomic_write_text
from mmmlib.runtime import setup


def recorder(tmp_path) -> Recorder:
    return Recorder("07_demo", {"profile": "quick", "seed": 1}, setup(seed=1), results_dir=tmp_path, glue=False)


def test_save_writes_values_display_and_provenance(tmp_path):
    rec = recorder(tmp_path)
    rec.add("ch07.roi.tv", 1.23456, unit="sales per spend", meaning="ROI of TV", fmt=".2f", where="sec")
    rec.add("ch07.n", 5, unit="weeks", meaning="count", fmt="d")
    path = rec.save()
    doc = json.loads(path.read_text())
    assert path.name == "07_demo.json"
    r = doc["results"]["ch07.roi.tv"]
    assert r == {"value": 1.23456, "display": "1.23", "unit": "sales per spend", "meaning": "ROI of TV", "where": "sec"}
    prov = doc["provenance"]
    for field in ("git_commit", "git_dirty", "parameters", "seed", "versions", "hardware", "wall_time_s", "peak_rss_mb", "data_files"):
        assert field in prov
    assert prov["parameters"] == {"profile": "quick", "seed": 1}
    assert 50 < prov["peak_rss_mb"] < 1e6  # this process has torch loaded: tens of MB at least
    assert prov["versions"]["torch"].startswith("2.")
    assert load_results(tmp_path)["07_demo"]["results"]["ch07.n"]["display"] == "5"


@pytest.mark.parametrize("key", ["ch08.roi", "roi.tv", "ch07", "ch07.ROI", "ch07.roi tv"])
def test_bad_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="key"):
        recorder(tmp_path).add(key, 1.0, unit="u", meaning="m")


def test_duplicate_nan_and_undocumented_results_are_refused(tmp_path):
    rec = recorder(tmp_path)
    rec.add("ch07.a", 1.0, unit="u", meaning="m")
    with pytest.raises(ValueError, match="already"):
        rec.add("ch07.a", 2.0, unit="u", meaning="m")
    with pytest.raises(ValueError, match="NaN"):
        rec.add("ch07.b", float("nan"), unit="u", meaning="m")
    with pytest.raises(ValueError, match="unit"):
        rec.add("ch07.c", 1.0, unit="", meaning="m")


def test_empty_recorder_does_not_save(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        recorder(tmp_path).save()
    assert not list(tmp_path.iterdir())


def test_atomic_write_keeps_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


@pytest.mark.parametrize(
    "params, match", [({"profile": "fast", "seed": 0}, "profile"), ({"profile": "quick", "seed": -1}, "seed")]
)
def test_begin_chapter_validates_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        begin_chapter("07_demo", params)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_a_bad_thread_count_in_the_environment_is_named(monkeypatch, value):
    from mmmlib.runtime import setup

    monkeypatch.setenv("MMM_THREADS", value)
    with pytest.raises(ValueError, match="MMM_THREADS must be a positive integer"):
        setup(0)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        setup(0, threads=0)


def test_one_place_checks_a_profile():
    from mmmlib.runtime import PROFILES, check_profile
    from mmmlib.scoreboard.board import settings_for
    from mmmlib.tvc.experiment import DiffusionSettings
    from mmmlib.twins.experiment import TwinSettings

    assert PROFILES == ("quick", "full") and check_profile("full") == "full"
    for build in (check_profile, settings_for, DiffusionSettings.for_profile, TwinSettings.for_profile):
        with pytest.raises(ValueError, match="profile must be 'quick' or 'full', got 'medium'"):
            build("medium")


def test_peak_memory_counts_what_the_process_allocated():
    import numpy as np

    from mmmlib.runtime import peak_rss_mb

    before = peak_rss_mb()
    block = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched
    after = peak_rss_mb()
    del block
    assert after >= before and after > 300


def test_the_thread_budget_is_read_in_one_place(monkeypatch):
    from mmmlib.runtime import env_threads
    from mmmlib.workers import default_workers

    monkeypatch.delenv("MMM_THREADS", raising=False)
    assert env_threads(2) == 2 and default_workers() == 1  # each caller's own default
    monkeypatch.setenv("MMM_THREADS", " 3 ")
    assert env_threads(2) == 3 and default_workers() == 3
    for bad in ("0", "-1", "two", ""):
        monkeypatch.setenv("MMM_THREADS", bad)
        with pytest.raises(ValueError, match="MMM_THREADS must be a positive integer"):
            env_threads(2)


_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Processor
"""


def test_the_hardware_record_tells_cpu_generations_apart(tmp_path):
    from mmmlib.book.runner import cpu_label
    from mmmlib.runtime import cpu_identity, hardware_summary

    info = tmp_path / "cpuinfo"
    info.write_text(_CPUINFO, encoding="utf-8")
    ident = cpu_identity(str(info))  # the first processor's block only
    assert ident == {"cpu": "AMD EPYC", "cpu_vendor": "AuthenticAMD", "cpu_family": "25", "cpu_model": "17"}
    assert cpu_identity(str(tmp_path / "missing")) == {}
    hw = {**ident, "simd": "AVX512", "threads": 2}
    assert cpu_label(hw) == "AMD EPYC (family 25, model 17, AVX512)"
    assert cpu_label({"cpu": "Intel(R) Xeon(R) Processor"}) == "Intel(R) Xeon(R) Processor"  # an older record
    here = hardware_summary(threads=2)
    assert {"cpu", "simd", "cores", "threads", "gpu", "platform"} <= set(here)
    assert here["simd"] == torch.backends.cpu.get_cpu_capability()
