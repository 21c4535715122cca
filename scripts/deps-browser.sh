#!/usr/bin/env bash
# Installs Chromium from Debian's packages for the web page's browser test (server/web_test.go),
# only when /usr/bin/chromium is missing. Needs root (or sudo) and apt-get; says so in one line
# otherwise. Prints nothing when Chromium is already there.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
command -v apt-get >/dev/null || { echo "deps-browser: /usr/bin/chromium missing and apt-get not found: install Chromium by hand" >&2; exit 1; }
sudo=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps-browser: /usr/bin/chromium missing: run as root (apt-get install chromium)" >&2; exit 1; }
  sudo=sudo
fi
echo "deps-browser: installing chromium from Debian's packages" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
[ -x /usr/bin/chromium ] || { echo "deps-browser: apt-get finished but /usr/bin/chromium is missing" >&2; exit 1; }
