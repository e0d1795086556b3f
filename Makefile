# mmm-thesis: two commands, `make book` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCRATCH := scratch
CH ?=
PROFILE ?=
SEED ?=
export MMM_THREADS ?= 2
# make test runs independent work side by side: JOBS processes of one thread each (the book's fits
# gain little from a second thread). pytest-xdist hands out whole files in the order given (the
# slowest unit-test file, a Pyro NUTS run, sorts early), so the last file to finish is a short one.
JOBS ?= 2
export PYTHONHASHSEED := 0
export TQDM_DISABLE := 1

.PHONY: help venv peers-lwmm book test unit bench chapters-check chapters-quick nbval html book-tests browser-deps chapter status pages lock lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(STAMP): requirements.lock requirements-peers.lock requirements-test.lock pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v[:2] == (3, 11) and v >= (3, 11, 5) else "mmm-thesis needs Python 3.11.5+ 3.11.x as python3 (found %s); set PYTHON=..." % sys.version.split()[0])'
	@echo "==> setting up $(VENV) from requirements.lock"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade "pip>=23.2"
	@$(PY) -m pip install --quiet --no-input -r requirements.lock
	@$(PY) -m pip install --quiet --no-input --no-deps -r requirements-peers.lock
	@$(PY) -m pip install --quiet --no-input --no-deps -r requirements-test.lock
	@$(PY) -m pip install --quiet --no-input --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "==> $(VENV) ready ($$(du -sh $(VENV) | cut -f1))"

venv: $(STAMP)  ## create .venv from the lock file (done by book and test)

LWMM_VENV := .venv-lwmm
LWMM_STAMP := $(LWMM_VENV)/.installed

$(LWMM_STAMP): requirements-lwmm.lock
	@echo "==> setting up $(LWMM_VENV): LightweightMMM 0.1.9 and its 2023 stack (about 2.5 GB)"
	@test -x $(LWMM_VENV)/bin/python || $(PYTHON) -m venv $(LWMM_VENV)
	@$(LWMM_VENV)/bin/python -m pip install --quiet --no-input -r requirements-lwmm.lock
	@touch $(LWMM_STAMP)

peers-lwmm: $(LWMM_STAMP)  ## the LightweightMMM 0.1.9 environment that Chapter 1 compares against (full profile)

book: $(STAMP)  ## re-execute stale chapters and build the HTML in _build/html
	@$(PY) -m mmmlib.book check >/dev/null 2>&1 || $(MAKE) --no-print-directory peers-lwmm  # chapter 1 (full) fits the original
	@echo "==> executing stale chapters"
	@$(PY) -m mmmlib.book stale
	@$(MAKE) --no-print-directory html
	@echo "==> the book is at $(CURDIR)/_build/html/index.html"

pages: $(STAMP)
	@$(PY) -m mmmlib.book pages

html: pages  ## build the HTML from the executed chapters (warnings are errors)
	@echo "==> jupyter-book build -W -n --keep-going"
	@$(VENV)/bin/jupyter-book build -W -n --keep-going --quiet . 

test: $(STAMP)  ## unit tests, quick chapters under nbval, strict book build, HTML checks
	@start=$$(date +%s); \
	for stage in lint unit chapters-check chapters-quick nbval html browser-deps book-tests; do \
	  t0=$$(date +%s); $(MAKE) --no-print-directory $$stage || exit 1; \
	  echo "==> $$stage took $$(( $$(date +%s) - t0 )) s"; \
	done; \
	echo "==> make test passed in $$(( $$(date +%s) - start )) s"

unit: $(STAMP)
	@echo "==> unit tests"
	@MMM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --dist loadfile --no-loadscope-reorder -m "not book" tests

chapters-check: $(STAMP)
	@echo "==> executed chapters in book/ are fresh"
	@$(PY) -m mmmlib.book check

chapters-quick: $(STAMP)
	@echo "==> every chapter at profile=quick into $(SCRATCH)/"
	@rm -rf $(SCRATCH) && mkdir -p $(SCRATCH)
	@MMM_THREADS=1 $(PY) -m mmmlib.book quick --out $(SCRATCH) --jobs $(JOBS)

nbval: $(STAMP)
	@echo "==> nbval: re-executing the quick chapters and comparing outputs"
	@notebooks="$$($(PY) -m mmmlib.book order $(SCRATCH))"; \
	MMM_THREADS=1 TQDM_DISABLE=1 PYTHONWARNINGS=ignore::FutureWarning:arviz $(PY) -m pytest -q -n $(JOBS) --dist loadfile --no-loadscope-reorder --nbval $$notebooks --nbval-sanitize-with tests/sanitize.cfg

browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing Debian's chromium for the browser check"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || { echo "apt-get could not install chromium" >&2; exit 1; }; \
	  else echo "==> chromium not found and cannot be installed here: the browser check will be skipped"; fi; \
	fi

book-tests: $(STAMP)
	@echo "==> checks on the built HTML (glued numbers, titles, headless browser)"
	@$(PY) -m pytest -q -m book tests

chapter: $(STAMP)  ## rerun one chapter into book/: make chapter CH=00 PROFILE=full SEED=0
	@test -n "$(CH)" || (echo "usage: make chapter CH=00 [PROFILE=full] [SEED=0]" >&2; exit 2)
	@$(PY) -m mmmlib.book run $(CH) $(if $(PROFILE),--profile $(PROFILE)) $(if $(SEED),--seed $(SEED))

status: $(STAMP)  ## each chapter's profile, seed, runtime and staleness
	@$(PY) -m mmmlib.book status

lock:  ## re-resolve requirements.lock from pyproject.toml in a fresh venv
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet ".[book,dev]"
	( echo "# Exact versions of everything the book runs on (Python 3.11). Regenerate with 'make lock'."; \
	  echo "# torch 2.13.0 is the CPU build where pip finds one (see README)."; \
	  .lockvenv/bin/pip freeze --exclude-editable | grep -v '^mmmlib' | grep -v -i -E '^(execnet|pytest-xdist)==' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > requirements.lock
	( sed -n '/^#/p' requirements-test.lock; .lockvenv/bin/pip freeze | grep -i -E '^(execnet|pytest-xdist)==' ) > requirements-test.lock.new
	mv requirements-test.lock.new requirements-test.lock
	rm -rf .lockvenv

bench: $(STAMP)  ## record the benchmarks in benchmarks/results/ (about 45 min; not part of test)
	@$(PY) benchmarks/bench_bayes.py --out benchmarks/results/bayes.json
	@$(PY) benchmarks/bench_geo.py --out benchmarks/results/geo.json
	@$(PY) benchmarks/bench_cli.py --out benchmarks/results/cli.json
	@$(PY) benchmarks/bench_diffusion.py --out benchmarks/results/diffusion.json
	@$(PY) benchmarks/bench_book.py --out benchmarks/results/book_quick.json

lint: $(STAMP)  ## ruff on the package, tests and notebooks
	@echo "==> ruff"
	@$(VENV)/bin/ruff check --quiet mmmlib tests chapters benchmarks

clean:  ## remove build outputs (keeps .venv and book/)
	rm -rf _build $(SCRATCH) book/.stage-*
