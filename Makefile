# Set-up and everyday commands. Everything installs into .venv from PyPI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# PyTorch is pinned to releases that build for both CPU architectures.
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: demo test lint clean

demo: $(VENV)/.installed
	$(BIN)/python -m imbcfkd.demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check imbcfkd tests $(wildcard benchmarks)
	$(BIN)/ruff format --check imbcfkd tests $(wildcard benchmarks)

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test,plot]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
