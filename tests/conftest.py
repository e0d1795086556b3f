"""Shared test settings: deterministic hypothesis runs, float64 by default."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "mmm",
    derandomize=True,  # the same examples on every run: CI results are reproducible
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mmm"))
torch.set_default_dtype(torch.float64)
torch.set_num_threads(int(os.environ.get("MMM_THREADS", "2")))
