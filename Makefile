# Image Browser: `make dev` runs the whole stack locally, `make test` runs every test,
# `make bench` writes BENCHMARKS.md. Each installs what it needs first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?=
SCALE  ?=
# Local-stack installs (embedded Postgres, moto, uvicorn); tests and the test model add torch & co.
STAMP_LOCAL := $(VENV)/.stamp-local
STAMP_DEV   := $(VENV)/.stamp-dev
NODE_STAMP  := infra/node_modules/.stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: dev test test-unit bench lint chromium fonts test-model clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# shared/dev/install.py installs with uv (11 s for the dev extras, against pip's 54 s), pip where uv cannot.
# Neither compiles up front: Python compiles what a run imports, not all of torch (half pip's install time).
# That needs Python to keep what it compiles: a PYTHONDONTWRITEBYTECODE from the environment (set on some CI
# machines) would make every process compile torch, FastAPI and boto3 again (9 s of a test model's 15-s build).
unexport PYTHONDONTWRITEBYTECODE
$(STAMP_LOCAL): pyproject.toml | $(VENV)/bin/python
	$(PY) shared/dev/install.py local
	touch $@

# torch is pinned to 2.13.0 and torchvision to its matching 0.28.0 in pyproject (CPU build), so
# open_clip_torch installs with its dependencies and pulls no other torch. One install for both extras
# (it also covers what STAMP_LOCAL stands for).
$(STAMP_DEV): pyproject.toml | $(VENV)/bin/python
	$(PY) shared/dev/install.py local,dev
	touch $(STAMP_LOCAL) $@

$(NODE_STAMP): infra/package.json infra/package-lock.json
	npm ci --prefix infra --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests drive Debian's Chromium (never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The OCR tests and benchmark render signs and receipts with Debian's fonts.
FONT_FILES := /usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf
fonts:
	@ls $(FONT_FILES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $(SUDO) apt-get install -y -qq fonts-dejavu-core fonts-dejavu-extra fonts-liberation >/dev/null; }

ifneq ($(filter test test-dynamic,$(MODEL)),)
DEV_DEPS := $(STAMP_DEV)
DEV_ENV  := IB_MODEL=$(MODEL)
else
DEV_DEPS := $(STAMP_LOCAL)
DEV_ENV  := $(if $(MODEL),IB_MODEL=$(MODEL),)
endif

dev: $(DEV_DEPS)
	$(DEV_ENV) $(PY) -m shared.dev.stack

# Every tier: tests/unit (no started services), integration (PostgreSQL, moto), e2e (make dev, browser), deploy.
# Two workers, a file each: the stack and browser tests mostly wait, so they overlap well. Files go out in
# tests/conftest.py's order, longest tier first (xdist would start with the files of most tests, the quick unit
# ones, and leave a worker alone with the slow stack tests at the end).
test: $(STAMP_DEV) $(NODE_STAMP) chromium fonts
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The fast tier: no PostgreSQL, no moto, no browser (under a minute).
test-unit: $(STAMP_DEV) fonts
	$(PY) -m pytest tests/unit

# `make bench SCALE=1m` adds the 1,000,000-image search point (about 15 minutes more).
bench: $(STAMP_DEV) fonts
	SCALE=$(SCALE) $(PY) -m bench.run

test-model: $(STAMP_DEV)
	$(PY) -m shared.dev.model_builder .cache/test-models/manual

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .cache infra/node_modules test-artifacts
