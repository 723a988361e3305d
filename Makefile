# Two set-up commands on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser clean

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

## Debian's Chromium + ChromeDriver for the review-site browser tests (they skip, saying why, without them)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) || \
	  echo "chromium could not be installed: the review-site browser tests will skip"; \
	else echo "not root or no apt-get: install chromium and chromium-driver for the review-site browser tests"; fi

## Lint and format checks (ruff; settings in pyproject.toml), then the test suite
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
