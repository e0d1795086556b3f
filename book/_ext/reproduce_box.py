"""Sphinx extension: a "Reproduce this chapter" box at the end of every chapter page.

The box is built at HTML build time from what the runner recorded, so it is the same for every
chapter and never needs a chapter to be re-executed: the command that reruns the chapter, the
profile and seed of the copy on the page, its wall time and peak memory (the results file's
provenance), the quick profile's time (``benchmarks/results/book_quick.json``), the machine and
the commit. It reads only files that exist in the checkout; a chapter without a results file
gets no box (the book's own checks fail on such a chapter first).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes

CHAPTER_DOC = re.compile(r"^book/chapters/(?P<name>(?P<number>\d{2})_[A-Za-z0-9_]+)$")


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def box_lines(root: Path, name: str, number: str) -> list[tuple[str, str]] | None:
    """(label, text) rows of a chapter's box, or ``None`` without a results file."""
    results = _load(root / "book" / "results" / f"{name}.json")
    prov = results.get("provenance")
    if not prov:
        return None
    params = prov.get("parameters", {})
    profile, seed = params.get("profile", "full"), params.get("seed", 0)
    quick = _load(root / "benchmarks" / "results" / "book_quick.json")
    hw = prov.get("hardware", {})
    machine = f"{hw.get('cores', '?')} CPU cores, {hw.get('threads', '?')} threads, GPU: {hw.get('gpu', 'none')}"
    memory = prov.get("peak_rss_mb")
    commit = str(prov.get("git_commit", "unknown"))[:10]
    return [
        ("Rerun it", f"make chapter CH={number} PROFILE={profile} SEED={seed}"),
        ("Try the quick profile without touching the book", f".venv/bin/python -m mmmlib.book quick {number} --out /tmp/quick"),
        ("This page", f"profile {profile}, seed {seed}, executed from commit {commit}"),
        ("Time and memory", f"{_minutes(prov.get('wall_time_s'))} at the {profile} profile"
                            + (f", peak memory {memory / 1024:.1f} GB" if isinstance(memory, (int, float)) else "")
                            + f"; the quick profile {_minutes(quick.get('quick_s', {}).get(name))}"),
        ("Machine", machine),
    ]


def add_box(app, doctree, docname: str) -> None:
    match = CHAPTER_DOC.match(docname)
    if not match:
        return
    rows = box_lines(Path(app.srcdir), match["name"], match["number"])
    sections = [n for n in doctree.children if isinstance(n, nodes.section)]
    if rows is None or not sections:
        return
    box = nodes.admonition(classes=["reproduce-box", "tip"])
    box += nodes.title(text="Reproduce this chapter")
    items = nodes.bullet_list()
    for label, text in rows:
        para = nodes.paragraph()
        para += nodes.strong(text=f"{label}: ")
        is_command = text.startswith(("make ", ".venv/"))
        para += nodes.literal(text=text) if is_command else nodes.Text(text)
        items += nodes.list_item("", para)
    box += items
    box += nodes.paragraph(text="Every number on this page is in the chapter's results file, with the same "
                                "provenance; the Reproduce page lists all chapters.")
    sections[-1] += box


def setup(app) -> dict[str, Any]:
    app.connect("doctree-resolved", add_box)  # at every write: the box follows the results files
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
