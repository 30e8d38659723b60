# The two set-up commands of the README:
#   make demo   create .venv, install bayescale, run the main job on the embedded data
#   make test   create .venv, install bayescale with its test tools, run the test suite
# Versions are pinned by constraints.txt (the versions CI tests); PYTHON may be overridden.

PYTHON ?= $(shell scripts/find-python)
VENV   ?= .venv
PIP    := $(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test venv chromium

venv:
	@test -n "$(PYTHON)" || { echo "no Python >= 3.12 found"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)

demo: venv
	$(PIP) .
	$(VENV)/bin/bayescale demo

# The report tests render HTML in headless Chromium (Debian's chromium package); install it when
# it is missing and apt-get can (root on Debian, as in CI). Without it those tests fail.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null; } || echo "warning: chromium is not installed; the report tests will fail"

# Two pytest workers (the test files are shared out whole, so module fixtures are built once).
test: venv chromium
	$(PIP) -e ".[test]"
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile
