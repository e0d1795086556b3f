"""Independent fits on every core: a process per core, one thread each.

The book's models are small (a few hundred weeks, a few channels): a fit runs at the speed of
one core whatever the thread count, because NumPy's and torch's kernels do not split arrays
this size between threads. A chapter that fits twenty simulated markets one after another
therefore leaves all but one core idle. :func:`map_on_cores` runs such independent tasks in
forked worker processes, each limited to one thread, and returns their results in the order
given. Every task runs on one thread, in a worker or (with one worker) here, so its floating
point does not depend on the thread count; as long as it also seeds itself from its own
arguments, a chapter gives the same numbers with one worker or many (the tests check this for
the studies that use it). One thread per task is also the economical setting: a second thread
speeds one small fit up far less than a second fit on the other core adds.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
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
        Processes (default :func:`default_workers`). With 1, or where ``fork`` is unavailable,
        the tasks run here, one after another, on one thread as in a worker.
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
        with _on_one_core():
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
