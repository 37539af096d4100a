# Set-up and entry points. `make run` = the main job, `make test` = the default test run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-slow test-deployment test-all check-wheel bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel first: a looser torch pin would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m fedxalign.simulations.run

test: $(STAMP)
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

test-deployment: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -m deployment

check-wheel: $(STAMP)
	.ci/check-wheel

test-all: $(STAMP)
	$(BIN)/pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_server.py
	$(BIN)/python benchmarks/bench_clientapp.py
	$(BIN)/python benchmarks/bench_poisoning.py
	$(BIN)/python benchmarks/bench_audit.py

clean:
	rm -rf $(VENV) .cache results outputs data/generated
