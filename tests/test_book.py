"""The papermill runner: atomic execution, staleness, failures that leave the old copy."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mmmlib.book.runner import (
    KERNEL_ENV,
    ChapterFailed,
    Project,
    _strip_volatile,
    chapter_status,
    execute_chapter,
    input_hash,
    main,
    mmmlib_closure,
    write_pages,
)

TOY_CODE = """\
from mmmlib.book.results import begin_chapter
runtime, results = begin_chapter("01_toy", dict(profile=profile, seed=seed), results_dir=results_dir)
import torch
value = float(torch.randn(3).sum()) + scale
import arviz  # noqa: F401  (its daily notice must not reach the notebook)
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="toy fit"):
    pass
results.add("ch01.value", value, unit="units", meaning="a seeded random number", fmt=".4f")
if fail:
    raise RuntimeError("boom in the toy chapter")
_ = results.save()
"""


def make_project(root: Path) -> Project:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'profile = "full"\nseed = 0\nresults_dir = "../results"\nscale = 1.0\nfail = False'
    )
    params.metadata["tags"] = ["parameters", "remove-cell"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A toy chapter\n\nThe value is {glue:text}`ch01.value`."),
        params,
        nbformat.v4.new_code_cell(TOY_CODE),
    ]
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (root / "chapters").mkdir(parents=True)
    nbformat.write(nb, root / "chapters" / "01_toy.ipynb")
    (root / "mmmlib" / "book").mkdir(parents=True)
    # the project's own sources, for the staleness hash only (execution imports the installed
    # mmmlib): the chapter imports mmmlib.book.results, which imports model; unused.py is not imported
    (root / "mmmlib" / "book" / "__init__.py").write_text("")
    (root / "mmmlib" / "book" / "results.py").write_text("from mmmlib import model\n")
    (root / "mmmlib" / "model.py").write_text("X = 1\n")
    (root / "mmmlib" / "unused.py").write_text("Y = 1\n")
    (root / "requirements.lock").write_text("torch==2.13.0\n")
    return Project(root)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A toy project whose chapter was executed once (shared: executing costs a kernel start)."""
    root = tmp_path_factory.mktemp("proj")
    project = make_project(root)
    ch = project.chapter("01")
    execute_chapter(project, ch, {"profile": "quick", "seed": 3}, log=False)
    _as_clean_run(project, ch)
    return project, ch


def _as_clean_run(project: Project, ch) -> None:
    """The toy chapter records the provenance of this checkout, whose tree may hold uncommitted
    work while tests run; pin it to a run from committed code (the pair hash ignores provenance)."""
    path = project.results / f"{ch.name}.json"
    doc = json.loads(path.read_text())
    doc["provenance"]["git_dirty"] = False
    path.write_text(json.dumps(doc, indent=2) + "\n")


def test_execution_writes_notebook_and_results(executed):
    project, ch = executed
    nb_path = project.executed / "01_toy.ipynb"
    res = json.loads((project.results / "01_toy.json").read_text())
    assert res["results"]["ch01.value"]["unit"] == "units"
    nb = nbformat.read(nb_path, as_version=4)
    meta = nb.metadata["mmm_thesis"]
    assert meta["parameters"] == {"profile": "quick", "seed": 3}
    # volatile metadata is gone, the injected cell has a fixed id and is hidden
    assert set(nb.metadata["papermill"]) == {"parameters"}
    injected = [c for c in nb.cells if c.get("id") == "injected-parameters"]
    assert injected and "remove-cell" in injected[0].metadata["tags"]
    assert all("execution" not in c.metadata and "papermill" not in c.metadata for c in nb.cells)
    assert not list(project.root.glob("book/.stage-*"))


def test_rerun_is_byte_identical(executed):
    project, ch = executed
    before = (project.executed / "01_toy.ipynb").read_bytes()
    execute_chapter(project, ch, {"profile": "quick", "seed": 3}, log=False)
    assert (project.executed / "01_toy.ipynb").read_bytes() == before
    _as_clean_run(project, ch)


