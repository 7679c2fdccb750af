# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve standin test chromium check lint format typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# byte-compile the package once: with PYTHONDONTWRITEBYTECODE set, every command
	# would otherwise compile it afresh (about 0.2 s per `clvflow` call)
	$(BIN)/python -m compileall -q src flows > /dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clvflow demo

# Prefect server (started or found) + every deployment of prefect.yaml served + the web app
serve: $(STAMP)
	$(BIN)/clvflow serve

# the local SendGrid stand-in on port 8025 with key SG.local; more flags through ARGS,
# e.g. make standin ARGS="--rate-429 0.1" (ARGS=--help lists them)
standin: $(STAMP)
	PYTHONPATH=tests $(BIN)/python -m fakes.sendgrid_standin --port 8025 --key SG.local $(ARGS)

# every test, a test file at a time on each of TEST_WORKERS processes (0: in this process);
# PYTEST_ARGS="-m 'not slow'" skips the slow ones
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# Debian's headless Chromium and its driver, for the console's browser tests
# (tests/test_console_browser.py skips without them); installed once, quietly
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then \
		$(SUDO) apt-get update -qq > /dev/null && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver > /dev/null; \
	fi

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check src tests bench flows
	$(BIN)/ruff format --check src tests bench flows

format: $(STAMP)
	$(BIN)/ruff format src tests bench flows
	$(BIN)/ruff check --fix src tests bench flows

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf outbox previews .clvflow data .pytest_cache .mypy_cache .ruff_cache
