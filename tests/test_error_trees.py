"""Each component has one exception root, in its ``errors`` module, under which every
public exception class it defines sits (pure: the modules are imported, nothing runs)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from aedfleet.db.errors import StoreError
from aedfleet.influx.writer import InfluxError
from aedfleet.mqtt.errors import MqttError
from alerting.errors import AlertingError
from dispatch.errors import DispatchError
from edge_agent.errors import EdgeAgentError
from firmware_sim.errors import SimulatorError
from ingest.errors import IngestError

ROOTS: dict[str, type[Exception]] = {
    "alerting": AlertingError,
    "dispatch": DispatchError,
    "edge_agent": EdgeAgentError,
    "firmware_sim": SimulatorError,
    "ingest": IngestError,
    # the ground layer's shared adapters, each with a root of its own
    "aedfleet.db": StoreError,
    "aedfleet.influx": InfluxError,
    "aedfleet.mqtt": MqttError,
}


def exceptions_defined_in(package_name: str) -> dict[str, type[BaseException]]:
    package = importlib.import_module(package_name)
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
        if ".migrations" in module_info.name:  # Alembic scripts run only inside Alembic
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")  # a module's own control flow, caught inside it
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


@pytest.mark.parametrize("package_name", sorted(ROOTS))
def test_every_exception_of_a_component_derives_from_its_one_root(package_name: str) -> None:
    root = ROOTS[package_name]
    defined = exceptions_defined_in(package_name)
    expected = package_name if package_name.startswith("aedfleet.") else f"{package_name}.errors"
    assert root.__module__.startswith(expected)
    outside = sorted(name for name, cls in defined.items() if not issubclass(cls, root))
    assert outside == []


def test_the_two_outboxes_raise_errors_of_different_names() -> None:
    edge = exceptions_defined_in("edge_agent")
    dispatch = exceptions_defined_in("dispatch")
    assert "edge_agent.outbox.EdgeOutboxError" in edge
    assert "dispatch.errors.OutboxError" in dispatch
    edge_names = {name.rsplit(".", 1)[1] for name in edge}
    dispatch_names = {name.rsplit(".", 1)[1] for name in dispatch}
    assert edge_names.isdisjoint(dispatch_names)
