"""map_on_cores: the results of running tasks one after another, in order, on one thread each."""

import os

import numpy as np
import pytest
import torch

from mmmlib.workers import default_workers, map_on_cores


def _draw(seed: int) -> float:
    """A task that seeds itself from its argument, with a matrix product through BLAS."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(60, 60))
    return float(np.linalg.norm(a @ a.T) + torch.randn(3, generator=torch.Generator().manual_seed(seed)).sum())


def _threads(_: int) -> tuple[int, str | None, int]:
    return torch.get_num_threads(), os.environ.get("MMM_THREADS"), os.getpid()


def test_results_equal_the_serial_ones_in_order():
    seeds = [5, 3, 9, 1, 7]
    assert map_on_cores(_draw, seeds, workers=2) == [_draw(s) for s in seeds]
    assert map_on_cores(_draw, seeds, workers=1) == [_draw(s) for s in seeds]
    assert map_on_cores(_draw, [], workers=2) == []


def test_tasks_run_on_one_thread_in_workers_and_here(monkeypatch):
    monkeypatch.setenv("MMM_THREADS", "2")
    torch.set_num_threads(2)
    out = map_on_cores(_threads, range(4), workers=2)
    assert {t for t, _, _ in out} == {1} and {e for _, e, _ in out} == {"1"}
    assert os.getpid() not in {p for _, _, p in out}
    here = map_on_cores(_threads, range(2), workers=1)
    assert here == [(1, "1", os.getpid())] * 2
    assert torch.get_num_threads() == 2 and os.environ["MMM_THREADS"] == "2"  # restored


def test_closures_reach_the_workers():
    offset = 10.0
    assert map_on_cores(lambda x: x + offset, [1.0, 2.0], workers=2) == [11.0, 12.0]


def test_bad_worker_counts_are_named(monkeypatch):
    with pytest.raises(ValueError, match="workers"):
        map_on_cores(_draw, [1], workers=0)
    monkeypatch.setenv("MMM_THREADS", "two")
    with pytest.raises(ValueError, match="MMM_THREADS"):
        default_workers()
    monkeypatch.setenv("MMM_THREADS", "3")
    assert default_workers() == 3


def _unseeded(_: int) -> float:
    return float(torch.rand(1)) + float(np.random.rand())  # noqa: NPY002 - the global streams on purpose


def test_tasks_start_from_the_callers_random_state_and_leave_it_alone():
    torch.manual_seed(7)
    np.random.seed(7)  # noqa: NPY002
    before = torch.rand(1), np.random.rand()  # noqa: NPY002
    torch.manual_seed(7)
    np.random.seed(7)  # noqa: NPY002
    expected = float(before[0]) + before[1]
    for workers in (1, 2):
        assert map_on_cores(_unseeded, range(3), workers=workers) == [expected] * 3
    after = torch.rand(1), np.random.rand()  # noqa: NPY002
    assert float(after[0]) == float(before[0]) and after[1] == before[1]
