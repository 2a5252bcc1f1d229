"""Console API keys: a JSON file of SHA-256 hashes, each key scoped to tenants (never the keys)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ALL_TENANTS", "ApiKey", "KeyStore", "KeyStoreError", "ensure_admin_key"]

ALL_TENANTS = "*"
"""The tenant entry of a key that covers every tenant."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SHAPE = (
    '{"keys": [{"name": "alice", "sha256": "<64 hex digits>", "tenants": ["acme"], '
    '"admin": false}]} (`tenants: ["*"]` covers every tenant)'
)


class KeyStoreError(ValueError):
    """The key file is malformed, or a key operation got bad arguments (says what to fix)."""


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """Who a presented key belongs to and what it may see."""

    name: str
    """The key's name: recorded as the reviewer and in `console:<name>` audit actors."""
    tenants: frozenset[str]
    """Tenants it covers; `{"*"}` covers every tenant."""
    admin: bool = False
    """May verify the whole audit chain and kill or lift beyond its tenants."""

    @property
    def all_tenants(self) -> bool:
        """Whether the key covers every tenant."""
        return ALL_TENANTS in self.tenants

    def covers(self, tenant: str) -> bool:
        """Whether the key may see and act on `tenant`'s runs."""
        return self.all_tenants or tenant in self.tenants

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (`GET /bastion/api/me`)."""
        return {"name": self.name, "tenants": sorted(self.tenants), "admin": self.admin}


@dataclass(frozen=True, kw_only=True)
class _Stored:
    key: ApiKey
    sha256: str


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_tenants(tenants: Iterable[str], where: str) -> frozenset[str]:
    if isinstance(tenants, str):
        raise KeyStoreError(f"{where}: tenants must be a list of names, got the string {tenants!r}")
    chosen = frozenset(tenants)
    if not chosen or any(not isinstance(t, str) or not t.strip() for t in chosen):
        raise KeyStoreError(
            f"{where}: tenants must be a non-empty list of non-blank names, got "
            f'{sorted(map(str, chosen))!r}. Hint: use ["*"] for every tenant.'
        )
    if ALL_TENANTS in chosen and len(chosen) > 1:
        raise KeyStoreError(
            f"{where}: `*` covers every tenant; list it alone, got {sorted(chosen)}"
        )
    return chosen


class KeyStore:
    """The console's API keys in one JSON file (`Settings.console_keys_path`).

    Only SHA-256 hashes are stored; `create` returns the new key once. The file is re-read
    when it changes on disk, so keys created or revoked from the command line reach a
    running server without a restart. Thread-safe.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        """The key file."""
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[_Stored] = []

    def _error(self, problem: str) -> KeyStoreError:
        return KeyStoreError(
            f"console key file {str(self.path)!r} is malformed: {problem}; expected {_SHAPE}. "
            "Hint: fix or delete the file (then create keys again with `bastion console`)."
        )

    def _parse(self, text: str) -> list[_Stored]:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise self._error(f"not JSON ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise self._error('the top level must be an object with a "keys" list')
        stored: list[_Stored] = []
        for index, item in enumerate(data["keys"]):
            where = f"keys[{index}]"
            if not isinstance(item, dict):
                raise self._error(f"{where} is {item!r}, not an object")
            name, digest = item.get("name"), item.get("sha256")
            if not isinstance(name, str) or not _NAME.match(name):
                raise self._error(f"{where}.name {name!r} is not a key name")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise self._error(f"{where}.sha256 of {name!r} is not 64 lowercase hex digits")
            if not isinstance(item.get("admin", False), bool):
                raise self._error(f"{where}.admin of {name!r} must be true or false")
            if not isinstance(item.get("tenants"), list):
                raise self._error(f"{where}.tenants of {name!r} must be a list")
            try:
                tenants = _check_tenants(item["tenants"], where)
            except KeyStoreError as error:
                raise self._error(str(error)) from None
            if any(s.key.name == name for s in stored):
                raise self._error(f"the name {name!r} appears twice")
            key = ApiKey(name=name, tenants=tenants, admin=item.get("admin", False))
            stored.append(_Stored(key=key, sha256=digest))
        return stored

    def _load(self) -> list[_Stored]:
        """The keys on disk (cached until the file changes); call with the lock held."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return self._keys
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            self._keys = self._parse(self.path.read_text(encoding="utf-8"))
            self._stamp = stamp
        return self._keys

    def _save(self, keys: list[_Stored]) -> None:
        """Write atomically (a reader never sees half a file), readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "keys": [
                {
                    "name": s.key.name,
                    "sha256": s.sha256,
                    "tenants": sorted(s.key.tenants),
                    "admin": s.key.admin,
                }
                for s in keys
            ]
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".console-keys.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
                out.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None  # re-read (and re-validate) on the next use

    def create(self, name: str, tenants: Iterable[str], admin: bool = False) -> str:
        """Add a key and return it: this is the only time the key itself is seen.

        Raises:
            KeyStoreError: a bad name, no tenants, a name already used, or a malformed file.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise KeyStoreError(
                f"key name {name!r} must be 1-64 letters, digits, `_`, `.`, `@` or `-`, "
                "starting with a letter or digit"
            )
        chosen = _check_tenants(tenants, f"key {name!r}")
        raw = secrets.token_urlsafe(32)
        with self._lock:
            keys = list(self._load())
            if any(s.key.name == name for s in keys):
                raise KeyStoreError(
                    f"a console key named {name!r} exists already in {str(self.path)!r}. "
                    "Hint: revoke it first, or choose another name."
                )
            keys.append(
                _Stored(key=ApiKey(name=name, tenants=chosen, admin=admin), sha256=_digest(raw))
            )
            self._save(keys)
        return raw

    def revoke(self, name: str) -> bool:
        """Remove the key named `name`; False when there is none."""
        with self._lock:
            keys = self._load()
            kept = [s for s in keys if s.key.name != name]
            if len(kept) == len(keys):
                return False
            self._save(kept)
        return True

    def list(self) -> list[ApiKey]:
        """Every key (names and scopes; the keys themselves are not kept)."""
        with self._lock:
            return [s.key for s in self._load()]

    def authenticate(self, raw: str | None) -> ApiKey | None:
        """The key `raw` is, or None (compared in constant time against every stored hash)."""
        if not raw:
            return None
        digest = _digest(raw)
        with self._lock:
            keys = self._load()
        found = None
        for stored in keys:  # no early exit: the time taken does not tell which key matched
            if hmac.compare_digest(stored.sha256, digest):
                found = stored.key
        return found


def ensure_admin_key(store: KeyStore, *, name: str = "admin") -> str | None:
    """Create an admin key covering every tenant when the store has no key at all.

    Returns:
        The new key (print it once: it cannot be recovered), or None when keys exist.
    """
    if store.list():
        return None
    return store.create(name, [ALL_TENANTS], admin=True)
