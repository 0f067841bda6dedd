#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/e2e/test_ui_browser.py drives it with Playwright
# for Python, which comes with the project's dev extras). Never `playwright install`: no browser
# download, only the distribution's package. Idempotent: does nothing when Chromium is there.
set -euo pipefail

CHROMIUM=${GLEAM_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  echo "install_browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_browser: no $CHROMIUM and no apt-get; install Chromium with your package manager and" \
       "point GLEAM_CHROMIUM at it (the browser tests skip without it, and fail in CI)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_browser: no $CHROMIUM; as root run: apt-get update && apt-get install -y chromium" >&2
  echo "install_browser: (the browser tests skip without it, and fail in CI)" >&2
  exit 1
fi
echo "install_browser: installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium  # with its recommended fonts: screenshots need them
echo "install_browser: $("$CHROMIUM" --version 2>/dev/null || echo "installed $CHROMIUM")"
