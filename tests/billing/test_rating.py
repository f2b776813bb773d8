"""Rating: billed seconds, costs, longest prefix, charges per ivrbilling, the longest call."""

import random
from decimal import Decimal

import pytest

from mizu.billing.rating import (
    MAX_CALL_SECONDS,
    LegCharge,
    PrefixIndex,
    RateTable,
    Tariff,
    charges,
    max_talk_seconds,
    normalise_number,
)
from mizu.errors import ConfigError

D = Decimal


def tariff(price="1.2", initblock=60, increment=60, connectfee="0", prefix="49"):
    """A tariff with text amounts turned into Decimals."""
    return Tariff(prefix, D(price), initblock, increment, D(connectfee))


# --- billed seconds and cost ---------------------------------------------------------------

@pytest.mark.parametrize("initblock, increment, duration, answered, billed", [
    (60, 60, 0, True, 60),       # answered at once and hung up: still the initial block
    (60, 60, 0, False, 0),       # never answered
    (60, 60, 45, False, 0),      # not answered whatever the duration says
    (60, 60, 1, True, 60),
    (60, 60, 60, True, 60),
    (60, 60, 60.001, True, 120),
    (60, 60, 120, True, 120),
    (60, 60, 121, True, 180),
    (30, 6, 29.9, True, 30),
    (30, 6, 31, True, 36),
    (30, 6, 36, True, 36),
    (30, 6, 36.5, True, 42),
    (0, 1, 0, True, 0),          # initblock 0: nothing to bill for no time
    (0, 1, 0.2, True, 1),
    (0, 1, 59.5, True, 60),
    (0, 60, 1, True, 60),
    (0, 60, 61, True, 120),
    (1, 1, 0, True, 1),
    (60, 60, -3, True, 60),      # a clock stepping back gives no refund below the first block
])
def test_billed_seconds(initblock, increment, duration, answered, billed):
    """Billed = initblock up to it, then whole increments rounded up; unanswered bills 0."""
    t = tariff(initblock=initblock, increment=increment)
    assert t.billed_seconds(duration, answered) == billed


@pytest.mark.parametrize("price, initblock, increment, connectfee, duration, answered, cost", [
    ("1.2", 60, 60, "0", 61, True, "2.4000"),
    ("0.5", 30, 6, "0.05", 31, True, "0.3500"),
    ("1", 60, 60, "0.1", 0, True, "1.1000"),       # answered at 0 s: first block + connect fee
    ("1", 60, 60, "0.1", 0, False, "0.0000"),      # unanswered: no connect fee either
    ("1", 0, 1, "0.1", 0, True, "0.1000"),         # initblock 0 at 0 s: connect fee only
    ("0.0333", 30, 30, "0", 30, True, "0.0167"),   # 0.01665 rounds half up (even would be .0166)
    ("0.0333", 0, 6, "0", 150, True, "0.0833"),    # 0.08325
    ("0.0333", 0, 1, "0", 1, True, "0.0006"),      # 0.000555
    ("0.0333", 0, 1, "0", 2, True, "0.0011"),      # 0.00111
    ("0", 60, 60, "0", 500, True, "0.0000"),
])
def test_cost(price, initblock, increment, connectfee, duration, answered, cost):
    """cost = connectfee + price * billed / 60, HALF_UP to exactly four places."""
    got = tariff(price, initblock, increment, connectfee).cost(duration, answered)
    assert str(got) == cost


def test_tariff_coerces_amounts_and_rejects_bad_values():
    """Ints and floats become Decimals; a zero increment or negative money is refused."""
    t = Tariff("1", 1, 60, 60, 0.1)
    assert t.price == D(1) and isinstance(t.price, Decimal) and t.connectfee == D("0.1")
    assert t == Tariff("1", D("1.00"), 60, 60, D("0.1"))
    for bad in (dict(increment=0), dict(initblock=-1), dict(price="-0.1"),
                dict(connectfee="-1"), dict(price="NaN")):
        with pytest.raises(ValueError):
            tariff(**bad)
    with pytest.raises(TypeError):
        Tariff("1", D(1), 60.5)


