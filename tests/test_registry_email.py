"""People's email addresses: the registry's fast check agrees with pydantic's EmailStr."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, EmailStr, ValidationError

from aedfleet.registry import Language, Person


class ReferencePerson(BaseModel):
    """The registry's people as they were: pydantic's own EmailStr, the same config."""

    model_config = ConfigDict(str_strip_whitespace=True)
    email: EmailStr | None = None


ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=70),
    st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=12), min_size=1, max_size=4).map(
        ".".join
    ),
    st.text(min_size=1, max_size=8),  # anything, Unicode and quotes included
)
labels = st.one_of(
    st.sampled_from(["example", "Example", "mail-1", "xn--fiqs8s", "123", "-bad", "bad-", "a"]),
    st.text(alphabet="abcXYZ019-", min_size=1, max_size=64),
)
tlds = st.sampled_from(
    ["cn", "CN", "com", "test", "local", "localhost", "invalid", "1", "中国", ""]
)
domains = st.one_of(
    st.builds(lambda parts, tld: ".".join([*parts, tld]), st.lists(labels, max_size=3), tlds),
    st.text(alphabet="abc.-_[]1:", min_size=0, max_size=20),
    st.just("localhost"),
)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.text(max_size=40),
)


def outcome(value: str) -> tuple[str, str]:
    """("ok", the address) or ("refused", pydantic's message) for the registry's email."""
    try:
        person = Person(person_id="p", name="n", email=value, language=Language.EN)
    except ValidationError as exc:
        return "refused", exc.errors()[0]["msg"]
    assert person.email is not None
    return "ok", person.email


def reference(value: str) -> tuple[str, str]:
    try:
        email = ReferencePerson(email=value).email
    except ValidationError as exc:
        return "refused", exc.errors()[0]["msg"]
    assert email is not None
    return "ok", email


@settings(max_examples=1_000)
@given(addresses)
@example("Wang.Xiao@Example.CN")
@example("  li@example.cn ")
@example("a..b@example.cn")
@example(".a@example.cn")
@example("a@b.test")
@example("x@localhost")
@example("王小明 <wang@example.cn>")
@example("王@例子.中国")
@example("a" * 65 + "@example.cn")
@example("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".cn")
def test_the_registry_reads_every_address_as_email_str_does(value: str) -> None:
    assert outcome(value) == reference(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Wang.Xiao@Example.CN", "Wang.Xiao@example.cn"), ("zhao@mail.example.cn", None)],
)
def test_plain_addresses_keep_their_local_part_and_lower_their_domain(
    value: str, expected: str | None
) -> None:
    assert outcome(value) == ("ok", expected or value)


def test_a_reserved_domain_is_refused_with_email_validators_reason() -> None:
    status, message = outcome("captain@aed.test")
    assert status == "refused"
    assert "special-use or reserved name" in message
