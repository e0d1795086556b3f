"""How every benchmark records its numbers: the targets it checked, the machine and the versions,
written atomically to ``benchmarks/results/<name>.json``."""

from __future__ import annotations

import json
from pathlib import Path

from mmmlib.book.results import versions
from mmmlib.files import atomic_write_text


def record(path: str | Path, doc: dict, hardware: dict) -> Path:
    """Add ``hardware`` and the package versions to ``doc``, write it, print its targets."""
    out = {**doc, "hardware": hardware, "versions": versions()}
    written = atomic_write_text(Path(path), json.dumps(out, indent=2) + "\n")
    if "targets" in out:
        print(json.dumps(out["targets"], indent=2))
    return written
