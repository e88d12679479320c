"""Defibrillators from OpenStreetMap: a GeoJSON FeatureCollection as Overpass turbo exports it.

Each feature's ``properties`` hold the OSM tags and ``@id`` (``node/123``); its geometry is
a Point for a node and a Polygon (or LineString) for a way, which is placed at the average
of its vertices. Features not tagged ``emergency=defibrillator`` are skipped and counted.
OSM knows nothing of captains, so a GeoJSON file yields cabinets only.

Tags map to cabinet fields as follows (also in ``docs/registry.md``):

========================================  ====================================================
OSM                                       Cabinet
========================================  ====================================================
``@id`` ``node/123``                      ``cabinet_id`` ``osm-node-123``
``name``                                  ``name``; else ``defibrillator:location``; else
                                          ``AED node/123``
``defibrillator:location`` (``:zh``,      ``indoor_description``, the distinct values joined
``:en``)                                  with `` / ``
``level``                                 ``floor``
``opening_hours``                         ``availability_hours`` (else ``24/7``)
``access``                                ``access_mode``: ``open`` when missing or ``yes``,
                                          ``public``, ``permissive``; any other value
                                          (``customers``, ``private``, ``permit``, ``no`` …)
                                          ``pin``: not freely reachable, ask the dispatcher
``operator``, ``phone`` / ``contact:phone``  ``owner_unit`` ``operator (phone)``: the cabinet
                                          has no phone field and the number is the
                                          operator's, so it stays with the operator
``addr:full``, else ``addr:street``       ``address``
``addr:housenumber``, ``addr:district``,
``addr:city``
``manufacturer``, ``model``               ``aed_model``
========================================  ====================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError

from aedfleet.registry import AccessMode, Cabinet
from ingest.registry.errors import RegistryError, RowProblem, Source
from ingest.registry.records import ParsedFile, Progress, RegistryBuilder, describe

OPEN_ACCESS: Final = frozenset({"yes", "public", "permissive"})
_OSM_TYPES: Final = frozenset({"node", "way", "relation"})


def parse_geojson(text: str, name: str, on_progress: Progress | None = None) -> ParsedFile:
    """Cabinets from an OSM defibrillator FeatureCollection; bad features are in the
    result's ``problems`` by index, and a document that is not one raises :class:`RegistryError`."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise RegistryError([RowProblem(line, name, f"not valid JSON: {exc}")]) from None
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise RegistryError([RowProblem(None, name, "expected a GeoJSON FeatureCollection")])
    if not isinstance(features, list):
        raise RegistryError([RowProblem(None, name, "the FeatureCollection has no features list")])
    builder = RegistryBuilder(on_progress)
    for index, feature in enumerate(features):
        builder.tick()
        where = Source(name, index, unit="feature")
        try:
            tags = _tags(feature)
            if tags.get("emergency") != "defibrillator":
                builder.skipped += 1
                continue
            cabinet = Cabinet.model_validate(cabinet_fields(feature, tags))
        except _FeatureError as exc:
            builder.report(where, str(exc))
        except ValidationError as exc:
            for reason in describe(exc):
                builder.report(where, reason)
        else:
            builder.add_cabinet(cabinet, where)
    return builder.build()


class _FeatureError(ValueError):
    pass


def _tags(feature: object) -> Mapping[str, Any]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise _FeatureError("not a GeoJSON Feature")
    tags = feature.get("properties") or {}
    if not isinstance(tags, dict):
        raise _FeatureError("properties is not an object")
    return tags


def cabinet_fields(feature: Mapping[str, Any], tags: Mapping[str, Any]) -> dict[str, Any]:
    """The Cabinet fields one defibrillator feature gives (see the module docstring)."""
    osm_type, osm_id = _osm_id(feature, tags)
    longitude, latitude = _position(feature.get("geometry"))
    location = _text(tags, "defibrillator:location")
    descriptions = [
        _text(tags, key)
        for key in (
            "defibrillator:location",
            "defibrillator:location:zh",
            "defibrillator:location:en",
        )
    ]
    fields: dict[str, Any] = {
        "cabinet_id": f"osm-{osm_type}-{osm_id}",
        "name": _text(tags, "name") or location or f"AED {osm_type}/{osm_id}",
        "latitude": latitude,
        "longitude": longitude,
        "indoor_description": " / ".join(dict.fromkeys(text for text in descriptions if text)),
        "floor": _text(tags, "level"),
        "address": _address(tags),
        "owner_unit": _owner(tags),
        "aed_model": " ".join(
            dict.fromkeys(
                text for text in (_text(tags, "manufacturer"), _text(tags, "model")) if text
            )
        ),
        "access_mode": (
            AccessMode.OPEN if _text(tags, "access") in OPEN_ACCESS | {""} else AccessMode.PIN
        ),
    }
    hours = _text(tags, "opening_hours")
    if hours:
        fields["availability_hours"] = hours
    return fields


def _text(tags: Mapping[str, Any], key: str) -> str:
    value = tags.get(key)
    return value.strip() if isinstance(value, str) else ""


def _osm_id(feature: Mapping[str, Any], tags: Mapping[str, Any]) -> tuple[str, str]:
    ref = tags.get("@id") or feature.get("id")
    if isinstance(ref, str) and ref.count("/") == 1:
        osm_type, osm_id = ref.split("/")
        if osm_type in _OSM_TYPES and osm_id.isdigit():
            return osm_type, osm_id
    raise _FeatureError(f"no OSM id like node/123 in @id or id (got {ref!r})")


def _position(geometry: object) -> tuple[float, float]:
    """(longitude, latitude) of a Point, or the vertex average of a way's geometry."""
    if not isinstance(geometry, dict):
        raise _FeatureError("the feature has no geometry")
    kind = geometry.get("type")
    coordinates: Any = geometry.get("coordinates")
    try:
        if kind == "Point":
            return _point(coordinates)
        if kind == "LineString":
            return _average(coordinates)
        if kind == "Polygon":
            return _average(coordinates[0])
        if kind == "MultiPolygon":
            return _average(coordinates[0][0])
    except (TypeError, IndexError, KeyError, ValueError):
        raise _FeatureError(f"{kind} geometry with malformed coordinates") from None
    raise _FeatureError(f"unsupported geometry {kind!r}")


def _point(coordinates: Any) -> tuple[float, float]:
    longitude, latitude = coordinates[:2]
    if not all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for value in (longitude, latitude)
    ):
        raise ValueError("coordinates are not numbers")
    return float(longitude), float(latitude)


def _average(ring: Sequence[Any]) -> tuple[float, float]:
    points = [_point(point) for point in ring]
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()  # a closed ring repeats its first vertex
    if not points:
        raise ValueError("no coordinates")
    return (
        sum(point[0] for point in points) / len(points),
        sum(point[1] for point in points) / len(points),
    )


def _address(tags: Mapping[str, Any]) -> str:
    full = _text(tags, "addr:full")
    if full:
        return full
    street = _text(tags, "addr:street") or _text(tags, "addr:place")
    first = " ".join(part for part in (street, _text(tags, "addr:housenumber")) if part)
    parts = (first, _text(tags, "addr:district"), _text(tags, "addr:city"))
    return ", ".join(part for part in parts if part)


def _owner(tags: Mapping[str, Any]) -> str:
    operator = _text(tags, "operator")
    phone = _text(tags, "phone") or _text(tags, "contact:phone")
    if operator and phone:
        return f"{operator} ({phone})"
    return operator or phone
