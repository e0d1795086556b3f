"""The book runner: execute chapters with papermill, track staleness, write the book's pages.

Used by the Makefile; run ``python -m mmmlib.book --help``.

- ``run CH [--profile P] [--seed S] [-p NAME VALUE]``: execute ``chapters/NN_slug.ipynb``
  into ``book/chapters/NN_slug.ipynb`` and its results into ``book/results/NN_slug.json``.
  Both are written in a staging folder and moved into place only on success; on failure
  the previous executed chapter stays and the error names the failing cell.
- ``status``: each chapter's profile, seed, runtime and whether it is stale.
- ``check``: exit 1 if any executed chapter is missing or stale.
- ``stale``: rerun every stale chapter with its recorded parameters.
- ``quick --out DIR [--jobs N]``: execute every chapter at ``profile=quick`` into ``DIR`` (for nbval),
  ``N`` chapters at a time (each in its own process, on ``MMM_THREADS`` threads).
- ``order DIR``: the notebooks a quick run wrote into ``DIR``, longest first (nbval hands them out
  in this order, so that the last to finish is a short one).
- ``pages``: write the Results, Reproduce and How-to-cite pages from the results files.

A chapter is *stale* when the hash of its inputs differs from the one recorded when it
was executed. The inputs are: the source notebook (cells' types and sources, not
outputs), the parameters, the ``mmmlib`` modules the chapter imports (found statically:
the imports of its code cells, followed through the imports of each module, see
:func:`mmmlib_closure`), the data files the chapter read (recorded in its results file)
and the lock file ``requirements.lock`` (plus the lock of a published package's environment for a
chapter that runs it: :data:`PEER_LOCKS`). A change to a model a chapter does not use leaves
it fresh; a change to a shared module (results, plots, simulate) makes every user stale.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from mmmlib.book.results import load_results, repo_root
from mmmlib.files import atomic_write_text

__all__ = [
    "Chapter",
    "ChapterFailed",
    "Project",
    "chapter_status",
    "execute_chapter",
    "input_hash",
    "mmmlib_closure",
    "results_identity",
    "main",
]

META_KEY = "mmm_thesis"
DEFAULT_PARAMETERS: dict[str, Any] = {"profile": "full", "seed": 0}


class ChapterFailed(RuntimeError):
    """A chapter raised while executing; the message names the failing cell."""


@dataclass(frozen=True)
class Project:
    """Where things are. Tests point it at a temporary copy.

    Attributes
    ----------
    root : Path
        Project root.
    """

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "chapters"

    @property
    def executed(self) -> Path:
        return self.root / "book" / "chapters"

    @property
    def results(self) -> Path:
        return self.root / "book" / "results"

    @property
    def lock_file(self) -> Path:
        return self.root / "requirements.lock"

    def chapters(self) -> list[Chapter]:
        """Source notebooks ``chapters/NN_slug.ipynb``, sorted."""
        return [Chapter(p.stem, p) for p in sorted(self.sources.glob("[0-9][0-9]_*.ipynb"))]

    def chapter(self, ident: str) -> Chapter:
        """Find a chapter by number (``01``, ``1``) or full name (``01_baselines``)."""
        if not ident or not ident.strip():
            raise ValueError("chapter: give a number (01) or a name (01_baselines), not an empty string")
        for ch in self.chapters():
            if ident == ch.name or ident.zfill(2) == ch.number:
                return ch
        names = ", ".join(c.name for c in self.chapters()) or "none"
        raise ValueError(f"no chapter {ident!r}; chapters are: {names}")


@dataclass(frozen=True)
class Chapter:
    """A source notebook."""

    name: str
    source: Path

    @property
    def number(self) -> str:
        return self.name[:2]

    def title(self) -> str:
        """The first Markdown heading of the notebook."""
        nb = nbformat.read(self.source, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for line in cell.source.splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
        return self.name


# ------------------------------------------------------------------- hashing
def _imports(tree: ast.AST, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of every import in ``tree`` (inside functions too), with relative
    imports resolved against ``package``."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out.append((base, tuple(a.name for a in node.names)))
    return out


def _parse_cell(source: str) -> ast.AST | None:
    """A code cell's syntax tree, IPython magics and shell lines dropped."""
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def mmmlib_closure(project: Project, chapter: Chapter) -> list[Path]:
    """The ``mmmlib`` source files a chapter depends on, sorted.

    Starts from the ``mmmlib`` imports of the chapter's code cells and follows the imports
    of every module reached (and of the packages containing it). ``from mmmlib.a import b``
    counts ``mmmlib/a/b.py`` when ``b`` is a module. Imports that do not resolve to a file
    of the project (e.g. an installed ``mmmlib`` elsewhere) are ignored.
    """
    root = project.root

    def files_of(module: str) -> list[Path]:
        parts = module.split(".")
        if parts[0] != "mmmlib":
            return []
        found = []
        for i in range(1, len(parts) + 1):  # the packages on the way, then the module
            stem = root.joinpath(*parts[:i])
            for cand in (stem / "__init__.py", stem.with_suffix(".py")):
                if cand.is_file():
                    found.append(cand)
                    break
        return found

    def package_of(path: Path) -> str:
        return ".".join(path.relative_to(root).parts[:-1])  # a module's or an __init__'s package

    nb = nbformat.read(chapter.source, as_version=4)
    todo: list[tuple[str, tuple[str, ...]]] = []
    for cell in nb.cells:
        if cell.cell_type == "code" and (tree := _parse_cell(cell.source)) is not None:
            todo += _imports(tree, "")
    seen: set[Path] = set()
    while todo:
        module, names = todo.pop()
        targets = files_of(module) + [f for n in names for f in files_of(f"{module}.{n}")]
        for path in targets:
            if path not in seen:
                seen.add(path)
                todo += _imports(ast.parse(path.read_bytes()), package_of(path))
    return sorted(seen)


def _notebook_fingerprint(path: Path) -> bytes:
    nb = nbformat.read(path, as_version=4)
    cells = [[c.cell_type, c.source, sorted(c.get("metadata", {}).get("tags", []))] for c in nb.cells]
    return json.dumps(cells, sort_keys=True).encode()


