// The operator page: plain JavaScript over the HTTP API. Every value from the log is set as text
// (textContent), never as HTML; the token lives in this tab's sessionStorage only.
"use strict";

const TOKEN_KEY = "pgaudit.token";
const FAREWELL_KEY = "pgaudit.signed-out";  // the reason for the last sign-out, shown after the reload
const SHOWN = 500;  // events kept on screen; "Older events" pages back past them
const FILTERS = ["tenant_id", "kind_prefix", "target_type", "target_id", "actor_type", "actor_id",
                 "correlation_id", "outcome", "since", "until"];
const $ = (id) => document.getElementById(id);

const state = { me: null, events: [], next: null, live: true, stream: null, newestSeq: null, filters: {},
                arriving: [] };

// ---- JSON as the log holds it ----

// A number that a double cannot hold as written (1e350, a 64-bit id, 12.50): kept as its text.
class RawNumber {
  constructor(source) { this.source = source; }
}

function parseJSON(text) {
  try {
    return JSON.parse(text, (key, value, context) =>
      typeof value === "number" && context && typeof context.source === "string" && JSON.stringify(value) !== context.source
        ? new RawNumber(context.source) : value);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return JSON.parse(text);  // nested deeper than the reviver's stack: plain numbers, but the page goes on
  }
}

// Control, format, separator and unassigned characters, those a screen draws as nothing
// (Default_Ignorable_Code_Point: variation selectors, tag characters, the combining grapheme
// joiner, the Hangul fillers) and the braille blank, written as escapes: no value can hide part of
// itself or read as another (U+202E + "ecila" is not "alice"). The command line escapes the same
// (pgaudit_py/output.py, printable).
// In a text that is not in NFC, the marks and Hangul jamo that NFC would compose are escaped too:
// "jose" + U+0301 does not read as "josé" (trial 86, p4).
const HIDDEN = /[\p{C}\p{Z}\p{Default_Ignorable_Code_Point}\u2800]/gu;
const COMPOSABLE = /[\p{C}\p{Z}\p{Default_Ignorable_Code_Point}\u2800\p{M}\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7ff]/gu;
function visible(text) {
  const value = String(text);
  return value.replace(value.normalize("NFC") === value ? HIDDEN : COMPOSABLE, (c) => {
    if (c === " ") return c;
    const code = c.codePointAt(0);
    return code > 0xffff ? "\\U" + code.toString(16).padStart(8, "0") : "\\u" + code.toString(16).padStart(4, "0");
  });
}

// A value in a field it shares with others, as the command line writes it (output.py, part): "-"
// for none, in double quotes (a quote in it doubled) wherever it could read as something else
// (empty, "-", a quote first, the ':' that joins a type to its id, a ',', a space), a backslash as
// two so that no value spells another's escape; then visible().
function part(value) {
  if (value === null || value === undefined) return "-";
  let text = String(value);
  if (text === "" || text === "-" || text.startsWith('"') || /[:,\s]/u.test(text)) text = '"' + text.replaceAll('"', '""') + '"';
  return visible(text.replaceAll("\\", "\\\\"));
}

// An actor's or a target's type and id, joined by ':'; without a type, the id alone.
function pair(kind, ident) {
  return kind === null || kind === undefined ? part(ident) : part(kind) + ":" + part(ident);
}

// JSON text of a parsed value, numbers as they were written; one line when `compact`.
function jsonText(value, compact = false, indent = "") {
  if (value instanceof RawNumber) return value.source;
  if (value === null || typeof value !== "object") return visible(JSON.stringify(value));
  const inner = indent + "  ";
  const [open, close, sep] = compact ? ["", "", ", "] : ["\n" + inner, "\n" + indent, ",\n" + inner];
  if (Array.isArray(value)) {
    return value.length ? "[" + open + value.map((v) => jsonText(v, compact, inner)).join(sep) + close + "]" : "[]";
  }
  const keys = Object.keys(value);
  return keys.length ? "{" + open + keys.map((k) => visible(JSON.stringify(k)) + ": " + jsonText(value[k], compact, inner)).join(sep) + close + "}" : "{}";
}

