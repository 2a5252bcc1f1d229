"""The console's HTTP governance API and dashboard (a Starlette app under `/bastion`), mounted
into the LangGraph server by `langgraph.json` (`http.app`) or served alone by `bastion console`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from console import governance_api as gov
from console.api_bodies import DECIDE_SHAPE, FEEDBACK_SHAPE, KILL_SHAPE, DecideBody
from console.api_support import (
    ApiError,
    Call,
    ConsoleDeps,
    endpoint,
    error_response,
    int_param,
    parse_body,
)
from console.auth import KeyStore
from console.control import (
    LocalRunControl,
    NothingPendingError,
    RunControl,
    stamp_decisions,
)
from console.deadlines import run_sweeper, sweep_interval
from console.scoping import audit_records, key_events, key_runs, run_events, run_summary
from console.server_control import ServerRunControl
from graphs import Services, Settings, services_for
from nodes import InvalidResumeError, parse_review
from observability import AUDIT_KINDS
from observability.costs import cost_rollup
from observability.kpis import compute_kpis
from observability.prometheus import CONTENT_TYPE, prometheus_text
from observability.slos import check_slos

__all__ = ["STATIC_DIR", "app", "create_app", "local_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The dashboard's files (`dashboard.html` and its offline JS and CSS)."""
# No pydantic models in this module: the LangGraph server loads it by file path under another
# module name, where pydantic could not resolve their postponed annotations (console.api_bodies).

_KPI_EVENTS = 50_000
"""Newest trace events KPIs and metrics are computed over."""
_KPI_RUNS = 10_000


def _me(call: Call) -> Response:
    return JSONResponse(call.key.as_dict())


def _runs(call: Call) -> Response:
    limit = int_param(call, "limit", 100, low=1, high=1000)
    return JSONResponse({"runs": key_runs(call.deps.services.traces, call.key, limit)})


def _run(call: Call) -> Response:
    events = run_events(call.deps.services.traces, call.key, call.request.path_params["run_id"])
    return JSONResponse({"run": run_summary(events), "events": events})


def _tenants(call: Call) -> frozenset[str] | None:
    return None if call.key.all_tenants else call.key.tenants


async def _approvals(call: Call) -> Response:
    control = cast(RunControl, call.deps.control)
    return JSONResponse({"approvals": await control.approvals(_tenants(call))})


async def _decide(call: Call) -> Response:
    thread_id = call.request.path_params["thread_id"]
    body = parse_body(DecideBody, call.body, DECIDE_SHAPE)
    for decision in body.decisions:
        if decision.get("reviewer") not in (None, call.key.name):
            raise ApiError(
                400,
                f"a decision names reviewer {decision['reviewer']!r}, but the reviewer is the "
                f"key's owner ({call.key.name!r})",
                "leave `reviewer` out: the key's name is recorded",
            )
    control = cast(RunControl, call.deps.control)
    tenant = await control.tenant_of(thread_id)
    if tenant is None or not call.key.covers(tenant):
        raise ApiError(
            404, f"no thread {thread_id!r}", "GET /bastion/api/approvals lists what waits for you"
        )
    approval = await control.approval(thread_id)
    if approval is None:
        raise ApiError(
            409,
            f"thread {thread_id!r} waits for no decision",
            "it was decided already or is still running; GET /bastion/api/approvals lists "
            "what waits",
        )
    decisions = [{k: v for k, v in d.items() if k != "reviewer"} for d in body.decisions]
    stamped = stamp_decisions(decisions, note=body.note, reviewer=call.key.name)
    try:
        parse_review(
            {"decisions": stamped},
            [{"tool": r["name"]} for r in approval["requests"]],  # type: ignore[typeddict-item]
            approval["allowed_decisions"] or ("approve", "edit", "reject"),
        )
    except InvalidResumeError as error:
        raise ApiError(400, str(error), f"send {DECIDE_SHAPE}") from None
    try:
        status = await control.decide(thread_id, decisions, note=body.note, reviewer=call.key.name)
    except NothingPendingError:
        raise ApiError(
            409, f"thread {thread_id!r} was decided meanwhile", "reload the approval queue"
        ) from None
    services = call.deps.services
    await run_in_threadpool(services.tracer.flush, 2.0)  # so the summary shows this decision
    run = None
    if approval["run_id"]:
        run = run_summary(
            await run_in_threadpool(services.traces.events, run_id=approval["run_id"])
        )
    return JSONResponse({"thread_id": thread_id, "status": status, "run": run})


def _audit(call: Call) -> Response:
    kind = call.param("kind") or None
    if kind is not None and kind not in AUDIT_KINDS:
        raise ApiError(400, f"unknown audit kind {kind!r}", f"use one of {list(AUDIT_KINDS)}")
    records = audit_records(
        call.deps.services.audit,
        call.key,
        after=int_param(call, "after", 0, low=0, high=2**62),
        limit=int_param(call, "limit", 200, low=1, high=1000),
        kind=kind,
        run_id=call.param("run_id") or None,
    )
    return JSONResponse({"records": records})


def _verify(call: Call) -> Response:
    return JSONResponse(call.deps.services.audit.verify().as_dict())


def _kpis_of(call: Call) -> tuple[Any, list[Any]]:
    traces = call.deps.services.traces
    events = key_events(traces, call.key, _KPI_EVENTS)
    return compute_kpis(events, runs=key_runs(traces, call.key, _KPI_RUNS)), events


def _kpis(call: Call) -> Response:
    return JSONResponse(_kpis_of(call)[0].as_dict())