def results_identity(raw: bytes) -> bytes:
    """What identifies a results file's numbers: its chapter, parameters and results, without the
    volatile provenance (wall time, commit, hardware), which changes on every rerun that gives the
    same numbers. Raises ``ValueError`` when ``raw`` is not a results document."""
    doc = json.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ValueError("not a results document (no 'results' mapping)")
    ident = {
        "chapter": doc.get("chapter"),
        "parameters": doc.get("provenance", {}).get("parameters"),
        "results": doc["results"],
    }
    return json.dumps(ident, sort_keys=True).encode()


def _data_file_bytes(path: Path) -> bytes:
    """What of a data file determines a chapter: its bytes, except that another chapter's results
    file counts by :func:`results_identity`, so rerunning an upstream chapter with the same
    numbers does not make a downstream chapter stale."""
    if not path.is_file():
        return b"<missing>"
    raw = path.read_bytes()
    if path.suffix == ".json" and path.parent.name == "results" and path.parent.parent.name == "book":
        try:
            return results_identity(raw)
        except ValueError:
            return raw
    return raw


PEER_LOCKS: dict[str, str] = {
    # a driver of a published package -> the lock file of the environment it runs in
    "mmmlib/deepcausal/peer.py": "requirements-peers.lock",
    "mmmlib/bayes/lwmm.py": "requirements-lwmm.lock",
}


def input_hash(
    project: Project,
    chapter: Chapter,
    parameters: Mapping[str, Any],
    data_files: Sequence[str] = (),
) -> str:
    """SHA-256 over everything that determines an executed chapter's content.

    Parameters
    ----------
    project, chapter : Project, Chapter
        Where the sources are.
    parameters : mapping
        The papermill parameters (``results_dir`` excluded: it only says where to write).
    data_files : sequence of str
        Data files the chapter read, relative to the project root.
    """
    h = hashlib.sha256()

    def feed(label: str, payload: bytes) -> None:
        h.update(label.encode() + b"\0" + hashlib.sha256(payload).digest())

    feed("notebook", _notebook_fingerprint(chapter.source))
    params = {k: v for k, v in parameters.items() if k != "results_dir"}
    feed("parameters", json.dumps(params, sort_keys=True).encode())
    closure = mmmlib_closure(project, chapter)
    for path in closure:
        feed(str(path.relative_to(project.root)), path.read_bytes())
    for rel in sorted(data_files):
        feed(rel, _data_file_bytes(project.root / rel))
    feed("lock", project.lock_file.read_bytes() if project.lock_file.is_file() else b"<none>")
    rel = {p.relative_to(project.root).as_posix() for p in closure}
    for lock in sorted({lock for module, lock in PEER_LOCKS.items() if module in rel}):
        path = project.root / lock
        feed(lock, path.read_bytes() if path.is_file() else b"<none>")
    return h.hexdigest()


# ------------------------------------------------------------------ executing
# A cell records a wall time (a result under ``chNN.speed.*``) or shows one (a model's
# ``fit_seconds``, an estimate's ``.seconds``): its output differs from run to run.
TIMING_KEY = re.compile(r"""["']ch\d{2}\.speed\.|\bfit_seconds\b|\.seconds\b""")


#: Environment of the kernel that executes a chapter (and of the worker processes it starts):
#: output that differs from run to run is kept out of the book and of nbval's comparison.
#: Progress bars (tqdm) are for a person at a terminal; in a notebook they are stderr with rates
#: and elapsed times. ArviZ prints a notice of its coming 1.0 refactor at the first import of each
#: day on a machine (it keeps a date stamp in the user's cache), so whether a chapter shows it
#: depends on what ran before it that day. ``make nbval`` sets the same variables for its kernel.
KERNEL_ENV: dict[str, str] = {"TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore::FutureWarning:arviz"}


