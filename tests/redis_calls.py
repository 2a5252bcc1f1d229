"""A real Redis connection that counts its requests, for tests that pin round trips."""

from __future__ import annotations

import redis

__all__ = ["CountingConnection"]


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it sends (one per round trip)."""

    sent: list[bytes] = []

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        parts = command if isinstance(command, list) else [command]
        self.sent.append(bytes(parts[0])[:40])
        super().send_packed_command(command, check_health)
