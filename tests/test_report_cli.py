"""``aedfleet report``: its errors are one line and exit status 2, never a secret; the
InfluxDB it reads refuses a wrong token and the report says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from aedfleet.db.state import StateStore
from aedfleet.influx.writer import InfluxSettings
from aedfleet_testing.brokers import free_port
from alerting.report.sources import LATEST_READINESS, ReportError, read_readings
from tests.test_cli_errors import PASSWORD, one_line, run

TOKEN = "reader-token-of-the-report"  # noqa: S105 - a test's own


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    result = run("report", "--out", str(tmp_path / "r.html"), "--store", f"sqlite:///{missing}")
    assert one_line(result) == f"no report: no state store at '{missing}'"
    assert not missing.exists()
    assert not (tmp_path / "r.html").exists()


def test_an_unreachable_influxdb_is_one_line_without_the_token(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite3"
    StateStore.open(f"sqlite:///{store}").close()
    port = free_port()
    result = run(
        "report",
        "--out",
        str(tmp_path / "r.html"),
        "--store",
        f"sqlite:///{store}",
        "--influx-url",
        f"http://127.0.0.1:{port}",
        "--influx-token",
        PASSWORD,
    )
    assert one_line(result).startswith(
        f"no report: cannot reach InfluxDB at http://127.0.0.1:{port}"
    )


def test_a_missing_config_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "alerting.toml"
    assert str(missing) in one_line(run("report", "--out", "r.html", "--config", str(missing)))


@pytest.fixture
async def guarded_influx() -> AsyncIterator[str]:
    """An HTTP server answering ``/query`` as InfluxDB does, only to ``Token TOKEN``."""

    async def query(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return web.json_response({"error": "authorization failed"}, status=401)
        assert request.query["q"] == LATEST_READINESS
        series = {
            "name": "readiness",
            "tags": {"cabinet_id": "SZ-1"},
            "columns": ["time", "state", "ready", "reasons"],
            "values": [[1_764_820_800_000_000_000, "ready", 1, ""]],
        }
        return web.json_response({"results": [{"statement_id": 0, "series": [series]}]})

    app = web.Application()
    app.router.add_get("/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_readings_need_the_token(guarded_influx: str) -> None:
    settings = InfluxSettings(url=guarded_influx, bucket="fleet", token=SecretStr(TOKEN))
    assert set(await read_readings(settings)) == {"SZ-1"}

    for wrong in (SecretStr("someone-else"), SecretStr("")):
        with pytest.raises(ReportError, match="refused the token \\(401\\)") as refused:
            await read_readings(settings.model_copy(update={"token": wrong}))
        assert TOKEN not in str(refused.value)