@contextmanager
def kernel_environment(env: Mapping[str, str] = KERNEL_ENV) -> Iterator[None]:
    """Set ``env`` in this process (a kernel started inside inherits it), restoring it afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _strip_volatile(nb: nbformat.NotebookNode) -> None:
    """Drop timings, absolute paths and random ids so reruns are byte-identical, and tag the
    cells that record or show wall times (:data:`TIMING_KEY`) ``nbval-ignore-output``: their
    values differ from run to run and are not part of the reproducibility check."""
    pm = nb.metadata.get("papermill", {})
    nb.metadata["papermill"] = {"parameters": pm.get("parameters", {})}
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
            # papermill's injected cell would show the parameters twice in the book
            tags = cell.metadata.setdefault("tags", [])
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif not cell.get("id"):
            cell["id"] = f"cell-{i}"
        if cell.cell_type == "code" and TIMING_KEY.search(cell.source):
            tags = cell.metadata.setdefault("tags", [])
            if "nbval-ignore-output" not in tags:
                tags.append("nbval-ignore-output")


def _failure_message(chapter: Chapter, err: Exception) -> str:
    cell = getattr(err, "cell_index", None)
    count = getattr(err, "exec_count", None)
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    where = f"cell {cell}" if cell is not None else "an unknown cell"
    if count is not None:
        where += f" (In [{count}])"
    return f"chapter {chapter.name} failed in {where}: {ename}: {evalue}"


def execute_chapter(
    project: Project,
    chapter: Chapter,
    parameters: Mapping[str, Any] | None = None,
    out_dir: Path | None = None,
    kernel_name: str = "python3",
    log: bool = True,
) -> dict[str, Any]:
    """Execute one chapter with papermill into ``out_dir`` (default: ``book/``), atomically.

    The notebook and its results file are produced in a staging folder beside the
    destination; they replace the previous copies only when execution succeeded and
    the chapter wrote its results file.

    Parameters
    ----------
    project, chapter : Project, Chapter
        What to run.
    parameters : mapping, optional
        Papermill parameters; ``profile`` and ``seed`` default to ``full`` and ``0``.
    out_dir : Path, optional
        Folder holding ``chapters/`` and ``results/`` (default ``<root>/book``).
    kernel_name : str
        Jupyter kernel.
    log : bool
        Print progress (chapter, parameters, elapsed time).

    Returns
    -------
    dict
        The metadata recorded in the executed notebook (parameters, input hash, runtime).

    Raises
    ------
    ChapterFailed
        If a cell raised or the chapter wrote no results file.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    params = {**DEFAULT_PARAMETERS, **dict(parameters or {})}
    if params["profile"] not in ("quick", "full"):
        raise ValueError(f"parameter 'profile' must be 'quick' or 'full', got {params['profile']!r}")
    if not isinstance(params["seed"], int) or params["seed"] < 0:
        raise ValueError(f"parameter 'seed' must be a non-negative integer, got {params['seed']!r}")
    out_dir = Path(out_dir) if out_dir is not None else project.root / "book"
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=out_dir))
    t0 = time.perf_counter()
    if log:
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        print(f"[{chapter.name}] executing with {shown} ...", flush=True)
    try:
        (stage / "chapters").mkdir()
        (stage / "results").mkdir()
        staged_nb = stage / "chapters" / f"{chapter.name}.ipynb"
        try:
            with kernel_environment():
                pm.execute_notebook(
                    str(chapter.source),
                    str(staged_nb),
                    parameters={**params, "results_dir": "../results"},
                    cwd=str(stage / "chapters"),
                    kernel_name=kernel_name,
                    progress_bar=False,
                    log_output=False,
                    report_mode=False,
                )
        except PapermillExecutionError as err:
            raise ChapterFailed(_failure_message(chapter, err)) from None
        staged_results = stage / "results" / f"{chapter.name}.json"
        if not staged_results.is_file():
            raise ChapterFailed(
                f"chapter {chapter.name} ran but wrote no results file "
                f"(its last cell must call results.save())"
            )
        results_doc = json.loads(staged_results.read_text(encoding="utf-8"))
        data_files = results_doc.get("provenance", {}).get("data_files", [])
        nb = nbformat.read(staged_nb, as_version=4)
        _strip_volatile(nb)
        meta = {
            "chapter": chapter.name,
            "parameters": params,
            "input_hash": input_hash(project, chapter, params, data_files),
            "data_files": data_files,
            # the pair: a notebook is valid only beside the results file of the same run
            "results_sha256": hashlib.sha256(results_identity(staged_results.read_bytes())).hexdigest(),
        }
        nb.metadata[META_KEY] = meta
        nbformat.write(nb, staged_nb)
        (out_dir / "chapters").mkdir(exist_ok=True)
        (out_dir / "results").mkdir(exist_ok=True)
        # results first: a notebook never points at a results file that is not there
        staged_results.replace(out_dir / "results" / f"{chapter.name}.json")
        staged_nb.replace(out_dir / "chapters" / f"{chapter.name}.ipynb")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    if log:
        print(f"[{chapter.name}] done in {elapsed:.1f} s", flush=True)
    return {**meta, "elapsed_s": elapsed}


def _quick_order(project: Project, chapters: Sequence[Chapter]) -> list[Chapter]:
    """``chapters`` longest first by the recorded quick-profile times (unrecorded ones first, in order)."""
    recorded = {row["chapter"]: row["quick_s"] for row in chapter_runtimes(project)}
    return sorted(chapters, key=lambda ch: -(recorded.get(ch.name) or float("inf")))


