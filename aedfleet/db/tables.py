"""The state store's schema (SQLAlchemy Core), portable across SQLite and PostgreSQL.

The migrations in ``migrations/versions`` create exactly this; a test compares the two.
Columns are named after the fields of the values they hold (:mod:`aedfleet.registry`
and :class:`aedfleet.twin.Twin`) so that rows and values convert by name. Enumerations are
stored as their string values (no database enum types to migrate when one grows).

Alerting and dispatch keep their tables in the same database, on this ``metadata`` and
in the same migration chain (``alerting/tables.py``, ``dispatch/tables.py``); each
component's module adds its tables when imported, so nothing here imports a component.

``twins`` has no foreign key to ``cabinets``: a cabinet may report before the registry
lists it, and ingest decides what to do with such cabinets, not the schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

ID_LENGTH: Final = 64
BOOT_ID_LENGTH: Final = 32
ENUM_LENGTH: Final = 32


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset: values are written as UTC and read back with UTC attached.
    PostgreSQL's ``timestamptz`` comes back in the session's zone and is converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored as UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

cabinets = Table(
    "cabinets",
    metadata,
    Column("cabinet_id", String(ID_LENGTH), primary_key=True),
    Column("name", String, nullable=False),
    Column("aed_model", String, nullable=False),
    Column("aed_serial", String, nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("address", String, nullable=False),
    Column("floor", String, nullable=False),
    Column("indoor_description", String, nullable=False),
    Column("site_type", String(ENUM_LENGTH), nullable=False),
    Column("region_code", String, nullable=False),
    Column("owner_unit", String, nullable=False),
    Column("access_mode", String(ENUM_LENGTH), nullable=False),
    Column("availability_hours", String, nullable=False),
    Column("install_date", Date),
    Column("pads_expiry", Date),
    Column("battery_expiry", Date),
)

people = Table(
    "people",
    metadata,
    Column("person_id", String(ID_LENGTH), primary_key=True),
    Column("name", String, nullable=False),
    Column("phone", String, nullable=False),
    Column("email", String),
    Column("chat_webhook", String),
    Column("language", String(ENUM_LENGTH), nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column(
        "cabinet_id",
        String(ID_LENGTH),
        ForeignKey("cabinets.cabinet_id"),
        primary_key=True,
    ),
    Column(
        "person_id",
        String(ID_LENGTH),
        ForeignKey("people.person_id"),
        primary_key=True,
        index=True,
    ),
    Column("role", String(ENUM_LENGTH), primary_key=True),
    Column("rank", Integer, nullable=False),
)

districts = Table(
    "districts",
    metadata,
    Column("region_code", String(ENUM_LENGTH), primary_key=True),
    Column("name", String, nullable=False),
    Column("population", BigInteger, nullable=False),
    Column("target_per_100k", Float),
    CheckConstraint("population > 0", name="ck_districts_population_positive"),
)
"""Population per district. No foreign key from ``cabinets.region_code``: a cabinet may
name a district the registry does not (yet) describe."""

registry_revision = Table(
    "registry_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_registry_revision_one_row"),
)
"""One row whose revision triggers move on every change to the four tables above."""


def _stamp(section: str, boot_column: str | None = None) -> list[Column[object]]:
    """The (boot id, seq, ts) stamp of a twin section; see :func:`aedfleet.twin.is_newer`."""
    return [
        Column(boot_column or f"{section}_boot_id", String(BOOT_ID_LENGTH)),
        Column(f"{section}_seq", BigInteger),
        Column(f"{section}_ts", UtcDateTime),
    ]


twins = Table(
    "twins",
    metadata,
    Column("cabinet_id", String(ID_LENGTH), primary_key=True),
    # status
    Column("online", Boolean),
    *_stamp("status"),
    # birth
    *_stamp("birth", boot_column="boot_id"),
    Column("aed_model", String),
    Column("firmware_version", String),
    Column("heartbeat_interval_s", Integer),
    Column("selftest_period", String(ENUM_LENGTH)),
    Column("time_zone", String),
    # heartbeat
    Column("aed_ready", Boolean),
    Column("battery_pct", Float),
    Column("temperature_c", Float),
    Column("humidity_pct", Float),
    Column("heater_on", Boolean),
    Column("rssi_dbm", Integer),
    Column("outbox_pending", BigInteger),
    Column("outbox_shed", BigInteger),
    *_stamp("heartbeat"),
    # door, AED presence, power
    Column("door", String(ENUM_LENGTH)),
    *_stamp("door"),
    Column("aed_present", Boolean),
    *_stamp("aed_present"),
    Column("power", String(ENUM_LENGTH)),
    *_stamp("power"),
    # self-test
    Column("selftest_kind", String(ENUM_LENGTH)),
    Column("selftest_result", String(ENUM_LENGTH)),
    Column("selftest_fault_codes", JSON(none_as_null=True)),
    Column("selftest_battery_pct", Float),
    *_stamp("selftest"),
    # consumables
    Column("pads_present", Boolean),
    Column("pads_expiry", Date),
    Column("battery_expiry", Date),
    Column("consumables_source", String(ENUM_LENGTH)),
    *_stamp("consumables"),
    # sequence and first/last seen
    Column("last_boot_id", String(BOOT_ID_LENGTH)),
    Column("last_seq", BigInteger),
    Column("last_seq_ts", UtcDateTime),
    Column("first_seen", UtcDateTime),
    Column("last_seen", UtcDateTime),
)
