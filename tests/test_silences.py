"""Pure tests of silences: matching, the never-silenced door rule, and request validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerting.model import AlarmType, Severity, Silence
from alerting.silences import (
    DEFAULT_MAX_DURATION,
    NEVER_SILENCED,
    AcceptedSilence,
    SilenceError,
    SilenceLimits,
    SilenceRequest,
    accept,
    never_silenced,
    silenced,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FAST = settings(max_examples=200, deadline=None)
SILENCEABLE = [alarm_type for alarm_type in AlarmType if alarm_type not in NEVER_SILENCED]


def window(
    silence_id: int = 1,
    *,
    cabinet_id: str | None = None,
    region_code: str | None = None,
    alarm_type: AlarmType | None = None,
    starts_at: datetime = T0 - timedelta(hours=1),
    ends_at: datetime = T0 + timedelta(hours=1),
) -> Silence:
    return Silence(
        silence_id=silence_id,
        cabinet_id=cabinet_id,
        region_code=region_code,
        alarm_type=alarm_type,
        starts_at=starts_at,
        ends_at=ends_at,
        reason="pads replaced",
        created_by="ops",
    )


def check(
    silences: list[Silence],
    *,
    cabinet_id: str = "cab-1",
    region_code: str = "440305",
    alarm_type: AlarmType = AlarmType.PADS_EXPIRED,
    severity: Severity = Severity.HIGH,
    now: datetime = T0,
) -> Silence | None:
    return silenced(silences, cabinet_id, region_code, alarm_type, severity, now)


# Matching


def test_no_silences_means_no_silence() -> None:
    assert check([]) is None


@pytest.mark.parametrize(
    ("matchers", "applies"),
    [
        ({"cabinet_id": "cab-1"}, True),
        ({"cabinet_id": "cab-2"}, False),
        ({"region_code": "440305"}, True),
        ({"region_code": "440300"}, False),  # exact codes only: no guessed hierarchy
        ({"alarm_type": AlarmType.PADS_EXPIRED}, True),
        ({"alarm_type": AlarmType.OFFLINE}, False),
        ({"cabinet_id": "cab-1", "alarm_type": AlarmType.PADS_EXPIRED}, True),
        ({"cabinet_id": "cab-1", "alarm_type": AlarmType.OFFLINE}, False),
        ({"cabinet_id": "cab-2", "alarm_type": AlarmType.PADS_EXPIRED}, False),
        ({"region_code": "440305", "alarm_type": AlarmType.PADS_EXPIRED}, True),
        ({"region_code": "440305", "cabinet_id": "cab-2"}, False),
        (
            {
                "cabinet_id": "cab-1",
                "region_code": "440305",
                "alarm_type": AlarmType.PADS_EXPIRED,
            },
            True,
        ),
    ],
)
def test_every_named_matcher_must_match(matchers: dict[str, object], applies: bool) -> None:
    silence = window(**matchers)  # type: ignore[arg-type]
    assert (check([silence]) == silence) is applies


def test_a_cabinet_without_a_region_is_not_in_any_region() -> None:
    assert check([window(region_code="440305")], region_code="") is None


def test_the_window_includes_its_start_and_excludes_its_end() -> None:
    silence = window(starts_at=T0, ends_at=T0 + timedelta(hours=1))
    assert check([silence], now=T0 - timedelta(microseconds=1)) is None
    assert check([silence], now=T0) == silence
    assert check([silence], now=T0 + timedelta(hours=1) - timedelta(microseconds=1)) == silence
    assert check([silence], now=T0 + timedelta(hours=1)) is None


def test_the_silence_that_ends_last_wins_and_ties_go_to_the_lowest_id() -> None:
    short = window(3, cabinet_id="cab-1", ends_at=T0 + timedelta(hours=1))
    long_late = window(5, region_code="440305", ends_at=T0 + timedelta(days=2))
    long_early = window(4, alarm_type=AlarmType.PADS_EXPIRED, ends_at=T0 + timedelta(days=2))
    assert check([short, long_late, long_early]) == long_early
    assert check([short]) == short


# The door rule


@pytest.mark.parametrize("alarm_type", sorted(NEVER_SILENCED))
@pytest.mark.parametrize("severity", list(Severity))
def test_an_opened_door_or_removed_aed_pages_through_any_silence(
    alarm_type: AlarmType, severity: Severity
) -> None:
    # Silence forbids nothing itself (the request does), so build the worst case directly:
    # a window naming this very cabinet, region and alarm type.
    exact = window(cabinet_id="cab-1", region_code="440305", alarm_type=alarm_type)
    fleet = window(2, region_code="440305")
    assert never_silenced(alarm_type)
    assert check([exact, fleet], alarm_type=alarm_type, severity=severity) is None


def test_the_never_silenced_types_are_the_door_and_the_aed() -> None:
    assert {AlarmType.DOOR_OPENED, AlarmType.AED_REMOVED} == NEVER_SILENCED
    assert not any(never_silenced(alarm_type) for alarm_type in SILENCEABLE)


def test_a_request_to_silence_an_opened_door_is_refused() -> None:
    with pytest.raises(ValidationError, match="door_opened alarms are never silenced"):
        SilenceRequest(
            cabinet_id="cab-1",
            alarm_type=AlarmType.DOOR_OPENED,
            ends_at=T0 + timedelta(hours=1),
            reason="cabinet repair",
        )


silences_strategy = st.lists(
    st.builds(
        window,
        st.integers(1, 50),
        cabinet_id=st.sampled_from([None, "cab-1", "cab-2"]),
        region_code=st.sampled_from([None, "440305", "440306"]),
        alarm_type=st.sampled_from([None, *AlarmType]),
        starts_at=st.sampled_from([T0 - timedelta(days=1), T0, T0 + timedelta(minutes=1)]),
        ends_at=st.sampled_from([T0 + timedelta(minutes=1), T0 + timedelta(days=3)]),
    ),
    max_size=8,
)


@FAST
@given(
    silences=silences_strategy,
    cabinet_id=st.sampled_from(["cab-1", "cab-2", "cab-3"]),
    region_code=st.sampled_from(["", "440305", "440306"]),
    alarm_type=st.sampled_from(list(AlarmType)),
    severity=st.sampled_from(list(Severity)),
)
def test_silenced_is_exactly_the_applying_silence_that_ends_last(
    silences: list[Silence],
    cabinet_id: str,
    region_code: str,
    alarm_type: AlarmType,
    severity: Severity,
) -> None:
    found = silenced(silences, cabinet_id, region_code, alarm_type, severity, T0)
    applying = [
        silence
        for silence in silences
        if silence.starts_at <= T0 < silence.ends_at
        and silence.cabinet_id in {None, cabinet_id}
        and silence.region_code in {None, region_code}
        and silence.alarm_type in {None, alarm_type}
    ]
    if alarm_type in NEVER_SILENCED or not applying:
        assert found is None
        return
    assert found in applying
    assert found is not None
    assert all(found.ends_at >= other.ends_at for other in applying)


# Requests


def request(**changes: object) -> SilenceRequest:
    fields: dict[str, object] = {
        "cabinet_id": "cab-1",
        "ends_at": (T0 + timedelta(hours=4)).isoformat(),
        "reason": "pads replaced",
    }
    fields.update(changes)
    return SilenceRequest.model_validate(fields)


def test_a_request_needs_a_matcher() -> None:
    with pytest.raises(ValidationError, match="at least one of cabinet_id, region_code"):
        request(cabinet_id=None)


@pytest.mark.parametrize(
    "matcher",
    [{"cabinet_id": "cab-9"}, {"region_code": "440305"}, {"alarm_type": "offline"}],
)
def test_any_single_matcher_is_enough(matcher: dict[str, str]) -> None:
    assert request(**{"cabinet_id": None, **matcher})


def test_a_request_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reason is required"):
        request(reason="   ")
    with pytest.raises(ValidationError, match="reason"):
        SilenceRequest.model_validate({"cabinet_id": "cab-1", "ends_at": T0.isoformat()})


def test_a_request_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationError, match="must be after starts_at"):
        request(starts_at=T0.isoformat(), ends_at=T0.isoformat())


@pytest.mark.parametrize(
    "changes",
    [
        {"ends_at": "2024-05-01T12:00:00"},  # no offset
        {"cabinet_id": "a/b"},
        {"region_code": ""},
        {"alarm_type": "coffee_machine"},
        {"reason": "x" * 501},
        {"created_by": "someone"},  # who made it comes from authentication, not the body
    ],
)
def test_malformed_requests_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        request(**changes)


def test_a_silence_starts_now_unless_the_request_says_otherwise() -> None:
    limits = SilenceLimits()
    beijing = T0.astimezone(timezone(timedelta(hours=8)))
    accepted = accept(request(), limits=limits, now=beijing)
    assert accepted == AcceptedSilence(
        cabinet_id="cab-1",
        region_code=None,
        alarm_type=None,
        starts_at=T0,
        ends_at=T0 + timedelta(hours=4),
        reason="pads replaced",
    )
    assert accepted.starts_at.tzinfo is UTC
    later = T0 + timedelta(hours=1)
    planned = accept(request(starts_at=later.isoformat()), limits=limits, now=T0)
    assert planned.starts_at == later


def test_an_accepted_silence_silences_once_stored() -> None:
    accepted = accept(
        request(cabinet_id=None, region_code=" 440305 ", alarm_type="offline"),
        limits=SilenceLimits(),
        now=T0,
    )
    # What the store does with it: add who made it and an id.
    stored = Silence(silence_id=1, created_by="ops", **dict(accepted))
    assert stored.region_code == "440305"
    assert check([stored], alarm_type=AlarmType.OFFLINE) == stored
    assert check([stored], alarm_type=AlarmType.OFFLINE, now=T0 + timedelta(hours=4)) is None


def test_a_silence_may_last_the_maximum_but_no_longer() -> None:
    limits = SilenceLimits()
    assert limits.max_duration == DEFAULT_MAX_DURATION == timedelta(days=30)
    longest = request(ends_at=(T0 + DEFAULT_MAX_DURATION).isoformat())
    assert accept(longest, limits=limits, now=T0).ends_at == T0 + DEFAULT_MAX_DURATION
    too_long = request(ends_at=(T0 + DEFAULT_MAX_DURATION + timedelta(seconds=1)).isoformat())
    with pytest.raises(SilenceError, match="at most 30 days; this one would last 30 days 1 second"):
        accept(too_long, limits=limits, now=T0)
    # The limit counts from the start, however far ahead the window is planned.
    planned = request(
        starts_at=(T0 + timedelta(days=60)).isoformat(),
        ends_at=(T0 + timedelta(days=91)).isoformat(),
    )
    with pytest.raises(SilenceError, match="would last 31 days"):
        accept(planned, limits=limits, now=T0)


def test_the_maximum_is_configurable() -> None:
    limits = SilenceLimits.model_validate({"max_duration": "PT2H"})
    with pytest.raises(SilenceError, match="at most 2 hours; this one would last 4 hours"):
        accept(request(), limits=limits, now=T0)
    with pytest.raises(ValidationError, match="max_duration"):
        SilenceLimits(max_duration=timedelta(0))


def test_a_window_already_over_is_refused() -> None:
    with pytest.raises(SilenceError, match="not in the future"):
        accept(request(ends_at=T0.isoformat()), limits=SilenceLimits(), now=T0)


def test_a_window_may_have_begun_already_but_now_must_be_aware() -> None:
    past_start = request(starts_at=(T0 - timedelta(hours=2)).isoformat())
    assert accept(past_start, limits=SilenceLimits(), now=T0).starts_at == T0 - timedelta(hours=2)
    with pytest.raises(ValueError, match="timezone-aware"):
        accept(request(), limits=SilenceLimits(), now=datetime(2024, 5, 1))
