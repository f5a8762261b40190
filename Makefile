# exec-router: every target builds what it needs, starting from a bare clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON ?= python3
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed
export PYO3_PYTHON := $(PY)
# The venv first on PATH: `maturin --zig` runs `python -m ziglang` from it.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# build_backend/ wraps maturin's backend: maturin need not warn that it is not named "maturin".
export MATURIN_NO_MISSING_BUILD_BACKEND_WARNING := 1
# pip >= 25.1 reads [dependency-groups] (`pip install --group`).
PIP_MIN := pip>=25.1
PIP := $(PY) -m pip --disable-pip-version-check
# cargo test embeds the interpreter; let the test binary find libpython.
PYLIBDIR = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')


.PHONY: help install dev build-dev build-prod test test-rust test-python test-matrix lint \
	format bench bench-sim simulate fuzz fuzz-rust msrv clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "$(PIP_MIN)"
	$(PIP) install --quiet --group dev
	touch $@

install: $(STAMP)  ## create .venv with the pinned build and test dependencies

build-dev: $(STAMP)  ## editable install with the quick `fast` profile
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --profile fast

dev: build-dev  ## alias of build-dev

WHEEL_TAG := manylinux_2_17

build-prod: $(STAMP)  ## release wheel (fat LTO, stripped, manylinux_2_17 via zig) into dist/, installed into .venv
	rm -rf dist
	$(VENV)/bin/maturin build --release --strip --zig --compatibility $(WHEEL_TAG) \
		--interpreter $(PY) --out dist
	$(PIP) install --quiet --force-reinstall --no-deps dist/*.whl

test-rust: $(STAMP)  ## cargo test
	LD_LIBRARY_PATH=$(PYLIBDIR) cargo test --quiet

test-python: $(STAMP)  ## pytest against whatever exec_router is installed, plus a bench smoke run
	EXEC_ROUTER_WHEEL="$(wildcard dist/*.whl)" EXEC_ROUTER_WHEEL_TAG=$(WHEEL_TAG) $(PY) -m pytest
	BENCH_MAX_N=10000 $(PY) -m pytest benches --benchmark-disable -q -p no:cacheprovider

test: build-prod test-rust test-python  ## build and install the release wheel, then cargo test and pytest

MATRIX ?= 3.10 3.13

test-matrix:  ## the Python suite on each of MATRIX (python3.10, python3.13): own venv, dev group, fast build
	set -e; for v in $(MATRIX); do \
	  echo "== Python $$v"; \
	  py=$$(PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep -E "^$$v\.[0-9]+$$" | tail -1) \
	    pyenv which python$$v 2>/dev/null || command -v python$$v); \
	  $(MAKE) --no-print-directory VENV=.venv-$$v PYTHON=$$py build-dev; \
	  .venv-$$v/bin/python -m pytest -q -p no:cacheprovider -x; \
	done

msrv:  ## cargo check with the declared minimum Rust (rust-version in Cargo.toml)
	cargo +$$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) check --all-targets --locked

lint: $(STAMP)  ## ruff, mypy (package and a user script), stubtest, workflow schema, rustfmt, clippy
	$(VENV)/bin/ruff check python tests benches build_backend
	$(VENV)/bin/ruff format --check python tests benches build_backend
	$(VENV)/bin/mypy
	MYPYPATH=python $(VENV)/bin/mypy --strict tests/typing/user_script.py
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) --no-print-directory build-dev
	$(PY) -m mypy.stubtest exec_router._core --allowlist .stubtest-allowlist

format: $(STAMP)  ## apply ruff format and rustfmt
	$(VENV)/bin/ruff check --fix python tests benches build_backend
	$(VENV)/bin/ruff format python tests benches build_backend
	cargo fmt

BENCH_JSON := .benchmarks/latest.json

bench: build-prod  ## benchmarks on the release build: medians and ratios vs pure (LEGACY=path/to/exec_router.py adds a legacy column)
	mkdir -p $(dir $(BENCH_JSON))
	BENCH_LEGACY="$(LEGACY)" $(PY) -m pytest benches --benchmark-only --benchmark-json=$(BENCH_JSON) -q
	@echo
	$(PY) benches/report.py $(BENCH_JSON)
	@echo
	$(PY) benches/footprint.py
	@echo
	$(PY) benches/import_time.py
	@if [ -n "$(LEGACY)" ]; then echo; $(PY) benches/legacy_ratio.py "$(LEGACY)" --rounds 1000; fi

FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS ?= 120

fuzz: $(STAMP)  ## long fuzz: FUZZ_EXAMPLES hypothesis examples, then fuzz-rust if cargo-fuzz is installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/differential/test_fuzz.py -q -p no:cacheprovider
	@if cargo fuzz --version >/dev/null 2>&1; then $(MAKE) --no-print-directory fuzz-rust; \
	else echo "cargo-fuzz not installed (cargo install cargo-fuzz): skipping fuzz-rust"; fi

fuzz-rust:  ## model-check rust/index.rs and rust/pricing.rs: cargo test, then cargo-fuzz FUZZ_SECONDS per target
	cd fuzz && cargo test --release --quiet
	cd fuzz && for target in index_model pricing; do \
	  cargo +nightly fuzz run -O $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# `make simulate` from a bare clone: only maturin and the sim libraries, quietly, one line per
# step, logs in .venv/*.log. Everything that can overlap does: cargo starts on the proc-macro
# crates (the build's critical path) while pip installs maturin (the `backend` group's pin),
# then maturin builds (profile first-run) while pip fetches numpy, pyarrow and rich.
SIM_STAMP := $(VENV)/.sim-built
MATURIN_PIN := $(shell sed -n 's/^backend = \["\(maturin==[^"]*\)"\]/\1/p' pyproject.toml)

$(SIM_STAMP): pyproject.toml Cargo.toml Cargo.lock $(wildcard rust/*.rs) \
		$(shell find python -name "*.py" -o -name "*.pyi")
	@echo "exec-router: [1/3] creating $(VENV) with maturin"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -rf $(VENV)/wheel; \
	cargo build --profile first-run -p pyo3-macros > $(VENV)/build.log 2>&1 & macros=$$!; \
	$(PIP) install --quiet "$(MATURIN_PIN)" > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }; \
	echo "exec-router: [2/3] building the Rust core (cargo, about a minute) and installing numpy, pyarrow, rich"; \
	{ $(PIP) install --quiet --upgrade "$(PIP_MIN)" && $(PIP) install --quiet --no-compile --group sim; } \
		>> $(VENV)/pip.log 2>&1 & pip=$$!; \
	wait $$macros; \
	$(VENV)/bin/maturin build --profile first-run --interpreter $(PY) --out $(VENV)/wheel \
		>> $(VENV)/build.log 2>&1 || { cat $(VENV)/build.log; exit 1; }; \
	wait $$pip || { cat $(VENV)/pip.log; exit 1; }
	@$(PIP) install --quiet --force-reinstall --no-deps $(VENV)/wheel/*.whl
	@touch $@

simulate: $(SIM_STAMP)  ## compare the execution styles on a synthetic day (ARGS="--help")
	@echo "exec-router: [3/3] exec-router simulate $(ARGS)"
	@$(PY) -m exec_router simulate $(ARGS)

bench-sim: $(STAMP)  ## simulator speed: 10M-line capture, 10M-row Tardis quotes and bookTicker files, a sweep
	$(MAKE) --no-print-directory build-dev
	$(PY) benches/bench_sim.py

clean:  ## remove build output and the venvs
	rm -rf target fuzz/target dist $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
