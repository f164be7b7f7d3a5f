#!/usr/bin/env bash
# The one test command: sets up what a fresh Debian machine lacks, then runs every
# test of the workspace. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# tmux drives the end-to-end editor tests (real terminal).
command -v tmux >/dev/null || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    fi
fi

if [ ! -d ../shared/traces ]; then
    echo "tests need the editing traces in ../shared/traces (beside this repository)" >&2
    exit 1
fi

cargo fmt --all -- --check
cargo test --workspace --locked
