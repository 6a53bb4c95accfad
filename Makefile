# The two entry points of the README. Each does its own set-up.
#   make report   build everything for config/config.yaml and write reports/site/ (offline, CPU)
#   make test     run the test suite
# Both install the exact versions of requirements.lock (the environment the README's numbers come from).
#   make test-latest   the suite in .venv-latest with the newest versions pyproject.toml admits, and what moved
VENV ?= .venv
LOCK ?= requirements.lock
CORES ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON ?= python3
SNAKEMAKE_ARGS ?=
SNAKEMAKE = $(VENV)/bin/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) $(SNAKEMAKE_ARGS)

.PHONY: setup report test test-latest lock browser slurm clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r $(LOCK)
	$(VENV)/bin/pip install -q --no-deps -e .
	$(VENV)/bin/python -m unitscope.environment check $(LOCK)
	touch $@

setup: $(VENV)/.installed

# Resumes an interrupted run (Ctrl-C, kill, power loss): `flock` lets one `make report` run at a time in
# this directory, so the lock Snakemake left behind can only be stale and is removed; the profile reruns
# jobs left incomplete.
report: setup
	@if command -v flock >/dev/null 2>&1; then \
	  flock .snakemake-report.lock sh -c '$(SNAKEMAKE) --unlock >/dev/null && $(SNAKEMAKE)'; \
	else $(SNAKEMAKE); fi

# Browser tests need Chromium; install it with apt when we can, otherwise those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped"; fi; }

# The cluster test starts a single-node SLURM cluster (tests/slurm_cluster.py); install SLURM and munge with apt
# when we can, otherwise that test skips (and fails under CI=true).
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; \
	  else echo "SLURM not found: the cluster test will be skipped"; fi; }

test: setup browser slurm
	$(VENV)/bin/pytest -q

# The newest resolvable versions: a fresh .venv-latest, the suite, and the packages that moved from the lock.
test-latest: browser slurm
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install -q --upgrade pip
	.venv-latest/bin/pip install -q -e '.[test]'
	.venv-latest/bin/python -m unitscope.environment check $(LOCK) || true
	.venv-latest/bin/pytest -q

# Rewrite the lock from a fresh resolve (then run `make report` and update the README's numbers).
lock: test-latest
	.venv-latest/bin/python -m unitscope.environment lock --out $(LOCK)

clean:
	rm -rf results reports logs .snakemake data/probe .snakemake-report.lock
