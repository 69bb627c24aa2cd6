"""Defect 4 of issue 9: subscriptions per connection are capped, subscribe and unsubscribe
cost O(1), and the registry gives its memory back when subscribers leave."""

from __future__ import annotations

import json
import sys

import pytest

from hub.errors import InputError
from hub.config import SCHEMA_PATH, Limits, Overrides, load
from hub.streams import NAVIGATOR, StreamRegistry, SubscriptionLimitReached
from hub_testkit import FakeSubscriber


class Counted(FakeSubscriber):
    """A subscriber that counts how often the registry hashes or compares it.

    A list scan compares the searched-for subscriber with every entry; a tuple copy of a
    subscriber's subscriptions touches each of them. Hash-keyed containers touch only the
    subscriber being added or removed, a fixed number of times.
    """

    hashes = 0
    compares = 0

    def __hash__(self) -> int:
        Counted.hashes += 1
        return id(self)

    def __eq__(self, other: object) -> bool:
        Counted.compares += 1
        return self is other

    @classmethod
    def reset(cls) -> None:
        cls.hashes = cls.compares = 0


def touches(action) -> tuple[int, int]:
    Counted.reset()
    action()
    return Counted.hashes, Counted.compares


# --- the cap -------------------------------------------------------------------------


def test_the_default_cap_refuses_the_1001st_subscription_of_one_connection() -> None:
    registry = StreamRegistry()
    sub, other = FakeSubscriber("sub"), FakeSubscriber("other")
    for i in range(1000):
        assert registry.add(f"s{i}", "id", sub) is True
    with pytest.raises(SubscriptionLimitReached) as refused:
        registry.add("s1000", "id", sub)
    assert refused.value.limit == 1000
    # The refusal changed nothing, and other connections are not affected.
    assert registry.subscriptions_of(sub) == 1000
    assert (registry.subscriptions, registry.stream_count) == (1000, 1000)
    assert registry.broadcast("s1000", "x") == 0
    assert registry.add("s1000", "id", other) is True
    # Subscribing again to what it already has is not a new subscription: no refusal.
    assert registry.add("s5", "id", sub) is False
    # After one unsubscribe, exactly one more is allowed.
    assert registry.remove("s0", "id", sub) is True
    assert registry.add("s1000", "id", sub) is True
    with pytest.raises(SubscriptionLimitReached):
        registry.add("s1001", "id", sub)


def test_the_cap_counts_identifiers_and_navigator_subscriptions_alike() -> None:
    registry = StreamRegistry(max_subscriptions_per_connection=3)
    sub = FakeSubscriber()
    assert registry.add("s", "id1", sub)
    assert registry.add("s", "id2", sub)
    assert registry.add("s", NAVIGATOR, sub)
    with pytest.raises(SubscriptionLimitReached):
        registry.add("t", NAVIGATOR, sub)
    with pytest.raises(SubscriptionLimitReached):
        registry.add("s", "id3", sub)
    assert registry.subscriptions_of(sub) == 3


def test_the_cap_is_configurable_and_can_change_at_run_time() -> None:
    registry = StreamRegistry(max_subscriptions_per_connection=1)
    assert registry.max_subscriptions_per_connection == 1
    sub = FakeSubscriber()
    registry.add("a", "id", sub)
    with pytest.raises(SubscriptionLimitReached):
        registry.add("b", "id", sub)
    registry.max_subscriptions_per_connection = 2  # a reload that raises the limit
    assert registry.add("b", "id", sub)
    registry.max_subscriptions_per_connection = 1  # lowering it keeps what exists, refuses more
    assert registry.subscriptions_of(sub) == 2
    with pytest.raises(SubscriptionLimitReached):
        registry.add("c", "id", sub)
    assert registry.remove("b", "id", sub)
    with pytest.raises(SubscriptionLimitReached):
        registry.add("c", "id", sub)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_cap_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        StreamRegistry(max_subscriptions_per_connection=bad)


def test_the_limit_is_a_configuration_value_with_a_schema_entry() -> None:
    assert Limits().max_subscriptions_per_connection == 1000
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    entry = schema["properties"]["limits"]["properties"]["max_subscriptions_per_connection"]
    assert entry["type"] == "integer" and entry["minimum"] == 1


