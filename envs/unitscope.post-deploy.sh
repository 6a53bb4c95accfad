#!/usr/bin/env bash
# Runs once inside the new conda env, from the directory Snakemake runs in: the repository root.
set -euo pipefail
test -f pyproject.toml && grep -q '^name = "unitscope"' pyproject.toml || {
  echo "run snakemake from the unitscope repository root (no unitscope pyproject.toml in $PWD)" >&2
  exit 1
}
python -m pip install --no-input --editable .
