"""The generated Mosquitto configuration on the real broker: no cabinet speaks for another.

Mosquitto 2.0 grants every SUBSCRIBE (its ACL file is not consulted for subscriptions)
and checks read rights on each message it would deliver, retained ones included; so the
tests on reading show what never arrives, fenced by a sentinel that does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from aedfleet.broker_auth import REPORT_CHANNELS, ServiceAccount
from aedfleet.contract import DEAD_LETTER_PREFIX, Channel, dispatch_topic, subscription, topic
from aedfleet.mqtt import KeepAliveTicker, MqttConnection, MqttError
from tests.broker_security_support import Probe, SecuredBroker, probe, secured_broker

# Every test here starts a Mosquitto of its own, in a module fixture or its body.
pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87
BAD_LOGIN = 0x86
CABINETS = ("cab-A", "cab-B", "柜-C", "cab-R")
A, B, C, READER = CABINETS
OPERATOR = ServiceAccount.OPERATOR.value


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredBroker]:
    with secured_broker(tmp_path, CABINETS) as instance:
        yield instance


def code(reason: ReasonCode) -> int:
    return int(reason.value)


def assert_fenced(reader: Probe, sentinel_topic: str) -> None:
    """The next message ``reader`` gets is the sentinel: nothing refused came before it."""
    message = reader.next_message()
    assert (message.topic, message.payload) == (sentinel_topic, b"sentinel")


def test_a_cabinet_cannot_publish_as_another(secured: SecuredBroker) -> None:
    with (
        probe(secured.login(ServiceAccount.DISPATCH.value), "dispatch") as dispatch,
        probe(secured.login(A), "aed-A") as cabinet_a,
    ):
        assert not dispatch.subscribe(subscription(Channel.EVENT)).is_failure
        for channel in REPORT_CHANNELS:
            refused = cabinet_a.publish(topic(B, channel), b'{"forged": true}')
            assert code(refused) == NOT_AUTHORIZED, channel
        assert code(cabinet_a.publish(topic(B, Channel.CMD), b"{}")) == NOT_AUTHORIZED
        assert code(cabinet_a.publish(dispatch_topic(B), b"{}")) == NOT_AUTHORIZED
        assert code(cabinet_a.publish(f"{DEAD_LETTER_PREFIX}/x", b"{}")) == NOT_AUTHORIZED
        assert not cabinet_a.publish(topic(A, Channel.EVENT), b"sentinel").is_failure
        assert_fenced(dispatch, topic(A, Channel.EVENT))


def test_a_cabinet_reads_neither_other_cabinets_nor_the_servers_topics(
    secured: SecuredBroker,
) -> None:
    with (
        probe(secured.login(B), "aed-B") as cabinet_b,
        probe(secured.login(OPERATOR), "operator") as operator,
        probe(secured.login(ServiceAccount.DISPATCH.value), "dispatch") as dispatch,
    ):
        assert not cabinet_b.publish(topic(B, Channel.BIRTH), b"B birth", retain=True).is_failure
        # A reader that has published nothing: no retained message of its own comes back.
        with probe(secured.login(READER), "aed-R") as reader:
            for topic_filter in (topic(B, Channel.CMD), "aed/v1/#", "aedfleet/#", "#"):
                reader.subscribe(topic_filter)
            assert not reader.subscribe(topic(READER, Channel.CMD)).is_failure
            assert not operator.publish(topic(B, Channel.CMD), b"to B").is_failure
            assert not cabinet_b.publish(topic(B, Channel.EVENT), b"B event").is_failure
            assert not dispatch.publish(dispatch_topic(B), b"captain's phone").is_failure
            assert not operator.publish(topic(READER, Channel.CMD), b"sentinel").is_failure
            assert_fenced(reader, topic(READER, Channel.CMD))


def test_unknown_user_wrong_password_and_anonymous_are_refused(secured: SecuredBroker) -> None:
    good = secured.login(A)
    attempts = {
        "unknown user": good.model_copy(update={"username": "cab-Z"}),
        "wrong password": good.model_copy(update={"password": SecretStr("x" * 32)}),
        "another's password": good.model_copy(update={"password": secured.login(B).password}),
        "anonymous": good.model_copy(update={"username": None, "password": None}),
    }
    for what, settings in attempts.items():
        client = Probe(settings, f"refused-{what}")
        try:
            refusal = client.connect()
        finally:
            client.close()
        assert code(refusal) in (BAD_LOGIN, NOT_AUTHORIZED), what


def test_a_cabinet_uses_all_its_channels_and_gets_its_commands(secured: SecuredBroker) -> None:
    with (
        probe(secured.login(ServiceAccount.INGEST.value), "ingest") as ingest,
        probe(secured.login(OPERATOR), "operator") as operator,
    ):
        assert not ingest.subscribe(f"$share/ingest/{subscription()}").is_failure
        assert not operator.subscribe(subscription(Channel.CMD_RESULT)).is_failure
        cabinet = Probe(secured.login(A), "aed-A")
        cabinet.will(topic(A, Channel.STATUS), b"will")
        assert not cabinet.connect().is_failure
        assert not cabinet.subscribe(topic(A, Channel.CMD)).is_failure
        for channel in REPORT_CHANNELS:
            retained = channel in (Channel.BIRTH, Channel.STATUS)
            published = cabinet.publish(topic(A, channel), channel.encode(), retain=retained)
            assert not published.is_failure, channel
            received = ingest.next_message()
            assert (received.topic, received.payload) == (topic(A, channel), channel.encode())
        assert operator.next_message().topic == topic(A, Channel.CMD_RESULT)
        assert not operator.publish(topic(A, Channel.CMD), b"command").is_failure
        assert cabinet.next_message().payload == b"command"
        cabinet.close(abruptly=True)
        will = ingest.next_message()
        assert (will.topic, will.payload) == (topic(A, Channel.STATUS), b"will")

    with probe(secured.login(ServiceAccount.INGEST.value), "ingest-late") as late:
        late.subscribe(topic(A, Channel.BIRTH))
        birth = late.next_message()
        assert (birth.payload, birth.retain) == (Channel.BIRTH.encode(), True)


def test_a_cabinet_connects_over_tls_with_the_ca_and_its_password(
    secured: SecuredBroker,
) -> None:
    with (
        probe(secured.login(ServiceAccount.DISPATCH.value), "dispatch") as dispatch,
        probe(secured.login(C, tls=True), "aed-C") as cabinet,
    ):
        dispatch.subscribe(subscription(Channel.EVENT))
        assert code(cabinet.publish(topic(A, Channel.EVENT), b"forged")) == NOT_AUTHORIZED
        assert not cabinet.publish(topic(C, Channel.EVENT), b"sentinel").is_failure
        assert_fenced(dispatch, topic(C, Channel.EVENT))


def test_the_tls_listener_ties_the_client_id_to_the_login(secured: SecuredBroker) -> None:
    """A cabinet's login cannot take over another cabinet's session by its client id."""
    with (
        probe(secured.login(B, tls=True), "aed-cab-B") as cabinet_b,
        probe(secured.login(A, tls=True), "aed-cab-B") as cabinet_a,
        probe(secured.login(OPERATOR), "operator") as operator,
    ):
        cabinet_b.subscribe(topic(B, Channel.CMD))
        cabinet_a.subscribe(topic(A, Channel.CMD))
        assert not operator.publish(topic(B, Channel.CMD), b"still B's").is_failure
        assert cabinet_b.next_message().payload == b"still B's"
        assert cabinet_b.disconnects == []


async def test_the_adapter_raises_when_the_broker_refuses_a_publish(
    secured: SecuredBroker, ticker: KeepAliveTicker
) -> None:
    """The dispatch's republication and the ingest's dead letters wait for the PUBACK: a
    refusal must fail them (and be retried), not count as delivered."""
    async with MqttConnection(secured.login(A), "aed-A", ticker) as cabinet_a:
        with pytest.raises(MqttError, match="refused the publish: Not authorized"):
            await cabinet_a.publish_confirmed(topic(B, Channel.EVENT), b"forged")
        await cabinet_a.publish_confirmed(topic(A, Channel.EVENT), b"own")


def test_a_last_will_on_another_cabinets_status_is_never_published(
    secured: SecuredBroker,
) -> None:
    """A forged will would mark another cabinet offline. Mosquitto 2.0 accepts the CONNECT
    and checks the will when it fires. A takeover of the session by its client id fires
    the will before the new connection's CONNACK, so what the new one publishes next is
    a sentinel that comes after the will, if there is one."""
    with probe(secured.login(ServiceAccount.INGEST.value), "ingest") as ingest:
        ingest.subscribe(subscription(Channel.STATUS))
        for will_topic, delivered in (
            (topic(A, Channel.STATUS), True),
            (topic(B, Channel.STATUS), False),
        ):
            dropped = Probe(secured.login(A), "aed-A")
            dropped.will(will_topic, b"will")
            assert not dropped.connect().is_failure
            dropped.client.loop_stop()  # no reconnect: the takeover below ends it
            with probe(secured.login(A), "aed-A") as successor:
                assert not successor.publish(topic(A, Channel.STATUS), b"sentinel").is_failure
            dropped.close(abruptly=True)
            if delivered:
                will = ingest.next_message()
                assert (will.topic, will.payload) == (will_topic, b"will")
            assert_fenced(ingest, topic(A, Channel.STATUS))