def run_quick(project: Project, chapters: Sequence[Chapter], out_dir: Path, seed: int = 0, jobs: int = 1) -> list[str]:
    """Execute ``chapters`` at ``profile=quick`` into ``out_dir``, ``jobs`` at a time.

    With one job the chapters run here, one after another. With more, each chapter runs in its own
    ``python -m mmmlib.book quick`` process, the longest first (by ``benchmarks/results/book_quick.json``)
    so that the last to finish is a short one; a process's output is printed when it ends. Every kernel
    inherits this environment, so ``MMM_THREADS`` is each chapter's thread count: set it to the cores
    divided by ``jobs``. A chapter's numbers do not depend on which chapters run beside it.

    Parameters
    ----------
    project : Project
    chapters : sequence of Chapter
    out_dir : Path
        Folder that receives ``chapters/`` and ``results/``.
    seed : int
        The chapters' ``seed`` parameter.
    jobs : int
        Chapters executing at once (a positive integer).

    Returns
    -------
    list of str
        The chapters that failed, each with the reason (empty when all succeeded).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"parameter 'jobs' must be a positive integer (chapters at once), got {jobs!r}")
    if jobs == 1:
        failed = []
        for i, ch in enumerate(chapters, 1):
            print(f"({i}/{len(chapters)})", end=" ")
            try:
                execute_chapter(project, ch, {"profile": "quick", "seed": seed}, out_dir=out_dir)
            except ChapterFailed as err:
                print(f"error: {err}", file=sys.stderr)
                failed.append(str(err))
        return failed
    from concurrent.futures import ThreadPoolExecutor

    def one(ch: Chapter) -> tuple[Chapter, subprocess.CompletedProcess[str]]:
        cmd = [sys.executable, "-m", "mmmlib.book", "--root", str(project.root), "quick", ch.name,
               "--out", str(out_dir), "--seed", str(seed)]
        return ch, subprocess.run(cmd, capture_output=True, text=True, check=False)

    failed = []
    order = _quick_order(project, chapters)
    print(f"{len(order)} chapters, {jobs} at a time, each on MMM_THREADS={os.environ.get('MMM_THREADS', '-')}",
          flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for ch, proc in pool.map(one, order):
            print(proc.stdout.replace("(1/1) ", ""), end="", flush=True)
            if proc.returncode != 0:
                lines = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
                reason = lines[0].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
                print(proc.stderr, end="", file=sys.stderr)
                failed.append(f"{ch.name}: {reason}")
    return failed


# ---------------------------------------------------------------- staleness
@dataclass(frozen=True)
class ChapterStatus:
    """One row of ``status``."""

    chapter: str
    state: str  # "fresh", "stale", "missing", "unpaired" or "dirty" (see chapter_status)
    profile: str
    seed: int | str
    runtime_s: float | None
    hardware: str

    @property
    def is_fresh(self) -> bool:
        return self.state == "fresh"


STATE_REASONS = {
    "missing": "the executed notebook or its results file is missing",
    "stale": "its inputs changed since it was executed",
    "unpaired": "the executed notebook and the results file come from different runs",
    "dirty": "it was executed from uncommitted code, so its numbers cannot be traced to a commit",
}


def chapter_status(project: Project, chapter: Chapter) -> ChapterStatus:
    """The state of a chapter's executed copy in ``book/``.

    ``missing``: the notebook or the results file is absent. ``stale``: the recorded input hash
    differs from the current inputs. ``unpaired``: the results file is not the one written by
    the run that produced the notebook (a half-finished replacement, or files copied by hand).
    ``dirty``: the run recorded uncommitted changes to the code, chapters or data. ``fresh``
    otherwise; only fresh chapters pass ``check``.
    """
    executed = project.executed / f"{chapter.name}.ipynb"
    results_file = project.results / f"{chapter.name}.json"
    if not executed.is_file() or not results_file.is_file():
        return ChapterStatus(chapter.name, "missing", "-", "-", None, "-")
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get(META_KEY, {})
    params = meta.get("parameters", {})
    current = input_hash(project, chapter, params, meta.get("data_files", []))
    raw = results_file.read_bytes()
    try:
        identity = results_identity(raw)
        prov = json.loads(raw).get("provenance", {})
    except ValueError as err:
        raise ValueError(f"{results_file} is not a valid results file ({err}); "
                         f"rerun chapter {chapter.number}") from None
    hw = prov.get("hardware", {})
    hardware = f"{cpu_label(hw)}, {hw.get('cores', '?')} cores, {hw.get('threads', '?')} threads, GPU: {hw.get('gpu', '?')}"
    if meta.get("input_hash") != current:
        state = "stale"
    elif meta.get("results_sha256") != hashlib.sha256(identity).hexdigest():
        state = "unpaired"
    elif prov.get("git_dirty", True):
        state = "dirty"
    else:
        state = "fresh"
    return ChapterStatus(
        chapter.name,
        state,
        str(params.get("profile", "?")),
        params.get("seed", "?"),
        prov.get("wall_time_s"),
        hardware,
    )


def cpu_label(hardware: dict[str, Any]) -> str:
    """A provenance record's CPU as a reader compares machine kinds: the model name, and the family,
    model and vector instructions where the record has them ("AMD EPYC (family 25, model 17, AVX512)")."""
    parts = [f"{k} {hardware[f'cpu_{k}']}" for k in ("family", "model") if f"cpu_{k}" in hardware]
    if "simd" in hardware:
        parts.append(str(hardware["simd"]))
    cpu = str(hardware.get("cpu", "-"))
    return f"{cpu} ({', '.join(parts)})" if parts else cpu


def recorded_parameters(project: Project, chapter: Chapter) -> dict[str, Any]:
    """Parameters of the executed copy (or the defaults if there is none)."""
    executed = project.executed / f"{chapter.name}.ipynb"
    if executed.is_file():
        meta = nbformat.read(executed, as_version=4).metadata.get(META_KEY, {})
        if meta.get("parameters"):
            return dict(meta["parameters"])
    return dict(DEFAULT_PARAMETERS)


# -------------------------------------------------------------------- pages
def _load_results(folder: Path) -> dict[str, dict[str, Any]]:
    """:func:`mmmlib.book.results.load_results`, with a broken file named in the error."""
    try:
        return load_results(folder)
    except (ValueError, KeyError) as err:
        for path in sorted(folder.glob("*.json")):
            try:
                results_identity(path.read_bytes())
            except ValueError as bad:
                raise ValueError(f"{path} is not a valid results file ({bad}); rerun its chapter") from None
        raise ValueError(f"cannot read the results files in {folder}: {err}") from None


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


QUICK_TIMINGS = Path("benchmarks") / "results" / "book_quick.json"

FINDINGS: tuple[tuple[str, str, str], ...] = (
    ("00_worlds", "What makes a world hard for a marketing-mix model?",
     "Correlated spend. In the hard world social and display spend correlate at "
     "{ch00.hard.corr.social_display} (easy world: {ch00.easy.corr.social_display}) and TV follows the "
     "seasonal demand ({ch00.hard.corr.tv_baseline}); every later chapter is scored on both."),
    ("01_baselines", "Is the port of LightweightMMM faithful, and how well does a Bayesian MMM recover ROI?",
     "The port {ch01.lwmm.summary} with LightweightMMM 0.1.9 itself, run as its README runs it. ROI error over "
     "five draws of each world (mean ± sd), easy / hard: cost prior {ch01.easy.lwmmm.roi_mape_mean} ± "
     "{ch01.easy.lwmmm.roi_mape_sd} / {ch01.hard.lwmmm.roi_mape_mean} ± {ch01.hard.lwmmm.roi_mape_sd}, ROI prior "
     "{ch01.easy.roi.roi_mape_mean} ± {ch01.easy.roi.roi_mape_sd} / {ch01.hard.roi.roi_mape_mean} ± "
     "{ch01.hard.roi.roi_mape_sd} (ROI prior against cost prior, paired: {ch01.easy.roi_vs_cost.roi_mape.verdict} / "
     "{ch01.hard.roi_vs_cost.roi_mape.verdict}); the ROI prior's median alone, no sales read: "
     "{ch01.easy.prior_alone.roi_mape_mean} ± {ch01.easy.prior_alone.roi_mape_sd} / {ch01.hard.prior_alone.roi_mape_mean} ± "
     "{ch01.hard.prior_alone.roi_mape_sd} (the fitted ROI-prior model against it, paired: {ch01.easy.roi.vs_prior.verdict} / "
     "{ch01.hard.roi.vs_prior.verdict}); the oracle told the true transforms, a reference: "
     "{ch01.easy.oracle.roi_mape_mean} ± {ch01.easy.oracle.roi_mape_sd} / {ch01.hard.oracle.roi_mape_mean} ± "
     "{ch01.hard.oracle.roi_mape_sd}. For the channels the data cannot see, the cost prior's scale (0.15 in "
     "LightweightMMM's README, 1 in its library's default scaler) sets the ROI the model reports."),
    ("02_uac", "Can a differentiable unaware→activated→converted funnel recover its parameters?",
     "With its structure right: median error of the media effects {ch02.recovery.beta_error}, "
     "90% intervals covering {ch02.recovery.all_coverage}. With one true link masked out, coverage of the "
     "media effects falls to {ch02.misspec.beta_coverage}. On markets outside its family (media acting days late, "
     "consumers differing within segments, a curve and start it is not told), attribution is off by "
     "{ch02.outside.attr_mean_pp} {ch02.outside.attr_mean_pp_sd} points per channel, against "
     "{ch02.home.attr_mean_pp} {ch02.home.attr_mean_pp_sd} at home; {ch02.outside.worst_departure} does the most damage."),
    ("03_deepcausal", "Do a GRU and a learned graph recover time-varying effects and channel structure?",
     "Lagged NOTEARS finds the spend graph with mean SHD {ch03.graph.shd_mean} (edge F1 {ch03.graph.f1_mean}). "
     "Time-varying effects are "
     "{ch03.verdict.drift} (drift correlation {ch03.fit.drift_corr}); within-region holdout R² "
     "{ch03.fit.within_r2} against {ch03.oracle.within} for an oracle and {ch03.peer.within_r2} for the "
     "source package."),
    ("04_twins", "Do digital twins of survey respondents give the right counterfactuals?",
     "Lever effects are off by {ch04.sweep.median_error} at the median over surveys; the bootstrap-corrected "
     "90% intervals cover {ch04.sweep.coverage} ({ch04.verdict.coverage}), the uncorrected "
     "{ch04.sweep.raw_coverage}."),
    ("05_diffusion", "Where does a learned prior over coefficient paths beat a state-space smoother?",
     "On {ch05.check.n} log-OU series, where a log-space smoother is nearly the exact posterior, the diffusion "
     "model {ch05.verdict.vs_kalman_check} the better smoother ({ch05.check.ours_gap}; 90% coverage "
     "{ch05.check.ours_coverage}); the source's design as published scores {ch05.source.corr}. On {ch05.wear.test} "
     "series with creative wear-out, resets and regime jumps it scores {ch05.wear.ours.corr} against "
     "{ch05.wear.kalman.corr} and {ch05.wear.log_kalman.corr} for the Gaussian smoothers (coverage "
     "{ch05.wear.ours.coverage} once its spread is calibrated on held-out series, {ch05.wear.raw_coverage} raw); "
     "on {ch05.wear.ladder_series} of them a particle smoother under the true dynamics reaches {ch05.floor.corr} "
     "with {ch05.floor.particles} particles and {ch05.floor.verdict}, where ours scores {ch05.floor.ours_corr}. "
     "Trained on the other family it scores {ch05.transfer.wear.other_corr}."),
    ("06_scoreboard", "Which method should a practitioner trust, on the same worlds and questions?",
     "Lowest ROI error, easy world: {ch06.best.roi_mape.easy}; correlated: {ch06.best.roi_mape.correlated}. "
     "Over five seeds the ROI prior's error is {ch06.roi_mape.easy.bayes_roi} {ch06.roi_mape_sd.easy.bayes_roi}, "
     "that prior alone, before any sales are read, {ch06.roi_mape.easy.prior_only} "
     "{ch06.roi_mape_sd.easy.prior_only} (the fitted model's is {ch06.data_add.roi_mape_verdict.easy}), "
     "the flat-prior oracle's {ch06.roi_mape.easy.oracle} {ch06.roi_mape_sd.easy.oracle}; the model's budget regret "
     "{ch06.regret.easy.bayes_roi} {ch06.regret_sd.easy.bayes_roi} of the achievable gain."),
    ("07_calibration", "Is the Bayesian baseline's posterior calibrated?",
     "For NUTS with the ROI prior, simulation-based calibration {ch07.verdict}; its 90% intervals cover "
     "{ch07.nuts.coverage_90} of prior draws, the variational fit's {ch07.vi.coverage_90}. For NUTS with "
     "LightweightMMM's cost prior ({ch07.cost.replications} draws) it {ch07.cost.verdict}; coverage "
     "{ch07.cost.coverage_90}. What a pass rules out: a posterior 20% too narrow is rejected by "
     "{ch07.power.roi.narrow.pooled_rejected} (ROI prior) and {ch07.power.cost.narrow.pooled_rejected} (cost prior) "
     "of 4 pooled tests."),
    ("08_lift_tests", "What does one experiment per channel buy the Bayesian model?",
     "Spend +20% for 4 weeks on each channel, in the likelihood: ROI error {ch08.easy.plus20.roi_mape} "
     "{ch08.easy.plus20.roi_mape_sd} against {ch08.easy.none.roi_mape} {ch08.easy.none.roi_mape_sd} without "
     "experiments (easy world, over seeds). By paired tests the ROI error {ch08.reading.plus20_worlds}, and over both "
     "worlds together {ch08.change.plus20.roi_mape_verdict} ({ch08.change.plus20.roi_mape} "
     "{ch08.change.plus20.roi_mape_se}, standard error); the marginal-ROI error {ch08.change.plus20.mroi_mape_verdict} "
     "and the budget regret {ch08.change.plus20.regret_verdict}. Read by an analyst who knows the true "
     "response curves, the same tests give ROI error {ch08.shape.easy.plus20.roi_mape} "
     "{ch08.shape.easy.plus20.roi_mape_sd} (easy world). {ch08.reading.designs}."),
)
"""The introduction's findings: per chapter a question and an answer whose numbers are read from the
results files (``{key}`` placeholders, shown as the key's display text)."""


def chapter_runtimes(project: Project) -> list[dict[str, Any]]:
    """Wall time of every chapter, first cell to last, at both profiles.

    The full profile's comes from the executed chapter's results file (``None`` if ``book/``
    holds a quick run); the quick profile's from ``benchmarks/results/book_quick.json``, written
    by ``benchmarks/bench_book.py`` (``None`` if not measured).
    """
    quick_path = project.root / QUICK_TIMINGS
    quick: dict[str, Any] = {}
    if quick_path.is_file():
        try:
            quick = json.loads(quick_path.read_text(encoding="utf-8")).get("quick_s", {})
        except ValueError as err:
            raise ValueError(f"{quick_path} is not valid JSON ({err}); rerun benchmarks/bench_book.py") from None
    docs = _load_results(project.results)
    rows = []
    for ch in project.chapters():
        prov = docs.get(ch.name, {}).get("provenance", {})
        full = prov.get("wall_time_s") if prov.get("parameters", {}).get("profile") == "full" else None
        rows.append({"chapter": ch.name, "quick_s": quick.get(ch.name), "full_s": full})
    return rows


def _runtime_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def minutes(x: float | None) -> str:
        return "not measured" if x is None else f"{x / 60:.1f}"

    out = ["| chapter | quick (min) | full (min) |", "|---|---:|---:|"]
    out += [f"| {{doc}}`chapters/{r['chapter']}` | {minutes(r['quick_s'])} | {minutes(r['full_s'])} |" for r in rows]
    totals = {k: sum(r[k] for r in rows) if all(r[k] is not None for r in rows) else None
              for k in ("quick_s", "full_s")}
    out.append(f"| **all chapters** | **{minutes(totals['quick_s'])}** | **{minutes(totals['full_s'])}** |")
    return out


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{key}`` by its display text; a key no chapter recorded shows as a dash."""
    return re.sub(r"\{(ch\d{2}(?:\.[a-z0-9_]+)+)\}", lambda m: values.get(m.group(1), "–"), template)


def _findings_page(project: Project, docs: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    values = {k: r["display"] for doc in docs.values() for k, r in doc["results"].items()}
    lines = [
        "<!-- written by `python -m mmmlib.book pages` from book/results: do not edit -->",
        "",
        "| chapter | question | answer |",
        "|---|---|---|",
    ]
    for name, question, answer in FINDINGS:
        if not (project.sources / f"{name}.ipynb").is_file():
            continue
        title = titles.get(name, name)
        lines.append(f"| {{doc}}`{int(name[:2])}. {_md_escape(title)} <chapters/{name}>` | {_md_escape(question)} | "
                     f"{_md_escape(_fill(answer, values))} |")
    return "\n".join(lines) + "\n"


SOURCE_ARCHIVE = Path("book/_source/mmm-thesis-source.tar.gz")
"""Where :func:`write_source_archive` puts the book's own source (relative to the root; not tracked)."""

_NOT_SOURCE = {".git", ".venv", ".venv-lwmm", "_build", "scratch", "__pycache__", ".hypothesis", ".ipynb_checkpoints",
               ".pytest_cache", ".ruff_cache", "_source"}


def write_source_archive(project: Project) -> tuple[Path, str]:
    """Pack the source the book is built from into :data:`SOURCE_ARCHIVE`, for its Reproduce page.

    In a git checkout: ``git archive`` of ``HEAD`` (what is committed; the returned description
    names the commit and says whether tracked files differ from it). Elsewhere, as in a tree
    unpacked from such an archive: every file but build outputs and environments. The archive
    unpacks into ``mmm-thesis/``, where the README's ``make book`` and ``make test`` run.

    Returns
    -------
    (path, description)
    """
    out = project.root / SOURCE_ARCHIVE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(project.root), *args], capture_output=True, text=True, timeout=120)

    try:
        top = git("rev-parse", "--show-toplevel")
        in_git = top.returncode == 0 and Path(top.stdout.strip()).resolve() == project.root.resolve()
    except (OSError, subprocess.SubprocessError):
        in_git = False
    if in_git:
        commit = git("rev-parse", "HEAD").stdout.strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        done = git("archive", "--format=tar.gz", "--prefix=mmm-thesis/", "-o", str(tmp), "HEAD")
        if done.returncode != 0:
            raise RuntimeError(f"git archive failed: {done.stderr.strip()}")
        what = f"commit `{commit[:12]}`" + (" (the files of this build differ from it)" if dirty else "")
    else:
        import tarfile

        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(project.root.rglob("*")):
                rel = path.relative_to(project.root)
                skip = set(rel.parts) & _NOT_SOURCE or any(part.startswith(".stage-") for part in rel.parts)
                if path.is_file() and not skip:
                    tar.add(path, arcname=str(Path("mmm-thesis") / rel), recursive=False)
        what = "the files of this build (not a git checkout)"
    os.replace(tmp, out)
    return out, what


