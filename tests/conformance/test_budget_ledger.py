"""Conformance suite of `BudgetLedger`: every implementation admits, refuses and dedupes alike."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from guards.base import BudgetCaps, BudgetKey, BudgetLedger, Charge
from guards.budget import InMemoryBudgetLedger
from guards.errors import GuardConfigError
from guards.redis_budget import RedisBudgetLedger

ACME = BudgetKey(tenant="acme", workflow="support", environment="prod")
GLOBEX = BudgetKey(tenant="globex", workflow="support", environment="prod")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def ledger(request: pytest.FixtureRequest) -> Iterator[BudgetLedger]:
    """The in-process ledger, then the Redis one on the real (emptied) server."""
    if request.param == "memory":
        yield InMemoryBudgetLedger()
        return
    redis_ledger = RedisBudgetLedger(request.getfixturevalue("redis_url"))
    try:
        yield redis_ledger
    finally:
        redis_ledger.close()


def usd(amount: float) -> Charge:
    return Charge(usd=amount)


def test_implements_the_protocol(ledger: BudgetLedger) -> None:
    assert isinstance(ledger, BudgetLedger)


@pytest.mark.parametrize(
    ("caps", "step", "dimension"),
    [
        (BudgetCaps(tokens=10), Charge(tokens=2), "tokens"),
        (BudgetCaps(steps=3), Charge(steps=1), "steps"),
        # 0.1 + 0.1 + 0.1 > 0.3 in floats: integer micro-dollars must still admit the third.
        (BudgetCaps(usd=0.3), usd(0.1), "usd"),
    ],
)
def test_caps_admit_up_to_exactly_the_cap_then_refuse(
    ledger: BudgetLedger, caps: BudgetCaps, step: Charge, dimension: str
) -> None:
    ledger.set_caps(ACME, caps)
    cap = getattr(caps, dimension)
    per_step = getattr(step, dimension)
    fits = round(cap / per_step)
    answers = [ledger.reserve(ACME, f"r{i}", step) for i in range(fits + 1)]
    assert [a.admitted for a in answers] == [True] * fits + [False]
    assert answers[fits - 1].used_fraction == pytest.approx(1.0)
    assert f"{dimension} cap" in answers[-1].reason
    assert getattr(ledger.held(ACME), dimension) == pytest.approx(cap)


def test_dimensions_are_capped_independently(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(tokens=100, usd=1.0))
    assert ledger.reserve(ACME, "tokens-full", Charge(tokens=100)).admitted
    # Tokens are exhausted, money is not: a money-only charge still fits.
    assert ledger.reserve(ACME, "money", usd(0.5)).admitted
    refused = ledger.reserve(ACME, "one-more-token", Charge(tokens=1))
    assert not refused.admitted
    assert "tokens cap 100" in refused.reason
    assert "usd" not in refused.reason


def test_refusal_reason_names_the_cap_the_observed_value_and_the_request(
    ledger: BudgetLedger,
) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=5.0))
    assert ledger.reserve(ACME, "big", usd(4.9)).admitted
    refused = ledger.reserve(ACME, "small", usd(0.2))
    assert refused.reason == (
        "tenant acme/support/prod: usd cap $5.00 would be crossed: "
        "$4.90 spent or held + $0.20 requested"
    )
    assert refused.used_fraction == pytest.approx(0.98)
    tokens = BudgetKey(tenant="acme")
    ledger.set_caps(tokens, BudgetCaps(tokens=1000))
    refused = ledger.reserve(tokens, "tokens", Charge(tokens=1001, usd=0.000123))
    assert refused.reason == (
        "tenant acme/*/default: tokens cap 1000 would be crossed: 0 spent or held + 1001 requested"
    )


def test_without_caps_everything_is_admitted_and_tracked(ledger: BudgetLedger) -> None:
    assert ledger.caps(ACME) is None
    huge = Charge(tokens=10**9, steps=10**6, usd=10**6)
    answer = ledger.reserve(ACME, "huge", huge)
    assert answer.admitted and answer.used_fraction == 0.0 and not answer.replayed
    assert ledger.held(ACME) == huge
    ledger.set_caps(GLOBEX, BudgetCaps())  # all None: caps set, nothing capped
    assert ledger.caps(GLOBEX) == BudgetCaps()
    assert ledger.reserve(GLOBEX, "huge-2", huge).admitted


def test_settle_moves_the_hold_to_spent_with_the_actual_amount(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=0.5))
    assert ledger.reserve(ACME, "call-1", usd(0.2)).admitted
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.2), usd(0.0))
    ledger.settle("call-1", usd(0.35))  # the call cost more than estimated
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.35))
    assert not ledger.reserve(ACME, "call-2", usd(0.2)).admitted
    assert ledger.reserve(ACME, "call-3", usd(0.15)).admitted


def test_settle_charges_every_dimension(ledger: BudgetLedger) -> None:
    ledger.reserve(ACME, "call", Charge(tokens=500, steps=1, usd=0.01))
    ledger.settle("call", Charge(tokens=432, steps=1, usd=0.0087))
    assert ledger.spent(ACME) == Charge(tokens=432, steps=1, usd=0.0087)
    assert ledger.held(ACME) == Charge()


def test_reserve_again_with_the_same_id_replays_and_charges_nothing(
    ledger: BudgetLedger,
) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=1.0))
    first = ledger.reserve(ACME, "call", usd(0.4))
    retry = ledger.reserve(ACME, "call", usd(0.7))  # a retry re-estimated: still one hold
    assert retry.replayed and retry.admitted and not first.replayed
    assert (retry.id, retry.key, retry.amount) == (first.id, first.key, first.amount)
    assert retry.used_fraction == pytest.approx(0.4)
    assert ledger.held(ACME) == usd(0.4)
    ledger.settle("call", usd(0.3))
    resumed = ledger.reserve(ACME, "call", usd(0.4))
    assert resumed.replayed and resumed.admitted
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.3))


def test_replay_answers_for_the_original_bucket(ledger: BudgetLedger) -> None:
    ledger.reserve(ACME, "call", usd(0.4))
    replay = ledger.reserve(GLOBEX, "call", usd(0.1))
    assert replay.replayed and replay.key == ACME
    assert ledger.held(GLOBEX) == usd(0.0)


def test_settle_twice_charges_once(ledger: BudgetLedger) -> None:
    ledger.reserve(ACME, "call", usd(0.2))
    ledger.settle("call", usd(0.25))
    ledger.settle("call", usd(0.9))
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.25))


def test_release_drops_the_hold_and_later_settle_or_release_do_nothing(
    ledger: BudgetLedger,
) -> None:
    ledger.reserve(ACME, "aborted", usd(0.2))
    ledger.release("aborted")
    ledger.release("aborted")
    ledger.settle("aborted", usd(0.2))  # settle after release: no-op
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.0))
    ledger.reserve(ACME, "done", usd(0.2))
    ledger.settle("done", usd(0.1))
    ledger.release("done")  # release after settle: no-op
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.1))


def test_a_released_id_is_evaluated_afresh(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=1.0))
    ledger.reserve(ACME, "call", usd(0.2))
    ledger.release("call")
    again = ledger.reserve(ACME, "call", usd(0.3))
    assert again.admitted and not again.replayed and again.amount == usd(0.3)
    assert ledger.held(ACME) == usd(0.3)


@pytest.mark.parametrize("operation", ["settle", "release"])
def test_unknown_ids_raise_key_error_naming_them(ledger: BudgetLedger, operation: str) -> None:
    with pytest.raises(KeyError, match=r"'never-reserved'.*admitted=True"):
        if operation == "settle":
            ledger.settle("never-reserved", usd(0.1))
        else:
            ledger.release("never-reserved")


def test_a_refusal_records_nothing(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=0.1))
    refused = ledger.reserve(ACME, "too-big", usd(0.2))
    assert not refused.admitted and not refused.replayed
    assert (ledger.held(ACME), ledger.spent(ACME)) == (usd(0.0), usd(0.0))
    with pytest.raises(KeyError):
        ledger.settle("too-big", usd(0.2))
    ledger.set_caps(ACME, BudgetCaps(usd=1.0))
    retried = ledger.reserve(ACME, "too-big", usd(0.2))
    assert retried.admitted and not retried.replayed


def test_set_caps_replaces_caps_and_keeps_spend(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(usd=1.0, tokens=1000))
    ledger.reserve(ACME, "call", usd(0.4))
    ledger.settle("call", usd(0.4))
    ledger.set_caps(ACME, BudgetCaps(usd=0.5))
    assert ledger.caps(ACME) == BudgetCaps(usd=0.5)
    assert ledger.spent(ACME) == usd(0.4)
    assert not ledger.reserve(ACME, "over", usd(0.2)).admitted
    assert ledger.reserve(ACME, "fits", Charge(tokens=10**6, usd=0.1)).admitted


def test_used_fraction_is_the_fullest_capped_dimension(ledger: BudgetLedger) -> None:
    ledger.set_caps(ACME, BudgetCaps(tokens=1000, usd=2.0))
    assert ledger.reserve(ACME, "a", Charge(tokens=100, usd=1.0)).used_fraction == 0.5
    assert ledger.reserve(ACME, "b", Charge(tokens=700)).used_fraction == 0.8
    ledger.settle("b", Charge(tokens=50))
    assert ledger.reserve(ACME, "c", Charge(steps=5)).used_fraction == 0.5


def test_buckets_are_independent(ledger: BudgetLedger) -> None:
    for key in (ACME, GLOBEX):
        ledger.set_caps(key, BudgetCaps(usd=1.0))
    assert ledger.reserve(ACME, "acme", usd(1.0)).admitted
    ledger.settle("acme", usd(1.0))
    assert not ledger.reserve(ACME, "acme-more", usd(0.01)).admitted
    assert ledger.reserve(GLOBEX, "globex", usd(1.0)).admitted
    assert ledger.spent(GLOBEX) == usd(0.0)
    assert ledger.held(GLOBEX) == usd(1.0)
    staging = BudgetKey(tenant="acme", workflow="support", environment="staging")
    assert ledger.reserve(staging, "staging", usd(5.0)).admitted
    # A `/` inside a part must not make two different buckets one.
    slash_tenant = BudgetKey(tenant="a/b", workflow="c")
    slash_workflow = BudgetKey(tenant="a", workflow="b/c")
    ledger.set_caps(slash_tenant, BudgetCaps(usd=0.1))
    ledger.reserve(slash_tenant, "slash", usd(0.1))
    assert ledger.reserve(slash_workflow, "other", usd(0.1)).admitted
    assert ledger.held(slash_workflow) == usd(0.1)
    assert ledger.caps(slash_workflow) is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ledger: ledger.reserve(ACME, "neg", Charge(usd=-0.01)), "non-negative"),
        (lambda ledger: ledger.reserve(ACME, "neg", Charge(tokens=-1)), "non-negative"),
        (lambda ledger: ledger.reserve(ACME, "nan", Charge(usd=float("nan"))), "usd"),
        (lambda ledger: ledger.reserve(ACME, "", usd(0.1)), "non-empty string"),
        (lambda ledger: ledger.settle("", usd(0.1)), "non-empty string"),
        (lambda ledger: ledger.release(""), "non-empty string"),
        (lambda ledger: ledger.settle("x", Charge(steps=-1)), "actual"),
    ],
    ids=[
        "negative-usd",
        "negative-tokens",
        "nan-usd",
        "empty-id",
        "settle-empty",
        "release-empty",
        "negative-actual",
    ],
)
def test_invalid_input_is_a_config_error_with_a_hint(
    ledger: BudgetLedger, call: Callable[[BudgetLedger], object], match: str
) -> None:
    with pytest.raises(GuardConfigError, match=match) as raised:
        call(ledger)
    assert "Hint:" in str(raised.value)
    assert ledger.held(ACME) == Charge()


def test_concurrent_reserves_never_admit_more_than_the_cap(ledger: BudgetLedger) -> None:
    # Switch threads as often as CPython allows: an unguarded check-then-add gets a chance to
    # interleave (with the GIL it still rarely does; on free-threaded builds it would).
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _race(ledger)
    finally:
        sys.setswitchinterval(previous)


def _race(ledger: BudgetLedger) -> None:
    threads, per_thread, charge = 16, 50, usd(0.01)
    ledger.set_caps(ACME, BudgetCaps(usd=3.0))  # room for 300 of the 800 attempts
    start = threading.Barrier(threads)
    admitted: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for step in range(per_thread):
                rid = f"t{worker}-{step}"
                if ledger.reserve(ACME, rid, charge).admitted:
                    admitted[worker].append(rid)
                    ledger.settle(rid, charge)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    assert sum(len(ids) for ids in admitted) == 300
    assert ledger.spent(ACME) == usd(3.0)
    assert ledger.held(ACME) == Charge()
