"""Memory: checkpoints, and versioned, governed, tenant-walled short- and long-term memory."""

from memory.base import CommitLog, LogEntry
from memory.checkpoints import (
    MEMORY_COMMITS,
    CheckpointerConfigError,
    CommitStampingSaver,
    open_async_checkpointer,
    open_checkpointer,
)
from memory.commitlog import InMemoryCommitLog, MemoryBackendError, SqliteCommitLog
from memory.contract import (
    DEFAULT_RETENTION,
    ConflictPolicy,
    Lineage,
    MemoryContractError,
    MemoryScope,
    MemoryTags,
    MissingTagsError,
    RetentionClass,
    Sensitivity,
)
from memory.embeddings import HashingEmbedder, embedder_from_name, embedding_dims
from memory.factory import in_memory, open_memory
from memory.freshness import FreshnessRule, SourceMonitor, SourceStatus
from memory.indexed_store import IndexedStore
from memory.minilm import MiniLMEmbedder
from memory.records import (
    Change,
    Commit,
    CommitResult,
    Conflict,
    DiffEntry,
    MemoryDiff,
    MemoryRead,
    MemoryRecord,
    Recalled,
)
from memory.redis_commitlog import RedisCommitLog
from memory.redis_store import RedisMemoryStore
from memory.retention import RetentionSweeper, SweepReport, sweep
from memory.session import MemorySession
from memory.versioned import MemorySnapshot, VersionedMemory

__all__ = [
    "DEFAULT_RETENTION",
    "MEMORY_COMMITS",
    "Change",
    "CheckpointerConfigError",
    "Commit",
    "CommitLog",
    "CommitResult",
    "CommitStampingSaver",
    "Conflict",
    "ConflictPolicy",
    "DiffEntry",
    "FreshnessRule",
    "HashingEmbedder",
    "InMemoryCommitLog",
    "IndexedStore",
    "Lineage",
    "LogEntry",
    "MemoryBackendError",
    "MemoryContractError",
    "MemoryDiff",
    "MemoryRead",
    "MemoryRecord",
    "MemoryScope",
    "MemorySession",
    "MemorySnapshot",
    "MemoryTags",
    "MiniLMEmbedder",
    "MissingTagsError",
    "Recalled",
    "RedisCommitLog",
    "RedisMemoryStore",
    "RetentionClass",
    "RetentionSweeper",
    "Sensitivity",
    "SourceMonitor",
    "SourceStatus",
    "SqliteCommitLog",
    "SweepReport",
    "VersionedMemory",
    "embedder_from_name",
    "embedding_dims",
    "in_memory",
    "open_async_checkpointer",
    "open_checkpointer",
    "open_memory",
    "sweep",
]