function field(object, name) {
  return object && Object.hasOwn(object, name) ? object[name] : null;
}

// ---- talking to the API ----

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), ...(options.headers || {}) },
  });
  const body = await response.text().then(parseJSON).catch(() => null);
  if (!response.ok) {
    const error = (body && body.error) || { code: "error", message: response.statusText };
    if (response.status === 401) signOut(error.message);
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.append(k, v);
  return q.toString();
}

// ---- small helpers that only ever write text ----

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function short(value, max = 40) {
  const text = value === null || value === undefined ? "" : visible(value);
  const cell = el("span", text.length > max ? text.slice(0, max - 1) + "…" : text);
  if (text.length > max) cell.title = text;
  return cell;
}

function when(iso) {
  if (!iso) return el("span", "");
  const t = new Date(iso);
  return el("time", t.toLocaleString(), { datetime: iso, title: t.toISOString().replace("T", " ").replace("Z", " UTC") });
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 120) return Math.round(seconds) + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " days ago";
}

function fill(list, pairs) {
  list.replaceChildren();
  for (const [name, value] of pairs) {
    list.append(el("dt", name));
    const dd = el("dd");
    dd.append(value instanceof Node ? value : short(value, Infinity));  // whole: two values cut alike read alike
    list.append(dd);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el("td");
    td.append(c instanceof Node ? c : short(c));
    tr.append(td);
  }
  return tr;
}

function showError(id, error) {
  $(id).textContent = error ? (error.status === 403 ? "Not for this token: " : "") + error.message : "";
}

// ---- signing in and out ----

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    state.me = await api("v1/whoami");
  } catch (error) {
    signOut(error.message);
    return;
  }
  $("signin").hidden = true;
  $("app").hidden = false;
  $("forget").hidden = false;
  $("who").textContent = visible(`${state.me.name} (${state.me.role}${state.me.tenant_id ? ", tenant " + state.me.tenant_id : ""})`);
  $("archive-run").hidden = state.me.role !== "maintainer";
  // A tenant's token reads its tenant's events only: the views of the whole installation (the
  // chain, the archives, sealing, tracking and limits) are not offered to it.
  for (const view of ["integrity", "storage", "health"]) {
    document.querySelector(`nav button[data-view=${view}]`).hidden = Boolean(state.me.tenant_id);
  }
  if (state.me.tenant_id) {
    const tenant = document.querySelector("#filters [name=tenant_id]");
    tenant.value = state.me.tenant_id;
    tenant.readOnly = true;
  }
  show("events");
  await reloadEvents();
}

// Signing out reloads the page: nothing of the session stays on it (views, filters, a late
// answer to a request made with the old token), whoever signs in next.
function signOut(message) {
  if (state.stream) state.stream.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.setItem(FAREWELL_KEY, message || "");
  location.reload();
}

// ---- events ----

function eventRow(e) {
  const tr = row([
    e.seq === null ? el("span", "pending", { class: "pending" }) : String(e.seq), when(e.occurred_at), part(e.tenant_id),
    pair(e.actor_type, e.actor_id), e.kind, pair(e.target_type, e.target_id), el("span", e.outcome, { class: e.outcome }),
  ]);
  tr.tabIndex = 0;
  tr.addEventListener("click", () => openEvent(e));
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openEvent(e); });
  return tr;
}

function renderEvents() {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...state.events.map(eventRow));
  $("events-empty").hidden = state.events.length > 0;
  $("older").hidden = !state.next;
}

function readFilters() {
  const form = $("filters");
  const filters = {};
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (!value) continue;
    // datetime-local is the browser's local time: send it as an instant.
    filters[name] = name === "since" || name === "until" ? new Date(value).toISOString() : value;
  }
  return filters;
}

async function reloadEvents() {
  stopStream();
  state.filters = readFilters();
  showError("events-error", null);
  try {
    const page = await api("v1/audit?" + query({ limit: 50, ...state.filters }));
    state.events = page.events;
    state.next = page.next;
    const sealed = page.events.find((e) => e.seq !== null);
    state.newestSeq = sealed ? sealed.seq : null;
    renderEvents();
    if (state.live && !state.filters.until) startStream();  // nothing new can fall before a fixed end
  } catch (error) {
    showError("events-error", error);
  }
}

