#!/bin/sh
# Builds {{name}}.wasm: `./build.sh`. Needs, from PATH or the variables:
#   WIT_BINDGEN  wit-bindgen 0.63's C generator (`cargo install wit-bindgen-cli@0.63.0`)
#   CC           clang with the wasm32-wasi target and wasi-libc (Debian: clang-14 lld-14 wasi-libc
#                libclang-rt-14-dev-wasm32)
#   JCO          jco 1.34, which makes the core module a component with WASI's reactor adapter
#                (default: `npx @bytecodealliance/jco@1.34.0`)
set -eu
cd "$(dirname "$0")"
WIT_BINDGEN=${WIT_BINDGEN:-wit-bindgen}
CC=${CC:-clang}
mkdir -p gen
"$WIT_BINDGEN" c wit --world extractor-plugin --out-dir gen >/dev/null
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wno-unused-parameter -Igen \
    -o gen/{{name}}.core.wasm plugin.c gen/extractor_plugin.c gen/extractor_plugin_component_type.o \
    -Wl,--strip-all
if [ -n "${JCO:-}" ]; then
    "$JCO" new gen/{{name}}.core.wasm --wasi-reactor -o {{name}}.wasm >/dev/null
else
    npx --yes @bytecodealliance/jco@1.34.0 new gen/{{name}}.core.wasm --wasi-reactor -o {{name}}.wasm >/dev/null
fi
echo "$(pwd)/{{name}}.wasm"
