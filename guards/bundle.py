"""Policy bundles: a directory of Rego files with a hashed, optionally signed manifest."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from guards.base import DecisionPoint, PolicyMeta, PolicyScope
from guards.errors import GuardConfigError, PolicyBundleError
from guards.rego import RegoModule, compile_check, parse_module

__all__ = [
    "MANIFEST",
    "BundleManifest",
    "BundlePolicy",
    "PolicyBundle",
    "load_bundle",
    "sign_bundle",
]

MANIFEST = "bundle.json"
"""Name of the manifest file at the root of a bundle directory."""
DATA = "data.json"
"""Name of the optional base document (OPA `data`) at the root of a bundle."""
_HINT = "Hint: after an intended change, run `sign_bundle` (or `bastion policy sign`) again."

Sha256 = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
Hmac = Annotated[str, StringConstraints(pattern=r"^hmac-sha256:[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScopeSpec(_Strict):
    """`scope` of a policy in the manifest; an empty list means all."""

    tenants: list[str] = []
    """Tenants the policy applies to."""
    workflows: list[str] = []
    """Workflows the policy applies to."""
    tools: list[str] = []
    """Tools the policy applies to."""


class PolicySpec(_Strict):
    """One entry of `policies` in the manifest: the policy contract and its Rego file."""

    id: Name
    """Stable policy id."""
    version: Name
    """Version recorded on every decision."""
    owner: Name
    """Accountable team or person."""
    file: Annotated[str, StringConstraints(pattern=r"\.rego$")]
    """Rego file (relative to the bundle root) holding the policy's package."""
    scope: ScopeSpec = ScopeSpec()
    """Where it applies."""
    decision_points: list[DecisionPoint] = Field(default=["tool_call"], min_length=1)
    """Where it is consulted."""
    remediation: str = ""
    """What to do when it denies or escalates."""


class BundleManifest(_Strict):
    """`bundle.json`: what the bundle holds, the hash of every file, and its signature."""

    name: Name
    """Bundle name."""
    revision: Name
    """Revision, e.g. `2026-11-21.1`; engines expose it and decisions are cached per revision."""
    policies: list[PolicySpec]
    """The policies (each names its Rego file)."""
    files: dict[str, Sha256]
    """Every file of the bundle (relative POSIX path) → `sha256:<hex>` of its bytes."""
    signature: Hmac | None = None
    """`hmac-sha256:<hex>` over the canonical manifest without this field."""


@dataclass(frozen=True, kw_only=True)
class BundlePolicy:
    """A loaded policy: its contract and its Rego module."""

    meta: PolicyMeta
    """The policy contract."""
    module: RegoModule
    """The module holding its `deny` / `escalate` rules."""


@dataclass(frozen=True, kw_only=True)
class PolicyBundle:
    """A verified, compiled-once bundle, ready for an engine."""

    name: str
    """Bundle name from the manifest."""
    revision: str
    """Bundle revision from the manifest."""
    path: Path
    """Directory it was loaded from."""
    policies: tuple[BundlePolicy, ...]
    """Policies in manifest order."""
    libraries: tuple[RegoModule, ...]
    """Rego files no policy names (helpers any policy may import)."""
    data_json: str
    """The base document as JSON text (`{}` when the bundle has no data.json)."""
    digest: str
    """`sha256:<hex>` of the canonical manifest (which pins every file's hash)."""
    signed: bool
    """Whether the signature was verified with a key."""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(raw: dict[str, Any]) -> bytes:
    """The manifest bytes that are signed: sorted keys, no whitespace, no signature."""
    unsigned = {k: v for k, v in raw.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _signature(raw: dict[str, Any], key: bytes) -> str:
    if not isinstance(key, bytes) or not key:
        raise GuardConfigError(f"bundle signing key must be non-empty bytes, got {key!r:.20}")
    return "hmac-sha256:" + hmac.new(key, _canonical(raw), hashlib.sha256).hexdigest()


def _bundle_files(root: Path) -> set[str]:
    """Every non-hidden regular file under `root` except the manifest, as POSIX paths."""
    found = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.add(rel.as_posix())
    found.discard(MANIFEST)
    return found


def _read_manifest(root: Path) -> tuple[dict[str, Any], BundleManifest]:
    path = root / MANIFEST
    if not path.is_file():
        raise PolicyBundleError(
            f"{root} is not a policy bundle: no `{MANIFEST}` in it. Hint: write one listing the "
            "policies, then run `sign_bundle` to fill in the file hashes.",
            path=MANIFEST,
        )
    try:
        raw = json.loads(_decode(MANIFEST, path.read_bytes()))
    except json.JSONDecodeError as error:
        raise PolicyBundleError(
            f"`{MANIFEST}` is not valid JSON (line {error.lineno}): {error.msg}",
            path=MANIFEST,
            line=error.lineno,
        ) from None
    try:
        return raw, BundleManifest.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"`{''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in e['loc'])[1:]}`: "
            f"{e['msg']}" + ("" if e["type"] == "missing" else f" (got {e['input']!r:.60})")
            for e in error.errors()
        )
        raise PolicyBundleError(
            f"`{MANIFEST}` is not valid: {problems}. Hint: see the bundle format in "
            "guards/bundle.py.",
            path=MANIFEST,
        ) from None


