"""User names (:mod:`oceandata.hub.usernames`) and the hub's throttles (:mod:`~.throttle`).

The names are the probe's (tab-separated HTML attributes, control and zero-width
characters, a Cyrillic ``admin``, 5,000 characters) and hypothesis' (any text): whatever
is accepted has the platform's format, whatever is refused gets one line.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oceandata.hub.throttle import FailedLogins, SlidingWindow, client_address
from oceandata.hub.usernames import (
    MAX_LENGTH,
    USERNAME_PATTERN,
    VALID_NAMES,
    check_username,
    is_valid_username,
    skeleton,
)

VALID = st.from_regex(USERNAME_PATTERN, fullmatch=True)

PROBE_NAMES = {
    "tab attributes": "x\tautofocus\tonfocus=alert(1)",
    "short tab attribute": "a\tonfocus=x",
    "control character": "ali\x07ce",
    "newline": "alice\n",
    "zero-width space": "ad\u200bmin",
    "zero-width joiner": "bob\u200d",
    "cyrillic a": "\u0430dmin",
    "greek omicron": "r\u03bfot",
    "5000 characters": "a" * 5000,
    "23 characters": "a" * 23,
    "upper case": "Alice",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "leading digit": "1alice",
    "leading dash": "-alice",
    "dot": "alice.smith",
    "html": "<b>x</b>",
    "quote": "a\"b",
    "empty": "",
}


@pytest.mark.parametrize("name", PROBE_NAMES.values(), ids=PROBE_NAMES.keys())
def test_the_probes_names_are_refused_with_one_line(name: str) -> None:
    reason = check_username(name)
    assert reason is not None and "\n" not in reason and "\r" not in reason
    assert reason.endswith(VALID_NAMES)
    assert len(reason) < 300  # the 5,000-character name is not echoed


def test_the_reason_says_what_was_wrong() -> None:
    assert "U+200B ZERO WIDTH SPACE" in check_username("ad\u200bmin")
    assert "CYRILLIC SMALL LETTER A" in check_username("\u0430dmin")
    assert "looks like 'a'" in check_username("\u0430dmin")
    assert "5000 characters long" in check_username("a" * 5000)
    assert "did you mean 'alice'?" in check_username("Alice")
    assert "'.'" in check_username("alice.smith")


@pytest.mark.parametrize("name", ["a", "alice", "ocean-data_2", "a" * MAX_LENGTH])
def test_valid_names_pass(name: str) -> None:
    assert is_valid_username(name)
    assert check_username(name, ["bob", "carol"]) is None


@pytest.mark.parametrize("name", ["admin", "adm1n", "admln", "\u0430dmin", "ADMIN",
                                  "\uff41dmin"])
def test_lookalikes_of_an_existing_name_are_refused(name: str) -> None:
    assert check_username(name, ["admin"]) is not None


@pytest.mark.parametrize(("new", "old"), [("ocean-data", "ocean_data"), ("rnary", "mary"),
                                          ("vvill", "will"), ("b0b", "bob"), ("l1l", "iii")])
def test_skeleton_pairs(new: str, old: str) -> None:
    assert skeleton(new) == skeleton(old)
    assert "looks like the existing name" in check_username(new, [old])


def test_different_names_stay_apart() -> None:
    assert check_username("alice", ["alicia", "bob", "admin"]) is None
    assert check_username("alice2", ["alice"]) is None


@given(st.text(max_size=40))
def test_whatever_is_accepted_has_the_format(name: str) -> None:
    reason = check_username(name)
    if reason is None:
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,21}", name)
        assert len("oceandata-" + name) <= 32
    else:
        assert reason.count("\n") == 0 and reason.startswith("User name ")


@given(VALID)
def test_every_name_of_the_format_is_accepted(name: str) -> None:
    assert is_valid_username(name)
    assert check_username(name) is None


@given(VALID)
def test_a_name_is_refused_next_to_itself_and_its_lookalikes(name: str) -> None:
    assert check_username(name, [name]) is not None
    twin = name.replace("o", "0").replace("l", "1").replace("-", "_")
    if twin != name and is_valid_username(twin):
        assert check_username(twin, [name]) is not None


@given(st.text(max_size=30))
def test_skeleton_is_idempotent(text: str) -> None:
    assert skeleton(skeleton(text)) == skeleton(text)


# --- throttles -------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lock_doubles_and_a_success_clears_it() -> None:
    clock = Clock()
    f = FailedLogins(allowed=3, first_wait=10, max_wait=35, forget_after=1000, clock=clock)
    assert [f.failed("bob") for _ in range(3)] == [0.0, 0.0, 10.0]
    assert f.wait("bob") == 10.0
    clock.now += 10
    assert f.wait("bob") == 0.0
    assert f.failed("bob") == 20.0
    clock.now += 20
    assert f.failed("bob") == 35.0  # capped
    f.succeeded("bob")
    assert f.wait("bob") == 0.0 and f.failures("bob") == 0


def test_failures_are_forgotten_and_other_names_unaffected() -> None:
    clock = Clock()
    f = FailedLogins(allowed=2, first_wait=10, max_wait=100, forget_after=50, clock=clock)
    f.failed("bob")
    f.failed("bob")
    assert f.wait("alice") == 0.0
    clock.now += 51
    assert f.failures("bob") == 0


def test_sliding_window_per_key() -> None:
    clock = Clock()
    w = SlidingWindow(limit=3, window=100, clock=clock)
    assert [w.hit("a") for _ in range(3)] == [0.0] * 3
    assert w.hit("a") == 100.0
    assert w.hit("b") == 0.0
    clock.now += 40
    assert w.hit("a") == 60.0
    clock.now += 60
    assert w.hit("a") == 0.0


@pytest.mark.parametrize(("peer", "xff", "hops", "expected"), [
    ("127.0.0.1", None, 1, "127.0.0.1"),
    ("127.0.0.1", "203.0.113.7", 1, "203.0.113.7"),
    ("127.0.0.1", "6.6.6.6, 203.0.113.7", 1, "203.0.113.7"),  # client's own entry ignored
    ("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.2", 2, "203.0.113.7"),
    ("198.51.100.9", "203.0.113.7", 1, "198.51.100.9"),  # not from our proxy
    ("127.0.0.1", "not-an-ip", 1, "127.0.0.1"),
])
def test_client_address(peer: str, xff: str | None, hops: int, expected: str) -> None:
    assert client_address(peer, xff, hops=hops) == expected
