# The two commands of the README: `make demo` runs aedfleet, `make test` checks it.
# Both set up what they need first (Debian packages, a virtualenv in .venv).
VENV ?= .venv
BIN := $(VENV)/bin
CABINETS ?= 5000

.PHONY: setup demo test lint typecheck unit unit-pure bench-sim bench-ingest bench-dispatch score-detection schemas docs

setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/aedfleet demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup
	PYTHONPATH=. $(BIN)/pytest -q

test: lint typecheck unit

# The tests that need no server, less the few slow ones: the loop while coding
# (docs/testing.md describes the tiers and their markers).
unit-pure: setup
	PYTHONPATH=. $(BIN)/pytest -q -m "pure and not slow"

schemas: setup
	$(BIN)/aedfleet contract export-schemas

# The configuration reference in docs/configuration.md, from the settings models.
docs: setup
	PYTHONPATH=. $(BIN)/python -m aedfleet_app.config_docs

# How many simulated cabinets one process sustains (a benchmark, not a test).
bench-sim: setup
	PYTHONPATH=. $(BIN)/python benchmarks/sim_capacity.py --cabinets $(CABINETS)

# Ingest throughput against bare-MQTT and raw-InfluxDB baselines, with a profile.
MESSAGES ?= 100000
bench-ingest: setup
	PYTHONPATH=. $(BIN)/python benchmarks/ingest_throughput.py --messages $(MESSAGES)

# Door-open -> command-centre latency, idle and while the ingest drains a backlog.
# DISPATCH="--prioritise" for the deployment docs/dispatch.md recommends.
DOORS ?= 1000
BACKLOG ?= 200000
DISPATCH ?=
bench-dispatch: setup
	PYTHONPATH=. $(BIN)/python benchmarks/dispatch_latency.py --events $(DOORS) --backlog $(BACKLOG) $(DISPATCH)

# Detection score: every injected fault paged to its captain, no page without a fault, in
# time; fails when a goal is missed. DETECTION="--cabinets 50 --quick" for a smoke run.
DETECTION ?=
score-detection: setup
	PYTHONPATH=. $(BIN)/python benchmarks/detection_score.py $(DETECTION)