def _verify_signature(raw: dict[str, Any], manifest: BundleManifest, key: bytes | None) -> None:
    if key is None:
        return
    if manifest.signature is None:
        raise PolicyBundleError(
            f"bundle `{manifest.name}` is not signed, but a signing key was given: refusing an "
            "unsigned bundle. Hint: sign it with `sign_bundle(path, key=...)`.",
            path=MANIFEST,
        )
    if not hmac.compare_digest(_signature(raw, key), manifest.signature):
        raise PolicyBundleError(
            f"bundle `{manifest.name}` signature does not verify with the given key: the "
            "manifest changed after signing, or it was signed with another key. " + _HINT,
            path=MANIFEST,
        )


def _verify_files(root: Path, manifest: BundleManifest) -> dict[str, bytes]:
    """Check the directory holds exactly the listed files, each with its listed hash."""
    present, listed = _bundle_files(root), set(manifest.files)
    for name in sorted(listed - present):
        raise PolicyBundleError(
            f"file `{name}` is listed in `{MANIFEST}` but missing from {root}. " + _HINT,
            path=name,
        )
    for name in sorted(present - listed):
        raise PolicyBundleError(
            f"file `{name}` is in {root} but not listed in `{MANIFEST}`: refusing an "
            "unlisted file. Hint: remove it, or list it by running `sign_bundle`.",
            path=name,
        )
    contents = {}
    for name in sorted(listed):
        data = (root / name).read_bytes()
        expected, actual = manifest.files[name], _sha256(data)
        if not hmac.compare_digest(expected, actual):
            raise PolicyBundleError(
                f"file `{name}` does not match its hash in `{MANIFEST}`: expected "
                f"{expected[:19]}…, found {actual[:19]}… (changed after hashing). " + _HINT,
                path=name,
            )
        contents[name] = data
    return contents


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyBundleError(
            f"file `{name}` is not UTF-8 text (byte {error.start})", path=name
        ) from None


def _data_json(contents: dict[str, bytes]) -> str:
    if DATA not in contents:
        return "{}"
    text = _decode(DATA, contents[DATA])
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyBundleError(
            f"`{DATA}` is not valid JSON (line {error.lineno}): {error.msg}",
            path=DATA,
            line=error.lineno,
        ) from None
    if not isinstance(value, dict):
        raise PolicyBundleError(
            f"`{DATA}` must hold a JSON object (the base document), got {type(value).__name__}",
            path=DATA,
        )
    return text


