#!/usr/bin/env bash
# The browser test needs a Chromium. Use $CHROMIUM, or /usr/bin/chromium; if neither is
# there, install Debian's package when we can (root + apt-get), otherwise stop and say how.
set -euo pipefail
browser="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
  echo "browser test: using $browser"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "browser test: no Chromium at $browser; installing Debian's chromium package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  exit 0
fi
cat >&2 <<MSG
browser test: no Chromium found at $browser, and this machine cannot install one for you.
Install it and run 'make test' again, e.g. on Debian/Ubuntu:
    sudo apt-get install chromium
or point CHROMIUM at an existing Chromium/Chrome binary: CHROMIUM=/path/to/chrome make test
MSG
exit 1