def test_hub_yml_sets_the_limit_and_refuses_a_limit_below_one(tmp_path) -> None:
    (tmp_path / "navigator.yml").write_text("{}\n")
    (tmp_path / "hub.yml").write_text("limits: {max_subscriptions_per_connection: 5}\n")
    limits = load(str(tmp_path / "navigator.yml"), Overrides(), {}).limits
    assert limits.max_subscriptions_per_connection == 5
    assert StreamRegistry(limits.max_subscriptions_per_connection).max_subscriptions_per_connection == 5
    (tmp_path / "hub.yml").write_text("limits: {max_subscriptions_per_connection: 0}\n")
    with pytest.raises(InputError) as refused:
        load(str(tmp_path / "navigator.yml"), Overrides(), {})
    assert "limits.max_subscriptions_per_connection: must be >= 1, got 0" in str(refused.value)


# --- O(1), shown structurally ---------------------------------------------------------


def test_subscribe_and_unsubscribe_do_not_look_at_the_connections_other_subscriptions() -> None:
    registry = StreamRegistry(max_subscriptions_per_connection=5000)
    sub = Counted("sub")
    costs = []
    for i in range(4000):
        if i in (1, 3999):
            costs.append(touches(lambda: registry.add(f"s{i}", "id", sub)))
        else:
            registry.add(f"s{i}", "id", sub)
    first, last = costs
    assert first == last, "adding the 4000th subscription costs more than adding the 2nd"
    assert first[0] <= 4 and first[1] == 0
    assert touches(lambda: registry.remove("s1", "id", sub)) == touches(lambda: registry.remove("s3998", "id", sub))


def test_unsubscribe_does_not_look_at_the_streams_other_subscribers() -> None:
    def cost_of_leaving(others: int) -> tuple[int, int]:
        registry = StreamRegistry()
        crowd = [Counted(str(i)) for i in range(others)]
        for member in crowd:
            registry.add("s", "id", member)
        leaver = Counted("leaver")
        registry.add("s", "id", leaver)
        return touches(lambda: registry.remove("s", "id", leaver))

    assert cost_of_leaving(2) == cost_of_leaving(3000)
    hashes, compares = cost_of_leaving(3000)
    assert hashes <= 4 and compares <= 1


# --- memory released ------------------------------------------------------------------


def test_everything_is_released_when_everyone_leaves() -> None:
    registry = StreamRegistry()
    subs = [FakeSubscriber(str(i)) for i in range(100)]
    for n, sub in enumerate(subs):
        for i in range(100):
            registry.add(f"stream-{n}-{i}", f"id{i % 3}", sub)
            registry.add("shared", NAVIGATOR, sub)
    assert (registry.stream_count, registry.subscriber_count) == (10001, 100)
    for n, sub in enumerate(subs):
        for i in range(100):
            assert registry.remove(f"stream-{n}-{i}", f"id{i % 3}", sub)
        assert registry.subscriber_count == 99 - n + (1 if registry.subscriptions_of(sub) else 0)
        assert registry.remove("shared", NAVIGATOR, sub)
        assert registry.subscriptions_of(sub) == 0
    assert registry.stream_count == 0
    assert registry.subscriber_count == 0
    assert registry.subscriptions == 0
    # No per-stream or per-connection entry is left, and the emptied tables are not kept:
    # a dict keeps its largest size after deletions, which is memory never given back.
    assert registry._streams == {} and registry._counts == {}
    assert sys.getsizeof(registry._streams) == sys.getsizeof({})
    assert sys.getsizeof(registry._counts) == sys.getsizeof({})


