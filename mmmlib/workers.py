"""Independent fits on every core: a process per core, one thread each.

The book's models are small (a few hundred weeks, a few channels), and a fit gains little from a
second thread (measured at the full profile: a twin fit of Chapter 4 nothing, a DeepCausal fit of
Chapter 3 11%, Chapter 5's diffusion training 17%), so a chapter that fits twenty simulated
markets one after another leaves the second core nearly idle. :func:`map_on_cores` runs such
independent tasks in forked worker processes of one thread each and returns their results in
the order given.

Every task runs on one thread, in a worker or (with one worker) here, so its floating point does
not depend on the thread count. Every task starts from the caller's global random state, and the
caller's state is the same after the map as before, so neither a task's result nor what the
caller does next depends on the number of workers or on which worker ran what. A task should
still seed itself from its own arguments (as every fit in :mod:`mmmlib` does), or all tasks draw
the same random numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from mmmlib.runtime import env_threads

__all__ = ["default_workers", "map_on_cores"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes when a caller does not say: ``MMM_THREADS`` (the book's thread budget), else 1."""
    return env_threads(1)


def _random_state() -> tuple:
    """The global random streams a task may draw from (Python's, NumPy's and torch's; Pyro uses these)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002


def _set_random_state(state: tuple) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])  # noqa: NPY002
    torch.set_rng_state(state[2])


def _one_core() -> None:
    """Initialiser of a worker: one BLAS thread, one torch thread, and a budget of one for the
    samplers that start their own processes (their chains then run one after another). It also
    keeps the random state the worker was forked with, the caller's, for every task to start from."""
    global _START
    os.environ["MMM_THREADS"] = "1"
    torch.set_num_threads(1)
    threadpool_limits(1)
    _START = _random_state()


@contextmanager
def _on_one_core() -> Iterator[None]:
    """What :func:`_one_core` sets, in this process for the duration of the block, then restored."""
    env, threads = os.environ.get("MMM_THREADS"), torch.get_num_threads()
    os.environ["MMM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("MMM_THREADS", None)
        else:
            os.environ["MMM_THREADS"] = env


def map_on_cores(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, in ``workers`` forked processes of one thread each.

    Parameters
    ----------
    fn : callable
        A task; it must seed any random state it uses from its argument. With ``fork`` it may be
        a closure: the workers inherit the caller's memory, and only items and results are pickled.
    items : iterable
        The tasks' arguments (each must pickle).
    workers : int, optional
        Processes (default :func:`default_workers`). With 1, where ``fork`` is unavailable, or
        once this process has started CUDA (which a forked child cannot use), the tasks run
        here, one after another, on one thread as in a worker.
    progress : bool
        A progress bar over finished tasks.
    desc : str, optional
        The progress bar's label.

    Returns
    -------
    list
        The results, in the order of ``items``.
    """
    items = list(items)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    workers = min(workers, max(len(items), 1))
    bar = dict(total=len(items), desc=desc, disable=not progress)
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods() or torch.cuda.is_initialized():
        start = _random_state()
        try:
            with _on_one_core():
                out = []
                for item in tqdm(items, **bar):
                    _set_random_state(start)
                    out.append(fn(item))
                return out
        finally:
            _set_random_state(start)
    global _TASK
    _TASK = fn
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_one_core) as pool:
            return list(tqdm(pool.map(_call, items), **bar))
    finally:
        _TASK = None


_TASK: Callable | None = None  # the task of the running map, inherited by forked workers
_START: tuple | None = None  # in a worker: the caller's random state when the worker was forked


def _call(item):
    _set_random_state(_START)
    return _TASK(item)
