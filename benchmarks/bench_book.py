"""Wall time of every chapter at the quick profile (the full-profile times are in book/results/).

    python benchmarks/bench_book.py [--out benchmarks/results/book_quick.json] [--chapters NAME ...]

Executes each chapter of ``_toc.yml`` with ``profile=quick`` and ``seed=0`` into a temporary
folder, one after another (never two at once on a 2-core machine), and records two times
per chapter: ``quick_s``, the chapter's own wall time from its results file (first cell to
``results.save()``, the same measure as the full-profile times in ``book/results/``), and
``elapsed_s``, which adds the kernel start and papermill. The book's *Reproduce* page and
every chapter's reproduce box read this file. ``--chapters`` re-records only the named chapters (after one of them
changed) and keeps the other entries of an existing file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mmmlib.book.results import repo_root, versions
from mmmlib.book.runner import Project, execute_chapter
from mmmlib.files import atomic_write_text
from mmmlib.runtime import hardware_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/book_quick.json"))
    parser.add_argument("--chapters", nargs="+", metavar="NAME",
                        help="re-record only these chapters (e.g. 01_baselines), keeping the others' entries")
    args = parser.parse_args()
    project = Project(repo_root())
    chapters = project.chapters()
    quick: dict[str, float] = {}
    elapsed: dict[str, float] = {}
    if args.chapters:
        unknown = sorted(set(args.chapters) - {c.name for c in chapters})
        if unknown:
            parser.error(f"unknown chapter(s) {unknown}; the book has {[c.name for c in chapters]}")
        if not args.out.exists():
            parser.error(f"--chapters updates an existing {args.out}, which does not exist")
        old = json.loads(args.out.read_text(encoding="utf-8"))
        quick, elapsed = dict(old["quick_s"]), dict(old["elapsed_s"])
        chapters = [c for c in chapters if c.name in args.chapters]
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        for chapter in chapters:
            meta = execute_chapter(project, chapter, {"profile": "quick", "seed": 0}, out_dir=Path(tmp))
            doc = json.loads((Path(tmp) / "results" / f"{chapter.name}.json").read_text(encoding="utf-8"))
            quick[chapter.name] = doc["provenance"]["wall_time_s"]
            elapsed[chapter.name] = round(meta["elapsed_s"], 1)
    doc = {"quick_s": quick, "elapsed_s": elapsed, "hardware": hardware_summary(threads=2), "versions": versions()}
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(json.dumps(quick, indent=2))


if __name__ == "__main__":
    main()
