#!/usr/bin/env bash
# Debian's chromium, for the test that opens the Prefect UI (tests/flows/test_prefect_ui.py).
# Playwright drives this browser; its own browser download does not work offline.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then
    apt_get=(apt-get)
elif command -v sudo >/dev/null 2>&1; then
    apt_get=(sudo apt-get)
else
    echo "setup-browser: chromium is missing and neither root nor sudo can install it;" \
        "the Prefect UI test will be skipped (install Debian's chromium to run it)" >&2
    exit 0
fi
echo "Installing Debian's chromium for the Prefect UI test..."
"${apt_get[@]}" update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq chromium >/dev/null
