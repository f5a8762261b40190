# exec-router: every target builds what it needs, starting from a bare clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed
export PYO3_PYTHON := $(PY)
# cargo test embeds the interpreter; let the test binary find libpython.
PYLIBDIR = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')


.PHONY: help install dev build-dev build-prod test test-rust test-python lint format bench \
	bench-sim simulate fuzz fuzz-rust clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=25.1"
	$(PY) -m pip install --quiet --group dev
	touch $@

install: $(STAMP)  ## create .venv with the pinned build and test dependencies

build-dev: $(STAMP)  ## editable install with the quick `fast` profile
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --profile fast

dev: build-dev  ## alias of build-dev

build-prod: $(STAMP)  ## release wheel (fat LTO) into dist/, installed into .venv
	rm -rf dist
	$(VENV)/bin/maturin build --release --interpreter $(PY) --out dist
	$(PY) -m pip install --quiet --force-reinstall --no-deps dist/*.whl

test-rust: $(STAMP)  ## cargo test
	LD_LIBRARY_PATH=$(PYLIBDIR) cargo test --quiet

test-python: $(STAMP)  ## pytest against whatever exec_router is installed, plus a bench smoke run
	$(PY) -m pytest
	BENCH_MAX_N=10000 $(PY) -m pytest benches --benchmark-disable -q -p no:cacheprovider

test: build-prod test-rust test-python  ## build and install the release wheel, then cargo test and pytest

lint: $(STAMP)  ## ruff, mypy, stubtest, rustfmt, clippy
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) --no-print-directory build-dev
	$(PY) -m mypy.stubtest exec_router._core --allowlist .stubtest-allowlist

format: $(STAMP)  ## apply ruff format and rustfmt
	$(VENV)/bin/ruff check --fix python tests benches
	$(VENV)/bin/ruff format python tests benches
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

# The simulator needs an importable core: build it once, again only when the Rust changes.
SIM_STAMP := $(VENV)/.sim-built
$(SIM_STAMP): $(STAMP) Cargo.toml Cargo.lock $(wildcard rust/*.rs)
	$(MAKE) --no-print-directory build-dev
	touch $@

simulate: $(SIM_STAMP)  ## compare the execution styles on a synthetic day (ARGS="--help")
	$(PY) -m exec_router simulate $(ARGS)

bench-sim: $(SIM_STAMP)  ## simulator speed: a 10M-row bookTicker file and a 27-config sweep
	$(PY) benches/bench_sim.py

clean:  ## remove build output and the venv
	rm -rf target fuzz/target dist $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
