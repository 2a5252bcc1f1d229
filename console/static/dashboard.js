// Bastion console dashboard: runs, the approval queue, run timelines, kill switch, KPIs, audit.
//
// Vanilla ES2020, no framework and no build step, so the page works offline wherever the console
// app is served. It only talks to the console's JSON API (sibling `api/` of this `static/`
// folder), authenticating every request with the key kept in sessionStorage.
"use strict";

(() => {
  const KEY_STORAGE = "bastion.consoleKey";
  const REFRESH_MS = 3000;
  const RUN_LIMIT = 200;
  const AUDIT_TAIL = 50;
  const AUDIT_PAGE = 500;
  // The API is beside `static/`, wherever the app is mounted (/bastion/ in the LangGraph
  // server, / or /bastion/ under `bastion console`), even if the page URL lacks its slash.
  const BASE = new URL("../", document.currentScript.src);

  const state = {
    key: null,
    me: null,
    timer: null,
    refreshing: false,
    again: false,
    runs: [],
    selectedRun: null,
    selectedStamp: null,
    auditAfter: 0,
    audit: [],
    kpiSignature: null,
    bannerSource: null,
  };

  // ---------------------------------------------------------------- small DOM helpers

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (`testid` -> data-testid, `class`, `text`, others as-is). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "testid") node.dataset.testid = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /**
   * Make `container`'s children match `items`, keyed: unchanged nodes are kept as they are,
   * so a refresh never wipes a note being typed or a button about to be clicked.
   */
  function reconcile(container, items, keyOf, signatureOf, build) {
    const existing = new Map();
    for (const node of container.children) {
      if (node.dataset.key) existing.set(node.dataset.key, node);
    }
    const wanted = items.map((item) => {
      const key = keyOf(item);
      const signature = signatureOf(item);
      let node = existing.get(key);
      if (!node || node.dataset.sig !== signature) {
        const fresh = build(item, node);
        fresh.dataset.key = key;
        fresh.dataset.sig = signature;
        node = fresh;
      }
      return node;
    });
    const keep = new Set(wanted);
    for (const node of [...container.children]) if (!keep.has(node)) node.remove();
    wanted.forEach((node, index) => {
      if (container.children[index] !== node) {
        container.insertBefore(node, container.children[index] || null);
      }
    });
  }

  // ---------------------------------------------------------------- formatting

  const time = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "—");
  const usd = (value) => (value === null || value === undefined ? "—" : `$${Number(value).toFixed(4)}`);
  const percent = (value) => (value === null || value === undefined ? "—" : `${(value * 100).toFixed(0)}%`);
  const pretty = (value) => JSON.stringify(value, null, 2);
  const shortId = (id) => (id && id.length > 12 ? `${id.slice(0, 8)}…` : id || "—");

  function countdown(deadline) {
    const left = Math.round(deadline - Date.now() / 1000);
    if (left <= 0) return "past deadline";
    const m = Math.floor(left / 60);
    const s = left % 60;
    return m ? `${m}m ${String(s).padStart(2, "0")}s left` : `${s}s left`;
  }

  // ---------------------------------------------------------------- API and errors

  class ApiError extends Error {
    constructor(status, error, hint) {
      super(error);
      this.status = status;
      this.hint = hint || "";
    }
  }

  /** The API's `{error, hint}` body as an ApiError (any non-JSON body is shown as is). */
  async function apiError(response) {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      return new ApiError(response.status, body.error || `HTTP ${response.status}`, body.hint);
    } catch (_) {
      return new ApiError(response.status, `HTTP ${response.status} ${response.statusText}`, text.slice(0, 300));
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Authorization: `Bearer ${state.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(new URL(path, BASE), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, "Cannot reach the console API", `Is the server still running? (${error.message})`);
    }
    if (!response.ok) throw await apiError(response);
    return response;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  /** Show the API's error and hint. `source` lets a good refresh clear only its own banner. */
  function showError(error, source = "action") {
    $("error-banner").hidden = false;
    document.querySelector('[data-testid="error-message"]').textContent = error.message;
    document.querySelector('[data-testid="error-hint"]').textContent = error.hint || "";
    state.bannerSource = source;
  }

  function clearError(source) {
    if (source && state.bannerSource !== source) return;
    $("error-banner").hidden = true;
    state.bannerSource = null;
  }

  // ---------------------------------------------------------------- key handling

  /** `#key=...` pre-fills the key once, then leaves the address bar (and history) clean. */
  function keyFromUrl() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const key = params.get("key");
    if (key !== null) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return key;
  }

  function useKey(key) {
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    state.auditAfter = 0;
    state.audit = [];
    state.kpiSignature = null;
    signIn();
  }

  function forgetKey() {
    stopRefresh();
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.me = null;
    document.body.classList.remove("signed-in", "admin");
    $("whoami").textContent = "Not signed in";
    $("key-input").value = "";
    $("key-input").focus();
  }

  async function signIn() {
    try {
      state.me = await apiJson("api/me");
    } catch (error) {
      // A wrong key would fail every refresh the same way: stop and ask for another one.
      if (error.status === 401) sessionStorage.removeItem(KEY_STORAGE);
      document.body.classList.remove("signed-in");
      $("whoami").textContent = "Not signed in";
      showError(error, "sign-in");
      stopRefresh();
      return;
    }
    clearError();
    renderMe(state.me);
    refreshLoop();
  }

  function renderMe(me) {
    document.body.classList.add("signed-in");
    document.body.classList.toggle("admin", Boolean(me.admin));
    const tenants = me.tenants.includes("*") ? "all tenants" : me.tenants.join(", ");
    $("whoami").textContent = `${me.name} · ${tenants}${me.admin ? " · admin" : ""}`;
    $("verify-button").hidden = !me.admin;
    const scope = $("kill-scope");
    scope.replaceChildren(el("option", { value: "tenant", text: "Tenant" }));
    if (me.admin) scope.append(el("option", { value: "global", text: "Global (every tenant)" }));
    const own = me.tenants.filter((t) => t !== "*");
    if (own.length === 1) $("kill-tenant").value = own[0];
    updateTenantOptions();
  }

  // ---------------------------------------------------------------- refresh loop

  function stopRefresh() {
    clearTimeout(state.timer);
    state.timer = null;
  }

  /** Refresh everything, then schedule the next round (never two rounds at once). */
  async function refreshLoop() {
    stopRefresh();
    await refreshAll();
    if (state.me) state.timer = setTimeout(refreshLoop, REFRESH_MS);
  }

  async function refreshAll() {
    if (!state.key) return;
    if (state.refreshing) {
      state.again = true; // an action asked for fresh data while a round was under way
      return;
    }
    state.refreshing = true;
    state.again = false;
    try {
      const results = await Promise.allSettled([
        refreshRuns(),
        refreshApprovals(),
        refreshKills(),
        refreshKpis(),
        refreshAudit(),
      ]);
      const failed = results.find((r) => r.status === "rejected");
      if (failed) {
        showError(failed.reason, "refresh");
        if (failed.reason.status === 401) forgetKey();
      } else {
        clearError("refresh");
      }
    } finally {
      state.refreshing = false;
    }
    if (state.again) await refreshAll();
  }

  // ---------------------------------------------------------------- runs

  async function refreshRuns() {
    const { runs } = await apiJson(`api/runs?limit=${RUN_LIMIT}`);
    state.runs = runs;
    reconcile($("run-rows"), runs, (r) => r.run_id, runSignature, runRow);
    $("runs-empty").hidden = runs.length > 0;
    markSelected();
    updateTenantOptions();
    const selected = runs.find((r) => r.run_id === state.selectedRun);
    if (selected && runSignature(selected) !== state.selectedStamp) await loadTimeline(selected.run_id);
  }

  const runSignature = (r) => `${r.status}|${r.steps}|${r.updated_at}|${r.cost.usd}`;

  function statusBadge(status, testid) {
    return el("span", { class: `badge status-${status}`, testid, text: status });
  }

  function runRow(run) {
    const open = el("button", {
      type: "button",
      class: "link",
      testid: "run-open",
      title: `Open the timeline of run ${run.run_id}`,
      text: shortId(run.run_id),
    });
    return el(
      "tr",
      { testid: "run-row", "data-run-id": run.run_id, "data-thread-id": run.thread_id },
      el("td", {}, open),
      el("td", {}, statusBadge(run.status, "run-status")),
      el("td", { testid: "run-tenant", text: run.tenant }),
      el("td", { class: "goal", title: run.goal, testid: "run-goal", text: run.goal }),
      el("td", { class: "num", testid: "run-steps", text: run.steps }),
      el("td", { class: "num", testid: "run-cost", text: usd(run.cost.usd) }),
      el("td", { testid: "run-updated", text: time(run.updated_at) }),
    );
  }

  function markSelected() {
    for (const row of $("run-rows").children) {
      row.classList.toggle("selected", row.dataset.runId === state.selectedRun);
      row.setAttribute("aria-selected", String(row.dataset.runId === state.selectedRun));
    }
  }

  // ---------------------------------------------------------------- approvals

  async function refreshApprovals() {
    const { approvals } = await apiJson("api/approvals");
    const list = $("approval-list");
    if (!approvals.length) {
      list.replaceChildren(el("p", { class: "empty", testid: "approvals-empty", text: "No pending approvals." }));
    } else {
      reconcile(list, approvals, (a) => a.thread_id, approvalSignature, approvalCard);
    }
    $("approval-count").textContent = approvals.length ? `(${approvals.length})` : "";
  }

  const approvalSignature = (a) => JSON.stringify([a.requests, a.error, a.deadline, a.allowed_decisions]);

  /** Whether the approval accepts a decision type (no list given: every type). */
  const allows = (approval, type) =>
    !Array.isArray(approval.allowed_decisions) ||
    approval.allowed_decisions.length === 0 ||
    approval.allowed_decisions.includes(type);

  function approvalCard(approval, previous) {
    const id = `a-${approval.thread_id}`;
    const note = el("textarea", { id: `${id}-note`, testid: "note-input", rows: 2, placeholder: "why (recorded with your decision)" });
    // A card rebuilt because its request changed keeps what the reviewer already wrote.
    const oldNote = previous && previous.querySelector('[data-testid="note-input"]');
    if (oldNote) note.value = oldNote.value;
    const requests = approval.requests.map((request, index) => requestBlock(approval, request, `${id}-${index}`));
    const approve = el("button", { type: "button", class: "approve", testid: "approve-button", text: "Approve" });
    const reject = el("button", { type: "button", class: "danger", testid: "reject-button", text: "Reject" });
    approve.disabled = !allows(approval, "approve") && !allows(approval, "edit");
    reject.disabled = !allows(approval, "reject");
    const card = el(
      "article",
      { class: "card", testid: "approval-card", "data-thread-id": approval.thread_id, "data-run-id": approval.run_id, "aria-label": `Approval for run ${approval.run_id}` },
      el(
        "header",
        {},
        el("span", { class: "badge tenant", testid: "approval-tenant", text: approval.tenant }),
        el("span", { class: "muted", text: `run ${shortId(approval.run_id)}` }),
        deadlineBadge(approval),
      ),
      approval.error ? el("p", { class: "warning", testid: "approval-error", text: `Previous answer was refused: ${approval.error}` }) : null,
      requests,
      el("label", { for: note.id, text: "Note" }),
      note,
      el("div", { class: "actions" }, approve, reject),
      approval.reviewers ? el("p", { class: "muted", text: `Reviewers: ${approval.reviewers}` }) : null,
    );
    approve.addEventListener("click", () => decide(card, approval, "approve"));
    reject.addEventListener("click", () => decide(card, approval, "reject"));
    return card;
  }

  function deadlineBadge(approval) {
    if (!approval.deadline) return el("span", { class: "muted", testid: "deadline", text: "no deadline" });
    const then = approval.on_timeout ? ` · then ${approval.on_timeout}` : "";
    return el("span", {
      class: "deadline",
      testid: "deadline",
      "data-deadline": approval.deadline,
      "data-then": then,
      title: `Deadline ${time(approval.deadline)}`,
      text: countdown(approval.deadline) + then,
    });
  }

  function tickDeadlines() {
    for (const node of document.querySelectorAll("[data-deadline]")) {
      const deadline = Number(node.dataset.deadline);
      node.textContent = countdown(deadline) + (node.dataset.then || "");
      node.classList.toggle("overdue", deadline <= Date.now() / 1000);
    }
  }

  function requestBlock(approval, request, id) {
    const editor = el("textarea", { id: `${id}-args`, class: "code", testid: "edit-args", rows: 6, spellcheck: "false" });
    editor.value = pretty(request.args);
    const editBox = el(
      "div",
      { class: "edit-box", hidden: true },
      el("label", { for: editor.id, text: `Edited arguments for ${request.name} (JSON; Approve sends these)` }),
      editor,
    );
    const edit = el("button", { type: "button", testid: "edit-button", text: "Edit" });
    edit.disabled = !allows(approval, "edit");
    edit.addEventListener("click", () => {
      editBox.hidden = !editBox.hidden;
      edit.textContent = editBox.hidden ? "Edit" : "Cancel edit";
      edit.setAttribute("aria-expanded", String(!editBox.hidden));
    });
    return el(
      "section",
      { class: "request", testid: "approval-request", "data-tool": request.name, "data-call-id": request.call_id },
      el(
        "h3",
        {},
        el("code", { testid: "approval-tool", text: request.name }),
        " ",
        el("span", { class: `badge zone-${request.zone}`, testid: "approval-zone", text: request.zone || "no zone" }),
        request.agent ? el("span", { class: "muted", text: ` proposed by ${request.agent}` }) : null,
      ),
      el("p", { testid: "approval-description", text: request.description || "" }),
      el("pre", { class: "code", testid: "approval-args", text: pretty(request.args) }),
      edit,
      editBox,
    );
  }

  /** The decisions to send, one per request in order; throws on edited JSON that does not parse. */
  function decisionsFor(card, approval, type, note) {
    return approval.requests.map((request, index) => {
      if (type === "reject") return { type: "reject", message: note || "Rejected in the console" };
      const box = card.querySelectorAll(".request")[index].querySelector(".edit-box");
      if (box.hidden && !allows(approval, "approve")) {
        throw new ApiError(0, `${request.name} may only be approved with edits`, "Click Edit, change the arguments, then Approve.");
      }
      if (box.hidden) return { type: "approve" };
      let args;
      try {
        args = JSON.parse(box.querySelector("textarea").value);
      } catch (error) {
        throw new ApiError(0, `Edited arguments for ${request.name} are not valid JSON: ${error.message}`, "Fix the JSON or cancel the edit.");
      }
      return { type: "edit", edited_action: { name: request.name, args } };
    });
  }

  async function decide(card, approval, type) {
    const note = card.querySelector('[data-testid="note-input"]').value.trim();
    const buttons = card.querySelectorAll("button");
    let body;
    try {
      body = { decisions: decisionsFor(card, approval, type, note), ...(note ? { note } : {}) };
    } catch (error) {
      showError(error);
      return;
    }
    buttons.forEach((b) => (b.disabled = true));
    card.classList.add("busy");
    try {
      // The API resumes the run and answers once it stops again (done or next approval).
      const result = await apiJson(`api/approvals/${encodeURIComponent(approval.thread_id)}`, { method: "POST", body });
      clearError();
      card.remove();
      notice(`Run ${shortId(approval.run_id)}: ${type === "reject" ? "rejected" : "approved"}; now ${result.status}.`);
    } catch (error) {
      showError(error);
      buttons.forEach((b) => (b.disabled = false));
      card.classList.remove("busy");
    }
    await refreshAll();
  }

  function notice(text) {
    const node = $("notice");
    node.textContent = text;
  }

  // ---------------------------------------------------------------- kill switch

  async function refreshKills() {
    const { active } = await apiJson("api/kills");
    const list = $("kill-list");
    if (!active.length) {
      list.replaceChildren(el("li", { class: "empty", testid: "kills-empty", text: "No active kills: agents may act." }));
      return;
    }
    reconcile(list, active, (k) => k.scope, (k) => `${k.requester}|${k.reason}|${k.at}`, killItem);
  }

  function killItem(kill) {
    const lift = el("button", { type: "button", testid: "lift-active", text: "Lift" });
    lift.addEventListener("click", () => switchKill("lift", kill.scope));
    return el(
      "li",
      { class: "kill", testid: "active-kill", "data-scope": kill.scope },
      el("strong", { text: kill.scope }),
      el("span", { text: ` — ${kill.reason} (by ${kill.requester}, ${time(kill.at)}) ` }),
      lift,
    );
  }

  function scopeFromForm() {
    if ($("kill-scope").value === "global") return "global";
    const tenant = $("kill-tenant").value.trim();
    if (!tenant) throw new ApiError(0, "Which tenant?", "Type the tenant to kill or lift, or choose the global scope.");
    return `tenant:${tenant}`;
  }

  async function switchKill(action, scope) {
    try {
      const reason = $("kill-reason").value.trim();
      if (!reason) throw new ApiError(0, `A ${action} needs a reason`, "Write why in the Reason field: it goes to the audit log.");
      const target = scope || scopeFromForm();
      await apiJson(`api/${action}`, { method: "POST", body: { scope: target, reason } });
      clearError();
      notice(`${action === "kill" ? "Killed" : "Lifted"} ${target}.`);
      $("kill-reason").value = "";
    } catch (error) {
      showError(error);
    }
    await refreshAll();
  }

  /** Tenants offered in the kill form: the key's own, plus those seen in runs. */
  function updateTenantOptions() {
    const tenants = new Set((state.me ? state.me.tenants : []).filter((t) => t !== "*"));
    for (const run of state.runs) tenants.add(run.tenant);
    const list = $("tenant-options");
    const wanted = [...tenants].sort();
    if (wanted.join("|") === list.dataset.sig) return;
    list.dataset.sig = wanted.join("|");
    list.replaceChildren(...wanted.map((t) => el("option", { value: t })));
  }

  // ---------------------------------------------------------------- timeline (replay)

  async function openRun(runId) {
    state.selectedRun = runId;
    markSelected();
    try {
      await loadTimeline(runId);
      $("timeline").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showError(error);
    }
  }

  async function loadTimeline(runId) {
    const { run, events } = await apiJson(`api/runs/${encodeURIComponent(runId)}`);
    if (state.selectedRun !== runId) return; // another run was clicked meanwhile
    state.selectedStamp = runSignature(run);
    renderTimeline(run, events);
  }

  function renderTimeline(run, events) {
    const head = $("timeline-head");
    head.className = "run-head";
    head.replaceChildren(
      el("strong", { text: `Run ${run.run_id}` }),
      " ",
      statusBadge(run.status, "timeline-status"),
      el("span", { class: "muted", text: ` ${run.tenant} · ${run.workflow} · ${run.steps} steps · ${usd(run.cost.usd)} · ${run.escalations} escalations · ${run.interventions} human decisions · ${run.incidents} incidents` }),
      el("div", { class: "goal-full", text: run.goal }),
    );
    // Verdicts name calls by id; proposals and tool calls give them a tool name.
    const tools = new Map();
    for (const event of events) {
      for (const p of event.proposals) tools.set(p.call_id, p.tool);
      for (const c of event.tool_calls) tools.set(c.call_id, c.tool);
    }
    const t0 = events.length ? events[0].ts : 0;
    $("timeline-steps").replaceChildren(...events.map((event, i) => stepItem(event, i + 1, t0, tools)));
  }

  function stepItem(event, number, t0, tools) {
    const human = event.verdicts.some((v) => String(v.decided_by || "").startsWith("human:"));
    const classes = ["step", `step-${event.status}`, event.escalation ? "escalated" : "", human ? "human" : ""];
    return el(
      "li",
      { class: classes.join(" "), testid: "timeline-step", "data-node": event.node },
      el(
        "div",
        { class: "step-head" },
        el("span", { class: "step-no", text: number }),
        el("strong", { testid: "step-node", text: event.node }),
        event.agent ? el("span", { class: "muted", text: ` · ${event.agent}` }) : null,
        " ",
        statusBadge(event.status, "step-status"),
        el("span", { class: "muted", text: ` +${(event.ts - t0).toFixed(2)}s · ${event.duration_ms.toFixed(1)} ms · ${usd(event.cost.usd)} · ${event.cost.tokens_in}/${event.cost.tokens_out} tokens` }),
      ),
      event.output ? el("p", { class: "output", testid: "step-output", text: event.output }) : null,
      event.error ? el("p", { class: "warning", text: event.error }) : null,
      listOf("Proposed", event.proposals, proposalItem),
      listOf("Decided", event.verdicts, (v) => verdictItem(v, tools)),
      listOf("Tools run", event.tool_calls, toolCallItem),
      event.escalation ? escalationBox(event.escalation) : null,
      listOf("Flags", event.flags, (f) => el("li", { text: f })),
      listOf("Memory read", event.memory_reads, (m) => el("li", { text: `${(m.namespace || []).join("/")}/${m.key} v${m.version ?? "?"}` })),
    );
  }

  function listOf(title, items, render) {
    if (!items || !items.length) return null;
    return el("div", { class: "detail" }, el("span", { class: "label", text: title }), el("ul", {}, items.map(render)));
  }

  function proposalItem(p) {
    const confidence = p.confidence === null || p.confidence === undefined ? "no confidence stated" : `confidence ${p.confidence}`;
    return el(
      "li",
      { testid: "timeline-proposal" },
      el("code", { text: `${p.tool}(${JSON.stringify(p.args)})` }),
      el("span", { class: "muted", text: ` ${confidence}` }),
      p.rationale ? el("div", { class: "muted", text: p.rationale }) : null,
    );
  }

  function verdictItem(v, tools) {
    const by = String(v.decided_by || "guard");
    const human = by.startsWith("human:");
    const policies = (v.policies || []).join(", ");
    return el(
      "li",
      { class: `verdict kind-${v.kind}${human ? " human" : ""}`, testid: human ? "timeline-human" : "timeline-verdict" },
      el("span", { class: `badge verdict-${v.kind}`, text: v.kind }),
      el("code", { text: ` ${tools.get(v.call_id) || v.call_id || "run"} ` }),
      el("span", { text: `by ${by}` }),
      v.zone ? el("span", { class: `badge zone-${v.zone}`, text: v.zone }) : null,
      (v.reasons || []).length ? el("div", { text: `why: ${v.reasons.join("; ")}` }) : null,
      policies ? el("div", { class: "muted", text: `policies: ${policies}` }) : null,
      v.decision_id ? el("div", { class: "muted", text: `decision ${v.decision_id}` }) : null,
    );
  }

  function toolCallItem(c) {
    const marks = [c.side_effect !== "none" ? c.side_effect : "", c.replayed ? "replayed" : "", c.shadow ? "shadow" : "", c.error_kind || ""];
    return el("li", { testid: "timeline-tool-call" }, el("code", { text: c.tool }), ` ${c.status} `, el("span", { class: "muted", text: marks.filter(Boolean).join(" · ") }));
  }

  function escalationBox(e) {
    const deadline = e.deadline ? `, deadline ${time(e.deadline)}` : "";
    return el(
      "div",
      { class: "escalation", testid: "timeline-escalation" },
      el("strong", { text: "Asked a human: " }),
      `${(e.tools || []).join(", ")} (zones ${(e.zones || []).join(", ")}), reviewers ${e.reviewers || "any"}${deadline}`,
      e.error ? el("div", { class: "warning", text: e.error }) : null,
    );
  }

  // ---------------------------------------------------------------- KPIs and charts

  async function refreshKpis() {
    const kpis = await apiJson("api/kpis");
    // Cost by tenant is not a KPI field: it is summed from the runs this key can see.
    const byTenant = {};
    for (const run of state.runs) byTenant[run.tenant] = (byTenant[run.tenant] || 0) + run.cost.usd;
    const signature = JSON.stringify([kpis, byTenant]);
    if (signature === state.kpiSignature) return; // redraw only when something changed
    state.kpiSignature = signature;
    renderKpiSummary(kpis);
    renderCharts(kpis, byTenant);
  }

  function renderKpiSummary(k) {
    const latency = (k.governance_latency_ms || {}).guard;
    const tiles = [
      ["Runs", k.runs_total, "kpi-runs"],
      ["Autonomy rate", percent(k.autonomy_rate), "kpi-autonomy"],
      ["Incident rate", k.incident_rate === null ? "—" : `${k.incident_rate.toFixed(2)} / run`, "kpi-incident-rate"],
      ["Human decisions", k.human_decisions, "kpi-human"],
      ["Trace completeness", percent(k.trace_completeness), "kpi-completeness"],
      ["Total cost", usd(k.total_cost_usd), "kpi-cost"],
      ["Cost per resolved run", usd(k.cost_per_resolved_run_usd), "kpi-cost-per-run"],
      ["Guard latency p95", latency ? `${latency.p95.toFixed(1)} ms` : "—", "kpi-guard-latency"],
    ];
    $("kpi-summary").replaceChildren(
      ...tiles.map(([label, value, testid]) => el("div", { class: "tile", testid }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }))),
    );
  }

  function renderCharts(k, byTenant) {
    const finished = k.finished_runs || 0;
    const charts = [
      chart("Autonomy of finished runs", "chart-autonomy", [
        ["autonomous", k.autonomous_runs || 0],
        ["human involved", finished - (k.autonomous_runs || 0)],
      ]),
      chart("Incidents by kind", "chart-incidents", Object.entries(k.incidents_by_kind || {})),
      chart("Confidence of proposals", "chart-confidence", Object.entries(k.confidence_histogram || {})),
      chart("Intervention rate by zone", "chart-interventions", Object.entries(k.intervention_rate_by_zone || {}), percent, 1),
      chart("Runs by status", "chart-status", Object.entries(k.runs_by_status || {})),
      chart("Cost by tenant (listed runs)", "chart-cost-tenant", Object.entries(byTenant), usd),
    ];
    $("kpi-charts").replaceChildren(...charts);
  }

  /**
   * A titled bar chart as inline SVG, one bar per [label, value]. `format` labels the values;
   * `scale` is the value of a full-height bar (default: the largest value; 1 for rates).
   */
  function chart(title, testid, data, format = String, scale = null) {
    const W = 320, H = 170, top = 18, bottom = 34, gap = 8;
    const max = scale || Math.max(0, ...data.map(([, v]) => v)) || 1;
    const slot = data.length ? (W - gap) / data.length : W;
    const described = data.map(([label, v]) => `${label}: ${format(v)}`).join(", ") || "no data";
    const graphic = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${described}`, class: "chart" });
    graphic.append(svg("title", {}, `${title}: ${described}`));
    data.forEach(([label, value], i) => {
      const h = ((H - top - bottom) * value) / max;
      const x = gap + i * slot;
      const w = Math.max(4, slot - gap);
      const y = H - bottom - h;
      graphic.append(svg("rect", { x, y, width: w, height: Math.max(h, value ? 1 : 0), class: `bar bar-${i % 6}`, rx: 2 }));
      graphic.append(svg("text", { x: x + w / 2, y: y - 4, "text-anchor": "middle", class: "value" }, format(value)));
      graphic.append(svg("text", { x: x + w / 2, y: H - bottom + 14, "text-anchor": "middle", class: "axis" }, label));
    });
    graphic.append(svg("line", { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, class: "baseline" }));
    if (!data.length) graphic.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
    return el("figure", { class: "chart-box", testid }, el("figcaption", { text: title }), graphic);
  }

  // ---------------------------------------------------------------- audit

  /** Fetch only records after the last one seen, and keep the newest AUDIT_TAIL. */
  async function refreshAudit() {
    for (;;) {
      const { records } = await apiJson(`api/audit?after=${state.auditAfter}&limit=${AUDIT_PAGE}`);
      if (records.length) {
        state.audit = state.audit.concat(records).slice(-AUDIT_TAIL);
        state.auditAfter = records[records.length - 1].seq;
      }
      if (records.length < AUDIT_PAGE) break;
    }
    const newest = [...state.audit].reverse();
    reconcile($("audit-rows"), newest, (r) => String(r.seq), (r) => r.hash, auditRow);
  }

  function auditRow(r) {
    const detail = summarizeDetail(r.detail || {});
    return el(
      "tr",
      { testid: "audit-row", "data-kind": r.kind },
      el("td", { class: "num", text: r.seq }),
      el("td", { text: time(r.ts) }),
      el("td", {}, el("span", { class: `badge audit-${r.kind}`, text: r.kind })),
      el("td", { text: r.tenant }),
      el("td", { text: r.actor }),
      el("td", { class: "mono", title: r.subject, text: shortId(r.subject) }),
      el("td", { class: "detail-cell", title: JSON.stringify(r.detail), text: detail }),
    );
  }

  /** The few detail fields a person scans for; the full JSON is in the cell's tooltip. */
  function summarizeDetail(d) {
    const parts = [];
    if (d.verdict) parts.push(d.verdict);
    if (d.tool) parts.push(d.tool);
    if (d.reasons && d.reasons.length) parts.push(d.reasons.join("; "));
    if (d.note) parts.push(`note: ${d.note}`);
    if (d.reason) parts.push(String(d.reason));
    const text = parts.length ? parts.join(" · ") : JSON.stringify(d);
    return text.length > 160 ? `${text.slice(0, 159)}…` : text;
  }

  async function verifyChain() {
    const box = $("verify-result");
    box.textContent = "Verifying…";
    try {
      const report = await apiJson("api/audit/verify");
      const problems = report.problems || [];
      box.className = report.ok ? "ok" : "warning";
      box.replaceChildren(
        el("strong", { testid: "verify-status", text: report.ok ? `Intact: ${report.records} records verified.` : `Tampered: ${problems.length} problem(s) in ${report.records} records.` }),
        el("ul", {}, problems.map((p) => el("li", { testid: "verify-problem", text: `#${p.seq} ${p.kind}: ${p.message}` }))),
      );
    } catch (error) {
      box.textContent = "";
      showError(error);
    }
  }

  /** Links cannot send the Authorization header: fetch the file, then save it as a blob. */
  async function exportAudit(format) {
    try {
      const response = await api(`api/audit/export?format=${format}`);
      const disposition = response.headers.get("Content-Disposition") || "";
      const match = /filename="?([^";]+)"?/.exec(disposition);
      const name = match ? match[1] : `bastion-audit.${format === "jsonl" ? "jsonl" : "txt"}`;
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000); // after the browser took the file
    } catch (error) {
      showError(error);
    }
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (key) useKey(key);
    });
    $("sign-out").addEventListener("click", forgetKey);
    $("error-dismiss").addEventListener("click", () => clearError());
    $("kill-button").addEventListener("click", () => switchKill("kill"));
    $("lift-button").addEventListener("click", () => switchKill("lift"));
    $("kill-scope").addEventListener("change", () => {
      $("kill-tenant").disabled = $("kill-scope").value === "global";
    });
    $("verify-button").addEventListener("click", verifyChain);
    $("export-jsonl").addEventListener("click", () => exportAudit("jsonl"));
    $("export-report").addEventListener("click", () => exportAudit("report"));
    // One listener for every row, present and future: a click anywhere on a run opens it.
    $("run-rows").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-run-id]");
      if (row) openRun(row.dataset.runId);
    });
    setInterval(tickDeadlines, 1000);
  }

  function start() {
    wire();
    const key = keyFromUrl() || sessionStorage.getItem(KEY_STORAGE);
    if (key) {
      $("key-input").value = key;
      useKey(key);
    } else {
      $("key-input").focus();
    }
  }

  start();
})();
