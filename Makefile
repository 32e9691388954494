# Two commands a new user needs (see README):  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PTBXL ?= $(or $(ECGFM_PTBXL_DIR),../shared/data/ptbxl)
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# Pin torch first so the local CPU build lands; GPU users can install their own build before `make`.
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	ECGFM_PTBXL_DIR=$(PTBXL) $(VENV)/bin/ecgfm demo --ptbxl $(PTBXL) --out runs/demo

test: install
	ECGFM_PTBXL_DIR=$(PTBXL) $(PY) -m pytest -n 2 -q
