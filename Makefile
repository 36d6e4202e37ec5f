# genre-vit: `make train` and `make test` set up .venv on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lint train test bench tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with dev extras (no-op when current)

train: install  ## train with the default config; pass overrides as ARGS="fold=1 optim.lr=1e-4"
	$(BIN)/python -m genre_vit.train $(ARGS)

lint: install  ## ruff: pyflakes, pycodestyle, import order, bugbear, pyupgrade (settings in pyproject.toml)
	$(BIN)/ruff check genre_vit tests

test: lint  ## lint, then run the test suite, one worker per core (pytest-xdist); ARGS="-m 'not slow'" skips the slow ones
	$(BIN)/python -m pytest -n auto --dist worksteal $(ARGS)

bench: install  ## benchmark (one JSON object); ARGS="bench.quick=true" for a quick run
	$(BIN)/python -m genre_vit.bench $(ARGS)

tensorboard: install  ## open TensorBoard on every run under outputs/
	$(BIN)/tensorboard --logdir outputs

clean:  ## remove run outputs, caches, build outputs and the virtual environment
	rm -rf $(VENV) outputs/runs outputs/multiruns outputs/cache .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
