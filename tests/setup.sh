#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine with Rust (as root): Chromium,
# PostgreSQL's server binaries, the wasm32-wasip2 target for the built-in plugins and test guests,
# and the C, JavaScript and Python toolchains the example plugins are built with
# (plugins/examples/build.sh installs their npm, pip and cargo parts itself, under target/). Safe to
# run again.
set -euo pipefail

# PostgreSQL's server binaries for the farm tests, which start throwaway clusters of their own (no
# system service is started here).
packages=(chromium clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 python3-venv postgresql)
# Node.js 18 or newer for componentize-js and jco; Debian's if there is none (tested with 20).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
chromium --version 2>/dev/null
rustup target add wasm32-wasip2
