"""A real InfluxDB for tests: Debian's ``influxd`` 1.6 behind an nginx shim.

Why the shim
    The project writes with influxdb-client, which speaks the InfluxDB 2 HTTP API and
    posts line protocol to ``/api/v2/write?org=O&bucket=B&precision=P``. Servers from 1.8
    on (1.8, 2.x, 3.x) all answer that endpoint, but the only InfluxDB any registry this
    project can install from offers is Debian's 1.6.7, whose HTTP API has just the 1.x
    ``/write?db=D&precision=P``. So each test session starts ``influxd`` on a free
    loopback port and an nginx in front of it, on another free loopback port, that
    rewrites the one request the writer makes::

        map $arg_precision $v1prec { us u; default $arg_precision; }
        location = /api/v2/write {
            rewrite ^ /write?db=$arg_bucket&precision=$v1prec? break;
            proxy_pass http://127.0.0.1:INFLUXPORT;
        }
        location / { proxy_pass http://127.0.0.1:INFLUXPORT; }

    The bucket becomes the 1.x database, ``org`` is dropped, and the only precision
    spelled differently (``us`` in 2.x, ``u`` in 1.x) is mapped; ``ns``, ``ms`` and ``s``
    are the same in both. The body (line protocol) and the answers (204 on success, 400
    with a JSON error for a bad line, 404 for an unknown database, 5xx otherwise) pass
    through unchanged, so the writer's error handling is exercised against a real server.
    When ``influxd`` is down, nginx answers 502, which the writer must treat like any
    other retryable server error. Production code knows nothing of this: it is given
    the nginx URL exactly as it would be given an InfluxDB 2/3 URL.

What the shim cannot hide
    Tokens are ignored (1.6 runs with auth disabled) and the 1.x line-protocol parser is
    the one that judges the lines, which is the same Go parser InfluxDB 2 OSS uses.

Everything lives in the given work directory: the influxd config, data, meta and WAL
directories, the nginx config, pid file, error log and temp paths. Only loopback
addresses are used. No fixed sleeps: start-up polls ``/ping`` until it answers 204.

Fixtures (import them into ``tests/conftest.py``)::

    from tests.influx import fresh_influx_server, influx_database, influx_server  # noqa: F401
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aedfleet_testing.brokers import free_port
from aedfleet_testing.tiers import INFLUX, require_tier

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_SECTION = re.compile(r"^\s*\[\[?([A-Za-z0-9_-]+)\]\]?\s*$")
_SETTING = re.compile(r"^(\s*)([A-Za-z0-9_-]+)\s*=")


def _toml(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def rewrite_config(base: str, settings: dict[tuple[str, str], str | bool]) -> str:
    """Set ``(section, key)`` values in the TOML ``influxd config`` prints.

    The top level is section ``""``. Every key must already exist in ``base`` (a
    misspelt key would otherwise be silently ignored by influxd).
    """
    section = ""
    missing = dict(settings)
    lines = []
    for line in base.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
        setting = _SETTING.match(line)
        if setting and (section, setting.group(2)) in settings:
            key = (section, setting.group(2))
            lines.append(f"{setting.group(1)}{key[1]} = {_toml(settings[key])}")
            missing.pop(key, None)
        else:
            lines.append(line)
    if missing:
        raise ValueError(f"influxd config has no {sorted(missing)}")
    return "\n".join(lines) + "\n"


def _get(url: str, timeout_s: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback http
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class InfluxServer:
    """``influxd`` 1.6 on a free loopback port with the nginx ``/api/v2/write`` shim in front.

    ``url`` is what the code under test is given; ``influx_url`` reaches influxd directly.
    Both keep their ports across :meth:`stop` and :meth:`start`, so a client can reconnect.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.influx_port = free_port()
        self.nginx_port = free_port()
        self.rpc_port = free_port()
        self.influx_log = workdir / "influxd.log"
        self.nginx_log = workdir / "nginx-error.log"
        self.influx_config = workdir / "influxd.conf"
        self.nginx_config = workdir / "nginx.conf"
        self._influxd: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None
        self._write_configs()

    @property
    def url(self) -> str:
        """The nginx front: give this to the code under test."""
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def influx_url(self) -> str:
        """influxd itself, for the test's own queries."""
        return f"http://127.0.0.1:{self.influx_port}"

    def _write_configs(self) -> None:
        base = subprocess.run(
            [INFLUXD, "config"], check=True, capture_output=True, text=True
        ).stdout
        data = self.workdir / "influxdb"
        settings: dict[tuple[str, str], str | bool] = {
            ("", "reporting-enabled"): False,
            ("", "bind-address"): f"127.0.0.1:{self.rpc_port}",
            ("meta", "dir"): str(data / "meta"),
            ("meta", "logging-enabled"): False,
            ("data", "dir"): str(data / "data"),
            ("data", "wal-dir"): str(data / "wal"),
            ("data", "query-log-enabled"): False,
            ("monitor", "store-enabled"): False,
            ("http", "bind-address"): f"127.0.0.1:{self.influx_port}",
            ("http", "log-enabled"): False,
            ("http", "pprof-enabled"): False,
            ("ifql", "bind-address"): f"127.0.0.1:{free_port()}",
            ("continuous_queries", "log-enabled"): False,
            ("logging", "level"): "warn",
            ("logging", "suppress-logo"): True,
        }
        self.influx_config.write_text(rewrite_config(base, settings))

        temp = self.workdir / "nginx-temp"
        temp.mkdir(exist_ok=True)
        # As root the master would hand the workers to "nobody", who cannot enter pytest's
        # private temp directory; as any other user nginx ignores "user" with a notice.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.nginx_config.write_text(
            f"""{user}daemon off;
worker_processes 1;
pid {self.workdir / "nginx.pid"};
error_log {self.nginx_log} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_max_body_size 0;
    client_body_temp_path {temp / "client_body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    map $arg_precision $v1prec {{ us u; default $arg_precision; }}
    upstream influxd {{
        server 127.0.0.1:{self.influx_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.nginx_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /api/v2/write {{
            rewrite ^ /write?db=$arg_bucket&precision=$v1prec? break;
            proxy_pass http://influxd;
        }}
        location / {{
            proxy_pass http://influxd;
        }}
    }}
}}
"""
        )

    # -- processes -------------------------------------------------------------------

    @property
    def influxd_running(self) -> bool:
        return self._influxd is not None and self._influxd.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start influxd, then nginx; return once ``/ping`` answers 204 through both."""
        self.start_influxd(timeout_s)
        if self._nginx is None:
            with self.nginx_log.open("ab") as log:
                self._nginx = subprocess.Popen(
                    [NGINX, "-e", str(self.nginx_log), "-c", str(self.nginx_config)],
                    stdout=log,
                    stderr=log,
                )
        self._wait_for_ping(self.url, self._nginx, self.nginx_log, timeout_s)

    def stop(self) -> None:
        """SIGTERM both processes and wait for them: the URL then refuses connections."""
        if self._nginx is not None:
            self._nginx.terminate()
            self._nginx.wait(timeout=10)
            self._nginx = None
        self.stop_influxd()

    def restart(self, timeout_s: float = 30.0) -> None:
        self.stop()
        self.start(timeout_s)

    def start_influxd(self, timeout_s: float = 30.0) -> None:
        """Start influxd alone (the nginx front answers 502 while it is down)."""
        require_tier(INFLUX)
        if self._influxd is None:
            with self.influx_log.open("ab") as log:
                self._influxd = subprocess.Popen(
                    [INFLUXD, "-config", str(self.influx_config)], stdout=log, stderr=log
                )
        self._wait_for_ping(self.influx_url, self._influxd, self.influx_log, timeout_s)

    def stop_influxd(self) -> None:
        if self._influxd is not None:
            if self._influxd.poll() is None:
                self._influxd.send_signal(signal.SIGCONT)  # in case a test paused it
            self._influxd.terminate()
            self._influxd.wait(timeout=30)
            self._influxd = None

    def pause_influxd(self) -> None:
        """SIGSTOP influxd: connections are accepted but nothing is ever answered."""
        assert self._influxd is not None
        self._influxd.send_signal(signal.SIGSTOP)

    def resume_influxd(self) -> None:
        assert self._influxd is not None
        self._influxd.send_signal(signal.SIGCONT)

    @staticmethod
    def _wait_for_ping(
        base_url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        status = 0
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited: {log.read_text()[-2000:]}")
            try:
                status, _ = _get(f"{base_url}/ping", timeout_s=1.0)
            except OSError:
                status = 0
            if status == 204:
                return
            time.sleep(0.02)
        raise TimeoutError(
            f"{base_url}/ping did not answer 204 within {timeout_s} s (last {status}): "
            f"{log.read_text()[-2000:]}"
        )

    # -- InfluxQL, straight to influxd ---------------------------------------------

    def _query(self, influxql: str, db: str | None) -> dict[str, Any]:
        params = {"q": influxql, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        status, body = _get(f"{self.influx_url}/query?{urllib.parse.urlencode(params)}", 10.0)
        document: dict[str, Any] = json.loads(body)
        if status != 200:
            raise RuntimeError(f"InfluxQL {influxql!r} answered {status}: {document}")
        for result in document.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL {influxql!r} failed: {result['error']}")
        return document

    def query(self, influxql: str, db: str) -> list[dict[str, Any]]:
        """Rows of the first series as dicts; ``time`` is in nanoseconds since the epoch."""
        results = self._query(influxql, db)["results"]
        series = results[0].get("series") if results else None
        if not series:
            return []
        first = series[0]
        columns: list[str] = first["columns"]
        tags: dict[str, Any] = first.get("tags", {})
        return [{**tags, **dict(zip(columns, row, strict=True))} for row in first["values"]]

    def query_all(self, influxql: str, db: str) -> list[dict[str, Any]]:
        """Rows of every series, each with its tags and a ``measurement`` key."""
        rows: list[dict[str, Any]] = []
        for result in self._query(influxql, db)["results"]:
            for series in result.get("series", []):
                base = {**series.get("tags", {}), "measurement": series["name"]}
                columns: list[str] = series["columns"]
                rows.extend(
                    {**base, **dict(zip(columns, row, strict=True))} for row in series["values"]
                )
        return rows

    def create_database(self, name: str) -> None:
        # InfluxQL identifiers are double-quoted; escape what would end the quote.
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        status, body = _get(
            f"{self.influx_url}/query?"
            + urllib.parse.urlencode({"q": f'CREATE DATABASE "{quoted}"'}),
            10.0,
        )
        if status != 200:
            raise RuntimeError(f"CREATE DATABASE {name!r} answered {status}: {body!r}")
