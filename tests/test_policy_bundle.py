"""Policy bundles: loading, every refusal with its message, signing, and reload safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from guards.base import PolicyRequest
from guards.bundle import load_bundle, sign_bundle
from guards.errors import PolicyBundleError
from guards.rego import RegoPolicyEngine

FIXTURE = Path(__file__).parent / "fixtures" / "policies"
KEY = b"test-signing-key"


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """A private copy of the example bundle (its manifest hashes are up to date)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "policies"))


def manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "bundle.json").read_text())


def write_manifest(root: Path, value: dict[str, Any]) -> None:
    (root / "bundle.json").write_text(json.dumps(value))


def add_policy(root: Path, file: str, source: str, **entry: Any) -> None:
    """Add a Rego file and its manifest entry (hashes are not updated)."""
    (root / file).write_text(source)
    value = manifest(root)
    value["policies"].append({"id": file.removesuffix(".rego"), "version": "1", "owner": "qa",
                              "file": file, **entry})  # fmt: skip
    write_manifest(root, value)


def refused(root: Path, **kwargs: Any) -> PolicyBundleError:
    with pytest.raises(PolicyBundleError) as caught:
        load_bundle(root, **kwargs)
    return caught.value


def test_the_example_bundle_loads_as_committed() -> None:
    bundle = load_bundle(FIXTURE)
    assert (bundle.name, bundle.revision, bundle.signed) == ("example", "2026-11-21.1", False)
    assert [p.meta.id for p in bundle.policies] == [
        "refund-limits",
        "tenant-freeze",
        "no-pii-egress",
    ]
    assert [m.file for m in bundle.libraries] == ["lib/money.rego"]
    assert bundle.policies[0].meta.scope.tools == {"issue_refund"}
    assert bundle.digest.startswith("sha256:") and len(bundle.digest) == 71


def test_unknown_manifest_keys_are_refused_by_name(bundle_dir: Path) -> None:
    value = manifest(bundle_dir)
    value["policies"][0]["colour"] = "red"
    write_manifest(bundle_dir, value)
    error = refused(bundle_dir)
    assert "`policies[0].colour`" in str(error) and "Extra inputs" in str(error)
    assert error.path == "bundle.json"


def test_missing_and_invalid_manifest_fields_are_named(bundle_dir: Path) -> None:
    value = manifest(bundle_dir)
    del value["policies"][1]["owner"]
    value["policies"][2]["decision_points"] = ["lunch"]
    write_manifest(bundle_dir, value)
    message = str(refused(bundle_dir))
    assert "`policies[1].owner`: Field required" in message
    assert "`policies[2].decision_points[0]`" in message and "'lunch'" in message


def test_a_manifest_that_is_not_json_names_the_line(bundle_dir: Path) -> None:
    (bundle_dir / "bundle.json").write_text('{\n  "name": "x",\n  oops\n}')
    error = refused(bundle_dir)
    assert error.path == "bundle.json" and error.line == 3


def test_a_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    assert "no `bundle.json`" in str(refused(tmp_path))


def test_a_file_changed_after_hashing_is_refused(bundle_dir: Path) -> None:
    expected = manifest(bundle_dir)["files"]["refunds.rego"]
    path = bundle_dir / "refunds.rego"
    path.write_text(path.read_text().replace("refund_limit)", "refund_limit * 10)", 1))
    error = refused(bundle_dir)
    assert error.path == "refunds.rego"
    assert f"expected {expected[:19]}" in str(error) and "found sha256:" in str(error)
    assert "sign_bundle" in str(error)


def test_an_unlisted_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "extra.rego").write_text("package extra\n")
    error = refused(bundle_dir)
    assert error.path == "extra.rego" and "not listed" in str(error)


def test_a_listed_file_that_is_missing_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "egress.rego").unlink()
    error = refused(bundle_dir)
    assert error.path == "egress.rego" and "missing" in str(error)


