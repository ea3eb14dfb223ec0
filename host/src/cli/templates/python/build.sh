#!/bin/sh
# Builds {{name}}.wasm: `./build.sh` (~10-40 s). Needs Python 3; componentize-py is taken from PATH if
# there, else installed into .venv from requirements.txt.
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
    if [ ! -x .venv/bin/componentize-py ]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    fi
    PATH=$(pwd)/.venv/bin:$PATH
fi
componentize-py -d wit -w extractor-plugin componentize -p . app -o {{name}}.wasm >/dev/null
echo "$(pwd)/{{name}}.wasm"