async function older() {
  try {
    // `next` is the API's own path from the server's root; ask relative to this page.
    const page = await api(state.next.replace(/^.*?v1\/audit\?/, "v1/audit?"));
    state.events = state.events.concat(page.events);
    state.next = page.next;
    renderEvents();
  } catch (error) {
    showError("events-error", error);
  }
}

function setLive(text) {
  $("live-state").textContent = text;
  $("live-state").className = "state " + text;
  $("live-toggle").textContent = state.live ? "Pause" : "Go live";
}

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  setLive("paused");
}

// The stream is read with fetch (an EventSource cannot send the Authorization header), resuming
// after the newest event shown; a lost stream is reopened from there.
async function startStream() {
  stopStream();
  const controller = new AbortController();
  state.stream = controller;
  while (state.stream === controller) {
    try {
      const params = { ...state.filters };
      delete params.since;
      delete params.until;
      if (state.newestSeq !== null) params.since_seq = state.newestSeq;
      const response = await fetch("v1/audit/stream?" + query(params), {
        headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) }, signal: controller.signal,
      });
      if (response.status === 401) { signOut("the token is no longer valid"); return; }
      if (!response.ok) throw new Error("stream refused: " + response.status);
      setLive("live");
      await readStream(response.body.getReader(), controller);
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (state.stream !== controller) return;
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function readStream(reader, controller) {
  const decoder = new TextDecoder();
  let buffer = "";
  while (state.stream === controller) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const lines = block.split(/\r?\n/);
      const kind = (lines.find((l) => l.startsWith("event:")) || "event: message").slice(6).trim();
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (kind === "error") { signOut(parseJSON(data).message); return; }
      if (kind === "audit" && data) arrived(parseJSON(data));
      // The first block's id is where the stream started: a reconnect resumes there, never from a
      // later "now" (events sealed in between would be lost).
      const id = lines.find((l) => l.startsWith("id:"));
      const at = id ? Number(id.slice(3).trim()) : NaN;
      if (kind !== "audit" && Number.isSafeInteger(at) && (state.newestSeq === null || at > state.newestSeq)) {
        state.newestSeq = at;
      }
    }
  }
}

// Events that arrive are drawn once a frame, however many: a burst never rebuilds the table per event.
function arrived(e) {
  if (state.newestSeq !== null && e.seq <= state.newestSeq) return;
  state.newestSeq = e.seq;
  state.arriving.push(e);
  if (state.arriving.length === 1) requestAnimationFrame(drawArrivals);
}

function drawArrivals() {
  const fresh = state.arriving.reverse();
  state.arriving = [];
  const ids = new Set(fresh.map((e) => e.id));
  // A pending copy shown before it was sealed gives way to the sealed one.
  state.events = [...fresh, ...state.events.filter((x) => !ids.has(x.id))];
  if (state.events.length > SHOWN) {  // the oldest go from the screen; "Older events" pages back to them
    state.events = state.events.slice(0, SHOWN);
    const last = state.events[SHOWN - 1];
    state.next = "v1/audit?" + query({ limit: 50, ...state.filters,
      ...(last.seq === null ? { before_intake_id: last.intake_id } : { before_seq: last.seq }) });
  }
  renderEvents();
}