def test_a_shrinking_registry_gives_back_its_tables() -> None:
    registry = StreamRegistry()
    subs = [FakeSubscriber(str(i)) for i in range(20)]
    for n, sub in enumerate(subs):
        for i in range(500):
            registry.add(f"s{n}-{i}", "id", sub)
    peak = sys.getsizeof(registry._streams)
    for n, sub in enumerate(subs[1:], start=1):
        for i in range(500):
            registry.remove(f"s{n}-{i}", "id", sub)
    # 500 of 10,000 streams left: the table is sized for what is left, not for the peak.
    assert registry.stream_count == 500
    assert sys.getsizeof(registry._streams) * 4 < peak
    assert registry.broadcast("s0-7", "x") == 1 and subs[0].frames


def test_a_stream_and_its_identifiers_go_with_the_last_subscriber() -> None:
    registry = StreamRegistry()
    a, b = FakeSubscriber("a"), FakeSubscriber("b")
    registry.add("s", "id1", a)
    registry.add("s", "id2", b)
    registry.remove("s", "id1", a)
    assert list(registry._streams["s"]) == ["id2"]
    assert a not in registry._counts and registry.subscriptions_of(a) == 0
    registry.remove("s", "id2", b)
    assert "s" not in registry._streams and registry.subscriber_count == 0


def test_a_refused_subscription_leaves_nothing_behind() -> None:
    registry = StreamRegistry(max_subscriptions_per_connection=1)
    sub = FakeSubscriber()
    registry.add("a", "id", sub)
    with pytest.raises(SubscriptionLimitReached):
        registry.add("b", "id", sub)
    assert "b" not in registry._streams and registry.stream_count == 1


def test_removal_during_broadcast_releases_everything() -> None:
    registry = StreamRegistry()

    class Quitter(FakeSubscriber):
        def send_frame(self, frame: bytes) -> None:
            super().send_frame(frame)
            registry.remove("s", "id1", self)
            registry.remove("s", "id2", self)

    subs = [Quitter(str(i)) for i in range(5)]
    for sub in subs:
        registry.add("s", "id1", sub)
        registry.add("s", "id2", sub)
    assert registry.broadcast("s", "x") == 5  # each leaves on its first frame
    assert (registry.stream_count, registry.subscriber_count, registry.subscriptions) == (0, 0, 0)


# --- broadcast unchanged ---------------------------------------------------------------


def test_broadcast_is_encoded_once_per_stream_and_identifier_and_reaches_everyone() -> None:
    registry = StreamRegistry()
    by_id = {ident: [FakeSubscriber(f"{ident}-{i}") for i in range(50)] for ident in ("id1", "id2", NAVIGATOR)}
    for ident, members in by_id.items():
        for sub in members:
            registry.add("s", ident, sub)
    assert registry.broadcast("s", '{"a":1}') == 150
    frames = set()
    for ident, members in by_id.items():
        assert all(len(sub.frames) == 1 for sub in members)
        ids = {id(sub.frames[0]) for sub in members}
        assert len(ids) == 1, f"{ident}: one encoding shared by all its subscribers"
        frames |= ids
    assert len(frames) == 3


def test_a_session_beyond_the_cap_is_refused_and_keeps_its_connection() -> None:
    """The cap reaches the sessions as a refusal, not as an exception out of receive()."""
    from hub.cable import ActionCableSession, Context, NavigatorSession, Policy

    registry = StreamRegistry(max_subscriptions_per_connection=2)
    events: list[tuple[str, dict]] = []
    context = Context(Policy(True, None, {}), registry, lambda event, **fields: events.append((event, fields)))
    subscriber = FakeSubscriber()
    cable = ActionCableSession(context, subscriber)
    replies = [cable.receive(json.dumps({"command": "subscribe", "identifier": json.dumps(
        {"channel": "$pubsub", "stream_name": f"s{n}"})})) for n in range(3)]
    assert [json.loads(reply[0])["type"] for reply in replies] == ["confirm_subscription", "confirm_subscription", "reject_subscription"]
    assert len(cable.subs) == 2 and registry.subscriptions == 2
    navigator = NavigatorSession(context, subscriber)
    assert navigator.receive(json.dumps({"type": "subscribe", "stream": "n1"})) == []
    assert navigator.subs == set()
    assert events[-1] == ("subscription_rejected", {"why": "at most 2 subscriptions per connection"})
    cable.close()
    assert registry.subscriptions == 0 and registry.stream_count == 0