def _metrics(call: Call) -> Response:
    kpis, events = _kpis_of(call)
    text = prometheus_text(
        kpis,
        costs=cost_rollup(events, by=("tenant", "workflow")),
        tracer=call.deps.services.tracer.stats(),
        slos=check_slos(kpis),
    )
    return Response(text, media_type=CONTENT_TYPE)


def _dashboard(static_dir: Path) -> Callable[[Request], Response]:
    def dashboard(request: Request) -> Response:
        page = static_dir / "dashboard.html"
        if not page.is_file():
            return error_response(404, f"no dashboard at {str(page)!r}", "reinstall Bastion")
        return FileResponse(page, media_type="text/html; charset=utf-8")

    return dashboard


def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(request.url.replace(path=request.url.path + "/"))


def _unknown(request: Request) -> Response:
    return error_response(
        404, f"no API route {request.url.path!r}", "the routes are listed in the console docs"
    )


_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _routes(deps: Callable[[], ConsoleDeps], static_dir: Path) -> list[BaseRoute]:
    def api(path: str, handler: Any, **options: Any) -> Route:
        return Route(path, endpoint(deps, handler, **options), methods=_ANY)

    return [
        Route("/bastion", _to_dashboard),
        Route("/bastion/", _dashboard(static_dir)),
        Mount("/bastion/static", app=StaticFiles(directory=static_dir, check_dir=False)),
        api("/bastion/api/me", _me),
        api("/bastion/api/runs", _runs),
        api("/bastion/api/runs/{run_id}", _run),
        api("/bastion/api/approvals", _approvals),
        api("/bastion/api/approvals/{thread_id}", _decide, methods=["POST"], shape=DECIDE_SHAPE),
        api("/bastion/api/kills", gov.kills),
        api("/bastion/api/kill", gov.kill, methods=["POST"], shape=KILL_SHAPE),
        api("/bastion/api/lift", gov.lift, methods=["POST"], shape=KILL_SHAPE),
        api("/bastion/api/audit", _audit),
        api("/bastion/api/audit/verify", _verify, admin=True),
        api("/bastion/api/audit/export", gov.audit_export),
        api("/bastion/api/kpis", _kpis),
        api("/bastion/api/feedback", gov.feedback, methods=["POST"], shape=FEEDBACK_SHAPE),
        api("/bastion/metrics", _metrics),
        Route("/bastion/api/{rest:path}", _unknown, methods=_ANY),
    ]


class _Once:
    """Builds the app's collaborators on first use (importing the app opens nothing)."""

    def __init__(self, factory: Callable[[], ConsoleDeps]) -> None:
        self._factory = factory
        self._value: ConsoleDeps | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ConsoleDeps:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value


def _build(
    deps: Callable[[], ConsoleDeps],
    *,
    static_dir: Path,
    sweep_interval_s: float | None,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The LangGraph server runs a custom app's lifespan (langgraph_api.server combines it
        # with its own), so the deadline sweep runs there as under `bastion console`.
        interval = sweep_interval() if sweep_interval_s is None else sweep_interval_s
        task = None
        if interval > 0:
            ready = await run_in_threadpool(deps)
            task = asyncio.create_task(run_sweeper(ready.control, ready.services.audit, interval))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if on_shutdown is not None:
                on_shutdown()

    return Starlette(routes=_routes(deps, static_dir), lifespan=lifespan)


def create_app(
    *,
    services: Services,
    control: RunControl,
    keys: KeyStore,
    static_dir: Path = STATIC_DIR,
    sweep_interval_s: float | None = None,
) -> Starlette:
    """The console app over these collaborators.

    Args:
        services: kill switch, trace sink, audit log and tracer.
        control: where approvals wait (`ServerRunControl` in a LangGraph server,
            `LocalRunControl` over a compiled graph).
        keys: the API keys.
        static_dir: the dashboard's files.
        sweep_interval_s: seconds between deadline sweeps (0: none); default from
            `BASTION_APPROVAL_SWEEP_S` (30).
    """
    ready = ConsoleDeps(services=services, control=control, keys=keys)
    return _build(lambda: ready, static_dir=static_dir, sweep_interval_s=sweep_interval_s)


def _served() -> ConsoleDeps:
    settings = Settings.from_env()
    return ConsoleDeps(
        services=services_for(settings),  # the same services the served graph uses
        control=ServerRunControl(),
        keys=KeyStore(settings.console_keys_path),
    )


def local_app(
    settings: Settings,
    *,
    static_dir: Path = STATIC_DIR,
    sweep_interval_s: float | None = None,
) -> Starlette:
    """The console for `bastion console`: the support graph compiled on the configured
    checkpointer, in this process. The checkpointer closes when the app shuts down.

    Raises:
        CheckpointerConfigError, MemoryBackendError, ModelConfigError, ...: the settings cannot
            work (each says what to fix).
    """
    from graphs.support import support_builder
    from memory import open_checkpointer

    stack = ExitStack()
    try:
        services = services_for(settings)
        saver = stack.enter_context(
            open_checkpointer(sqlite_path=settings.checkpoint_path, redis_url=settings.redis_url)
        )
        graph = support_builder(settings, services=services).compile(checkpointer=saver)
        ready = ConsoleDeps(
            services=services,
            control=LocalRunControl(graph),
            keys=KeyStore(settings.console_keys_path),
        )
    except BaseException:
        stack.close()
        raise
    return _build(
        lambda: ready,
        static_dir=static_dir,
        sweep_interval_s=sweep_interval_s,
        on_shutdown=stack.close,
    )


app = _build(_Once(_served), static_dir=STATIC_DIR, sweep_interval_s=None)
"""The app `langgraph.json` names (`http.app`); its backends open on first use."""
