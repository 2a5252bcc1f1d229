"""The console API's governance actions: kill and lift, audit export, feedback."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from console.api_bodies import FEEDBACK_SHAPE, KILL_SHAPE, FeedbackBody, KillBody
from console.api_support import ApiError, Call, parse_body
from console.auth import ApiKey
from console.scoping import run_events
from guards import GuardConfigError, KillRecord, KillScope
from observability import AuditEntry, TraceSink
from observability.audit_export import export_audit
from observability.feedback import FeedbackError, FeedbackRecord, feedback_entry

__all__ = ["audit_export", "feedback", "kill", "kills", "lift"]


def _run_tenant(traces: TraceSink, run_id: str) -> str | None:
    events = traces.events(run_id=run_id, limit=1)
    return events[0]["tenant"] if events else None


def _visible(call: Call, scope: KillScope) -> bool:
    key = call.key
    if key.all_tenants or scope.kind in ("global", "workflow"):
        return True  # global and workflow kills stop every tenant's runs: all may see them
    if scope.kind == "tenant":
        return key.covers(scope.value)
    tenant = _run_tenant(call.deps.services.traces, scope.value)
    return tenant is not None and key.covers(tenant)


def _record(record: KillRecord) -> dict[str, Any]:
    return {
        "scope": str(record.scope),
        "requester": record.requester,
        "reason": record.reason,
        "at": record.at,
    }


def kills(call: Call) -> Response:
    """`GET /bastion/api/kills`: kills in force and recent kill events the key may see."""
    switch = call.deps.services.kill_switch
    active = [_record(r) for r in switch.active() if _visible(call, r.scope)]
    # `history` is not in the KillSwitch protocol, but every shipped switch keeps one.
    recent = getattr(switch, "history", None)
    events = recent(limit=200) if callable(recent) else []
    history = [e for e in events if _visible(call, KillScope.parse(e["scope"]))]
    return JSONResponse({"active": active, "history": history})


def _authorize(call: Call, scope: KillScope) -> tuple[str, str]:
    """The audit tenant and run id of a kill the key may request (403/404 otherwise)."""
    key: ApiKey = call.key
    if scope.kind == "global":
        if not key.admin:
            raise ApiError(
                403,
                f"key {key.name!r} may not stop every tenant",
                "a global kill needs an admin key",
            )
        return "*", ""
    if scope.kind == "workflow":
        if not (key.admin or key.all_tenants):
            raise ApiError(
                403,
                f"key {key.name!r} may not stop workflow {scope.value!r} (it spans tenants)",
                "a workflow kill needs an admin key or one covering every tenant; "
                "use tenant:<t> or run:<id> for your tenants",
            )
        return "*", ""
    if scope.kind == "tenant":
        if not (key.admin or key.covers(scope.value)):
            raise ApiError(
                403,
                f"key {key.name!r} does not cover tenant {scope.value!r}",
                f"this key covers {sorted(key.tenants)}",
            )
        return scope.value, ""
    tenant = _run_tenant(call.deps.services.traces, scope.value)
    if not (key.admin or key.all_tenants) and (tenant is None or not key.covers(tenant)):
        raise ApiError(
            404, f"no run {scope.value!r}", "GET /bastion/api/runs lists the runs this key can see"
        )
    return tenant or "*", scope.value


def _scope(call: Call) -> tuple[KillBody, KillScope]:
    body = parse_body(KillBody, call.body, KILL_SHAPE)
    try:
        return body, KillScope.parse(body.scope.strip())
    except GuardConfigError as error:
        raise ApiError(400, str(error), f"send {KILL_SHAPE}") from None


def _audit(call: Call, kind: str, scope: KillScope, reason: str, at: float, **detail: Any) -> None:
    tenant, run_id = _authorize(call, scope)
    entry = AuditEntry(
        kind=kind,  # type: ignore[typeddict-item]
        ts=at,
        tenant=tenant,
        actor=f"console:{call.key.name}",
        run_id=run_id,
        subject=str(scope),
        detail={"scope": str(scope), "reason": reason, **detail},
    )
    call.deps.services.audit.append([entry])


def kill(call: Call) -> Response:
    """`POST /bastion/api/kill`: stop a scope, on record (a scope already killed keeps its
    first record, and nothing new is audited)."""
    body, scope = _scope(call)
    _authorize(call, scope)
    switch = call.deps.services.kill_switch
    already = any(str(r.scope) == str(scope) for r in switch.active())
    try:
        record = switch.kill(scope, requester=f"console:{call.key.name}", reason=body.reason)
    except GuardConfigError as error:
        raise ApiError(400, str(error), f"send {KILL_SHAPE}") from None
    if not already:
        _audit(call, "kill", scope, record.reason, record.at)
    return JSONResponse({"kill": _record(record), "already": already})


def lift(call: Call) -> Response:
    """`POST /bastion/api/lift`: end a kill, on record (runs it stopped stay stopped)."""
    body, scope = _scope(call)
    _authorize(call, scope)
    try:
        record = call.deps.services.kill_switch.lift(
            scope, requester=f"console:{call.key.name}", reason=body.reason
        )
    except GuardConfigError as error:
        raise ApiError(400, str(error), f"send {KILL_SHAPE}") from None
    if record is None:
        raise ApiError(
            409,
            f"no active kill for {str(scope)!r}",
            "GET /bastion/api/kills lists the kills in force",
        )
    _audit(call, "lift", scope, body.reason.strip(), time.time(), lifted=_record(record))
    return JSONResponse({"lifted": _record(record)})


_FORMATS = {
    "jsonl": ("jsonl", "application/x-ndjson"),
    "report": ("md", "text/markdown; charset=utf-8"),
}


def audit_export(call: Call) -> Response:
    """`GET /bastion/api/audit/export?format=jsonl|report`: the key's tenants' records as a
    download (a key covering every tenant gets the whole, verified log)."""
    fmt = call.param("format", "jsonl") or "jsonl"
    if fmt not in _FORMATS:
        raise ApiError(400, f"unknown export format {fmt!r}", "use ?format=jsonl or ?format=report")
    suffix, media = _FORMATS[fmt]
    tenants: list[str | None] = [None] if call.key.all_tenants else [*sorted(call.key.tenants)]
    parts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bastion-export-") as folder:
        for index, tenant in enumerate(tenants):
            out = Path(folder) / f"audit-{index}.{suffix}"
            export_audit(call.deps.services.audit, out, tenant=tenant, fmt=fmt)  # type: ignore[arg-type]
            parts.append(out.read_text(encoding="utf-8"))
    if fmt == "jsonl" and len(parts) > 1:  # one log, in order, each `*` record once
        records = {r["seq"]: line for line, r in _lines(parts)}
        text = "".join(records[seq] for seq in sorted(records))
    else:
        text = "\n\n---\n\n".join(parts)
    name = f"bastion-audit.{suffix}"
    return Response(
        text, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _lines(parts: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(line + "\n", json.loads(line)) for part in parts for line in part.splitlines() if line]


def feedback(call: Call) -> Response:
    """`POST /bastion/api/feedback`: a reviewer's correction of a run (or one decision of it),
    kept in the audit log as {context, correction, rationale}."""
    body = parse_body(FeedbackBody, call.body, FEEDBACK_SHAPE)
    events = run_events(call.deps.services.traces, call.key, body.run_id)
    first = events[0]
    context: dict[str, Any] = {
        "run_id": body.run_id,
        "workflow": first["workflow"],
        "goal": next((e["goal"] for e in events if e["goal"]), ""),
    }
    if body.decision_id:
        context.update(_decision_context(events, body.decision_id, body.run_id))
    correction = {"text": body.correction} if isinstance(body.correction, str) else body.correction
    try:
        record = FeedbackRecord(
            context=context,
            correction=correction,
            rationale=body.rationale,
            run_id=body.run_id,
            decision_id=body.decision_id or "",
            reviewer=call.key.name,
            ts=time.time(),
            tenant=first["tenant"],
        )
    except FeedbackError as error:
        raise ApiError(400, str(error), f"send {FEEDBACK_SHAPE}") from None
    (sealed,) = call.deps.services.audit.append([feedback_entry(record)])
    return JSONResponse({"record": sealed}, status_code=201)


def _decision_context(events: list[Any], decision_id: str, run_id: str) -> dict[str, Any]:
    proposals = {p["call_id"]: p for e in events for p in e["proposals"]}
    for event in events:
        for verdict in event["verdicts"]:
            if verdict.get("decision_id") == decision_id:
                proposal = proposals.get(verdict.get("call_id"), {})
                return {
                    "decision_id": decision_id,
                    "verdict": verdict.get("kind"),
                    "reasons": list(verdict.get("reasons") or ()),
                    "zone": verdict.get("zone"),
                    "agent": event["agent"],
                    "tool": proposal.get("tool"),
                    "args": proposal.get("args"),
                }
    raise ApiError(
        404,
        f"no decision {decision_id!r} in run {run_id!r}",
        "GET /bastion/api/runs/{run_id} shows the run's decisions (verdicts[].decision_id)",
    )
