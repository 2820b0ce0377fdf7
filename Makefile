# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install system-deps run test lint demo-video bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Debian's Chromium drives the UI in the browser tests (Playwright's own browser download is not used).
system-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null; \
	fi

run: install
	$(PY) -m taskqueue serve

test: install system-deps
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

demo-video: install
	$(PY) -m pipeline render --artist 1873859c-dd37-4e9a-9bac-80d3558527a9 --template artist-caption-stage --caption-length short

# MoviePy (the peers' approach) needs an older Pillow, so it gets its own environment.
bench: install
	test -x $(VENV)/moviepy/bin/python || ($(PYTHON) -m venv $(VENV)/moviepy && \
		$(VENV)/moviepy/bin/pip install -q -r bench/requirements.txt)
	$(PY) bench/run.py

clean:
	rm -rf data .pytest_cache
