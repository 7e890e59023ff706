#!/usr/bin/env bash
# Builds the JavaScript example plugin into a WebAssembly component, from scratch:
# `npm ci` installs the exact tool versions of package-lock.json (componentize-js and what it
# needs; no network use after that), then build.mjs calls componentize() of the
# componentize-js Node API with the project's WIT (../../wit, world office-check).
# Usage: examples/js-rule/build.sh [OUT.wasm]   (default: examples/js-rule/js-rule.wasm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/js-rule.wasm}")"
cd "$here"
node --version >/dev/null 2>&1 || { echo "error: node (>= 18) is needed to build the JavaScript example" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
node build.mjs "$out"
