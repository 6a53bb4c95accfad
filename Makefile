# The two entry points of the README. Each does its own set-up.
#   make report   build everything for config/config.yaml and write reports/site/ (offline, CPU)
#   make test     run the test suite
VENV ?= .venv
CORES ?= 8
PYTHON ?= python3

.PHONY: setup report test browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

report: setup
	$(VENV)/bin/snakemake --cores $(CORES)

# Browser tests need Chromium; install it with apt when we can, otherwise those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped"; fi; }

test: setup browser
	$(VENV)/bin/pytest -q

clean:
	rm -rf results reports logs .snakemake data/probe
