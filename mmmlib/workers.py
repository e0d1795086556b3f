"""Independent fits on every core: a process per core, one thread each.

The book's models are small (a few hundred weeks, a few channels): a fit runs at the speed of
one core whatever the thread count, because NumPy's and torch's kernels do not split arrays
this size between threads. A chapter that fits twenty simulated markets one after another
therefore leaves all but one core idle. :func:`map_on_cores` runs such independent tasks in
forked worker processes, each limited to one thread, and returns their results in the order
given. A task's result does not depend on where it runs as long as it seeds itself from its
own arguments (as every fit in :mod:`mmmlib` does), so a chapter gives the same numbers with
one worker or many; the tests check this for the chapters that use it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

__all__ = ["default_workers", "map_on_cores"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes when a caller does not say: ``MMM_THREADS`` (the book's thread budget), else 1."""
    raw = os.environ.get("MMM_THREADS", "1").strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable MMM_THREADS must be a positive integer (threads), got {raw!r}")
    return int(raw)


def _one_core() -> None:
    """Initialiser of a worker: one BLAS thread, one torch thread, and a budget of one for the
    samplers that start their own processes (their chains then run one after another)."""
    os.environ["MMM_THREADS"] = "1"
    torch.set_num_threads(1)
    threadpool_limits(1)


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
        Processes (default :func:`default_workers`). With 1, or where ``fork`` is unavailable,
        the tasks run here, one after another, under the caller's thread settings.
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
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in tqdm(items, **bar)]
    global _TASK
    _TASK = fn
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_one_core) as pool:
            return list(tqdm(pool.map(_call, items), **bar))
    finally:
        _TASK = None


_TASK: Callable | None = None  # the task of the running map, inherited by forked workers


def _call(item):
    return _TASK(item)