function openEvent(e) {
  // Emptied first: nothing of the event shown before may stay beside this one.
  $("detail-fields").replaceChildren();
  $("detail-payload").textContent = "";
  $("detail-rows").hidden = true;
  const body = document.querySelector("#detail-diff tbody");
  body.replaceChildren();
  $("detail").hidden = false;
  $("detail-title").textContent = e.seq === null ? "(pending)" : "#" + e.seq;
  fill($("detail-fields"), [
    ["kind", e.kind], ["time", when(e.occurred_at)], ["sealed", when(e.sealed_at)], ["tenant", part(e.tenant_id)],
    ["actor", pair(e.actor_type, e.actor_id)], ["database role", part(e.db_role)],
    ["target", pair(e.target_type, e.target_id)], ["outcome", e.outcome],
    ["correlation id", part(e.correlation_id)], ["idempotency key", part(e.idempotency_key)], ["client", e.client_addr],
    ["application", part(e.application_name)], ["transaction", e.txid], ["block", e.block_no], ["id", e.id],
  ]);
  try {
    $("detail-payload").textContent = jsonText(e.payload);
    if (e.row_before || e.row_after) {
      const changed = e.changed || {};
      const columns = new Set([...Object.keys(e.row_before || {}), ...Object.keys(e.row_after || {})]);
      for (const column of columns) {
        const tr = row([column, jsonText(field(e.row_before, column), true), jsonText(field(e.row_after, column), true)]);
        if (Object.hasOwn(changed, column)) tr.className = "changed";
        body.append(tr);
      }
      $("detail-rows").hidden = false;
    }
  } catch (error) {  // nested deeper than this browser's stack: the API has it whole
    $("detail-payload").textContent = "(too deeply nested to show here; GET v1/audit has it whole)";
  }
  $("detail").scrollIntoView({ block: "nearest" });
}

// ---- integrity, cold storage, health ----

async function verifyNow() {
  $("verify-running").hidden = false;
  showError("integrity-error", null);
  try {
    const v = await api("v1/audit/verify");
    const cp = v.last_checkpoint;
    const holds = v.ok && (!cp || cp.ok);
    const verdict = !v.ok ? `FAILED at block ${v.bad_block}: ${v.problem}`
      : holds ? "intact" : `FAILED: the signed checkpoint does not hold (${cp.problems.join("; ")})`;
    const at = el("span", "");
    at.append(when(v.verified_at), v.reused ? ` (a verdict ${age(v.verified_at)}, reused: nothing was sealed since, or it is under 10 s old)` : "");
    fill($("integrity"), [
      ["result", el("strong", verdict, { class: holds ? "ok" : "bad" })],
      ["blocks checked", v.blocks_checked], ["events checked", v.events_checked], ["pending", v.pending],
      ["oldest hot seq", v.oldest_hot_seq ?? "none"], ["highest archived seq", v.highest_archived_seq ?? "none"],
      ["last signed checkpoint", cp ? `block ${cp.block_no} (seq ${cp.last_seq}), ${cp.ok ? "holds" : cp.problems.join("; ")}` : "none configured"],
      ["checkpoint made", cp && cp.created_at ? el("span", age(cp.created_at), { title: cp.created_at }) : ""],
      ["verified at", at],
    ]);
  } catch (error) {
    showError("integrity-error", error);
  } finally {
    $("verify-running").hidden = true;
  }
}

async function loadBatches() {
  showError("storage-error", null);
  try {
    const { batches } = await api("v1/audit/archives");
    const sha = (b) => el("span", (b.manifest_sha256 || "").slice(0, 12), { title: b.manifest_sha256 || "" });
    document.querySelector("#batches tbody").replaceChildren(...batches.slice().reverse().map((b) => row([
      b.batch_id, b.state, when(b.archived_at), `${b.first_seq}..${b.last_seq}`, b.event_count,
      b.gz_bytes === null ? "" : b.gz_bytes + " B", sha(b),
    ])));
    $("batches-empty").hidden = batches.length > 0;
  } catch (error) {
    showError("storage-error", error);
  }
}

async function runArchive() {
  if (!window.confirm("Archive every due batch now, to the server's configured target?")) return;
  $("archive-result").textContent = "archiving…";
  try {
    const run = await api("v1/audit/archive/run", { method: "POST" });
    $("archive-result").textContent = run.skipped ? "another archiver is running; skipped"
      : `archived ${run.batches.length} batches, ${run.events} events`;
    await loadBatches();
  } catch (error) {
    $("archive-result").textContent = "";
    showError("storage-error", error);
  }
}