def _policies(manifest: BundleManifest, modules: dict[str, RegoModule]) -> tuple[BundlePolicy, ...]:
    seen_ids: set[str] = set()
    seen_files: dict[str, str] = {}
    policies = []
    for spec in manifest.policies:
        if spec.id in seen_ids:
            raise PolicyBundleError(f"policy id `{spec.id}` appears twice in `{MANIFEST}`")
        if spec.file in seen_files:
            raise PolicyBundleError(
                f"policies `{seen_files[spec.file]}` and `{spec.id}` name the same file "
                f"`{spec.file}`; each policy needs its own file and package",
                path=spec.file,
            )
        if spec.file not in modules:
            raise PolicyBundleError(
                f"policy `{spec.id}` names file `{spec.file}`, which is not in `files`. " + _HINT,
                path=spec.file,
            )
        seen_ids.add(spec.id)
        seen_files[spec.file] = spec.id
        module = modules[spec.file]
        if not module.rules & {"deny", "escalate"}:
            raise PolicyBundleError(
                f"policy `{spec.id}`: package `{module.package}` in `{spec.file}` defines "
                "neither `deny` nor `escalate`. Hint: add e.g. `deny contains msg if {...}`.",
                path=spec.file,
            )
        scope = PolicyScope(
            tenants=frozenset(spec.scope.tenants),
            workflows=frozenset(spec.scope.workflows),
            tools=frozenset(spec.scope.tools),
        )
        meta = PolicyMeta(
            id=spec.id,
            version=spec.version,
            owner=spec.owner,
            scope=scope,
            decision_points=tuple(spec.decision_points),
            remediation=spec.remediation,
        )
        policies.append(BundlePolicy(meta=meta, module=module))
    return tuple(policies)


def _modules(contents: dict[str, bytes]) -> dict[str, RegoModule]:
    modules = {
        name: parse_module(name, _decode(name, data))
        for name, data in contents.items()
        if name.endswith(".rego")
    }
    packages: dict[str, str] = {}
    for module in modules.values():
        other = packages.setdefault(module.package, module.file)
        if other != module.file:
            raise PolicyBundleError(
                f"files `{other}` and `{module.file}` both declare package `{module.package}`; "
                "each file needs its own package",
                path=module.file,
            )
    return modules


def load_bundle(directory: str | Path, *, key: bytes | None = None) -> PolicyBundle:
    """Load, verify and compile-check the bundle in `directory`.

    Args:
        directory: the bundle root (holding `bundle.json`).
        key: HMAC key; when given, the bundle must be signed with it.

    Raises:
        PolicyBundleError: naming the file (and line) at fault: bad manifest, missing, unlisted
            or tampered file, bad signature, Rego that does not compile, or a policy package
            without `deny` / `escalate`.
    """
    root = Path(directory)
    try:
        raw, manifest = _read_manifest(root)
        _verify_signature(raw, manifest, key)
        contents = _verify_files(root, manifest)
    except OSError as error:
        raise PolicyBundleError(
            f"cannot read policy bundle {root}: {error}", path=error.filename
        ) from None
    modules = _modules(contents)
    policies = _policies(manifest, modules)
    named = {p.module.file for p in policies}
    libraries = tuple(m for name, m in sorted(modules.items()) if name not in named)
    data_json = _data_json(contents)
    compile_check(tuple(modules.values()), data_json, [p.module.package for p in policies])
    return PolicyBundle(
        name=manifest.name,
        revision=manifest.revision,
        path=root,
        policies=policies,
        libraries=libraries,
        data_json=data_json,
        digest=_sha256(_canonical(raw)),
        signed=key is not None,
    )


def sign_bundle(directory: str | Path, *, key: bytes | None = None) -> PolicyBundle:
    """Recompute every file's hash (and the signature, with `key`), rewrite `bundle.json`,
    then load the result, so authors see any compile error at once.

    Args:
        directory: the bundle root; its `bundle.json` must already list the policies.
        key: HMAC key to sign with; without it any old signature is dropped.
    """
    root = Path(directory)
    raw, _ = _read_manifest(root)
    raw["files"] = {
        name: _sha256((root / name).read_bytes()) for name in sorted(_bundle_files(root))
    }
    raw.pop("signature", None)
    if key is not None:
        raw["signature"] = _signature(raw, key)
    (root / MANIFEST).write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return load_bundle(root, key=key)
