"""The memory contract's validators: tenants, namespaces, keys, sensitivity, tags, scopes."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memory.contract import (
    DEFAULT_RETENTION,
    SENSITIVITY_LEVELS,
    ConflictPolicy,
    Lineage,
    MemoryContractError,
    MemoryScope,
    MemoryTags,
    MissingTagsError,
    check_key,
    check_namespace,
    check_tenant,
    sensitivity_rank,
)

REQUIRED = ("purpose", "retention", "sensitivity", "source", "run_id")
"""Tags every write must carry, in the order the refusal names them."""
REPRODUCIBLE = settings(derandomize=True, database=None, deadline=None, max_examples=300)
FULL_TAGS = {
    "purpose": "support",
    "retention": "profile",
    "sensitivity": "internal",
    "source": "ticket:T01",
    "run_id": "run-1",
}


def _is_tenant(text: str) -> bool:
    """The spec of a tenant id, written without the regex under test."""
    return (
        1 <= len(text) <= 64
        and text.isascii()
        and text[0].isalnum()
        and all(char.isalnum() or char in "_-" for char in text)
    )


def _is_label(text: str) -> bool:
    return (
        1 <= len(text) <= 64
        and text.isascii()
        and text[0].isalnum()
        and all(char.isalnum() or char in "_:@+-" for char in text)
    )


# -- tenants ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["acme", "a", "7", "Acme_EU-2", "x" * 64])
def test_a_well_formed_tenant_is_returned_unchanged(tenant: str) -> None:
    assert check_tenant(tenant) == tenant


@pytest.mark.parametrize(
    "tenant",
    ["", "-acme", "_acme", "acme.eu", "acme/../globex", "acme eu", "acme\n", "globex\x00",
     "x" * 65, "\u0430cme", "\uff41cme", "acmé"],
)  # fmt: skip
def test_a_malformed_tenant_is_refused_naming_it_and_the_rule(tenant: str) -> None:
    with pytest.raises(MemoryContractError) as caught:
        check_tenant(tenant)
    assert repr(tenant) in str(caught.value)
    assert "1-64 characters" in str(caught.value)


@pytest.mark.parametrize("tenant", [None, 7, b"acme", ("acme",)])
def test_a_tenant_that_is_not_a_string_is_refused(tenant: Any) -> None:
    with pytest.raises(MemoryContractError, match="bad tenant"):
        check_tenant(tenant)


@REPRODUCIBLE
@given(st.text(max_size=70) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True))
def test_check_tenant_accepts_exactly_the_documented_ids(text: str) -> None:
    if _is_tenant(text):
        assert check_tenant(text) == text
    else:
        with pytest.raises(MemoryContractError):
            check_tenant(text)


# -- namespaces ------------------------------------------------------------------------------------


def test_a_namespace_comes_back_as_a_tuple_of_its_labels() -> None:
    assert check_namespace("prefs") == ("prefs",)
    assert check_namespace(["customers", "alice"]) == ("customers", "alice")
    assert check_namespace(("a:b", "c@d", "e+f", "g-h", "i_j", "x" * 64)) == (
        "a:b", "c@d", "e+f", "g-h", "i_j", "x" * 64,
    )  # fmt: skip


@pytest.mark.parametrize("depth", [0, 7, 10])
def test_a_namespace_outside_one_to_six_labels_is_refused_with_the_limit(depth: int) -> None:
    with pytest.raises(MemoryContractError) as caught:
        check_namespace(("a",) * depth)
    assert f"has {depth} labels" in str(caught.value)
    assert "expected 1 to 6" in str(caught.value)


@pytest.mark.parametrize(
    "label",
    ["", ".", "..", "a.b", "a/b", "/", "a b", "_private", "-x", ":x", "@x", "x" * 65, "a\x00b",
     "\u0430cme", "tab\there", "new\nline", "a\\b", "*"],
)  # fmt: skip
def test_a_label_that_could_escape_or_reach_bookkeeping_is_refused(label: str) -> None:
    with pytest.raises(MemoryContractError) as caught:
        check_namespace(("customers", label))
    message = str(caught.value)
    assert f"bad namespace label {label!r}" in message
    assert "('customers', " in message  # the whole namespace, to find the call site


def test_a_label_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MemoryContractError, match="bad namespace label 7"):
        check_namespace(("customers", 7))  # type: ignore[arg-type]


@REPRODUCIBLE
@given(st.lists(st.text(max_size=70), max_size=8))
@example(["acme", "memory", "prefs"])
@example(["..", "globex"])
def test_check_namespace_accepts_exactly_the_documented_labels(labels: list[str]) -> None:
    if 1 <= len(labels) <= 6 and all(_is_label(label) for label in labels):
        assert check_namespace(labels) == tuple(labels)
    else:
        with pytest.raises(MemoryContractError):
            check_namespace(labels)


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "tone", "x" * 200, "a b", "../globex", "a/b", "ключ", "*"])
def test_a_printable_key_without_at_is_returned_unchanged(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 201, "k@c0123", "@", "\x00", "a\nb", "\t", "\u200b"])
def test_a_malformed_key_is_refused_naming_it_and_the_rule(key: str) -> None:
    with pytest.raises(MemoryContractError) as caught:
        check_key(key)
    assert repr(key) in str(caught.value)
    assert "1-200 printable characters without `@`" in str(caught.value)


def test_a_key_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MemoryContractError, match="bad memory key"):
        check_key(7)  # type: ignore[arg-type]


@REPRODUCIBLE
@given(st.text(max_size=210))
def test_check_key_accepts_exactly_the_documented_keys(key: str) -> None:
    if 1 <= len(key) <= 200 and "@" not in key and key.isprintable():
        assert check_key(key) == key
    else:
        with pytest.raises(MemoryContractError):
            check_key(key)


# -- sensitivity -----------------------------------------------------------------------------------


def test_sensitivity_levels_rank_from_public_to_restricted() -> None:
    assert SENSITIVITY_LEVELS == ("public", "internal", "confidential", "restricted")
    assert [sensitivity_rank(level) for level in SENSITIVITY_LEVELS] == [0, 1, 2, 3]


@pytest.mark.parametrize("level", ["", "secret", "Public", "INTERNAL", " internal"])
def test_an_unknown_sensitivity_is_refused_listing_the_known_ones(level: str) -> None:
    with pytest.raises(MemoryContractError) as caught:
        sensitivity_rank(level)
    assert repr(level) in str(caught.value)
    assert "public, internal, confidential, restricted" in str(caught.value)


# -- tags ------------------------------------------------------------------------------------------


def test_full_tags_become_tags_with_their_lineage() -> None:
    tags = MemoryTags.from_mapping({**FULL_TAGS, "decision_id": "d-9"})
    assert tags == MemoryTags(
        purpose="support", retention="profile", sensitivity="internal",
        lineage=Lineage(source="ticket:T01", run_id="run-1", decision_id="d-9"),
    )  # fmt: skip


def test_the_decision_is_optional_and_blank_means_none() -> None:
    assert MemoryTags.from_mapping(FULL_TAGS).lineage.decision_id is None
    assert MemoryTags.from_mapping({**FULL_TAGS, "decision_id": ""}).lineage.decision_id is None


@pytest.mark.parametrize(
    "missing",
    [combo for size in (1, 2, 5) for combo in itertools.combinations(REQUIRED, size)],
)
def test_a_write_without_tags_is_refused_naming_every_missing_one(missing: tuple[str, ...]) -> None:
    given_tags = {name: value for name, value in FULL_TAGS.items() if name not in missing}
    with pytest.raises(MissingTagsError) as caught:
        MemoryTags.from_mapping(given_tags)
    message = str(caught.value)
    assert f"missing tag(s) {', '.join(missing)}. " in message  # exactly these, in order
    assert f"got {sorted(given_tags)}" in message


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_a_blank_tag_counts_as_missing(blank: str | None) -> None:
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) purpose, source\."):
        MemoryTags.from_mapping({**FULL_TAGS, "purpose": blank, "source": blank})


def test_a_missing_tag_is_a_contract_error_and_a_bad_sensitivity_is_not_a_missing_one() -> None:
    assert issubclass(MissingTagsError, MemoryContractError)
    with pytest.raises(MemoryContractError) as caught:
        MemoryTags.from_mapping({**FULL_TAGS, "sensitivity": "secret"})
    assert not isinstance(caught.value, MissingTagsError)
    assert "unknown sensitivity 'secret'" in str(caught.value)


# -- scopes ----------------------------------------------------------------------------------------


def _scope(**changes: Any) -> MemoryScope:
    fields: dict[str, Any] = {
        "tenant": "acme", "agent": "triage", "purposes": frozenset({"support"}),
        "run_id": "run-1",
    }  # fmt: skip
    return MemoryScope(**{**fields, **changes})


def test_a_scope_defaults_to_internal_clearance_and_is_frozen() -> None:
    scope = _scope()
    assert scope.clearance == "internal" and scope.decision_id is None and scope.extra == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        scope.tenant = "globex"  # type: ignore[misc]


@pytest.mark.parametrize("tenant", ["", "acme/../globex", "globex\x00", "acme.eu", "\u0430cme"])
def test_a_scope_for_a_malformed_tenant_cannot_be_built(tenant: str) -> None:
    with pytest.raises(MemoryContractError, match="bad tenant"):
        _scope(tenant=tenant)


def test_a_scope_needs_a_known_clearance_and_an_author() -> None:
    with pytest.raises(MemoryContractError, match="unknown sensitivity 'top-secret'"):
        _scope(clearance="top-secret")
    with pytest.raises(MemoryContractError, match="needs an `agent`"):
        _scope(agent="")


def test_scope_tags_take_their_lineage_from_the_scope() -> None:
    scope = _scope(decision_id="d-1")
    tags = scope.tags(purpose="support", retention="case", sensitivity="confidential",
                      source="crm")  # fmt: skip
    assert tags.lineage == Lineage(source="crm", run_id="run-1", decision_id="d-1")
    assert (tags.purpose, tags.retention, tags.sensitivity) == ("support", "case", "confidential")


def test_a_scope_without_a_run_cannot_tag_a_write() -> None:
    with pytest.raises(MissingTagsError, match=r"missing tag\(s\) run_id\."):
        _scope(run_id="").tags(purpose="support", retention="case", sensitivity="internal",
                               source="crm")  # fmt: skip


# -- retention and conflict policies ---------------------------------------------------------------


def test_default_retention_classes_are_keyed_by_name_in_the_right_tier() -> None:
    assert all(name == rule.name for name, rule in DEFAULT_RETENTION.items())
    tiers = {name: rule.tier for name, rule in DEFAULT_RETENTION.items()}
    assert tiers == {
        "turn": "short", "session": "short", "candidate": "short",
        "case": "long", "profile": "long", "permanent": "long",
    }  # fmt: skip


def test_default_retention_lifetimes_grow_and_only_permanent_keeps_forever() -> None:
    ttl = {name: rule.ttl_s for name, rule in DEFAULT_RETENTION.items()}
    assert ttl["turn"] == 3600.0 and ttl["session"] == 86_400.0
    assert ttl["turn"] < ttl["session"] < ttl["case"] < ttl["profile"]  # type: ignore[operator]
    assert [name for name, seconds in ttl.items() if seconds is None] == ["permanent"]


def test_only_candidates_are_promoted_and_to_a_long_term_class() -> None:
    promoted = {
        name: rule.promote_to for name, rule in DEFAULT_RETENTION.items() if rule.promote_to
    }
    assert promoted == {"candidate": "profile"}
    assert DEFAULT_RETENTION["profile"].tier == "long"


def test_conflict_policies_parse_from_their_configuration_names() -> None:
    assert [ConflictPolicy(name) for name in ("cas", "lww", "escalate")] == list(ConflictPolicy)
    with pytest.raises(ValueError, match="'merge'"):
        ConflictPolicy("merge")
