"""Pure tests of quiet hours, grouping and the digest schedule, with the clock passed in."""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aedfleet.settings import describe_validation_error
from alerting.model import NoticeKind, Severity
from alerting.quiet import (
    URGENT,
    Batch,
    GroupingPolicy,
    PendingNotice,
    QuietHours,
    QuietSettings,
    group,
    next_digest_at,
    release_time,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(start=time(22, 0), end=time(7, 0), time_zone="Asia/Shanghai")
LUNCH = QuietHours(start=time(12, 0), end=time(13, 30), time_zone="Asia/Shanghai")
FAST = settings(max_examples=300, deadline=None)
WINDOW = GroupingPolicy(window=timedelta(minutes=5))


def shanghai(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A May 2024 wall-clock time in Shanghai, as a UTC instant."""
    return datetime(2024, 5, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


def new_york(wall: datetime, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=NEW_YORK, fold=fold).astimezone(UTC)


# Quiet hours


@pytest.mark.parametrize(
    ("quiet", "wall", "inside"),
    [
        (NIGHT, (1, 21, 59, 59), False),
        (NIGHT, (1, 22, 0, 0), True),  # the start is inside
        (NIGHT, (1, 23, 59, 59), True),
        (NIGHT, (2, 0, 0, 0), True),  # across midnight
        (NIGHT, (2, 6, 59, 59), True),
        (NIGHT, (2, 7, 0, 0), False),  # the end is not
        (NIGHT, (2, 12, 0, 0), False),
        (LUNCH, (2, 11, 59, 59), False),
        (LUNCH, (2, 12, 0, 0), True),
        (LUNCH, (2, 13, 29, 59), True),
        (LUNCH, (2, 13, 30, 0), False),
        (LUNCH, (2, 23, 0, 0), False),
    ],
)
def test_quiet_hours_follow_the_local_wall_clock(
    quiet: QuietHours, wall: tuple[int, int, int, int], inside: bool
) -> None:
    assert quiet.contains(shanghai(*wall)) is inside


def test_the_quiet_period_ends_at_the_next_local_end() -> None:
    assert NIGHT.end_after(shanghai(1, 22, 0)) == shanghai(2, 7, 0)
    assert NIGHT.end_after(shanghai(2, 3, 15)) == shanghai(2, 7, 0)
    assert LUNCH.end_after(shanghai(2, 12, 10)) == shanghai(2, 13, 30)


def test_the_end_of_quiet_hours_that_clocks_jump_over_is_the_jump() -> None:
    # New York, 10 March 2024: 02:00 EST becomes 03:00 EDT, so 02:30 never happens.
    quiet = QuietHours(start=time(1, 0), end=time(2, 30), time_zone="America/New_York")
    at = new_york(datetime(2024, 3, 10, 1, 10))
    assert quiet.contains(at)
    assert quiet.end_after(at) == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)


def test_an_end_that_happens_twice_is_the_next_one() -> None:
    # New York, 3 November 2024: 02:00 EDT becomes 01:00 EST, so 01:00-02:00 happens twice.
    quiet = QuietHours(start=time(0, 0), end=time(1, 30), time_zone="America/New_York")
    first_pass = new_york(datetime(2024, 11, 3, 1, 10), fold=0)
    second_pass = new_york(datetime(2024, 11, 3, 1, 10), fold=1)
    assert quiet.end_after(first_pass) == new_york(datetime(2024, 11, 3, 1, 30), fold=0)
    assert quiet.end_after(second_pass) == new_york(datetime(2024, 11, 3, 1, 30), fold=1)
    assert quiet.end_after(second_pass) > second_pass


def test_half_hour_daylight_saving_is_handled() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 became 02:30 on 6 October 2024.
    quiet = QuietHours(start=time(1, 0), end=time(2, 15), time_zone="Australia/Lord_Howe")
    zone = ZoneInfo("Australia/Lord_Howe")
    at = datetime(2024, 10, 6, 1, 45, tzinfo=zone).astimezone(UTC)
    jump = datetime(2024, 10, 6, 2, 30, tzinfo=zone).astimezone(UTC)
    assert quiet.end_after(at) == jump
    assert jump - at == timedelta(minutes=15)


walls = st.times().map(lambda wall: wall.replace(microsecond=0))


@FAST
@given(
    start=walls,
    end=walls,
    at=st.datetimes(
        min_value=datetime(1992, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_without_daylight_saving_quiet_hours_are_plain_clock_arithmetic(
    start: time, end: time, at: datetime
) -> None:
    if start == end:
        return
    quiet = QuietHours(start=start, end=end, time_zone="Asia/Shanghai")
    wall = at.astimezone(SHANGHAI)
    of_day = timedelta(
        hours=wall.hour, minutes=wall.minute, seconds=wall.second, microseconds=wall.microsecond
    )
    start_of_day = timedelta(hours=start.hour, minutes=start.minute, seconds=start.second)
    end_of_day = timedelta(hours=end.hour, minutes=end.minute, seconds=end.second)
    day = timedelta(days=1)
    assert quiet.contains(at) == ((of_day - start_of_day) % day < (end_of_day - start_of_day) % day)
    until_end = (end_of_day - of_day) % day or day
    assert quiet.end_after(at) == at + until_end


zones = st.sampled_from(
    [
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Santiago",
        "Asia/Shanghai",
    ]
)


@FAST
@given(
    start=walls,
    end=walls,
    zone=zones,
    at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
    ),
)
def test_the_quiet_period_always_ends_within_a_day(
    start: time, end: time, zone: str, at: datetime
) -> None:
    if start == end:
        return
    quiet = QuietHours(start=start, end=end, time_zone=zone)
    ends = quiet.end_after(at)
    assert at < ends <= at + timedelta(hours=26)
    wall = ends.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    # The local clock then reads the end, or a time it jumped to over the end.
    assert wall.time() == end or (
        ends.astimezone(ZoneInfo(zone)).utcoffset()
        != (ends - timedelta(seconds=1)).astimezone(ZoneInfo(zone)).utcoffset()
    )


# Release times


@pytest.mark.parametrize("severity", list(Severity))
def test_only_warning_and_info_wait_for_the_end_of_quiet_hours(severity: Severity) -> None:
    at_night = shanghai(2, 3, 0)
    released = release_time(at_night, severity, NIGHT, now=at_night)
    if severity in {Severity.CRITICAL, Severity.HIGH}:
        assert released == at_night  # a collapsed person next to an AED does not wait
    else:
        assert released == shanghai(2, 7, 0)


def test_urgent_is_critical_and_high() -> None:
    assert {Severity.CRITICAL, Severity.HIGH} == URGENT


@pytest.mark.parametrize("severity", list(Severity))
def test_outside_quiet_hours_or_without_them_nothing_waits(severity: Severity) -> None:
    by_day = shanghai(2, 10, 0)
    assert release_time(by_day, severity, NIGHT, now=by_day) == by_day
    at_night = shanghai(2, 3, 0)
    assert release_time(at_night, severity, None, now=at_night) == at_night


def test_a_pending_notice_is_judged_when_it_is_recomputed() -> None:
    created = shanghai(1, 21, 0)
    # Quiet hours set at 23:00 hold a notice still pending then, though it was made before.
    assert release_time(created, Severity.WARNING, NIGHT, now=shanghai(1, 23, 0)) == shanghai(
        2, 7, 0
    )
    # Released later, it is due at once: never before now, never after.
    assert release_time(created, Severity.INFO, NIGHT, now=shanghai(2, 8, 0)) == shanghai(2, 8, 0)


# Grouping


ids = itertools.count(1)
MORNING = shanghai(2, 10, 0)


def notice(
    person_id: str = "p-1",
    severity: Severity = Severity.WARNING,
    created_at: datetime = MORNING,
    release_at: datetime | None = None,
    alarm_id: int = 1,
    kind: NoticeKind = NoticeKind.PAGE,
) -> PendingNotice:
    return PendingNotice(
        notification_id=next(ids),
        person_id=person_id,
        alarm_id=alarm_id,
        severity=severity,
        kind=kind,
        created_at=created_at,
        release_at=release_at or created_at,
    )


def test_urgent_notices_go_alone_at_once() -> None:
    created = shanghai(2, 10, 0)
    door = notice(severity=Severity.CRITICAL, alarm_id=1, created_at=created)
    removed = notice(severity=Severity.HIGH, alarm_id=2, created_at=created)
    pads = notice(severity=Severity.WARNING, alarm_id=3, created_at=created)
    batches = group([pads, removed, door], WINDOW, now=created)
    assert batches == (
        Batch(person_id="p-1", notices=(door,)),
        Batch(person_id="p-1", notices=(removed,)),
    )
    assert all(batch.urgent for batch in batches)


def test_non_urgent_notices_to_one_person_wait_the_window_and_go_together() -> None:
    first = notice(alarm_id=1, created_at=shanghai(2, 10, 0))
    second = notice(alarm_id=2, created_at=shanghai(2, 10, 3), severity=Severity.INFO)
    third = notice(alarm_id=2, created_at=shanghai(2, 10, 4), kind=NoticeKind.RESOLVED)
    other = notice(person_id="p-2", alarm_id=1, created_at=shanghai(2, 10, 2))
    pending = [third, other, second, first]
    assert group(pending, WINDOW, now=shanghai(2, 10, 4, 59)) == ()
    batches = group(pending, WINDOW, now=shanghai(2, 10, 5))
    assert batches == (Batch(person_id="p-1", notices=(first, second, third)),)
    (batch,) = batches
    assert batch.severity is Severity.WARNING
    assert batch.alarm_ids == (1, 2)
    assert batch.notification_ids == (
        first.notification_id,
        second.notification_id,
        third.notification_id,
    )
    assert not batch.urgent
    assert group(pending, WINDOW, now=shanghai(2, 10, 7)) == (
        Batch(person_id="p-1", notices=(first, second, third)),
        Batch(person_id="p-2", notices=(other,)),
    )


def test_a_zero_window_sends_each_due_notice_at_once() -> None:
    one = notice()
    assert group([one], GroupingPolicy(window=timedelta(0)), now=one.created_at) == (
        Batch(person_id="p-1", notices=(one,)),
    )


def test_notices_held_overnight_go_out_together_when_quiet_hours_end() -> None:
    morning = shanghai(2, 7, 0)
    held = [
        notice(
            alarm_id=alarm_id,
            created_at=created,
            release_at=release_time(created, Severity.WARNING, NIGHT, now=created),
        )
        for alarm_id, created in enumerate(
            [shanghai(1, 23, 0), shanghai(2, 2, 30), shanghai(2, 6, 58)], start=1
        )
    ]
    assert {each.release_at for each in held} == {morning}
    assert group(held, WINDOW, now=morning - timedelta(seconds=1)) == ()
    assert group(held, WINDOW, now=morning) == (Batch(person_id="p-1", notices=tuple(held)),)


def test_the_same_notification_cannot_be_pending_twice() -> None:
    one = notice()
    with pytest.raises(ValueError, match=f"notification {one.notification_id} is pending twice"):
        group([one, one], WINDOW, now=one.created_at)


def test_a_batch_is_for_one_person() -> None:
    with pytest.raises(ValidationError, match="holds notices for"):
        Batch(person_id="p-1", notices=(notice(person_id="p-2"),))


START = MORNING
pending_strategy = st.lists(
    st.builds(
        PendingNotice,
        notification_id=st.integers(1, 10_000),
        person_id=st.sampled_from(["p-1", "p-2", "p-3"]),
        alarm_id=st.integers(1, 5),
        severity=st.sampled_from(list(Severity)),
        kind=st.sampled_from(list(NoticeKind)),
        created_at=st.integers(0, 20).map(lambda minutes: START + timedelta(minutes=minutes)),
        release_at=st.integers(0, 30).map(lambda minutes: START + timedelta(minutes=minutes)),
    ),
    max_size=20,
    unique_by=lambda each: each.notification_id,
)


@FAST
@given(
    pending=pending_strategy,
    window_minutes=st.integers(0, 10),
    now_minutes=st.integers(0, 40),
    data=st.data(),
)
def test_grouping_sends_what_is_due_once_and_holds_only_what_waits_for_the_window(
    pending: list[PendingNotice], window_minutes: int, now_minutes: int, data: st.DataObject
) -> None:
    policy = GroupingPolicy(window=timedelta(minutes=window_minutes))
    now = START + timedelta(minutes=now_minutes)
    batches = group(pending, policy, now)
    sent = [each for batch in batches for each in batch.notices]
    assert len(sent) == len({each.notification_id for each in sent})
    assert all(each.release_at <= now for each in sent)
    due = [each for each in pending if each.release_at <= now]
    # Every due urgent notice goes at once, alone.
    assert {each.notification_id for each in due if each.severity in URGENT} == {
        batch.notices[0].notification_id for batch in batches if batch.urgent
    }
    assert all(len(batch.notices) == 1 for batch in batches if batch.urgent)
    # The rest: one message per person with everything due, once the oldest has waited.
    grouped = [batch for batch in batches if not batch.urgent]
    assert len({batch.person_id for batch in grouped}) == len(grouped)
    for person_id in {each.person_id for each in due}:
        waiting = [
            each for each in due if each.person_id == person_id and each.severity not in URGENT
        ]
        batch = next((batch for batch in grouped if batch.person_id == person_id), None)
        if not waiting:
            assert batch is None
        elif now - min(each.created_at for each in waiting) >= policy.window:
            assert batch is not None
            assert set(batch.notices) == set(waiting)
        else:
            assert batch is None
    # The order of the input does not matter.
    shuffled = data.draw(st.permutations(pending))
    assert group(shuffled, policy, now) == batches


# The digest


def test_the_digest_goes_at_the_next_local_digest_time() -> None:
    digest = time(8, 30)
    assert next_digest_at(digest, "Asia/Shanghai", shanghai(2, 6, 0)) == shanghai(2, 8, 30)
    # Strictly after now: asking at the moment a digest went gives tomorrow's.
    assert next_digest_at(digest, "Asia/Shanghai", shanghai(2, 8, 30)) == shanghai(3, 8, 30)
    assert next_digest_at(digest, "Asia/Shanghai", shanghai(2, 20, 0)) == shanghai(3, 8, 30)


def test_a_digest_inside_quiet_hours_waits_for_their_end() -> None:
    late_sleeper = QuietHours(start=time(23, 0), end=time(9, 15), time_zone="Asia/Shanghai")
    assert next_digest_at(time(8, 30), "Asia/Shanghai", shanghai(2, 6, 0), late_sleeper) == (
        shanghai(2, 9, 15)
    )
    assert next_digest_at(time(8, 30), "Asia/Shanghai", shanghai(2, 6, 0), NIGHT) == (
        shanghai(2, 8, 30)
    )


def test_the_digest_keeps_local_time_across_daylight_saving() -> None:
    saturday = new_york(datetime(2024, 3, 9, 8, 30))
    sunday = next_digest_at(time(8, 30), "America/New_York", saturday)
    assert sunday == new_york(datetime(2024, 3, 10, 8, 30))
    assert sunday - saturday == timedelta(hours=23)


# Settings


def test_settings_default_to_night_quiet_hours_in_shanghai() -> None:
    quiet = QuietSettings()
    assert quiet.quiet_hours_for("anyone") == NIGHT
    assert quiet.grouping.window == timedelta(minutes=5)
    assert quiet.digest_time == time(8, 30)


def test_settings_read_from_toml_with_overrides_and_off() -> None:
    text = """
        default = "off"
        digest_time = 08:00:00
        time_zone = "Asia/Urumqi"

        [grouping]
        window = "PT2M"

        [overrides.p-7]
        start = 23:30:00
        end = 06:00:00
        time_zone = "Europe/London"

        [overrides]
        p-9 = "off"
    """
    quiet = QuietSettings.model_validate(tomllib.loads(text))
    assert quiet.quiet_hours_for("p-1") is None
    assert quiet.quiet_hours_for("p-9") is None
    assert quiet.quiet_hours_for("p-7") == QuietHours(
        start=time(23, 30), end=time(6, 0), time_zone="Europe/London"
    )
    assert quiet.grouping.window == timedelta(minutes=2)
    # The digest follows the person's own zone when they have quiet hours.
    may = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)
    assert quiet.next_digest_for("p-7", may) == datetime(2024, 5, 2, 7, 0, tzinfo=UTC)
    assert quiet.next_digest_for("p-1", may) == datetime(2024, 5, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        (
            {"overrides": {"p-7": {"start": "22:00", "end": "07:00", "time_zone": "Mars/Base"}}},
            "overrides.p-7.time_zone",
            "unknown IANA time zone",
        ),
        ({"overrides": {"p-7": {"start": "25:00", "end": "07:00"}}}, "overrides.p-7.start", ""),
        ({"overrides": {"p 7": "off"}}, "overrides.p 7.[key]", "pattern"),
        ({"default": {"start": "22:00", "end": "22:00"}}, "default", "that is no window"),
        (
            {"default": {"start": "22:00+08:00", "end": "07:00"}},
            "default.start",
            "without an offset",
        ),
        ({"grouping": {"window": "PT2H"}}, "grouping.window", "less than or equal to 1 hour"),
        ({"grouping": {"window": -1}}, "grouping.window", "greater than or equal"),
        ({"digest_time": "8:30pm"}, "digest_time", ""),
        ({"quiet_hours": {}}, "quiet_hours", "Extra inputs"),
    ],
)
def test_bad_settings_name_their_key(values: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        QuietSettings.model_validate(values)
    described = describe_validation_error(caught.value, "alerting.toml", QuietSettings)
    assert f": {key}: " in described
    assert message in described
