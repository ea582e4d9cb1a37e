# lingerlab: two commands.
#   make book   set up .venv, execute every notebook (profile=smoke), build the site into _build/html
#   make test   set up .venv, ruff, unit tests, nbval on every notebook, pair check, book build with -W
# Both run offline once .venv exists, on a CPU. `make book-full` runs the notebooks at paper scale (GPU).

PYTHON    ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.lingerlab-installed
LOCK      := requirements/constraints.txt
NOTEBOOKS := $(shell grep -o 'notebooks/[0-9A-Za-z_]*' _toc.yml)
PROFILE   ?= smoke
DEVICE    ?= auto
export PATH := $(abspath $(BIN)):$(PATH)
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: lint test-slow test-full test-install all venv sync execute book book-full html test unit nbval pairs bookcheck render lock clean clean-cache

all: book

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(LOCK) -e ".[test]"
	@touch $@

# The .py (jupytext percent) file is the source; the .ipynb takes its cells and keeps its outputs.
sync: $(STAMP)
	@for nb in $(NOTEBOOKS); do $(BIN)/jupytext --quiet --to ipynb --update $$nb.py || exit 1; done

# Execute in _toc.yml order with papermill (scripts/execute.py); outputs are stored in the .ipynb
# files and each notebook's wall time is printed. Widget state left by progress bars is dropped, so
# the book's pages load nothing from a CDN.
execute: sync
	$(BIN)/python scripts/execute.py --profile $(PROFILE) --device $(DEVICE)

html: $(STAMP)
	$(BIN)/jupyter-book build . --path-output . $(JB_FLAGS)

book: execute
	@$(MAKE) --no-print-directory html

# Paper scale, on a GPU: every notebook with -p profile full, then the site from those outputs.
book-full:
	@$(MAKE) --no-print-directory execute PROFILE=full DEVICE=cuda
	@$(MAKE) --no-print-directory html

# Unit tests, including the world tests marked slow: they train the embedded worlds' smoke models
# (about 2 min for shapes and 1 min for lite0 on 2 cores when the model cache is cold) and check
# their competence and the planted-truth recovery; with a warm cache they take about 1.5 min.
unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not render and not full and not install" --durations=5

# Only the world-training tests, with their measured numbers printed.
test-slow: $(STAMP)
	$(BIN)/python -m pytest tests -q -m slow -s --durations=10

# The world tests at profile full: competence, planted-truth recovery (Eqs. 1-2), lingering (Eq. 3).
test-full: $(STAMP)
	$(BIN)/python -m pytest tests -q -m full -s --durations=5

# The wheel as a user gets it: built, installed with [book] into a fresh venv (torch from the
# constraints file, from local disk), notebook 1 run by papermill in a folder outside the repository.
test-install: $(STAMP)
	$(BIN)/python -m pytest tests/test_install.py -q -m install -s -p no:cacheprovider --durations=5

# tests/nbval_tolerance.py compares numbers within its tolerances (floats: 2 SE of a smoke validation
# accuracy; an estimate with its 95% interval within the two intervals' spread; integers exactly unless
# the cell is tagged `trained`; `exact` cells exactly), words exactly.
nbval: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -p tests.nbval_tolerance --nbval --nbval-current-env \
	  --nbval-sanitize-with notebooks/nbval-sanitize.cfg --nbval-cell-timeout 3000 \
	  $(addsuffix .ipynb,$(NOTEBOOKS))

bookcheck: $(STAMP)
	rm -rf _build/html _build/.doctrees
	$(BIN)/jupyter-book build . --path-output . --warningiserror --nitpick --keep-going

render: $(STAMP)
	$(BIN)/python -m pytest tests -q -m render

# ruff's checks and formatting, with the configuration in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

test: lint unit nbval bookcheck render

lock:
	rm -rf /tmp/lingerlab-lock && $(PYTHON) -m venv /tmp/lingerlab-lock
	/tmp/lingerlab-lock/bin/pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[test]"
	{ head -2 $(LOCK); /tmp/lingerlab-lock/bin/pip freeze --exclude-editable; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf _build

clean-cache:
	rm -rf $${LINGERLAB_CACHE:-$$HOME/.cache/lingerlab}