// Column names quoted one by one: a column named "ssn, email" is one column.
function columnList(names) {
  return names.map((n) => JSON.stringify(n)).join(", ");
}

function chart(months) {
  const prefixes = [...new Set(months.flatMap((m) => Object.keys(m.by_kind_prefix)))];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 60 * months.length, height = 160, top = Math.max(1, ...months.map((m) => m.count));
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 30}`);
  svg.setAttribute("role", "img");
  months.forEach((m, i) => {
    let y = height;
    const parts = prefixes.map((p) => [p, m.by_kind_prefix[p] || 0]);
    const other = m.count - parts.reduce((sum, [, n]) => sum + n, 0);
    for (const [j, [name, n]] of [...parts, ["other", other]].entries()) {
      const h = (n / top) * height;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", 60 * i + 10); bar.setAttribute("y", y - h); bar.setAttribute("width", 40); bar.setAttribute("height", h);
      bar.setAttribute("class", "c" + (name === "other" ? "x" : j % 6));
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${m.month}: ${name} ${n}`;
      bar.append(tip);
      svg.append(bar);
      y -= h;
    }
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 60 * i + 30); label.setAttribute("y", height + 20); label.setAttribute("text-anchor", "middle");
    label.textContent = m.month.slice(0, 7);
    svg.append(label);
  });
  const legend = el("p", "", { class: "legend" });
  prefixes.forEach((p, j) => legend.append(el("span", p, { class: "c" + (j % 6) })));
  legend.append(el("span", "other", { class: "cx" }));
  $("chart").replaceChildren(svg, legend);
}

async function loadHealth() {
  showError("health-error", null);
  try {
    const [status, tracked, limits] = await Promise.all([api("v1/audit/status"), api("v1/audit/tracked"), api("v1/audit/limits")]);
    fill($("sealing"), [
      ["pending events", status.pending], ["lag", status.lag_seconds.toFixed(1) + " s"], ["last seq", status.last_seq],
      ["last sealed", when(status.last_sealed_at)], ["quarantined", status.quarantined],
    ]);
    document.querySelector("#tracked tbody").replaceChildren(...tracked.tables.map((t) => row([
      t.table_name, t.kind_prefix, columnList(t.exclude_columns), columnList(t.redact_columns), t.tenant_column,
      when(t.enabled_at),
    ])));
    document.querySelector("#limits tbody").replaceChildren(...limits.limits.map((l) => row([
      l.scope, l.target, l.per_user, l.per_tenant, l.per_key, l.window_seconds + " s",
    ])));
    // Prefixes made from what writers wrote: only those the API takes (its rule for a kind prefix),
    // so that one odd kind cannot fail the whole view.
    const prefixes = [...new Set(state.events.map((e) => e.kind.split(".")[0] + "."))]
      .filter((p) => /^[A-Za-z0-9_.\/-]{1,128}$/.test(p)).slice(0, 6);
    const { months } = await api("v1/audit/monthly?" + query({ months: 12 }) + prefixes.map((p) => "&by_kind_prefix=" + encodeURIComponent(p)).join(""));
    chart(months);
  } catch (error) {
    showError("health-error", error);
  }
}

// ---- navigation and wiring ----

function show(view) {
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  if (view === "integrity") verifyNow();
  if (view === "storage") loadBatches();
  if (view === "health") loadHealth();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) signIn(token);
  });
  $("forget").addEventListener("click", () => signOut("The token was forgotten."));
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => show(button.dataset.view));
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); reloadEvents(); });
  $("clear-filters").addEventListener("click", () => {
    for (const input of $("filters").elements) if (input.name && !input.readOnly) input.value = "";
    reloadEvents();
  });
  $("live-toggle").addEventListener("click", () => {
    state.live = !state.live;
    if (state.live) startStream(); else stopStream();
  });
  $("older").addEventListener("click", older);
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
  $("verify-now").addEventListener("click", verifyNow);
  $("archive-run").addEventListener("click", runArchive);
  $("signin-error").textContent = sessionStorage.getItem(FAREWELL_KEY) || "";
  sessionStorage.removeItem(FAREWELL_KEY);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
});
