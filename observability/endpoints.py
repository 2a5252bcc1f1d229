"""How a backend is named in errors and logs: its address, never its credentials."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["safe_url"]


def safe_url(target: Any) -> str:
    """The address of a URL or of a redis-py client, with any password hidden.

    Error messages and logs name the backend that failed; a password in them would leak
    wherever they are shipped.
    """
    if not isinstance(target, str):  # a redis-py client: read where its pool connects
        pool = target.connection_pool
        kwargs = pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
        host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        return f"{scheme}://{host}:{port}/{kwargs.get('db', 0)}"
    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))
