# Two commands do all set-up on a fresh machine with Python 3.11, pip and make:
#   make demo   -> creates .venv, installs WeakSTIL, runs the main job on a synthetic cohort
#   make test   -> creates .venv, installs WeakSTIL with test tools, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.weakstil-installed
DEMO   ?= demo_out

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml plugins/napari_weakstil/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e plugins/napari_weakstil
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/weakstil demo --out $(DEMO)
	$(BIN)/weakstil tile tests/data/CMU-1-Small-Region.svs --out $(DEMO)/tiles
	@echo "Tile overlay of the real CMU slide: $(DEMO)/tiles/CMU-1-Small-Region_tiles.png"

bench: $(STAMP)
	$(BIN)/python benchmarks/tiling_speed.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