def write_pages(project: Project) -> list[Path]:
    """Write ``book/results.md``, ``book/reproduce.md``, ``book/cite.md`` and ``book/findings.md``,
    and the source archive the Reproduce page offers (:func:`write_source_archive`)."""
    archive, archive_what = write_source_archive(project)
    docs = _load_results(project.results)
    titles = {c.name: c.title() for c in project.chapters()}
    book = project.root / "book"

    lines = [
        "# Results",
        "",
        "Every headline number of the book, under the key that cites it. Each value is read",
        "from `book/results/NN_slug.json`, the file its chapter wrote; the chapter glues the",
        "same value into its text. The *where* column links to the section that shows it.",
        "Each key is also an address on this page (`results.html#<key>`), and each chapter's file",
        "can be downloaded with its provenance: commit, parameters, seed, versions, hardware.",
        "",
    ]
    for name, doc in docs.items():
        prov = doc.get("provenance", {})
        params = prov.get("parameters", {})
        lines += [
            f"## {titles.get(name, name)}",
            "",
            f"Profile `{params.get('profile', '?')}`, seed `{params.get('seed', '?')}`; "
            f"file {{download}}`book/results/{name}.json <results/{name}.json>`.",
            "",
            "| key | value | unit | meaning | where |",
            "|---|---|---|---|---|",
        ]
        for key, r in doc["results"].items():
            where = f"{{ref}}`{r['where']}`" if r.get("where") else f"{{doc}}`chapters/{name}`"
            lines.append(
                f"| <span id=\"{key}\"></span>`{key}` | {_md_escape(r['display'])} | {_md_escape(r['unit'])} | "
                f"{_md_escape(r['meaning'])} | {where} |"
            )
        lines.append("")
    results_md = atomic_write_text(book / "results.md", "\n".join(lines))

    rows = []
    for ch in project.chapters():
        st = chapter_status(project, ch)
        doc = docs.get(ch.name, {})
        hw = doc.get("provenance", {}).get("hardware", {})
        runtime = f"{st.runtime_s:.0f} s" if st.runtime_s is not None else "-"
        rows.append(
            f"| {{doc}}`chapters/{ch.name}` | `{st.profile}` | {st.seed} | {runtime} | "
            f"{_md_escape(cpu_label(hw))} | {hw.get('threads', '-')} | {_md_escape(hw.get('gpu', '-'))} | {st.state} |"
        )
    versions = next(iter(docs.values()), {}).get("provenance", {}).get("versions", {})
    vers = ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"
    repro = [
        "# Reproduce",
        "",
        "Every number and figure in this book is computed by `mmmlib` when a chapter is executed.",
        f"The book carries its own source: {{download}}`mmm-thesis-source.tar.gz <{archive.relative_to(book).as_posix()}>` "
        f"({archive.stat().st_size / 1e6:.1f} MB), {archive_what}.",
        "On a machine with Python 3.11, `pip` and `make`:",
        "",
        "```bash",
        "tar xzf mmm-thesis-source.tar.gz && cd mmm-thesis",
        "make book                                  # venv from requirements.lock, stale chapters, HTML",
        "make test                                  # unit tests, quick chapters under nbval, strict build",
        "make chapter CH=00 PROFILE=full SEED=0     # rerun one chapter into book/",
        "make status                                # profile, seed, runtime and staleness per chapter",
        "```",
        "",
        "A chapter is *stale* when the hash of its inputs (source notebook, parameters, the `mmmlib`",
        "modules it imports, the data files it read, `requirements.lock`) differs from the hash recorded",
        "when it was executed. `make book` reruns only stale chapters; `make test` fails if one is stale.",
        "",
        "## Chapters as rendered",
        "",
        "| chapter | profile | seed | runtime | CPU | threads | GPU | state |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Package versions of the run: {vers}.",
        "",
        "(reproduce-runtimes)=",
        "## How long it takes",
        "",
        "Wall time of each chapter from its first cell to its last, on the machine named above",
        "(starting the kernel adds a few seconds to each). The full profile is the book's: its",
        "time is recorded by the executed chapter. The quick profile is what `make test` executes,",
        "timed by `benchmarks/bench_book.py`.",
        "",
        *_runtime_table(chapter_runtimes(project)),
        "",
        "`make book` sets up `.venv` (about 1.8 GB on disk) and, when a chapter has to be",
        "re-executed, the LightweightMMM 0.1.9 environment `.venv-lwmm` (about 2.5 GB) that Chapter 1",
        "fits beside its port.",
        "",
        "```{warning}",
        "`make chapter` and `make book` write into `book/`: they replace the executed chapter and its",
        "results file that the rendered book shows. To try a chapter without touching the book, run",
        "`python -m mmmlib.book quick --out scratch` or execute the source notebook in `chapters/`.",
        "```",
        "",
        "Numbers are reproducible for the same inputs, seed and machine kind: the thread count",
        "is fixed (`MMM_THREADS`, default 2) and every generator is seeded by `mmmlib.runtime.setup`.",
        "A machine kind is the CPU column above: its model name, its family and model numbers (cloud",
        "machines of different generations often share a name) and the vector instructions torch's",
        "kernels use. Other kinds move results in the last digits (the book displays rounded values)",
        "and run at other speeds.",
        "",
    ]
    repro_md = atomic_write_text(book / "reproduce.md", "\n".join(repro))

    cite_md = atomic_write_text(book / "cite.md", _cite_page(project, titles, docs))
    findings_md = atomic_write_text(book / "findings.md", _findings_page(project, docs, titles))
    return [results_md, repro_md, cite_md, findings_md]


