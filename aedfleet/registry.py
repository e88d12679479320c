"""The fleet registry as its users maintain it: cabinets, people, and who looks after what.

These are the validated values every registry format (CSV, YAML, OpenStreetMap GeoJSON)
is parsed into and the state store persists. They carry no database or file concerns.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl
from pydantic.networks import validate_email

from aedfleet.contract import CabinetId


class SiteType(StrEnum):
    SCHOOL = "school"
    TRANSPORT_HUB = "transport_hub"
    SCENIC_SPOT = "scenic_spot"
    SPORTS_VENUE = "sports_venue"
    ELDERLY_CARE = "elderly_care"
    BORDER_POST = "border_post"
    GOVERNMENT = "government"
    COMMERCIAL = "commercial"
    HOSPITAL = "hospital"
    RESIDENTIAL = "residential"
    OTHER = "other"


class AccessMode(StrEnum):
    OPEN = "open"
    PIN = "pin"
    QR = "qr"


class Role(StrEnum):
    CAPTAIN = "captain"
    BACKUP = "backup"
    COORDINATOR = "coordinator"


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


PersonId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,;]+$")]
Text = Annotated[str, Field(max_length=500)]


_PLAIN_ADDRESS: Final = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([A-Za-z0-9.-]+)"
)
_MAX_LOCAL_PART: Final = 64
_MAX_ADDRESS: Final = 254


def _email(value: str) -> str:
    """What pydantic's ``EmailStr`` makes of ``value``, at a fraction of its cost.

    email-validator checks a domain character by character against IDNA's tables, about
    20 µs an address: 40 % of a 100,000-cabinet import, whose people share a few domains.
    A plain ASCII address (a dot-atom local part, as email-validator reads it) has its
    domain checked once per domain; anything else takes email-validator's whole path.
    """
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None or len(match[1]) > _MAX_LOCAL_PART or len(value) > _MAX_ADDRESS:
        return validate_email(value)[1]
    return f"{match[1]}@{_checked_domain(match[2])}"


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str:
    """The normalised domain; raises pydantic's email error for a domain it refuses."""
    return validate_email(f"x@{domain}")[1].partition("@")[2]


Email = Annotated[str, AfterValidator(_email), Field(json_schema_extra={"format": "email"})]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Cabinet(_Record):
    cabinet_id: CabinetId
    name: Text
    aed_model: Text = ""
    aed_serial: Text = ""
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    address: Text = ""
    floor: Annotated[str, Field(max_length=32)] = ""
    indoor_description: Text = ""
    site_type: SiteType = SiteType.OTHER
    region_code: Annotated[str, Field(max_length=32)] = Field(
        default="", description="District or region code, e.g. 440305"
    )
    owner_unit: Text = ""
    access_mode: AccessMode = AccessMode.OPEN
    availability_hours: Annotated[str, Field(max_length=200)] = Field(
        default="24/7", description="OpenStreetMap opening_hours syntax"
    )
    install_date: date | None = None
    pads_expiry: date | None = None
    battery_expiry: date | None = None


class Person(_Record):
    person_id: PersonId
    name: Text
    phone: Annotated[str, Field(max_length=32)] = ""
    email: Email | None = None
    chat_webhook: HttpUrl | None = None
    language: Language = Language.ZH


class Assignment(_Record):
    """A person's role at a cabinet; backups are tried in ``rank`` order."""

    cabinet_id: CabinetId
    person_id: PersonId
    role: Role
    rank: int = Field(default=0, ge=0, le=99)


RegionCode = Annotated[str, Field(min_length=1, max_length=32)]


class District(_Record):
    """A district cabinets' ``region_code`` names, with the population its AEDs serve.

    ``target_per_100k``: AEDs per 100,000 people this district aims at; None takes the
    fleet's target (``AlertingSettings.coverage``).
    """

    region_code: RegionCode
    name: Text
    population: int = Field(gt=0)
    target_per_100k: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class Registry(_Record):
    cabinets: tuple[Cabinet, ...] = ()
    people: tuple[Person, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    districts: tuple[District, ...] = ()
