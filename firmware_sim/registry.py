"""A fleet registry for a simulated fleet: where each cabinet stands and who looks after it.

The simulator makes cabinets; the server side also needs to know their sites and their
people. :func:`simulated_registry` writes a plausible registry for a scenario's fleet,
repeatable from the scenario's seed: cabinets spread over Shenzhen's districts, each with
an AED captain and a backup captain of its own, and one coordinator per responsible unit
of :data:`CABINETS_PER_UNIT` cabinets. Every fourth captain and backup reads English
(captains of cabinets 3, 7, 11 …; backups of 1, 5, 9 …), the rest Chinese, so that
notifications in both languages show up in a demo or a test.
"""

from __future__ import annotations

import random
from typing import Final

from aedfleet.registry import (
    AccessMode,
    Assignment,
    Cabinet,
    Language,
    Person,
    Registry,
    Role,
    SiteType,
)
from firmware_sim.fleet import AED_MODELS
from firmware_sim.scenario import Scenario, fleet_specs

CABINETS_PER_UNIT: Final = 10

# (region code, district, centre latitude, centre longitude)
_DISTRICTS: Final = (
    ("440303", "罗湖区", 22.548, 114.131),
    ("440304", "福田区", 22.541, 114.055),
    ("440305", "南山区", 22.533, 113.930),
    ("440306", "宝安区", 22.555, 113.884),
    ("440307", "龙岗区", 22.721, 114.247),
    ("440308", "盐田区", 22.557, 114.236),
)
_SITES: Final = (
    (SiteType.TRANSPORT_HUB, "地铁站", "站厅层B出口旁"),
    (SiteType.SCHOOL, "学校", "体育馆入口左侧"),
    (SiteType.SPORTS_VENUE, "体育中心", "一楼服务台旁"),
    (SiteType.SCENIC_SPOT, "公园", "游客中心门口"),
    (SiteType.ELDERLY_CARE, "养老院", "一楼大厅"),
    (SiteType.COMMERCIAL, "购物中心", "二楼电梯口"),
)
_SURNAMES: Final = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN: Final = ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "勇", "军", "杰", "娟")
_ENGLISH: Final = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Robin")


def person_ids(index: int) -> tuple[str, str]:
    """The captain's and the backup captain's person ids of cabinet ``index``."""
    return f"captain-{index:04d}", f"backup-{index:04d}"


def coordinator_id(index: int) -> str:
    """The person id of the coordinator responsible for cabinet ``index``."""
    return f"coordinator-{index // CABINETS_PER_UNIT:03d}"


def _person(rng: random.Random, person_id: str, english: bool, email_domain: str) -> Person:
    name = (
        f"{rng.choice(_ENGLISH)} {rng.choice(_SURNAMES)}"
        if english
        else rng.choice(_SURNAMES) + rng.choice(_GIVEN)
    )
    return Person(
        person_id=person_id,
        name=name,
        phone=f"+86 138{rng.randint(0, 99_999_999):08d}",
        email=f"{person_id}@{email_domain}",
        language=Language.EN if english else Language.ZH,
    )


def simulated_registry(
    scenario: Scenario, size: int | None = None, email_domain: str = "example.cn"
) -> Registry:
    """The registry of the scenario's fleet (``size`` overrides the scenario's)."""
    rng = random.Random(scenario.seed)
    cabinets: list[Cabinet] = []
    people: dict[str, Person] = {}
    assignments: list[Assignment] = []
    for index, spec in enumerate(fleet_specs(scenario, size)):
        region, district, latitude, longitude = _DISTRICTS[index % len(_DISTRICTS)]
        site_type, site, spot = _SITES[(index // len(_DISTRICTS)) % len(_SITES)]
        unit = index // CABINETS_PER_UNIT
        cabinets.append(
            Cabinet(
                cabinet_id=spec.cabinet_id,
                name=f"{district}{site} {index + 1}号AED",
                aed_model=AED_MODELS[spec.seed % len(AED_MODELS)],
                aed_serial=f"SN{spec.seed:010d}",
                latitude=round(latitude + rng.uniform(-0.03, 0.03), 6),
                longitude=round(longitude + rng.uniform(-0.03, 0.03), 6),
                address=f"广东省深圳市{district}示例路{index + 1}号",
                floor="1",
                indoor_description=spot,
                site_type=site_type,
                region_code=region,
                owner_unit=f"{district}卫生健康局 第{unit + 1}责任单位",
                access_mode=(AccessMode.OPEN, AccessMode.QR, AccessMode.PIN)[index % 3],
            )
        )
        captain, backup = person_ids(index)
        coordinator = coordinator_id(index)
        people[captain] = _person(rng, captain, index % 4 == 3, email_domain)
        people[backup] = _person(rng, backup, index % 4 == 1, email_domain)
        if coordinator not in people:
            people[coordinator] = _person(rng, coordinator, unit % 2 == 1, email_domain)
        assignments += [
            Assignment(cabinet_id=spec.cabinet_id, person_id=captain, role=Role.CAPTAIN),
            Assignment(cabinet_id=spec.cabinet_id, person_id=backup, role=Role.BACKUP),
            Assignment(cabinet_id=spec.cabinet_id, person_id=coordinator, role=Role.COORDINATOR),
        ]
    return Registry(
        cabinets=tuple(cabinets), people=tuple(people.values()), assignments=tuple(assignments)
    )
