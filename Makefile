# The two commands: `make demo` and `make test`. Each creates .venv when it is missing.
# `make docs` serves the documentation site (mkdocs serve) on 127.0.0.1:8000.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
SHARED_ASSETS := $(abspath ../shared/assets)
export EVOPRUNE_ASSETS ?= $(if $(wildcard $(SHARED_ASSETS)/MANIFEST.txt),$(SHARED_ASSETS),)
export MLFLOW_DISABLE_TELEMETRY := true
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test docs install install-dev bench ui clean

# uv installs the same packages as pip, resolved the same way, several times faster (the
# [dev] extra in well under a minute instead of minutes): pip only installs uv, and stays
# the fallback wherever uv cannot be installed or fails. --compile-bytecode as pip does:
# without the .pyc files every new process compiled TensorFlow again (import 20 s, not 10 s),
# which made a clean clone's `make test` 7 minutes slower.
PIP_INSTALL = if [ -x $(VENV)/bin/uv ]; then $(VENV)/bin/uv pip install --python $(VPY) -q --compile-bytecode $(1) || $(VPY) -m pip install -q $(1); else $(VPY) -m pip install -q $(1); fi

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q uv || echo "uv could not be installed: pip installs the packages (slower)"

$(VENV)/.installed: $(VPY) setup.cfg pyproject.toml
	$(call PIP_INSTALL,-e .)
	touch $@

$(VENV)/.installed-dev: $(VPY) setup.cfg pyproject.toml
	$(call PIP_INSTALL,-e ".[dev]")
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VPY) -m evoprune_tf.app.demo

test: $(VENV)/.installed-dev
	$(VPY) -m pytest -q -rs -n 2 --dist loadfile
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(VENV)/.installed
	$(VPY) benchmarks/fitness.py

ui: $(VENV)/.installed
	$(VENV)/bin/evoprune ui

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
