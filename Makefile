# komoju-airflow developer commands. Every target sets itself up: a .venv with pinned installs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: help install browser demo up down test test-reliability test-deploy bench lint format constraints clean ui ui-test ui-check

help:
	@echo "make demo         the three jobs on demo data: local PostgreSQL, KOMOJU emulator, SMTP sink (.local/)"
	@echo "make up           the same services plus airflow standalone: the UI at http://localhost:8080"
	@echo "make down         stop exactly what make up started"
	@echo "make test         ruff, then the whole test suite (sets up .venv and finds or starts PostgreSQL)"
	@echo "make test-reliability  the slower reliability suite (crashes, concurrent runs, faults; docs/reliability.md)"
	@echo "make test-deploy  the deployment runs: the cancel DAG under CeleryExecutor, the init (tests/deploy; docs/deploy.md)"
	@echo "make bench        the parse/throughput/memory/idle-and-scale benchmark (bench/run.py; docs/performance.md)"
	@echo "make install      create .venv and install the pinned requirements and this package (editable)"
	@echo "make lint         ruff check"
	@echo "make format       ruff format + ruff check --fix"
	@echo "make constraints  re-freeze constraints.txt from a fresh install of requirements.txt"
	@echo "make ui           build the React plugin (ui/ -> plugins/komoju/ui_dist/, committed; needs Node.js 20.19+)"
	@echo "make ui-test      the React plugin's component tests (Vitest)"
	@echo "make ui-check     ui-test, then two builds: fails unless both equal the committed bundle byte for byte"
	@echo "make clean        remove .venv, .local and caches"

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(STAMP)
	PYTHONPYCACHEPREFIX=$(CURDIR)/.local/pycache $(BIN)/python -m devtools.demo

up: $(STAMP)
	PYTHONPYCACHEPREFIX=$(CURDIR)/.local/pycache $(BIN)/python -m devtools.up up

down: $(STAMP)
	PYTHONPYCACHEPREFIX=$(CURDIR)/.local/pycache $(BIN)/python -m devtools.up down

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser of its own), and
# Noto CJK so that the Japanese pages in the screenshots are readable.
browser:
	@test -x $(CHROMIUM) || { test "$$(id -u)" = 0 && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; } \
	  || echo "Chromium could not be installed: the browser tests will be skipped."
	@test -d /usr/share/fonts/opentype/noto || { test "$$(id -u)" = 0 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null; } \
	  || echo "fonts-noto-cjk could not be installed: Japanese text in screenshots shows as boxes."

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not reliability and not deploy" $(PYTEST_ARGS)

test-reliability: $(STAMP)
	$(BIN)/pytest -m reliability tests/reliability $(PYTEST_ARGS)

test-deploy: $(STAMP)
	$(BIN)/pytest -m deploy tests/deploy $(PYTEST_ARGS)

bench: $(STAMP)
	PYTHONPYCACHEPREFIX=$(CURDIR)/.local/pycache $(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install --quiet --upgrade pip
	.constraints-venv/bin/python -m pip install --quiet -r requirements.txt
	{ echo "# Frozen from a working install of requirements.txt (make constraints); every make target installs with it."; \
	  echo "# Regenerate after changing requirements.txt: make constraints"; \
	  .constraints-venv/bin/python -m pip freeze; } > constraints.txt
	rm -rf .constraints-venv

# The React plugin. Its bundle is committed (users need no Node.js); npm ci installs exactly ui/package-lock.json.
UI_DIST := plugins/komoju/ui_dist

ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

ui-test:
	cd ui && npm ci --no-audit --no-fund && npm test

ui-check: ui-test
	rm -rf .local/ui-check && mkdir -p .local/ui-check
	cd ui && npm run build
	cp -r $(UI_DIST) .local/ui-check/first
	cd ui && npm run build
	@diff -r .local/ui-check/first $(UI_DIST) || { echo "Two builds differ: the UI build is not deterministic."; exit 1; }
	@git diff --quiet -- $(UI_DIST) && test -z "$$(git status --porcelain -- $(UI_DIST))" \
	  || { git status --short -- $(UI_DIST); echo "$(UI_DIST) differs from ui/: run make ui and commit it."; exit 1; }
	@echo "ui-check: two builds are identical and equal the committed bundle ($$(wc -c < $(UI_DIST)/main.js) bytes)."

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache *.egg-info plugins/*.egg-info ui/node_modules
