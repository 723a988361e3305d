# Two set-up commands on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[ml,test]"
	touch $(STAMP)

install: $(STAMP)

## Build the bundled demo corpus (tutorial-like videos made from scikit-image photos) into demo-out/
demo: $(STAMP)
	$(BIN)/makeanything demo --out demo-out

## Run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
