"""How every benchmark records its numbers: the targets it checked, the machine, the versions and
the commit (as a chapter's provenance does), written atomically to ``benchmarks/results/<name>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from mmmlib.book.results import _git, versions
from mmmlib.files import atomic_write_text


def record(path: str | Path, doc: dict, hardware: dict) -> Path:
    """Add ``hardware``, the package versions and the commit to ``doc``, write it, print its targets."""
    out = {**doc, "hardware": hardware, "versions": versions(), "git_commit": _git("rev-parse", "HEAD") or "unknown"}
    written = atomic_write_text(Path(path), json.dumps(out, indent=2) + "\n")
    if "targets" in out:
        print(json.dumps(out["targets"], indent=2))
    return written
