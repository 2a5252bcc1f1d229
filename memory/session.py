"""A reasoning cycle's view of memory: reads it made (for its trace) and writes it stages
(committed together, as one commit)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from memory.contract import (
    MemoryContractError,
    MemoryScope,
    MemoryTags,
    Sensitivity,
    check_key,
    check_namespace,
)
from memory.core import Key, MemoryCore, Staged
from memory.records import CommitResult, MemoryRead, MemoryRecord, Recalled

__all__ = ["MemorySession"]

_MAX_VALUE_BYTES = 64_000


class MemorySession:
    """Reads and staged writes of one reasoning cycle; `commit()` (or leaving the `with`
    block without an error) writes them as one commit. An error in the block writes nothing.

    A key read in the session and then written is compare-and-set against the version read,
    and a key written without a read against memory as it stood when the session staged its
    first write: a commit by someone else since is a conflict the namespace's policy settles
    (reported under `lww`), so two agents that change the same fact never silently lose an
    update.
    """

    def __init__(self, memory: MemoryCore, scope: MemoryScope, message: str = "") -> None:
        self.memory, self.scope, self.message = memory, scope, message
        self.reads: list[MemoryRead] = []
        """Every record read, in order: goes into the decision's trace."""
        self.result: CommitResult | None = None
        """Result of the last commit."""
        self._versions: dict[Key, int] = {}
        self._base: int | None = None
        """Log position when the first write was staged: what blind writes build on."""
        self._staged: dict[Key, Staged] = {}

    def __enter__(self) -> MemorySession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self._staged.clear()

    def get(self, namespace: Sequence[str], key: str) -> MemoryRecord | None:
        """The current version, if this scope may see it (the read is recorded)."""
        record = self.memory.get(self.scope, namespace, check_key(key))
        self._note(namespace, key, record)
        return record

    def recall(
        self,
        query: str | None = None,
        *,
        namespace: Sequence[str] = (),
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[Recalled]:
        """`VersionedMemory.recall` in this scope (every hit is recorded)."""
        hits = self.memory.recall(
            self.scope, query, namespace=namespace, limit=limit, filter=filter
        )
        for hit in hits:
            self._note(hit.record.namespace, hit.record.key, hit.record)
        return hits

    def remember(
        self,
        namespace: Sequence[str],
        key: str,
        value: Mapping[str, Any],
        *,
        purpose: str,
        retention: str,
        sensitivity: Sensitivity,
        source: str | None = None,
        expected_version: int | None = None,
    ) -> None:
        """Stage a write; the tags are the memory contract (lineage comes from the scope).

        Raises:
            MissingTagsError: a tag is missing or blank.
            MemoryContractError: bad namespace, key, value or retention class.
        """
        tags = self.scope.tags(
            purpose=purpose,
            retention=retention,
            sensitivity=sensitivity,
            source=source or f"agent:{self.scope.agent}",
        )
        self.stage(namespace, key, value, tags=tags, expected_version=expected_version)

    def stage(
        self,
        namespace: Sequence[str],
        key: str,
        value: Mapping[str, Any],
        *,
        tags: MemoryTags,
        expected_version: int | None = None,
    ) -> None:
        """Stage a write with tags built elsewhere (`MemoryTags.from_mapping`)."""
        ns = check_namespace(tuple(namespace))
        self.memory.retention_class(tags.retention)
        self._note_base()
        self._staged[(ns, check_key(key))] = Staged(
            namespace=ns,
            key=key,
            op="put",
            value=_checked_value(value),
            tags=tags,
            expected_version=expected_version,
        )

    def forget(
        self, namespace: Sequence[str], key: str, *, expected_version: int | None = None
    ) -> None:
        """Stage a delete (a tombstone: history keeps every earlier version)."""
        ns = check_namespace(tuple(namespace))
        self._note_base()
        self._staged[(ns, check_key(key))] = Staged(
            namespace=ns, key=key, op="delete", expected_version=expected_version
        )

    @property
    def staged(self) -> list[Staged]:
        """Writes waiting for the commit."""
        return list(self._staged.values())

    def commit(self) -> CommitResult:
        """Write the staged changes as one commit (nothing on a conflict); clears the stage."""
        staged, self._staged = list(self._staged.values()), {}
        self.result = self.memory.commit(
            self.scope, staged, reads=self._versions, since=self._base, message=self.message
        )
        self._base = None
        if self.result.commit is not None:
            for change in self.result.commit.changes:
                self._versions[(change.namespace, change.key)] = change.version
        return self.result

    def _note_base(self) -> None:
        # Taken at the first staged write, not at open: sessions that only read (an agent's
        # recall every turn) pay no extra log read.
        if self._base is None:
            head = self.memory.log.head(self.scope.tenant)
            self._base = head.seq if head else 0

    def _note(self, namespace: Sequence[str], key: str, record: MemoryRecord | None) -> None:
        ns = tuple(namespace)
        self._versions[(ns, key)] = record.version if record else 0
        if record is not None:
            self.reads.append(
                MemoryRead(
                    namespace=ns, key=key, version=record.version, commit_id=record.commit_id
                )
            )


def _checked_value(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise MemoryContractError(
            f"a memory value must be a JSON object (a mapping); got {type(value).__name__}"
        )
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise MemoryContractError(
            f"a memory value must be plain JSON (str, number, bool, null, list, object): {error}"
        ) from None
    if len(encoded) > _MAX_VALUE_BYTES:
        raise MemoryContractError(
            f"a memory value is {len(encoded)} bytes as JSON; the limit is {_MAX_VALUE_BYTES}. "
            "Store a summary or a reference instead"
        )
    return json.loads(encoded)
