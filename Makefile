# privgate: `make run` runs the pipeline on the bundled demo data; `make test` runs the tests.
# Both create or refresh the virtualenv first.

.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.privgate-installed
FLOWER_VENV ?= .venv-flower

.PHONY: help install run test test-fast lint bench bench-orchestration bench-dp bench-audit bench-audit-power bench-pii bench-kanon bench-sweep bench-federated bench-encrypted clean-state

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# torch first, pinned: the local CPU wheel. An unpinned torch pulls GBs of CUDA.
# Flower's own environment beside it (infra/flower/requirements.txt says why).
$(STAMP): pyproject.toml infra/flower/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(FLOWER_VENV)/bin/python -m pip install --quiet -r infra/flower/requirements.txt
	$(FLOWER_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(BIN)/privgate prepare
	touch $(STAMP)

install: $(STAMP) ## create or refresh the virtualenvs (.venv, and .venv-flower for Flower)

run: $(STAMP) ## write the demo data, then run the privacy-gated pipeline on it
	$(BIN)/privgate demo-data
	$(BIN)/privgate run

test: $(STAMP) ## run the whole test suite (unit, config, flow and end-to-end)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## run the unit and config tests (no end-to-end or server tests)
	$(BIN)/python -m pytest -m "not e2e and not server"

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: bench-orchestration bench-dp bench-audit bench-audit-power bench-pii bench-kanon bench-sweep bench-federated bench-encrypted ## all benchmarks

bench-orchestration: $(STAMP) ## Prefect + MLflow overhead over plain stage calls
	$(BIN)/python benchmarks/orchestration.py

bench-dp: $(STAMP) ## DP-SGD vs non-private epoch time and accuracy, full Adult
	$(BIN)/python benchmarks/dp_training.py

bench-audit: $(STAMP) ## attacks, canary audit and a LiRA-64 yardstick, full Adult
	$(BIN)/python benchmarks/audit.py

bench-audit-power: $(STAMP) ## white-box audit vs planted DP breaches, 20 seeds, full Adult
	$(BIN)/python benchmarks/audit_power.py

bench-pii: $(STAMP) ## PII scan, anonymize, verify at 1M rows; redaction vs naive Presidio
	$(BIN)/python -u benchmarks/pii.py

bench-kanon: $(STAMP) ## optimal k-anonymity search vs brute force, 8 QIs, full Adult
	$(BIN)/python benchmarks/kanon.py

bench-sweep: $(STAMP) ## privacy-utility sweep, 5 x 3 grid, parallel vs one after another
	$(BIN)/python benchmarks/sweep.py

bench-federated: $(STAMP) ## federated DP (SecAgg+, plain FedAvg) vs central DP, 3 and 10 silos
	$(BIN)/python -u benchmarks/federated.py

bench-encrypted: $(STAMP) ## CKKS encrypted scoring vs plaintext: latency, records/s, bytes, agreement
	$(BIN)/python -u benchmarks/encrypted_inference.py

clean-state: ## delete run state under ./.privgate (models, runs, keys, demo data)
	rm -rf .privgate