@pytest.mark.parametrize("price, initblock, increment, connectfee, budget, seconds", [
    ("1", 60, 60, "0", "0.9999", 0),       # first block unaffordable
    ("1", 60, 60, "0", "1", 60),
    ("1", 60, 60, "0", "1.9999", 60),
    ("1", 60, 60, "0", "2", 120),
    ("0.6", 0, 1, "0", "0.05", 5),
    ("1", 60, 60, "0.5", "0.5", 0),        # the connect fee alone is not enough
    ("1", 60, 60, "0.5", "1.5", 60),
    ("1", 0, 1, "0.5", "0.5", 0),          # initblock 0: 0 s affordable, 1 s is not
    ("0", 60, 60, "0", "0", MAX_CALL_SECONDS),
    ("0", 60, 60, "0.1", "0.05", 0),
    ("0.0001", 60, 60, "0", "1000", MAX_CALL_SECONDS),
    ("0.0333", 0, 1, "0", "0.0001", 0),
    ("0.0333", 0, 1, "0", "0.0006", 1),
    ("1", 60, 60, "0", "-1", 0),
])
def test_seconds_for(price, initblock, increment, connectfee, budget, seconds):
    """seconds_for is the longest duration whose cost fits the budget, capped at a day."""
    assert tariff(price, initblock, increment, connectfee).seconds_for(D(budget)) == seconds


def random_tariff(rng, prefix="1"):
    """A tariff with a price, blocks and connect fee of the sizes operators use."""
    return Tariff(prefix, D(rng.randint(0, 30000)) / 10000, rng.choice([0, 1, 6, 30, 60]),
                  rng.choice([1, 6, 30, 60]), rng.choice([D(0), D("0.05"), D("0.0333")]))


def test_seconds_for_matches_brute_force():
    """On random tariffs, seconds_for equals a scan over every second."""
    rng = random.Random(1)
    for _ in range(150):
        t = random_tariff(rng)
        budget = D(rng.randint(0, 20000)) / 10000
        affordable = [d for d in range(1500) if t.cost(d) <= budget]
        expected = 0 if t.cost(0) > budget else max(affordable)
        if expected == 1499:
            continue  # answer lies beyond the scan
        assert t.seconds_for(budget) == expected, (t, budget)


# --- prefixes ------------------------------------------------------------------------------

def test_longest_prefix_wins():
    """The longest matching prefix gives the value; no match gives None."""
    index = PrefixIndex([("4", "de?"), ("49", "de"), ("4930", "berlin"), ("44", "uk")])
    assert index.longest("493012345") == "berlin"
    assert index.longest("4940") == "de"
    assert index.longest("41") == "de?"
    assert index.longest("5") is None and index.longest("") is None
    assert len(index) == 4


def test_empty_prefix_is_a_catch_all():
    """A '' prefix matches every number, including the empty one, but loses to longer ones."""
    index = PrefixIndex([("", "any"), ("49", "de")])
    assert index.longest("1234") == "any" and index.longest("") == "any"
    assert index.longest("491") == "de"


def test_numbers_shorter_than_prefixes_and_falsy_values():
    """A number only matches prefixes it contains; falsy values are still found."""
    index = PrefixIndex([("4930", 0), ("49", ""), ("1", None)])
    assert index.longest("4930") == 0
    assert index.longest("493") == ""
    assert index.longest("4") is None
    assert PrefixIndex().longest("49") is None and len(PrefixIndex()) == 0


def test_prefix_index_given_twice_keeps_the_last():
    """The same prefix twice: the later value stands."""
    assert PrefixIndex([("49", "a"), ("49", "b")]).longest("491") == "b"


def test_prefix_index_matches_brute_force():
    """On random prefixes of mixed lengths, the lookup equals the longest startswith match."""
    rng = random.Random(2)
    prefixes = {"".join(rng.choices("0123", k=rng.randint(0, 6))) for _ in range(300)}
    index = PrefixIndex((p, p) for p in prefixes)
    for _ in range(2000):
        number = "".join(rng.choices("0123", k=rng.randint(0, 9)))
        matches = [p for p in prefixes if number.startswith(p)]
        assert index.longest(number) == (max(matches, key=len) if matches else None)


