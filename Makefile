# Developer and CI entry points. `make test` is what .ci/run calls.
#
#   make venv          .venv with torch (CPU) first, then the project with [dev]
#   make system-deps   Debian packages the tests need (scripts/system-packages.txt)
#   make checkov-venv  .venv-checkov: checkov, apart from .venv (its dependencies clash)
#   make lint          ruff check, ruff format --check, mypy
#   make test          system-deps, venv, checkov-venv, lint, pytest on PostgreSQL, then on SQLite
#   make test-postgres only the pytest run on a throwaway PostgreSQL server
#   make test-sqlite   only the non-e2e pytest run on SQLite (the tests that touch a database)
#   make demo          run simulation.demo (DEMO_ARGS are passed through)
#   make clean         remove var/ and demo-output/ (the venv stays)
#   make images        build both container images (needs Docker with BuildKit)
#
# Variables: PYTHON (interpreter for a new venv, default python3.11),
# PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS='-k rounds -x'),
# PYTEST_WORKERS (pytest-xdist workers for both passes, default 2; 0 runs them serially),
# DEMO_ARGS (arguments for the demo), IMAGE_REGISTRY and IMAGE_TAG (image names,
# default registry.example.com and the version in pyproject.toml).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
# Re-run the installs whenever pyproject.toml changes.
STAMP := $(VENV)/.installed
# The CPU build of torch lies on this disk; an unpinned torch (or one resolved
# through another package's range) pulls a multi-GB CUDA build instead.
TORCH_PIN := torch==2.13.0
PIP := $(VPY) -m pip --disable-pip-version-check
# checkov scans the rendered charts (tests/helm/test_chart_validation.py).
CHECKOV_VENV := .venv-checkov
CHECKOV_REQUIREMENTS := scripts/checkov-requirements.txt
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# PySpark (the `spark` extra, ~0.5 GB) only for the tests: tests/bank_node/test_features_spark.py.
SPARK_STAMP := $(VENV)/.installed-spark

PYTEST_ARGS ?=
# Both passes run on both cores: pytest-xdist workers, with tests/xdist_plan.py deciding
# which tests share a worker (a module's live portal, tests/faults' own server), handing
# out the multi-process tests first and giving each worker one BLAS/OpenMP thread.
# Measured (benchmarks/RESULTS.md, "Test suite wall time"; shared cores at load 10-21, so
# not clean): one process had run 1247 of the 1994 PostgreSQL-pass tests in 36 min when
# -n 2 ran all 1994 in 39 min. SQLite pass, back to back at load ~3: 4 min 18 s -> 3 min 12 s.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)
DEMO_ARGS ?=
IMAGE_REGISTRY ?= registry.example.com
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

# Every step prints its duration (and records it for .ci/run's summary).
STEP := bash scripts/step.sh

RUFF := $(STEP) ruff $(VENV)/bin/ruff check .
RUFF_FORMAT := $(STEP) ruff-format $(VENV)/bin/ruff format --check .
MYPY := $(STEP) mypy $(VENV)/bin/mypy
# The whole suite against a real PostgreSQL server: the in-process tests on the xdist
# workers, then the multi-process e2e tests one at a time (each starts a portal and several
# nodes: two at once on 2 cores starved each other past their timeouts, RESULTS.md)...
PYTEST_POSTGRES := $(STEP) pytest-postgres bash scripts/with-postgres.sh $(VPY) -m pytest $(XDIST) \
	-m "not e2e" $(PYTEST_ARGS)
PYTEST_POSTGRES_E2E := $(STEP) pytest-postgres-e2e bash scripts/with-postgres.sh $(VPY) -m pytest \
	-m e2e $(PYTEST_ARGS)
# ...then everything but the multi-process e2e tests on SQLite (the settings'
# default without DATABASE_URL), so that both backends keep working. The tests that touch
# no database ran once already and prove nothing new on SQLite: the folders of them are
# not even collected (CKKS maths, models, charts, benchmarks), and --database-tests-only
# (tests/passes.py) deselects the rest of them, e.g. the bank node's (~780 tests, among
# them tests/bank_node/test_score_stream.py's 15-20 s ones).
SQLITE_SKIP := --ignore=tests/he --ignore=tests/models --ignore=tests/helm --ignore=tests/benchmarks \
	--database-tests-only
PYTEST_SQLITE := $(STEP) pytest-sqlite env -u DATABASE_URL $(VPY) -m pytest $(XDIST) -m "not e2e" $(SQLITE_SKIP) \
	$(PYTEST_ARGS)

.PHONY: help venv spark-venv checkov-venv system-deps lint test test-postgres test-sqlite demo clean \
	images image-portal image-bank-node

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

$(VPY):
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	$(STEP) venv-create $(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(STEP) pip-torch $(PIP) install --quiet $(TORCH_PIN)
	$(STEP) pip-project $(PIP) install --quiet -e '.[dev]'
	@touch $@

spark-venv: $(SPARK_STAMP)

$(SPARK_STAMP): $(STAMP)
	$(STEP) pip-spark $(PIP) install --quiet -e '.[dev,spark]'
	@touch $@

checkov-venv: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): $(CHECKOV_REQUIREMENTS)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	$(STEP) checkov-venv $(PYTHON) -m venv $(CHECKOV_VENV)
	$(STEP) pip-checkov $(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check \
		install --quiet -r $(CHECKOV_REQUIREMENTS)
	@touch $@

system-deps:
	$(STEP) system-deps bash scripts/install-system-deps.sh

lint: venv
	$(RUFF)
	$(RUFF_FORMAT)
	$(MYPY)

# One recipe, so the steps run in this order even under `make -j`.
test: system-deps venv spark-venv checkov-venv
	$(RUFF)
	$(RUFF_FORMAT)
	$(MYPY)
	$(PYTEST_POSTGRES)
	$(PYTEST_POSTGRES_E2E)
	$(PYTEST_SQLITE)

test-postgres: system-deps venv spark-venv checkov-venv
	$(PYTEST_POSTGRES)
	$(PYTEST_POSTGRES_E2E)

test-sqlite: venv spark-venv checkov-venv
	$(PYTEST_SQLITE)

demo: venv
	$(VPY) -m simulation.demo $(DEMO_ARGS)

clean:
	rm -rf var/ demo-output/

images: image-portal image-bank-node

# Names match the charts' image.repository defaults (consortium/portal, consortium/bank-node).
image-portal image-bank-node: image-%:
	DOCKER_BUILDKIT=1 docker build -f docker/$*.Dockerfile \
		-t $(IMAGE_REGISTRY)/consortium/$*:$(IMAGE_TAG) .
