#!/bin/sh
# The API's contract test: schemathesis (PyPI) generates requests from the server's own
# /openapi.json and checks every answer against it (status codes, content types, headers and bodies
# as documented). `tests/contract.sh BASE_URL`; run by tests/integration/openapi.rs against a server
# that may reach only loopback. schemathesis is installed once, under target/.
#
# `not_a_server_error` is left out: a 502 for a page that does not load is a documented answer.
# Uploads are left out: schemathesis cannot make an `application/wasm` body (the registry tests
# upload real components). The seed is fixed so a run is repeatable; change it to explore. One
# worker: with two, Python 3.11 fails parsing hypothesis's lambdas ("AST constructor recursion depth
# mismatch").
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${CARGO_TARGET_DIR:-$root/target}/contract-tools
exec 9>"$tools.lock"
flock 9
if [ ! -x "$tools/bin/schemathesis" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
flock -u 9
# schemathesis keeps a cache where it runs: keep it out of the tree.
cd "$tools"
exec "$tools/bin/schemathesis" run "$1/openapi.json" \
    --checks status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-operation-id upload \
    --phases examples,coverage,fuzzing --max-examples 10 --workers 1 --seed 20261206 \
    --no-color