@pytest.mark.parametrize("raw, normal", [
    ("+4930123", "4930123"),
    ("004930123", "4930123"),
    ("4930123", "4930123"),
    ("+49 30-123", "4930123"),
    ("00 49 30", "4930"),
    ("030123", "030123"),       # a single 0 (national trunk prefix) stays
    ("", ""),
    ("+", ""),
])
def test_normalise_number(raw, normal):
    """One leading '+' or '00' and any spaces or dashes go."""
    assert normalise_number(raw) == normal


def test_rate_table_normalises_numbers():
    """'+4930…', '004930…' and '4930…' rate alike; an unknown number rates None."""
    table = RateTable([tariff("1", prefix="49"), tariff("2", prefix="4930")])
    berlin = table.rate("4930555")
    assert berlin.price == D(2)
    assert table.rate("+4930555") is berlin and table.rate("004930555") is berlin
    assert table.rate("+49 30-555") is berlin
    assert table.rate("+4940").price == D(1)
    assert table.rate("1") is None and len(table) == 2


def test_rate_table_from_rows():
    """Rows as the database returns them build tariffs with the same fields."""
    table = RateTable.from_rows([("44", D("0.100000"), 30, 6, D("0.050000")),
                                 ("", D("3"), 60, 60, D(0))])
    assert table.rate("44207") == Tariff("44", D("0.1"), 30, 6, D("0.05"))
    assert table.rate("1").prefix == ""


def test_rate_table_reports_every_bad_row_and_duplicates():
    """Bad rows and a prefix given twice raise one ConfigError naming each problem."""
    with pytest.raises(ConfigError) as caught:
        RateTable.from_rows([("1", D(1), 60, 0, D(0)), ("2", D(-1), 60, 60, D(0)),
                             ("3", D(1), 60, 60, D(0)), ("3", D(2), 60, 60, D(0))])
    assert len(caught.value.errors) == 3
    assert all(repr(p) in " ".join(caught.value.errors) for p in ("1", "2", "3"))
    with pytest.raises(ConfigError):
        RateTable([tariff(prefix="9"), tariff("2", prefix="9")])


# --- charges per ivrbilling ----------------------------------------------------------------

A = tariff("0.6", 0, 1, prefix="49")                      # 0.01 a second
B = tariff("1.2", 60, 60, connectfee="0.1", prefix="44")  # 0.02 a second in minutes, + 0.10
FREE = LegCharge(D(0), 0)


def charge(cost, billed):
    """A LegCharge from a text cost."""
    return LegCharge(D(cost), billed)


@pytest.mark.parametrize("mode, b_answered, a_leg, b_leg", [
    (2, True, charge("1.3", 130), charge("2.5", 120)),
    (2, False, charge("1.3", 130), FREE),
    (1, True, FREE, charge("2.5", 120)),
    (1, False, FREE, FREE),
    (5, True, FREE, charge("2.5", 120)),
    (5, False, charge("1.3", 130), FREE),        # B never connected: A pays its own leg
    (0, True, charge("3.7", 180), FREE),         # A's 130 s at B's tariff, all on A
    (0, False, charge("1.3", 130), FREE),        # no B: A's 130 s at A's own tariff
])
def test_charges_per_mode(mode, b_answered, a_leg, b_leg):
    """Which leg pays what under ivrbilling 0, 1, 2 and 5 (A up 130 s, B 70 s when answered)."""
    assert charges(mode, A, 130, True, B, 70 if b_answered else 0, b_answered) == (a_leg, b_leg)


@pytest.mark.parametrize("mode", [0, 1, 2, 5])
def test_nothing_answered_costs_nothing(mode):
    """A call whose A leg never answered costs 0 and bills 0 in every mode."""
    assert charges(mode, A, 0, False, B, 0, False) == (FREE, FREE)


