#!/usr/bin/env bash
# Installs Debian's chromium, which the web console's browser tests drive (console package,
# github.com/chromedp/chromedp), when it is missing: apt-get install -y chromium, as root or
# with sudo. Silent and quick when it is already there; safe to run again. When it cannot be
# installed the script says so and exits 0: the browser tests then skip with a loud banner.
set -euo pipefail

found() {
  local b
  for b in chromium chromium-browser google-chrome headless-shell; do
    command -v "$b" >/dev/null 2>&1 && return 0
  done
  [ -n "${GATEHOUSE_CHROMIUM:-}" ] && [ -x "$GATEHOUSE_CHROMIUM" ]
}

if found; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: chromium not found and this is not an apt system: the browser tests will skip (install chromium, or set GATEHOUSE_CHROMIUM)" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "install-chromium: chromium not found; installing it needs root (or sudo): the browser tests will skip" >&2
    exit 0
  fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "install-chromium: installing chromium (apt-get)..." >&2
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1 ||
  { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$log" 2>&1 &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; }; }; then
  echo "install-chromium: apt-get install chromium failed: the browser tests will skip" >&2
  tail -n 20 "$log" >&2
  exit 0
fi
echo "install-chromium: $(command -v chromium)" >&2
