# The two commands a user needs:  `make run`  and  `make check`.
PYTHON ?= python3
# The CPU build that lies on this kind of machine; override for CUDA elsewhere, e.g.
#   make run TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run check lint test bench bench-scaling bench-shards bench-crowd bench-peer soak clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Install everything and fetch the default model (idempotent).
setup: $(STAMP)
	$(BIN)/python -m model_service.fetch

# Run the bot: Discord when DISCORD_TOKEN is set, else the local playground.
run: setup
	$(BIN)/python bot.py $(ARGS)

# Every check CI runs: lint, format, the import layers (pyproject's import-linter contracts), the Dockerfile, types, tests. The storage tests run on SQLite and on PostgreSQL:
# scripts/test-postgres finds a server (or installs and starts Debian's, as root) and exports
# TEST_DATABASE_URL; without one, pytest's summary says why the Postgres tests were skipped.
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/hadolint Dockerfile
	$(BIN)/mypy
	scripts/test-postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.throughput $(ARGS)

# 1 to 64 requests at once through the bot and through llama-server: a table and docs/scaling.png.
bench-scaling: setup
	$(BIN)/python -m benchmarks.scaling --plot docs/scaling.png $(ARGS)

# Transcord beside llmcord (jakobdylanc/llmcord, in a venv of its own under data/peer/), 1 and 8 at once.
bench-peer: setup
	$(BIN)/python -m benchmarks.peer $(ARGS)

# A crowd: 24 at once in one channel and 1 in another; 64 from 16 channels, fair against first come.
bench-crowd: setup
	$(BIN)/python -m benchmarks.crowd $(ARGS)

# Two bot processes on two shards, one PostgreSQL, one llama-server: their throughput vs the server's.
bench-shards: setup
	scripts/test-postgres $(BIN)/python -m benchmarks.shards $(ARGS)

# A day in the life: members on two shards, PostgreSQL, llama-server, faults on a schedule (30 minutes;
# ARGS=--quick: 3). A report in docs/soak.md and docs/soak.png.
soak: setup
	scripts/test-postgres $(BIN)/python -m benchmarks.soak $(ARGS)

clean-venv:
	rm -rf $(VENV)
