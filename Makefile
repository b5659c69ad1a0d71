# Two commands on a fresh machine (Python 3.11, package registries only):
#   make demo   - install, make a sample talk with speech, run the job through Dagster, print the result
#   make test   - install, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export VIDEO_ASSETS_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: install system-deps demo test ui bench lint

# torch goes first and pinned: 2.13.0 is a CPU build on local disk; anything that admits a newer
# release would pull several GB of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed system-deps

# espeak-ng speaks the sample videos of the demo and the tests;
# chromium runs the search page's browser test (Playwright drives Debian's build; it downloads none).
system-deps:
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng >/dev/null; fi; }
	@[ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

demo: install
	$(VENV)/bin/video-assets demo

test: install
	$(PY) -m pytest

ui: install
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/ || true
	$(VENV)/bin/dagster dev -w workspace.yaml

bench: install
	$(PY) benchmarks/bench_foundation.py

lint: install
	$(VENV)/bin/ruff check video_assets video_assets_tests benchmarks
