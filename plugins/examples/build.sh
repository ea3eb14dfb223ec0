#!/bin/sh
# Builds the example plugins from source: `plugins/examples/build.sh [c] [js] [python]` (default: all).
# `build.sh tools [c] [js] [python]` only installs those toolchains, and prints the PATH entries that
# hold them (the `plugin new` templates' test builds with them).
# Each becomes target/examples/LANG-title.wasm, an extractor returning the page's title and first
# heading, like the Rust one in tests/guests/title. The toolchains are installed once, into
# target/example-tools, at the versions docs/plugin-authoring.md gives:
#   C:          clang-14 and wasi-libc (apt, see tests/setup.sh); wit-bindgen 0.63 (cargo install, the C
#               generator only); jco 1.34 (npm) to make the component
#   JavaScript: componentize-js 0.23 (npm; SpiderMonkey)
#   Python:     componentize-py 0.25.1 (pip, in a venv)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
tools=$target/example-tools
out=$target/examples
wit=$root/wit/plugin@0.1.0
mkdir -p "$tools" "$out"
# One build at a time: the integration tests build the languages in parallel, and share the tools.
exec 9>"$tools/lock"
flock 9

npm_tools() {
    # Reinstalled only when package-lock.json changes.
    mkdir -p "$tools/npm"
    if ! cmp -s "$here/package-lock.json" "$tools/npm/package-lock.json"; then
        cp "$here/package.json" "$here/package-lock.json" "$tools/npm/"
        (cd "$tools/npm" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

c_tools() {
    if [ ! -x "$tools/cargo/bin/wit-bindgen" ]; then
        env -u CARGO_TARGET_DIR -u RUSTFLAGS cargo install --locked --quiet --root "$tools/cargo" \
            --target-dir "$tools/cargo-build" wit-bindgen-cli@0.63.0 --no-default-features --features c
    fi
    npm_tools
}

python_tools() {
    if [ ! -x "$tools/venv/bin/componentize-py" ]; then
        python3 -m venv "$tools/venv"
        "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
    fi
}

build_c() {
    c_tools
    gen=$tools/c-gen
    rm -rf "$gen" && mkdir -p "$gen"
    "$tools/cargo/bin/wit-bindgen" c "$wit" --world extractor-plugin --out-dir "$gen" >/dev/null
    clang-14 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wno-unused-parameter \
        -I"$gen" -o "$gen/title.core.wasm" "$here/c/title.c" "$gen/extractor_plugin.c" \
        "$gen/extractor_plugin_component_type.o" -Wl,--strip-all
    "$tools/npm/node_modules/.bin/jco" new "$gen/title.core.wasm" --wasi-reactor -o "$out/c-title.wasm" >/dev/null
}

build_js() {
    npm_tools
    "$tools/npm/node_modules/.bin/componentize-js" "$here/js/title.js" --wit "$wit" -n extractor-plugin \
        -d http -d fetch-event -d random -d clocks -d stdio -o "$out/js-title.wasm" >/dev/null
}

build_python() {
    python_tools
    "$tools/venv/bin/componentize-py" -d "$wit" -w extractor-plugin componentize --stub-wasi \
        -p "$here/python" app -o "$out/python-title.wasm" >/dev/null
}

if [ "${1:-}" = tools ]; then
    shift
    for language in "$@"; do
        case $language in
            c) c_tools ;;
            js) npm_tools ;;
            python) python_tools ;;
            *) echo "unknown language: $language (c, js or python)" >&2; exit 2 ;;
        esac
    done
    echo "$tools/cargo/bin:$tools/npm/node_modules/.bin:$tools/venv/bin"
    exit 0
fi

[ $# -gt 0 ] || set -- c js python
for language in "$@"; do
    case $language in
        c) build_c ;;
        js) build_js ;;
        python) build_python ;;
        *) echo "unknown language: $language (c, js or python)" >&2; exit 2 ;;
    esac
    echo "$out/$language-title.wasm"
done