def test_staleness_follows_the_inputs(executed):
    project, ch = executed
    assert chapter_status(project, ch).state == "fresh"
    model = project.root / "mmmlib" / "model.py"
    model.write_text("X = 2\n")
    assert chapter_status(project, ch).state == "stale"
    model.write_text("X = 1\n")
    assert chapter_status(project, ch).state == "fresh"
    (project.root / "mmmlib" / "unused.py").write_text("Y = 2\n")  # a module the chapter does not import
    assert chapter_status(project, ch).state == "fresh"
    lock = project.root / "requirements.lock"
    lock.write_text("torch==2.13.1\n")
    assert chapter_status(project, ch).state == "stale"
    lock.write_text("torch==2.13.0\n")
    nb = nbformat.read(ch.source, as_version=4)
    original = nb.cells[2].source
    nb.cells[2].source = original.replace("+ scale", "+ 2 * scale")
    nbformat.write(nb, ch.source)
    assert chapter_status(project, ch).state == "stale"
    nb.cells[2].source = original
    nbformat.write(nb, ch.source)
    assert chapter_status(project, ch).state == "fresh"
    assert main(["--root", str(project.root), "check"]) == 0


def test_notebook_and_results_file_are_one_unit(executed, capsys):
    project, ch = executed
    res_path = project.results / "01_toy.json"
    original = res_path.read_text()
    doc = json.loads(original)
    # another run's numbers beside this notebook (a kill between the two moves)
    doc["results"]["ch01.value"]["display"] = "0.1234"
    res_path.write_text(json.dumps(doc))
    assert chapter_status(project, ch).state == "unpaired"
    assert main(["--root", str(project.root), "check"]) == 1
    assert "different runs" in capsys.readouterr().err
    # the same numbers from a run with other parameters (quick file beside a full notebook)
    doc = json.loads(original)
    doc["provenance"]["parameters"]["profile"] = "full"
    res_path.write_text(json.dumps(doc))
    assert chapter_status(project, ch).state == "unpaired"
    # a rerun with the same numbers: only the volatile provenance differs, the pair holds
    doc = json.loads(original)
    doc["provenance"]["wall_time_s"] = 999.0
    doc["provenance"]["git_commit"] = "0" * 40
    res_path.write_text(json.dumps(doc))
    assert chapter_status(project, ch).state == "fresh"
    # executed from uncommitted code: not citable, so check fails
    doc["provenance"]["git_dirty"] = True
    res_path.write_text(json.dumps(doc))
    assert chapter_status(project, ch).state == "dirty"
    assert main(["--root", str(project.root), "check"]) == 1
    assert "uncommitted code" in capsys.readouterr().err
    # a truncated results file: the error names it
    res_path.write_text(original[: len(original) // 2])
    assert main(["--root", str(project.root), "status"]) == 1
    assert "01_toy.json" in capsys.readouterr().err
    res_path.write_text(original)
    assert chapter_status(project, ch).state == "fresh"


def test_upstream_results_count_by_their_numbers_not_their_provenance(executed):
    project, ch = executed
    upstream = project.results / "00_up.json"
    doc = {"chapter": "00_up", "results": {"ch00.x": {"value": 1.0, "display": "1.0"}},
           "provenance": {"parameters": {"profile": "full", "seed": 0}, "wall_time_s": 5.0,
                          "git_commit": "a" * 40}}
    upstream.write_text(json.dumps(doc))
    params = {"profile": "quick", "seed": 3}
    before = input_hash(project, ch, params, ["book/results/00_up.json"])
    doc["provenance"].update(wall_time_s=6.5, git_commit="b" * 40)
    upstream.write_text(json.dumps(doc, indent=1))
    assert input_hash(project, ch, params, ["book/results/00_up.json"]) == before
    doc["results"]["ch00.x"]["value"] = 2.0
    upstream.write_text(json.dumps(doc))
    assert input_hash(project, ch, params, ["book/results/00_up.json"]) != before
    upstream.unlink()


def test_a_failing_chapter_leaves_the_old_copy(executed, capsys):
    project, ch = executed
    nb_before = (project.executed / "01_toy.ipynb").read_bytes()
    res_before = (project.results / "01_toy.json").read_bytes()
    with pytest.raises(ChapterFailed, match=r"01_toy failed in cell \d+ \(In \[\d+\]\): RuntimeError: boom"):
        execute_chapter(project, ch, {"profile": "quick", "seed": 3, "fail": True}, log=False)
    assert (project.executed / "01_toy.ipynb").read_bytes() == nb_before
    assert (project.results / "01_toy.json").read_bytes() == res_before
    assert not list(project.root.glob("book/.stage-*"))
    # the CLI turns it into a non-zero exit with the message on stderr
    assert main(["--root", str(project.root), "run", "01", "-p", "fail", "True"]) == 1
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert (project.executed / "01_toy.ipynb").read_bytes() == nb_before


def test_check_fails_on_a_missing_or_stale_chapter(tmp_path, capsys):
    project = make_project(tmp_path)
    assert main(["--root", str(project.root), "check"]) == 1
    assert "01_toy: executed copy is missing" in capsys.readouterr().err


def test_bad_parameters_and_unknown_chapters(executed, capsys):
    project, ch = executed
    with pytest.raises(ValueError, match="profile"):
        execute_chapter(project, ch, {"profile": "medium"}, log=False)
    assert main(["--root", str(project.root), "run", "09"]) == 1
    assert "no chapter '09'" in capsys.readouterr().err


def test_pages_list_every_result(executed):
    project, _ = executed
    (project.root / "book").mkdir(exist_ok=True)
    results_md, repro_md, cite_md, findings_md = write_pages(project)
    text = results_md.read_text()
    assert findings_md.read_text().startswith("<!-- written by")  # the toy chapter has no findings row
    display = json.loads((project.results / "01_toy.json").read_text())["results"]["ch01.value"]["display"]
    assert "`ch01.value`" in text and display in text
    assert "01_toy" in repro_md.read_text() and "@incollection{mmm_thesis_ch01" in cite_md.read_text()


def test_source_chapters_are_clean_and_parameterised():
    """Every chapters/NN_slug.ipynb: no outputs, a hidden parameters cell with profile and seed,
    a title, and an entry in _toc.yml."""
    from mmmlib.book.results import repo_root

    project = Project(repo_root())
    toc = (project.root / "_toc.yml").read_text()
    assert project.chapters(), "no chapters found"
    for ch in project.chapters():
        nb = nbformat.read(ch.source, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{ch.name} has outputs"
        params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{ch.name} needs exactly one cell tagged 'parameters'"
        assert "remove-cell" in params[0].metadata["tags"]
        for name in ("profile", "seed", "results_dir"):
            assert f"{name} =" in params[0].source, f"{ch.name}: parameter {name!r} missing"
        assert ch.title() != ch.name, f"{ch.name} has no '# Title' heading"
        assert f"book/chapters/{ch.name}" in toc, f"{ch.name} is not in _toc.yml"


def test_closure_follows_absolute_relative_and_from_imports(tmp_path):
    project = make_project(tmp_path)
    pkg = tmp_path / "mmmlib"
    (pkg / "__init__.py").write_text("")
    (pkg / "models").mkdir()
    (pkg / "models" / "__init__.py").write_text("from .a import f\n")
    (pkg / "models" / "a.py").write_text("def f():\n    from ..helpers import g  # inside a function\n")
    (pkg / "helpers.py").write_text("import numpy\n")
    nb = nbformat.read(project.chapter("01").source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("%matplotlib inline\nfrom mmmlib import models\nimport os"))
    nbformat.write(nb, project.chapter("01").source)
    names = [str(p.relative_to(tmp_path)) for p in mmmlib_closure(project, project.chapter("01"))]
    assert names == sorted(["mmmlib/__init__.py", "mmmlib/book/__init__.py", "mmmlib/book/results.py", "mmmlib/model.py",
                            "mmmlib/models/__init__.py", "mmmlib/models/a.py", "mmmlib/helpers.py"])


def test_cells_recording_timings_are_left_out_of_nbval():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('results.add("ch01.speed.fit", t, "s", "wall time")'),
        nbformat.v4.new_code_cell('results.add("ch01.recovery.error", e, "fraction", "an error")'),
        nbformat.v4.new_code_cell('pd.Series({"fit (s)": model.fit_seconds})'),  # shows a wall time
        nbformat.v4.new_code_cell('pd.Series({"DDPM per path (s)": ddpm.seconds / n})'),
        nbformat.v4.new_code_cell('scores.drop(columns="seconds").round(3)'),  # shows no wall time
    ]
    nb.cells[0].metadata["tags"] = ["remove-cell"]
    _strip_volatile(nb)
    assert nb.cells[0].metadata["tags"] == ["remove-cell", "nbval-ignore-output"]
    for i in (2, 3):
        assert nb.cells[i].metadata["tags"] == ["nbval-ignore-output"]
    for i in (1, 4):
        assert "nbval-ignore-output" not in nb.cells[i].metadata.get("tags", [])


def test_runner_refuses_what_would_give_a_wrong_book(tmp_path, capsys):
    """Checked before anything runs: an empty chapter name (it used to match chapter 00), a
    non-integer or boolean seed, a root that is not a checkout, a quick run over a full chapter."""
    assert main(["--root", str(tmp_path / "nonexistent"), "check"]) == 1
    assert "not a mmm-thesis checkout" in capsys.readouterr().err
    project = make_project(tmp_path / "proj")
    for argv, message in [
        (["run", ""], "empty string"),
        (["run", "01", "-p", "seed", "True"], "seed"),
        (["run", "01", "-p", "seed", "1.5"], "seed"),
        (["run", "01", "--profile", "medium"], "invalid choice"),
    ]:
        try:
            code = main(["--root", str(project.root), *argv])
        except SystemExit as err:  # argparse's own refusal
            code = err.code
        assert code not in (0, None), argv
        assert message in capsys.readouterr().err, argv
    assert not (project.root / "book").exists()


def test_a_quick_run_does_not_replace_a_full_chapter(tmp_path, capsys):
    project = make_project(tmp_path)
    ch = project.chapter("01")
    execute_chapter(project, ch, {"profile": "full", "seed": 0}, log=False)
    before = (project.executed / "01_toy.ipynb").read_bytes()
    assert main(["--root", str(project.root), "run", "01", "--profile", "quick"]) == 1
    assert "full-profile chapter" in capsys.readouterr().err
    assert (project.executed / "01_toy.ipynb").read_bytes() == before
    assert main(["--root", str(project.root), "run", "01", "--profile", "quick", "--force"]) == 0


def test_an_unwritable_book_is_refused_before_running(tmp_path, capsys):
    import os

    if os.geteuid() == 0:  # root writes anywhere: mimic it by a results path that is a file
        project = make_project(tmp_path)
        (project.root / "book").mkdir()
        (project.root / "book" / "results").write_text("not a folder")
        assert main(["--root", str(project.root), "run", "01"]) == 1
        assert "book/results" in capsys.readouterr().err
        return
    project = make_project(tmp_path)
    (project.root / "book" / "chapters").mkdir(parents=True)
    (project.root / "book" / "results").mkdir()
    (project.root / "book" / "results").chmod(0o500)
    try:
        assert main(["--root", str(project.root), "run", "01"]) == 1
        assert "cannot write" in capsys.readouterr().err
    finally:
        (project.root / "book" / "results").chmod(0o700)


def test_runtimes_read_full_runs_and_quick_timings(executed, tmp_path):
    from mmmlib.book.runner import chapter_runtimes

    project, _ = executed
    rows = chapter_runtimes(project)
    assert rows == [{"chapter": "01_toy", "quick_s": None, "full_s": None}]  # book/ holds a quick run
    timings = project.root / "benchmarks" / "results" / "book_quick.json"
    timings.parent.mkdir(parents=True)
    timings.write_text(json.dumps({"quick_s": {"01_toy": 12.5}}))
    assert chapter_runtimes(project)[0]["quick_s"] == 12.5
    write_pages(project)
    page = (project.root / "book" / "reproduce.md").read_text()
    assert "| {doc}`chapters/01_toy` | 0.2 | not measured |" in page
    timings.write_text("{")
    with pytest.raises(ValueError, match="book_quick.json"):
        chapter_runtimes(project)
    timings.unlink()


def test_source_chapters_hold_no_control_characters():
    """A backspace or tab in Markdown is a LaTeX command eaten by a non-raw Python string
    (``\\beta`` -> backspace + 'eta'): MathJax shows an error box instead of the formula."""
    import re as _re

    project = Project(Path(__file__).resolve().parents[1])
    for ch in project.chapters():
        nb = nbformat.read(ch.source, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                bad = _re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\t", cell.source)
                assert bad is None, f"{ch.name} cell {i}: control character {bad.group()!r} in Markdown"


def test_quick_runs_the_named_chapters_into_the_scratch_folder_only(tmp_path, capsys):
    project = make_project(tmp_path / "proj")
    second = nbformat.read(project.chapter("01").source, as_version=4)
    nbformat.write(second, project.sources / "02_other.ipynb")
    out = tmp_path / "scratch"
    assert main(["--root", str(project.root), "quick", "01", "--out", str(out)]) == 0
    assert [p.name for p in (out / "chapters").glob("*.ipynb")] == ["01_toy.ipynb"]
    assert not (project.root / "book").exists()
    assert main(["--root", str(project.root), "quick", "09", "--out", str(out)]) == 1
    assert "no chapter '09'" in capsys.readouterr().err


def test_progress_bars_and_daily_notices_stay_out_of_the_executed_notebook(tmp_path, monkeypatch):
    """tqdm writes rates and elapsed times to stderr: volatile output the book must not show and
    nbval could not compare. The runner starts the kernel with progress bars off."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no ArviZ date stamp: it would print
    project = make_project(tmp_path / "proj")
    ch = project.chapter("01")
    execute_chapter(project, ch, {"profile": "quick", "seed": 3}, log=False)
    nb = nbformat.read(project.executed / f"{ch.name}.ipynb", as_version=4)
    streams = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    assert not [o for o in streams if "toy fit" in o["text"] or "ArviZ" in o["text"]], streams
    assert "TQDM_DISABLE" not in __import__("os").environ  # restored after the run


def test_make_nbval_starts_its_kernel_with_the_runners_environment():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if "--nbval " in x)
    for key, value in KERNEL_ENV.items():
        assert f"{key}={value}" in line, f"make nbval does not set {key}={value}"


def test_quick_runs_chapters_side_by_side_with_the_same_notebooks(tmp_path, capsys):
    """``quick --jobs 2`` runs each chapter in its own process: the notebooks are byte for byte
    those of one job, and a failing chapter is named while the others are still written."""
    from mmmlib.book.runner import _quick_order, run_quick

    project = make_project(tmp_path / "proj")
    second = nbformat.read(project.chapter("01").source, as_version=4)
    second.cells[2].source = second.cells[2].source.replace('"01_toy"', '"02_same"').replace('"ch01.', '"ch02.')
    nbformat.write(second, project.sources / "02_same.ipynb")
    bad = nbformat.read(project.chapter("01").source, as_version=4)
    bad.cells[1].source = bad.cells[1].source.replace("fail = False", "fail = True")
    nbformat.write(bad, project.sources / "03_bad.ipynb")
    timings = project.root / "benchmarks" / "results" / "book_quick.json"
    timings.parent.mkdir(parents=True)
    timings.write_text(json.dumps({"quick_s": {"01_toy": 1.0, "02_same": 5.0}}))
    assert [c.name for c in _quick_order(project, project.chapters())] == ["03_bad", "02_same", "01_toy"]

    one, two = tmp_path / "one", tmp_path / "two"
    ok = [project.chapter("01"), project.chapter("02")]
    assert run_quick(project, ok, one, seed=3, jobs=1) == []
    assert main(["--root", str(project.root), "quick", "--out", str(two), "--seed", "3", "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 chapters failed: 03_bad: chapter 03_bad failed in cell" in err and "boom" in err
    for name in ("01_toy", "02_same"):
        assert (two / "chapters" / f"{name}.ipynb").read_bytes() == (one / "chapters" / f"{name}.ipynb").read_bytes()
    assert not (two / "chapters" / "03_bad.ipynb").exists()
    with pytest.raises(ValueError, match="'jobs'"):
        run_quick(project, ok, two, jobs=0)
    # nbval is handed the notebooks the quick run wrote, longest first; a folder without any is an error
    capsys.readouterr()
    assert main(["--root", str(project.root), "order", str(two)]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == [str(two / "chapters" / "02_same.ipynb"), str(two / "chapters" / "01_toy.ipynb")]
    assert main(["--root", str(project.root), "order", str(tmp_path / "empty")]) == 1
    assert "no executed quick-profile chapters" in capsys.readouterr().err


def test_make_test_runs_quick_chapters_and_nbval_on_the_same_threads():
    """nbval compares a re-execution with the quick run, so both must run on the same thread count."""
    import re as _re

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    quick = next(x for x in makefile.splitlines() if "mmmlib.book quick" in x)
    nbval = next(x for x in makefile.splitlines() if "--nbval " in x)
    threads = [_re.search(r"MMM_THREADS=(\S+)", line) for line in (quick, nbval)]
    assert all(threads) and threads[0].group(1) == threads[1].group(1), (quick, nbval)
    assert "--jobs $(JOBS)" in quick and "-n $(JOBS) --dist loadfile" in nbval