def test_a_leg_without_tariff_bills_its_seconds_for_free():
    """A billed leg with no tariff costs 0 and bills its duration rounded up to the second."""
    a_leg, b_leg = charges(2, None, 100.2, True, B, 70, True)
    assert a_leg == charge("0", 101) and b_leg == charge("2.5", 120)
    assert charges(0, A, 10, True, None, 5, True)[0] == charge("0", 10)


def test_unknown_ivrbilling_is_a_config_error():
    """Only 0, 1, 2 and 5 are modes."""
    with pytest.raises(ConfigError):
        charges(3, A, 1, True, B, 1, True)
    with pytest.raises(ConfigError):
        max_talk_seconds(4, D(10), A, 0, B)


# --- the longest affordable call -----------------------------------------------------------

def total(mode, a_tariff, a_elapsed, b_tariff, t):
    """The whole call's cost with A up a_elapsed + t and B up t, both answered."""
    a_leg, b_leg = charges(mode, a_tariff, a_elapsed + t, True, b_tariff, t, True)
    return a_leg.cost + b_leg.cost


def test_max_talk_seconds_examples():
    """Worked cases: A's running cost eats the budget in mode 2; mode 0 rates A's time at B's."""
    b_per_minute = tariff("1.2")
    # A has cost 0.30 so far; 60 s of B: 0.90 + 1.20 <= 3; 61 s: 0.91 + 2.40 > 3.
    assert max_talk_seconds(2, D(3), A, 30, b_per_minute) == 60
    # Mode 0: A's 40 s + t at 0.01/s within 1.00.
    assert max_talk_seconds(0, D(1), A, 40, tariff("0.6", 0, 1)) == 60
    # Modes 1 and 5 charge B alone while B is up.
    for mode in (1, 5):
        assert max_talk_seconds(mode, D("2.5"), A, 1000, B) == B.seconds_for(D("2.5")) == 120
    assert max_talk_seconds(2, D("2.5"), None, 1000, B) == 120


def test_max_talk_seconds_zero_when_unaffordable():
    """0 when B's connect fee and first block (plus A so far) do not fit."""
    assert max_talk_seconds(1, D("1.2999"), A, 0, B) == 0
    assert max_talk_seconds(2, D("1.3"), A, 1, B) == 0      # A's 0.01 tips it over
    # With A just answered, 1.31 buys B's 1.30 and A's first second, not its second one.
    assert max_talk_seconds(2, D("1.31"), A, 0, B) == 1
    assert max_talk_seconds(2, D(0), None, 0, tariff("0", connectfee="0")) == MAX_CALL_SECONDS


def test_max_talk_seconds_is_maximal_on_random_calls():
    """On random tariffs and budgets, the cost at t fits and the cost at t + 1 does not."""
    rng = random.Random(3)
    checked = 0
    for _ in range(400):
        mode = rng.choice([0, 1, 2, 5])
        a_tariff = rng.choice([None, random_tariff(rng, "49")])
        b_tariff = random_tariff(rng, "44")
        a_elapsed = rng.choice([0, rng.uniform(0, 300)])
        budget = D(rng.randint(0, 500000)) / 10000
        t = max_talk_seconds(mode, budget, a_tariff, a_elapsed, b_tariff)
        assert 0 <= t <= MAX_CALL_SECONDS
        if total(mode, a_tariff, a_elapsed, b_tariff, 0) > budget:
            assert t == 0
            continue
        checked += 1
        assert total(mode, a_tariff, a_elapsed, b_tariff, t) <= budget
        if t < MAX_CALL_SECONDS:
            assert total(mode, a_tariff, a_elapsed, b_tariff, t + 1) > budget
    assert checked > 200  # most cases were affordable, so the property was really exercised


def test_max_talk_seconds_bisects(monkeypatch):
    """Finding the limit costs a few dozen cost evaluations, not one per second."""
    calls = []
    real = Tariff._cost_of

    def counting(self, billed):
        calls.append(billed)
        return real(self, billed)

    monkeypatch.setattr(Tariff, "_cost_of", counting)
    assert max_talk_seconds(2, D(500), A, 30, tariff("0.01")) > 3600
    assert len(calls) <= 2 * 20