def test_signatures_verify_with_the_key(bundle_dir: Path) -> None:
    signed = sign_bundle(bundle_dir, key=KEY)
    assert signed.signed and manifest(bundle_dir)["signature"].startswith("hmac-sha256:")
    assert load_bundle(bundle_dir, key=KEY).revision == "2026-11-21.1"
    assert "does not verify" in str(refused(bundle_dir, key=b"another key"))
    assert not load_bundle(bundle_dir).signed  # no key: hashes checked, signature not


def test_a_manifest_edited_after_signing_is_refused(bundle_dir: Path) -> None:
    sign_bundle(bundle_dir, key=KEY)
    value = manifest(bundle_dir)
    value["policies"][0]["scope"]["tools"] = ["nothing"]  # quietly unscope a policy
    write_manifest(bundle_dir, value)
    assert "does not verify" in str(refused(bundle_dir, key=KEY))


def test_an_unsigned_bundle_is_refused_when_a_key_is_given(bundle_dir: Path) -> None:
    error = refused(bundle_dir, key=KEY)
    assert "not signed" in str(error) and error.path == "bundle.json"
    sign_bundle(bundle_dir, key=KEY)
    sign_bundle(bundle_dir)  # re-signing without a key drops the signature
    assert "signature" not in manifest(bundle_dir)


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("package bad\nimport rego.v1\n\ndeny contains msg if {\n  input.a > || 3\n}\n", 5,
         "Invalid"),
        ("package bad\nimport rego.v1\n\n# é\ndeny contains msg if {\n  input.a >\n  msg := 1\n}\n",
         6, "Unable to unify due to cycle"),
    ],
)  # fmt: skip
def test_a_compile_error_names_file_and_line(
    bundle_dir: Path, source: str, line: int, message: str
) -> None:
    add_policy(bundle_dir, "bad.rego", source)
    with pytest.raises(PolicyBundleError) as caught:
        sign_bundle(bundle_dir)  # authors see it at once; loading refuses it the same way
    error = caught.value
    assert (error.path, error.line) == ("bad.rego", line)
    assert f"`bad.rego` does not compile: line {line}: {message}" in str(error)
    assert refused(bundle_dir).line == line


def test_a_compile_error_in_a_library_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "lib" / "money.rego").write_text("package bastion.lib.money\n\nover(a, b) if {\n")
    with pytest.raises(PolicyBundleError) as caught:
        sign_bundle(bundle_dir)
    assert caught.value.path == "lib/money.rego"


def test_a_policy_package_needs_deny_or_escalate(bundle_dir: Path) -> None:
    add_policy(bundle_dir, "idle.rego", "package idle\nimport rego.v1\n\nallow if true\n")
    with pytest.raises(PolicyBundleError, match="neither `deny` nor `escalate`") as caught:
        sign_bundle(bundle_dir)
    assert caught.value.path == "idle.rego" and "`idle`" in str(caught.value)


def test_manifest_consistency_is_checked(bundle_dir: Path) -> None:
    value = manifest(bundle_dir)
    value["policies"].append({**value["policies"][0], "file": "egress.rego"})
    write_manifest(bundle_dir, value)
    assert "`refund-limits` appears twice" in str(refused(bundle_dir))
    value["policies"][-1] = {**value["policies"][0], "id": "other", "file": "nowhere.rego"}
    write_manifest(bundle_dir, value)
    assert "names file `nowhere.rego`, which is not in `files`" in str(refused(bundle_dir))


def test_two_files_with_one_package_are_refused(bundle_dir: Path) -> None:
    (bundle_dir / "copy.rego").write_text((bundle_dir / "egress.rego").read_text())
    with pytest.raises(PolicyBundleError, match=r"both declare package `bastion\.egress`"):
        sign_bundle(bundle_dir)


def test_data_must_be_a_json_object(bundle_dir: Path) -> None:
    (bundle_dir / "data.json").write_text("[1, 2]")
    with pytest.raises(PolicyBundleError, match="must hold a JSON object") as caught:
        sign_bundle(bundle_dir)
    assert caught.value.path == "data.json"