def _citation_fields(project: Project) -> dict[str, str]:
    """Title, authors, year, version and URL read from ``CITATION.cff`` (simple YAML subset)."""
    fields = {"title": "mmm-thesis", "year": "2026", "version": "", "url": "", "authors": ""}
    path = project.root / "CITATION.cff"
    if not path.is_file():
        return fields
    authors: list[str] = []
    family = given = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if ":" not in line:
            continue
        key, _, value = line.lstrip("- ").partition(":")
        value = value.strip().strip('"')
        if key == "family-names":
            family = value
        elif key == "given-names":
            given = value
        elif key == "name" and raw.startswith("  -"):
            authors.append(value)
        elif key in ("title", "version", "url") and not raw.startswith(" "):
            fields[key] = value
        elif key == "date-released" and not raw.startswith(" "):
            fields["year"] = value[:4]
        if family and given:
            authors.append(f"{family}, {given}")
            family = given = None
    fields["authors"] = " and ".join(authors) or "mmm-thesis authors"
    return fields


def _cite_page(project: Project, titles: Mapping[str, str], docs: Mapping[str, Any]) -> str:
    f = _citation_fields(project)
    url = f"  url       = {{{f['url']}}},\n" if f["url"] else ""
    out = [
        "# How to cite",
        "",
        "Cite the book as a whole, a chapter, or a single number by its result key.",
        "The machine-readable citation is `CITATION.cff` at the root of the source, which this book",
        "carries: the archive on the {doc}`reproduce page <reproduce>` is the exact source it was built from.",
        "",
        "## The book",
        "",
        "```bibtex",
        "@book{mmm_thesis,",
        f"  title     = {{{f['title']}}},",
        f"  author    = {{{f['authors']}}},",
        f"  year      = {{{f['year']}}},",
        f"  note      = {{Version {f['version']}}},",
        url.rstrip("\n") if url else "  howpublished = {Jupyter Book}",
        "}",
        "```",
        "",
        "## A chapter",
        "",
    ]
    for ch in project.chapters():
        commit = docs.get(ch.name, {}).get("provenance", {}).get("git_commit", "unknown")[:12]
        out += [
            "```bibtex",
            f"@incollection{{mmm_thesis_ch{ch.number},",
            f"  title     = {{{titles.get(ch.name, ch.name)}}},",
            f"  booktitle = {{{f['title']}}},",
            f"  author    = {{{f['authors']}}},",
            f"  year      = {{{f['year']}}},",
            f"  chapter   = {{{int(ch.number)}}},",
            f"  note      = {{Executed from commit {commit}}}",
            "}",
            "```",
            "",
        ]
    out += [
        "## A single result",
        "",
        "Every headline number has a stable key and its own address on the {doc}`results` page",
        "(`results.html#<key>`). In BibTeX, cite the chapter and name the key and its value:",
        "",
        "```bibtex",
        "@incollection{mmm_thesis_ch00_easy_roi_tv,",
        f"  title     = {{{titles.get('00_worlds', 'Chapter 0')}}},",
        f"  booktitle = {{{f['title']}}},",
        f"  author    = {{{f['authors']}}},",
        f"  year      = {{{f['year']}}},",
        "  note      = {Result ch00.easy.roi.tv (ROI of TV in the easy world), results.html\\#ch00.easy.roi.tv}",
        "}",
        "```",
        "",
        "In running text:",
        "Cite the chapter and name the key, for instance: *\"ROI of TV in the easy world: "
        f"{docs.get('00_worlds', {}).get('results', {}).get('ch00.easy.roi.tv', {}).get('display', '…')}",
        "(mmm-thesis, result `ch00.easy.roi.tv`)\"*. The key's entry in `book/results/NN_slug.json`",
        "carries its provenance: the commit, the parameters and seed, the package versions and the",
        "hardware that produced it, so a reader can regenerate it with `make chapter`.",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------- CLI
def _check_run(project: Project, chapter: Chapter, params: Mapping[str, Any], force: bool = False) -> None:
    """Refuse, before anything runs, what would give a wrong or half-written ``book/``: a bad
    profile or seed, a quick run over a full chapter (without ``force``), an unwritable folder."""
    if params.get("profile") not in ("quick", "full"):
        raise ValueError(f"parameter 'profile' must be 'quick' or 'full', got {params.get('profile')!r}")
    seed = params.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"parameter 'seed' must be a non-negative integer, got {seed!r}")
    executed = project.executed / f"{chapter.name}.ipynb"
    if params["profile"] == "quick" and not force and executed.is_file():
        recorded = nbformat.read(executed, as_version=4).metadata.get(META_KEY, {}).get("parameters", {})
        if recorded.get("profile") == "full":
            raise ValueError(f"{chapter.name}: book/ holds the full-profile chapter; a quick run would replace "
                             "the book's numbers (use --force to do it anyway, or 'quick --out DIR' to run elsewhere)")
    for folder in (project.executed, project.results):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is not a folder: the chapter would run and then fail to save")
        probe = folder if folder.is_dir() else folder.parent
        if not os.access(probe, os.W_OK):
            raise ValueError(f"cannot write to {folder}: the chapter would run and then fail to save")


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mmmlib.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="project root (default: this checkout)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute one chapter into book/")
    run.add_argument("chapter", help="number (01) or name (01_baselines)")
    run.add_argument("--profile", choices=("quick", "full"), default=None)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("--force", action="store_true",
                     help="let a quick-profile run replace a full-profile chapter in book/")
    sub.add_parser("status", help="profile, seed, runtime and staleness of every chapter")
    sub.add_parser("check", help="exit 1 if an executed chapter is missing or stale")
    sub.add_parser("stale", help="rerun every stale or missing chapter")
    quick = sub.add_parser("quick", help="execute chapters at profile=quick into a scratch folder (book/ untouched)")
    quick.add_argument("chapters", nargs="*", help="numbers or names (default: every chapter)")
    quick.add_argument("--out", type=Path, required=True)
    quick.add_argument("--seed", type=int, default=0)
    quick.add_argument("--jobs", type=int, default=1,
                       help="chapters executing at once, each in its own process (default 1)")
    order = sub.add_parser("order", help="the quick-profile notebooks in a scratch folder, longest first (for nbval)")
    order.add_argument("out", type=Path, help="the folder a quick run wrote (its chapters/ subfolder is listed)")
    sub.add_parser("pages", help="write the Results, Reproduce and How-to-cite pages")
    args = parser.parse_args(argv)

    project = Project(Path(args.root).resolve() if args.root else repo_root())
    try:
        if not project.sources.is_dir() or not project.chapters():
            raise ValueError(f"{project.root} is not a mmm-thesis checkout: no chapters/NN_*.ipynb there")
        if args.cmd == "run":
            ch = project.chapter(args.chapter)
            params = recorded_parameters(project, ch)
            if args.profile:
                params["profile"] = args.profile
            if args.seed is not None:
                params["seed"] = args.seed
            for name, value in args.param:
                params[name] = _parse_value(value)
            _check_run(project, ch, params, force=args.force)
            execute_chapter(project, ch, params)
        elif args.cmd == "status":
            print(f"{'chapter':<24}{'state':<9}{'profile':<9}{'seed':<6}{'runtime':>9}  hardware")
            for ch in project.chapters():
                st = chapter_status(project, ch)
                rt = f"{st.runtime_s:.1f} s" if st.runtime_s is not None else "-"
                print(f"{st.chapter:<24}{st.state:<9}{st.profile:<9}{st.seed!s:<6}{rt:>9}  {st.hardware}")
        elif args.cmd == "check":
            bad = [chapter_status(project, ch) for ch in project.chapters()]
            bad = [s for s in bad if not s.is_fresh]
            for s in bad:
                print(
                    f"{s.chapter}: executed copy is {s.state} ({STATE_REASONS[s.state]}); "
                    f"commit the code, rerun it with 'make chapter CH={s.chapter[:2]}' and commit book/",
                    file=sys.stderr,
                )
            if bad:
                return 1
            print(f"all {len(project.chapters())} executed chapters are fresh")
        elif args.cmd == "stale":
            todo = [ch for ch in project.chapters() if not chapter_status(project, ch).is_fresh]
            if not todo:
                print("no stale chapters")
            for i, ch in enumerate(todo, 1):
                print(f"({i}/{len(todo)})", end=" ")
                execute_chapter(project, ch, recorded_parameters(project, ch))
        elif args.cmd == "quick":
            chapters = [project.chapter(c) for c in args.chapters] if args.chapters else project.chapters()
            failed = run_quick(project, chapters, args.out, seed=args.seed, jobs=args.jobs)
            if failed:
                print(f"error: {len(failed)} of {len(chapters)} chapters failed: " + "; ".join(failed),
                      file=sys.stderr)
                return 1
        elif args.cmd == "order":
            found = [args.out / "chapters" / f"{ch.name}.ipynb" for ch in _quick_order(project, project.chapters())]
            found = [path for path in found if path.is_file()]
            if not found:
                raise ValueError(f"no executed quick-profile chapters in {args.out / 'chapters'}: run 'quick --out {args.out}' first")
            print("\n".join(str(path) for path in found))
        elif args.cmd == "pages":
            for path in write_pages(project):
                print(f"wrote {path.relative_to(project.root)}")
    except (ChapterFailed, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0

