#!/usr/bin/env bash
# Installs everything aedfleet's demo and tests need on a fresh Debian machine:
# Debian packages (when missing), a running PostgreSQL (when none answers on
# 127.0.0.1:5432) and a virtualenv with the project and its dev tools.
# --no-apt: install no packages and start no server (the tests needing them then skip).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT=true
[ "${1:-}" = "--no-apt" ] && APT=false
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
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

# The store tests use the PostgreSQL on 127.0.0.1:5432 as tests/postgres.py describes:
# role postgres, no password, allowed to create databases. One that answers there
# already (a developer's, or this machine kind's own) is left exactly as it is.
# (A TCP connect, not pg_isready: Debian's pg_isready is a wrapper that fails alike when
# no server answers and when only postgresql-client-common is installed.)
postgres_answers() {
    timeout 3 bash -c '</dev/tcp/127.0.0.1/5432' 2>/dev/null
}
POSTGRES_ANSWERS=false
postgres_answers && POSTGRES_ANSWERS=true
INSTALLING_POSTGRES=false
if ! $POSTGRES_ANSWERS && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    NEED_APT+=(postgresql)
    INSTALLING_POSTGRES=$APT
fi

if [ ${#NEED_APT[@]} -gt 0 ] && $APT; then
    echo "setup: installing Debian packages: ${NEED_APT[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${NEED_APT[@]}" >/dev/null
    # Debian's package starts a system broker on :1883; the tests run their own.
fi

# Starts the cluster Debian made for port 5432 (a fresh install's "main"), installed by
# this run or installed earlier and stopped.
start_postgres() {
    local version="" cluster=""
    read -r version cluster < <(
        pg_lsclusters --no-header | awk '$3 == 5432 { print $1, $2; exit }'
    ) || true
    if [ -z "$version" ]; then
        echo "setup: no PostgreSQL cluster is configured for port 5432 (see pg_lsclusters);" \
            "the PostgreSQL tests will skip (and fail where CI=true)" >&2
        return 0
    fi
    if $INSTALLING_POSTGRES; then
        # Debian asks for a password on loopback; the test machine this run just set up
        # trusts it, as tests/postgres.py expects. Only a server installed here is changed.
        $SUDO sed -i -E \
            's/^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]+)[^[:space:]]+$/\1trust/' \
            "/etc/postgresql/$version/$cluster/pg_hba.conf"
    fi
    echo "setup: starting PostgreSQL $version/$cluster on 127.0.0.1:5432"
    # restart: the package may have started it already, before pg_hba.conf was changed.
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" restart
    if ! postgres_answers; then
        echo "setup: PostgreSQL $version/$cluster did not start; see" \
            "/var/log/postgresql/postgresql-$version-$cluster.log" >&2
        exit 1
    fi
}

if ! $POSTGRES_ANSWERS && $APT; then
    start_postgres
elif ! $POSTGRES_ANSWERS; then
    echo "setup: nothing answers on 127.0.0.1:5432; the PostgreSQL tests will skip" \
        "(and fail where CI=true)" >&2
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