def request(**overrides: Any) -> PolicyRequest:
    fields: dict[str, Any] = dict(
        tenant="acme", workflow="support", agent="a", tool="issue_refund", args={"amount": 150}
    )
    fields.update(overrides)
    return PolicyRequest(**fields)


def test_reload_keeps_the_previous_bundle_when_the_new_one_is_refused(bundle_dir: Path) -> None:
    engine = RegoPolicyEngine.from_directory(bundle_dir)
    before = engine.evaluate(request())
    assert before.deny and engine.revision == "2026-11-21.1"
    value = manifest(bundle_dir)
    value["revision"] = "2026-11-22.1"
    write_manifest(bundle_dir, value)
    add_policy(bundle_dir, "bad.rego", "package bad\nimport rego.v1\ndeny contains x if {\n")
    with pytest.raises(PolicyBundleError):
        sign_bundle(bundle_dir)
    with pytest.raises(PolicyBundleError) as caught:
        engine.reload()
    assert caught.value.path == "bad.rego"
    with pytest.raises(PolicyBundleError, match=r"no `bundle\.json`"):
        engine.reload(bundle_dir / "nowhere")
    assert engine.revision == "2026-11-21.1" and engine.evaluate(request()) == before
    (bundle_dir / "bad.rego").unlink()
    value["policies"] = value["policies"][:3]
    write_manifest(bundle_dir, value)
    sign_bundle(bundle_dir)
    assert engine.reload().revision == "2026-11-22.1" and engine.revision == "2026-11-22.1"


def test_reload_requires_the_engines_key(bundle_dir: Path) -> None:
    sign_bundle(bundle_dir, key=KEY)
    engine = RegoPolicyEngine.from_directory(bundle_dir, key=KEY)
    sign_bundle(bundle_dir)  # someone drops the signature
    with pytest.raises(PolicyBundleError, match="not signed"):
        engine.reload()
    assert engine.bundle.signed


def evaluate_one(root: Path, source: str, req: PolicyRequest) -> Any:
    add_policy(root, "extra.rego", source, scope={"tools": ["probe"]})
    sign_bundle(root)
    return RegoPolicyEngine.from_directory(root).evaluate(req)


def test_an_unknown_function_fails_closed_at_evaluation(bundle_dir: Path) -> None:
    source = "package extra\nimport rego.v1\n\ndeny contains msg if {\n  msg := nosuch(1)\n}\n"
    decision = evaluate_one(bundle_dir, source, request(tool="probe"))
    assert decision.errors == ("policy `extra`@1 failed to evaluate: Function not found: nosuch",)


def test_deny_must_be_a_set_of_strings(bundle_dir: Path) -> None:
    source = 'package extra\nimport rego.v1\n\ndeny contains {"msg": "no"} if true\n'
    decision = evaluate_one(bundle_dir, source, request(tool="probe"))
    assert len(decision.errors) == 1 and "`deny` must be a set of strings" in decision.errors[0]


def test_a_policy_reading_the_whole_input_sees_every_field(bundle_dir: Path) -> None:
    source = (
        "package extra\nimport rego.v1\n\n"
        'deny contains sprintf("%s/%s", [doc.risk, doc.usage.steps]) if doc := input\n'
    )
    req = request(tool="probe", risk="yellow", usage={"steps": 4})
    assert evaluate_one(bundle_dir, source, req).deny == ("yellow/4",)


def test_a_policy_reading_another_policys_package_gets_it(bundle_dir: Path) -> None:
    source = (
        "package extra\nimport rego.v1\n\n"
        'deny contains "refund says no" if count(data.bastion.refunds.deny) > 0\n'
    )
    decision = evaluate_one(bundle_dir, source, request(tool="probe"))  # refunds: not in scope
    assert decision.deny == ("refund says no",) and [p.id for p in decision.policies] == ["extra"]
