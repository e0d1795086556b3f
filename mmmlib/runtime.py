"""Seeding, thread count and device: the one call every chapter makes first.

See Chapter 0 ("The simulated worlds") for how chapters use it.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

PROFILES = ("quick", "full")
"""The two profiles every chapter runs at: ``quick`` (minutes on 2 CPU cores, for CI) and
``full`` (the book's numbers)."""


def check_profile(profile: object) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`; otherwise a ``ValueError`` naming it."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    return profile  # type: ignore[return-value]


DEFAULT_THREADS = 2
"""Thread count used when neither the caller nor ``MMM_THREADS`` says otherwise.

Large reductions change in the last bits with the number of threads, so the book
fixes it: the numbers it reports are computed with two threads (the CI machine).
"""


def env_threads(default: int) -> int:
    """The thread budget in the environment variable ``MMM_THREADS``, ``default`` where it is unset.

    Raises a ``ValueError`` naming the variable when it is not a positive integer.
    """
    raw = os.environ.get("MMM_THREADS", str(default)).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable MMM_THREADS must be a positive integer (threads), got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Runtime:
    """What a chapter runs on, as set up by :func:`setup`.

    Attributes
    ----------
    seed : int
        The seed given to numpy, torch, pyro and :mod:`random`.
    threads : int
        Intra-op threads of torch and of the BLAS libraries.
    device : torch.device
        ``cuda`` when a GPU is present and allowed, else ``cpu``.
    dtype : torch.dtype
        Default floating dtype for model code.
    """

    seed: int
    threads: int
    device: torch.device
    dtype: torch.dtype

    @property
    def hardware(self) -> dict[str, str | int]:
        """Describe CPU and GPU in a JSON-friendly dict (for provenance)."""
        return hardware_summary(self.threads, self.device)


def seed_everything(seed: int) -> None:
    """Seed :mod:`random`, numpy, torch and pyro with one integer.

    Parameters
    ----------
    seed : int
        Non-negative seed.
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries still draw from the legacy global state
    torch.manual_seed(seed)
    try:
        import pyro

        pyro.set_rng_seed(seed)
    except ImportError:  # pragma: no cover - pyro is a dependency
        pass


def setup(
    seed: int = 0,
    threads: int | None = None,
    use_gpu: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Runtime:
    """Seed every generator, fix the thread count and pick the device.

    Call this first in every chapter, before any model code runs.

    Parameters
    ----------
    seed : int
        Seed for :mod:`random`, numpy, torch and pyro.
    threads : int, optional
        Thread count; defaults to the environment variable ``MMM_THREADS`` or
        :data:`DEFAULT_THREADS`.
    use_gpu : bool
        Use CUDA when available. The book never needs a GPU.
    dtype : torch.dtype
        Default floating dtype (float64 unless a chapter says otherwise).

    Returns
    -------
    Runtime
        The settings in force.
    """
    n = env_threads(DEFAULT_THREADS) if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    seed_everything(seed)
    torch.set_default_dtype(dtype)
    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    return Runtime(seed=seed, threads=n, device=device, dtype=dtype)


def cpu_identity(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """Model name, vendor, family and model of the first processor in ``cpuinfo`` (Linux).

    Cloud machines often report a bare model name ("AMD EPYC", "Intel(R) Xeon(R) Processor") for
    processors of different generations, which differ in speed and in the last digits of what
    they compute; the family and model numbers tell them apart. Fields the file lacks (or a
    missing file, as on macOS and Windows) are left out.
    """
    keys = {"model name": "cpu", "vendor_id": "cpu_vendor", "cpu family": "cpu_family", "model": "cpu_model"}
    out: dict[str, str] = {}
    try:
        with open(cpuinfo, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor's block ends at the first blank line
                name, _, value = line.partition(":")
                if name.strip() in keys:
                    out[keys[name.strip()]] = value.strip()
    except OSError:
        pass
    return out


def hardware_summary(threads: int, device: torch.device | str = "cpu") -> dict[str, str | int]:
    """CPU (model name, vendor, family, model, and the vector instructions torch's kernels use),
    core count, thread count and GPU (if used) as plain values.

    Two machines are of the same kind, and compute the same numbers from the same inputs, when
    ``cpu``, ``cpu_family``, ``cpu_model`` and ``simd`` agree.
    """
    ident = {"cpu": platform.processor() or platform.machine(), **cpu_identity()}
    gpu = "none"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        **ident,
        "simd": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count() or 1,
        "threads": threads,
        "gpu": gpu,
        "platform": platform.platform(terse=True),
    }


def peak_rss_mb() -> float | None:
    """Peak resident memory so far of this process and of the largest child it has waited for
    (e.g. parallel NUTS chains), in MB; ``None`` where the platform does not report it."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux or macOS
        return None
    per_mb = 1024 * 1024 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(peak / per_mb, 1) if peak else None
