# The two commands of the README: `make up` starts Propylon, `make test` runs every check.
# Both create the virtual environment and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

COMPILED := .venv-compiled
CSTAMP   := $(COMPILED)/.installed

.PHONY: up demo test test-compiled compiled lint typecheck bench hot-path clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Propylon needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

up: $(STAMP)
	$(BIN)/propylon up

# The seeded flow, headless, against a running `make up` (another terminal).
demo: $(STAMP)
	$(BIN)/propylon demo

# The real third-party OpenID provider of the integration tests (npm oidc-provider, pinned by the
# lock file; tests/support/oidc_provider.py starts it). Needs node and npm.
OIDC_DIR   := tests/support/oidc_provider
OIDC_STAMP := $(OIDC_DIR)/node_modules/.installed

$(OIDC_STAMP): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	npm ci --prefix $(OIDC_DIR) --no-audit --no-fund
	@touch $@

test: $(STAMP) $(OIDC_STAMP)
	$(BIN)/ruff check src tests benchmarks setup.py
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The gateway's hot path compiled with mypyc, in its own virtual environment (non-editable, so the
# compiled modules are what runs). `make test-compiled` runs the data-plane suites against it.
$(CSTAMP): pyproject.toml setup.py $(shell find src -name '*.py')
	# build/ would otherwise keep extensions of modules no longer compiled, and they get packaged.
	rm -rf $(COMPILED) build
	$(PYTHON) -m venv $(COMPILED)
	$(COMPILED)/bin/python -m pip install --quiet --upgrade pip
	$(COMPILED)/bin/python -m pip install --quiet 'setuptools>=69' wheel
	# dependencies first: mypyc type-checks against them (and the pydantic mypy plugin)
	$(COMPILED)/bin/python -m pip install --quiet '.[test]'
	PROPYLON_COMPILE=1 $(COMPILED)/bin/python -m pip install --quiet --no-build-isolation \
		--no-deps --force-reinstall .
	@touch $@

compiled: $(CSTAMP)

test-compiled: $(CSTAMP)
	PROPYLON_EXPECT_COMPILED=1 $(COMPILED)/bin/python -m pytest -p no:cacheprovider \
		tests/gateway tests/policy tests/jwt tests/analytics tests/architecture/test_compiled.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks setup.py

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) $(CSTAMP)
	$(BIN)/python benchmarks/gateway.py --propylon $(COMPILED)/bin/propylon

hot-path: $(STAMP)
	$(BIN)/python benchmarks/hot_path.py

clean:
	rm -rf $(VENV) $(COMPILED) build .mypy_cache .ruff_cache .pytest_cache .propylon test-artifacts \
		$(OIDC_DIR)/node_modules
