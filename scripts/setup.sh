#!/usr/bin/env bash
# Installs everything aedfleet's demo and tests need on a fresh Debian machine:
# Debian packages (when missing) and a virtualenv with the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
NEED_APT=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || NEED_APT+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || NEED_APT+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || NEED_APT+=(openssl)
# InfluxDB 1.6 (Debian's only one) behind nginx for the ingest tests; see tests/influx.py.
command -v influxd >/dev/null 2>&1 || NEED_APT+=(influxdb)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || NEED_APT+=(nginx-light)
# The browser tests drive Debian's Chromium through Playwright (no browser download);
# the CJK fonts make the Chinese pages render as a captain's phone shows them.
[ -x /usr/bin/chromium ] || NEED_APT+=(chromium)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || NEED_APT+=(fonts-noto-cjk)

if [ ${#NEED_APT[@]} -gt 0 ] && [ "${1:-}" != "--no-apt" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages: ${NEED_APT[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${NEED_APT[@]}" >/dev/null
    # Debian's package starts a system broker on :1883; the tests run their own.
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev,demo]'
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
