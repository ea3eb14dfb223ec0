#!/bin/sh
# Builds {{name}}.wasm: `./build.sh` (~5-20 s). Needs Node.js and npm; componentize-js is taken from
# PATH if there, else installed into node_modules.
# `-d http -d fetch-event`: plugins make no HTTP requests of their own (they go through the page).
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-js >/dev/null 2>&1; then
    [ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
    PATH=$(pwd)/node_modules/.bin:$PATH
fi
componentize-js plugin.js --wit wit -n extractor-plugin -d http -d fetch-event -o {{name}}.wasm >/dev/null
echo "$(pwd)/{{name}}.wasm"
