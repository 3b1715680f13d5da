# Two entry points, each creating .venv if absent: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/expansion: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,spark]'
	touch $@

.PHONY: install browser demo test lint bench
install: $(BIN)/expansion

# The report's browser tests drive Debian's Chromium; as root, install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: sudo apt-get install chromium (browser tests will be skipped)"; \
	  fi; }

demo: install
	$(BIN)/expansion demo --out demo-out

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/vulture

test: lint browser
	$(BIN)/python -m pytest -q -n 3 --dist loadfile
