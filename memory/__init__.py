"""Memory: checkpointed run state today; versioned short- and long-term memory in later layers."""

from memory.checkpoints import CheckpointerConfigError, open_checkpointer

__all__ = ["CheckpointerConfigError", "open_checkpointer"]
