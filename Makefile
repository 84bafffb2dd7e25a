# Two commands: `make run` (dashboard on http://127.0.0.1:8501) and `make test`.
# Both create .venv if missing and install the project into it first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: install run test lab bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (pinned, via the constraints file) so no later step pulls an unpinned build
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m streamlit run dashboard/app.py --server.address $(HOST) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

test: install
	$(PY) -m pytest

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
