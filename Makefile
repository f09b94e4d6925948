# Pocket Studio — `make demo` installs and stylizes the built-in scene; `make test` installs and runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
OUT ?= outputs/demo

.PHONY: install system-deps demo studio test test-all bench lint clean

# open3d needs libusb at import time; the browser tests drive Debian's chromium.
SYSTEM_PACKAGES := libusb-1.0-0 libgomp1 chromium

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel setuptools
	$(PIP) install -e '.[test]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/pocket-studio stylize --scene builtin --object cube --style assets/styles/mosaic.png \
	  --object sphere --style assets/styles/waves.png --out $(OUT) --overwrite

studio: install
	$(PY) app.py

test: install
	$(VENV)/bin/pytest -m "not slow and not gpu"

test-all: install
	$(VENV)/bin/pytest

bench: install
	$(PY) bench/bench_cache.py
	$(PY) bench/bench_headline.py
	$(PY) bench/bench_s2rf_baseline.py
	$(PY) bench/bench_t2i.py --json bench/results/t2i.json

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs .pytest_cache
