#!/usr/bin/env bash
# Builds the Python example plugin into a WebAssembly component, from scratch: a fresh venv
# (.venv, gitignored) with the pinned componentize-py of requirements.txt, then
# `componentize-py componentize` of app.py against the project's WIT (../../wit, world
# office-check). componentize-py ships its own CPython for wasm; the machine's python3 only
# runs the tool. `bindings/` (gitignored) gets the generated `wit_world` package, for editors
# and type checkers.
# Usage: examples/python-rule/build.sh [OUT.wasm]   (default: examples/python-rule/python-rule.wasm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/python-rule.wasm}")"
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
python3 -m venv --clear .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
rm -rf bindings
.venv/bin/componentize-py -d ../../wit -w office-check bindings bindings
t0=$(date +%s)
.venv/bin/componentize-py -d ../../wit -w office-check componentize app -o "$out"
echo "wrote $out ($(stat -c %s "$out") bytes) in $(( $(date +%s) - t0 )) s"
