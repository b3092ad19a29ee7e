#!/usr/bin/env bash
# Installs what the test suite needs, on a fresh machine or again (idempotent):
#   1. ketasim, editable, with its `test` extra (pytest, the docs toolchain, Playwright);
#   2. a Chromium for the screenshot check of the documentation site
#      (tests/test_docs.py), when none is found: Debian's or Ubuntu's `chromium`
#      package through apt-get (root, or sudo). Measured on a fresh Debian 12 machine:
#      apt-get update + install, 25 packages, ~124 MB, 16-18 s wall. With a Chromium
#      present (on PATH as chromium, chromium-browser, google-chrome or
#      google-chrome-stable, or named by KETASIM_CHROMIUM) this step does nothing.
# Without apt-get it says so and goes on: the screenshot test then fails and says how
# to install a browser; every other test runs.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -e ".[test]"

have_chromium() {
    if [ -n "${KETASIM_CHROMIUM:-}" ]; then
        [ -x "$KETASIM_CHROMIUM" ] && return 0
        echo "install-test-deps: KETASIM_CHROMIUM=$KETASIM_CHROMIUM is not an executable file" >&2
        exit 1
    fi
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}

if have_chromium; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: no Chromium found and no apt-get to install one; install" \
        "Chromium or Chrome, or set KETASIM_CHROMIUM=/path/to/chrome (the screenshot" \
        "test of the documentation site fails without one)" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-test-deps: no Chromium found; as root run: apt-get update &&" \
            "apt-get install chromium (the screenshot test of the documentation site" \
            "fails without one)" >&2
        exit 0
    fi
    sudo=(sudo)
fi
echo "install-test-deps: no Chromium found; installing Debian's chromium package" \
    "(apt-get update + install, about 125 MB)" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends chromium
