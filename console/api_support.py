"""The console API's plumbing: JSON errors with hints, key checks, bodies and query parameters."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from console.auth import ApiKey, KeyStore, KeyStoreError
from graphs import Services
from guards import KillSwitchBackendError
from observability import TraceBackendError

__all__ = [
    "ApiError",
    "Call",
    "ConsoleDeps",
    "endpoint",
    "error_response",
    "int_param",
    "parse_body",
]

logger = logging.getLogger("console.api")

_KEY_HINT = (
    "send `Authorization: Bearer <key>`; keys are listed in $BASTION_HOME/console-keys.json "
    "(hashes only) and created with `bastion console`"
)


@dataclass(frozen=True, kw_only=True)
class ConsoleDeps:
    """What the console's routes work with."""

    services: Services
    """The shared backends: kill switch, trace sink, audit log, tracer."""
    control: Any
    """Where runs wait for approvals and are resumed (`console.control.RunControl`)."""
    keys: KeyStore
    """The API keys."""


class ApiError(Exception):
    """An HTTP error the API answers with `{"error", "hint"}`."""

    def __init__(self, status: int, error: str, hint: str) -> None:
        super().__init__(error)
        self.status = status
        """The HTTP status."""
        self.error = error
        """What was wrong."""
        self.hint = hint
        """What to do."""


def error_response(status: int, error: str, hint: str) -> JSONResponse:
    """The JSON body every error of the API has."""
    return JSONResponse({"error": error, "hint": hint}, status_code=status)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One authenticated API request."""

    request: Request
    """The request (its body already read into `body`)."""
    key: ApiKey
    """Whose key it carried."""
    deps: ConsoleDeps
    """The app's collaborators."""
    body: Any
    """The parsed JSON body of a POST (None otherwise)."""

    def param(self, name: str, default: str = "") -> str:
        """A query parameter (stripped), or `default`."""
        return self.request.query_params.get(name, default).strip()


Handler = Callable[[Call], Response | Awaitable[Response]]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _read_json(request: Request, shape: str) -> Any:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as error:
        raise ApiError(400, f"the request body is not JSON ({error})", f"send {shape}") from None
    if not isinstance(body, dict):
        raise ApiError(
            400, f"the request body must be a JSON object, got {body!r}", f"send {shape}"
        )
    return body


def endpoint(
    deps: Callable[[], ConsoleDeps],
    handler: Handler,
    *,
    methods: Sequence[str] = ("GET",),
    admin: bool = False,
    shape: str = "",
) -> Callable[[Request], Awaitable[Response]]:
    """An authenticated route: checks the method and the key (401, 403 for `admin` routes),
    reads a POST's JSON body (400), runs `handler` (a sync one in a worker thread: backends
    block), and turns every failure into a JSON error with a hint."""
    allowed = {m.upper() for m in methods} | ({"HEAD"} if "GET" in methods else set())
    is_async = inspect.iscoroutinefunction(handler)

    async def route(request: Request) -> Response:
        try:
            if request.method not in allowed:
                raise ApiError(
                    405,
                    f"{request.method} is not allowed on {request.url.path}",
                    f"use {' or '.join(sorted(set(methods)))}",
                )
            ready = await run_in_threadpool(deps)
            key = await run_in_threadpool(ready.keys.authenticate, _bearer(request))
            if key is None:
                missing = _bearer(request) is None
                raise ApiError(
                    401, "no API key was sent" if missing else "unknown API key", _KEY_HINT
                )
            if admin and not key.admin:
                raise ApiError(
                    403,
                    f"key {key.name!r} is not an admin key",
                    "this needs an admin key (verifying the whole chain, global kills)",
                )
            body = await _read_json(request, shape) if request.method == "POST" else None
            call = Call(request=request, key=key, deps=ready, body=body)
            if is_async:
                return await handler(call)  # type: ignore[misc]
            return await run_in_threadpool(cast(Callable[[Call], Response], handler), call)
        except ApiError as error:
            return error_response(error.status, error.error, error.hint)
        except KeyStoreError as error:
            return error_response(500, str(error), "fix the console key file, then retry")
        except (TraceBackendError, KillSwitchBackendError) as error:
            return error_response(503, str(error), "the backend is down; retry when it is back")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("console API %s %s failed", request.method, request.url.path)
            return error_response(
                500,
                f"{type(error).__name__}: {error}",
                "this is a bug or a backend failure; the server log has the traceback",
            )

    return route


Model = TypeVar("Model", bound=BaseModel)


def parse_body(model: type[Model], body: Any, shape: str) -> Model:
    """Validate a JSON body (400 naming each problem and the expected shape)."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise ApiError(400, f"malformed request body: {problems}", f"send {shape}") from None


def int_param(call: Call, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high] (400 otherwise)."""
    raw = call.param(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            f"query parameter `{name}`={raw!r} is not an integer from {low} to {high}",
            f"e.g. ?{name}={default}",
        )
    return value
