// Agent Portal admin console: no build step, no dependencies, nothing inline (strict CSP).
// Reads the admin API with the Open WebUI session cookie (same site) or a pasted token kept in
// sessionStorage. One tab is shown at a time (the URL's #hash); each loads when it is opened.
"use strict";

const TOKEN_KEY = "agent-portal-token";
const TABS = ["overview", "usage", "calls", "keys", "limits", "models", "documents", "agents", "audit"];
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Returns the JSON body (or the Response when ``raw``); throws HttpError unless the status is
// 2xx or listed in ``allow``.
async function api(path, { method = "GET", body, allow = [], raw = false, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, credentials: "same-origin", headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (raw && response.ok) return response;
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok && !allow.includes(response.status)) {
    const message = (data && data.error && data.error.message) || `HTTP ${response.status}`;
    throw new HttpError(response.status, message);
  }
  return data;
}

// --- formatting -------------------------------------------------------------------------------
function text(value) { return value === null || value === undefined || value === "" ? "—" : String(value); }

// Dollars with the precision a figure needs: cents from a dollar up, three significant digits
// below it, so a metered call never reads $0.0000.
function money(value) {
  if (value === null || value === undefined) return "—";
  const amount = Number(value);
  if (amount === 0) return "$0";
  if (Math.abs(amount) >= 1) return `$${amount.toFixed(2)}`;
  return `$${Number(amount.toPrecision(3))}`;
}
function perMillion(value) { return value === null || value === undefined ? "—" : money(value * 1e6); }
function msText(value) { return value === null || value === undefined ? "—" : `${Number(value).toFixed(0)} ms`; }
function when(value) {
  if (!value) return "—";
  const iso = typeof value === "string" && !/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? `${value}Z` : value;
  return new Date(iso).toLocaleString();
}

function cell(row, value, kind) {
  const td = document.createElement("td");
  td.textContent = value;
  if (kind) td.className = kind;
  row.appendChild(td);
  return td;
}

function pillCell(row, label, kind) {
  const td = cell(row, "");
  const pill = document.createElement("span");
  pill.className = `pill ${kind}`;
  pill.textContent = label;
  td.appendChild(pill);
  return td;
}

function setState(id, message, isError) {
  const element = $(id);
  element.textContent = message || "";
  element.classList.toggle("error", Boolean(isError));
}

function describe(error) {
  if (error.status === 401) return "Not signed in: paste an admin token.";
  if (error.status === 403) return "Admins only: this account may not use the console.";
  return `Could not load: ${error.message}`;
}

// A 401/403 shows the sign-in form; any other failure stays in the panel that asked.
function fail(stateId, error) {
  if (error.status === 401 || error.status === 403) showSignIn(describe(error));
  setState(stateId, describe(error), true);
}

// --- sign-in state --------------------------------------------------------------------------------
function showSignIn(message) {
  $("console").hidden = true;
  $("auth").hidden = false;
  $("auth-error").textContent = message || "";
  $("who").textContent = "not signed in";
  $("who").className = "pill down";
  $("sign-out").hidden = !token();
  closeLive("waiting for sign-in");
}

let me = null;
async function signIn() {
  let session;
  try {
    session = await api("/dashboard/session"); // 200 signed in or not: no error in the browser's console
  } catch (error) {
    me = null;
    showSignIn(describe(error));
    return false;
  }
  if (!session.signed_in) {
    me = null;
    showSignIn(token() ? session.reason : "Not signed in: paste an admin token.");
    return false;
  }
  me = session;
  if (me.role !== "admin") {
    showSignIn(describe(new HttpError(403, "admins only")));
    $("who").textContent = `${me.user} (${me.role}): not an admin`;
    return false;
  }
  $("auth").hidden = true;
  $("console").hidden = false;
  $("who").textContent = `signed in as ${me.user} (admin)`;
  $("who").className = "pill up";
  $("sign-out").hidden = !token();
  showAvailableTabs();
  await loadEmbeds();
  return true;
}

// --- tabs ----------------------------------------------------------------------------------------
let embeds = {};
const loaded = new Set();

function currentTab() {
  const name = location.hash.slice(1);
  const offered = TABS.includes(name) && !(name in TAB_PLUGINS && !(me.plugins || []).includes(TAB_PLUGINS[name]));
  if (offered || (name.startsWith("embed-") && embeds[name.slice(6)])) return name;
  return "overview";
}

function showTab(force) {
  const name = currentTab();
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.tab === name);
  for (const section of document.querySelectorAll("section.tab")) section.hidden = true;
  if (name.startsWith("embed-")) {
    $("tab-embed").hidden = false;
    const embed = embeds[name.slice(6)];
    if ($("embed-frame").getAttribute("src") !== embed.path) $("embed-frame").setAttribute("src", embed.path);
    $("embed-state").textContent = `${embed.title}: the service's own admin UI, through the portal.`;
    return;
  }
  $(`tab-${name}`).hidden = false;
  if (force || !loaded.has(name)) {
    loaded.add(name);
    LOADERS[name]();
  }
}

// Embedded admin UIs get a tab each when configured and not down (health says why otherwise).
// A frame cannot send a pasted token: they open only with the Open WebUI sign-in (its cookie).
async function loadEmbeds() {
  for (const link of document.querySelectorAll("#tabs a.embed")) link.remove();
  embeds = {};
  $("embeds-hint").hidden = true;
  const offered = me.embeds || [];
  if (!offered.length) return;
  if (token()) {
    $("embeds-hint").hidden = false;
    return;
  }
  const health = (me.plugins || []).includes("observability")
    ? await api("/observability/health", { allow: [503] }) : null;
  const components = (health && health.components) || {};
  for (const embed of offered) {
    const state = components[`embed:${embed.name}`] || components[embed.name] || components[embed.name.split("-")[0]];
    if (state && state.status === "down") continue;
    embeds[embed.name] = embed;
    const link = document.createElement("a");
    link.href = `#embed-${embed.name}`;
    link.dataset.tab = `embed-${embed.name}`;
    link.className = "embed";
    link.textContent = embed.title;
    $("tabs").appendChild(link);
  }
}

// A tab whose plugin is off is not offered (its API would answer 404).
const TAB_PLUGINS = { keys: "api_keys", limits: "rate_limits", models: "chat", documents: "documents",
  agents: "langgraph", audit: "audit" };
function showAvailableTabs() {
  for (const [tab, plugin] of Object.entries(TAB_PLUGINS)) {
    document.querySelector(`#tabs a[data-tab="${tab}"]`).hidden = !(me.plugins || []).includes(plugin);
  }
}

// --- overview ------------------------------------------------------------------------------------
function rangeQuery() {
  const days = Number($("range").value);
  const to = new Date();
  const from = new Date(to.getTime() - days * 86400 * 1000);
  return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
}

async function loadHealth() {
  setState("health-state", "Loading…");
  const tbody = $("health").querySelector("tbody");
  try {
    const health = await api("/observability/health", { allow: [503] }); // a down stack answers 503
    tbody.replaceChildren();
    $("overall").textContent = health.status;
    $("overall").className = `pill ${health.status}`;
    for (const [name, component] of Object.entries(health.components)) {
      const row = document.createElement("tr");
      cell(row, name + (component.required ? " *" : ""));
      pillCell(row, component.status, component.status);
      cell(row, msText(component.latency_ms), "num");
      cell(row, text(component.detail), "text");
      tbody.appendChild(row);
    }
    setState("health-state", Object.keys(health.components).length ? "" : "No health checks are enabled.");
  } catch (error) {
    fail("health-state", error);
  }
}

function fillTop(tableId, stateId, rows, key) {
  const tbody = $(tableId).querySelector("tbody");
  tbody.replaceChildren();
  rows.sort((a, b) => (b.cost || 0) - (a.cost || 0) || (b.requests || 0) - (a.requests || 0));
  for (const usage of rows.slice(0, 10)) {
    const row = document.createElement("tr");
    cell(row, text(usage[key]));
    cell(row, text(usage.requests), "num");
    cell(row, `${text(usage.prompt_tokens)} / ${text(usage.completion_tokens)}`, "num");
    cell(row, money(usage.cost), "num");
    cell(row, text(usage.errors), "num");
    cell(row, msText(usage.p95_latency_ms), "num");
    tbody.appendChild(row);
  }
  setState(stateId, rows.length ? "" : "No calls in this range.");
}

async function loadOverview() {
  loadHealth();
  for (const id of ["users-state", "models-state", "chart-state"]) setState(id, "Loading…");
  const hourly = Number($("range").value) === 1;
  try {
    const [users, models, series] = await Promise.all([
      api(`/observability/usage?group_by=user&${rangeQuery()}`),
      api(`/observability/usage?group_by=model&${rangeQuery()}`),
      api(`/observability/usage?group_by=${hourly ? "hour" : "day"}&${rangeQuery()}`),
    ]);
    fillTop("users", "users-state", users.data, "user");
    fillTop("models", "models-state", models.data, "model");
    drawChart(everyPeriod(series.data, hourly), hourly);
  } catch (error) {
    for (const id of ["users-state", "models-state", "chart-state"]) fail(id, error);
  }
}

// One entry per day (or hour) of the chosen range, zero where the ledger has none.
function everyPeriod(rows, hourly) {
  const key = hourly ? "hour" : "day";
  const byKey = Object.fromEntries(rows.map((row) => [String(row[key]).slice(0, hourly ? 13 : 10), row]));
  const periods = [];
  const count = hourly ? 24 : Number($("range").value);
  const step = hourly ? 3600 * 1000 : 86400 * 1000;
  for (let i = count - 1; i >= 0; i--) {
    const label = new Date(Date.now() - i * step).toISOString().slice(0, hourly ? 13 : 10);
    periods.push({ label, ...(byKey[label] || { cost: 0, requests: 0, errors: 0 }) });
  }
  return rows.length ? periods : [];
}

function svg(name, attributes, content) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (content !== undefined) element.textContent = content;
  return element;
}

function drawChart(periods, hourly) {
  const chart = $("chart");
  chart.replaceChildren();
  if (!periods.length) {
    setState("chart-state", "No calls in this range.");
    $("totals").textContent = "";
    return;
  }
  const width = 720, height = 220, left = 56, bottom = 24, top = 12;
  const maxCost = Math.max(...periods.map((d) => d.cost || 0), 1e-9);
  const maxCalls = Math.max(...periods.map((d) => d.requests || 0), 1);
  const step = (width - left) / periods.length;
  const every = Math.ceil(periods.length / 12);
  const points = [];
  periods.forEach((period, i) => {
    const barHeight = ((period.cost || 0) / maxCost) * (height - bottom - top);
    const x = left + i * step + step * 0.15;
    const bar = svg("rect", { class: "bar", x, y: height - bottom - barHeight, width: step * 0.7, height: barHeight });
    bar.appendChild(svg("title", {}, `${period.label}: ${money(period.cost)}, ${period.requests} calls`));
    chart.appendChild(bar);
    if (i % every === 0) {
      chart.appendChild(svg("text", { x: x + step * 0.35, y: height - 8, "text-anchor": "middle" },
        hourly ? `${period.label.slice(11, 13)}h` : period.label.slice(5)));
    }
    points.push(`${x + step * 0.35},${height - bottom - ((period.requests || 0) / maxCalls) * (height - bottom - top)}`);
  });
  chart.appendChild(svg("polyline", { class: "calls", points: points.join(" ") }));
  chart.appendChild(svg("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, money(maxCost)));
  chart.appendChild(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "$0"));
  const total = periods.reduce((sum, d) => ({ cost: sum.cost + (d.cost || 0), calls: sum.calls + (d.requests || 0),
    errors: sum.errors + (d.errors || 0) }), { cost: 0, calls: 0, errors: 0 });
  $("totals").textContent = `${total.calls} calls, ${total.errors} errors, ${money(total.cost)} in this range ` +
    "(bars: cost; line: calls).";
  setState("chart-state", "");
}

// --- usage -----------------------------------------------------------------------------------------
const METRIC_COLUMNS = [["requests", "calls"], ["prompt_tokens", "tokens in"], ["completion_tokens", "tokens out"],
  ["cost", "cost"], ["errors", "errors"], ["p50_latency_ms", "p50"], ["p95_latency_ms", "p95"]];

function usageQuery() {
  const params = new URLSearchParams();
  const from = $("usage-from").value, to = $("usage-to").value;
  if (from) params.set("from", from);
  if (to) params.set("to", new Date(new Date(`${to}T00:00:00Z`).getTime() + 86400 * 1000).toISOString());
  for (const key of ["user", "model", "backend", "key", "kind"]) {
    const value = $(`usage-${key}`).value.trim();
    if (value) params.set(key, value);
  }
  params.set("source", $("usage-source").value);
  params.set("group_by", $("usage-group").value);
  return params;
}

async function loadSources() {
  // the sources the portal has: the answer of source=all names them (failed ones included)
  try {
    const answer = await api(`/observability/usage?source=all&${rangeQuery()}`);
    const select = $("usage-source");
    const current = select.value;
    select.replaceChildren();
    for (const name of ["ledger", ...Object.keys(answer.sources || {}).filter((n) => n !== "ledger").sort(), "all"]) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      select.appendChild(option);
    }
    select.value = current || "ledger";
  } catch (error) { /* the ledger stays the one choice */ }
}

async function loadUsage() {
  if (!$("usage-from").value) {
    const today = new Date();
    $("usage-to").value = today.toISOString().slice(0, 10);
    $("usage-from").value = new Date(today.getTime() - 6 * 86400 * 1000).toISOString().slice(0, 10);
    await loadSources();
  }
  setState("usage-state", "Loading…");
  const table = $("usage-table");
  try {
    const params = usageQuery();
    const answer = await api(`/observability/usage?${params}`);
    const groups = params.get("group_by").split(",");
    const sources = params.get("source") === "all" ? Object.entries(answer.sources)
      : [[answer.source, { ok: true, data: answer.data }]];
    const head = document.createElement("tr");
    const labels = [...(sources.length > 1 ? ["source"] : []), ...groups];
    for (const label of [...labels, ...METRIC_COLUMNS.map((c) => c[1])]) {
      const th = document.createElement("th");
      th.textContent = label;
      if (!labels.includes(label)) th.className = "num";
      head.appendChild(th);
    }
    table.querySelector("thead").replaceChildren(head);
    const tbody = table.querySelector("tbody");
    tbody.replaceChildren();
    const totals = { requests: 0, cost: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 };
    const problems = [];
    for (const [source, result] of sources) {
      if (!result.ok) { problems.push(`${source}: ${result.error}`); continue; }
      for (const usage of result.data) {
        const row = document.createElement("tr");
        if (sources.length > 1) cell(row, source);
        for (const group of groups) cell(row, text(usage[group]));
        for (const [key] of METRIC_COLUMNS) {
          const value = usage[key];
          cell(row, key === "cost" ? money(value) : key.endsWith("_ms") ? msText(value) : text(value), "num");
          if (key in totals && source === sources[0][0]) totals[key] += Number(value || 0);
        }
        tbody.appendChild(row);
      }
    }
    $("usage-totals").textContent = `Total (${sources[0][0]}): ${totals.requests} calls, ` +
      `${totals.prompt_tokens} / ${totals.completion_tokens} tokens, ${totals.errors} errors, ${money(totals.cost)}.`;
    setState("usage-state", problems.length ? problems.join(" · ") : tbody.children.length ? "" : "No calls match.",
      problems.length > 0);
  } catch (error) {
    fail("usage-state", error);
  }
}

async function exportCsv() {
  try {
    const params = usageQuery();
    params.set("format", "csv");
    const response = await api(`/observability/usage?${params}`, { raw: true, accept: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = "usage.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setState("usage-state", "");
  } catch (error) {
    fail("usage-state", error);
  }
}

// --- calls -----------------------------------------------------------------------------------------
let failedCalls = [];

async function loadCalls() {
  connectLive();
  setState("errors-state", "Loading…");
  try {
    const calls = await api("/observability/calls?outcome=error&limit=500");
    failedCalls = calls.data;
    showFailedCalls();
  } catch (error) {
    fail("errors-state", error);
  }
}

function showFailedCalls() {
  const needle = $("errors-filter").value.trim().toLowerCase();
  const tbody = $("errors").querySelector("tbody");
  tbody.replaceChildren();
  const shown = failedCalls.filter((call) => !needle || [call.actor_id, call.model, call.outcome, call.error,
    call.request_id, call.backend].some((v) => String(v || "").toLowerCase().includes(needle)));
  for (const call of shown.slice(0, 200)) {
    const row = document.createElement("tr");
    cell(row, when(call.started_at));
    cell(row, text(call.actor_id));
    cell(row, text(call.model));
    cell(row, text(call.outcome));
    cell(row, text(call.status), "num");
    cell(row, text(call.request_id));
    cell(row, text(call.error), "text");
    tbody.appendChild(row);
  }
  setState("errors-state", failedCalls.length ? (shown.length ? "" : "No failed call matches.") : "No failed calls recently.");
}

let socket = null;
function closeLive(label) {
  if (socket) { const old = socket; socket = null; old.close(); }
  $("live-state").textContent = label;
  $("live-state").className = "pill";
}

function connectLive() {
  if (socket && socket.readyState <= 1) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const current = new WebSocket(`${scheme}://${location.host}/ws/events`);
  socket = current;
  const state = $("live-state");
  const show = (label, kind) => {
    if (socket !== current) return; // a replaced socket's late events must not repaint the state
    state.textContent = label;
    state.className = `pill ${kind}`;
  };
  show("connecting", "");
  current.onopen = () => { if (token()) current.send(JSON.stringify({ type: "auth", token: token() })); };
  current.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "hello" || event.type === "ready") show("live", "up");
    if (event.type !== "call") return;
    const item = document.createElement("li");
    item.className = event.outcome === "ok" ? "" : "failed";
    item.textContent = `${new Date(event.started_at * 1000).toLocaleTimeString()} ${event.actor_id} → ${event.model}: ` +
      `${event.outcome}, ${event.prompt_tokens}+${event.completion_tokens} tokens, ${money(event.cost)}, ` +
      `${(event.duration * 1000).toFixed(0)} ms` + (event.error ? ` (${event.error})` : "");
    const list = $("live");
    list.prepend(item);
    while (list.children.length > 100) list.lastChild.remove();
  };
  current.onclose = (event) => show(event.code === 1008 ? "not allowed" : "disconnected", "down");
}

// --- keys ------------------------------------------------------------------------------------------
function hasPlugin(name) { return (me.plugins || []).includes(name); }

// "rpm 5 · $2/day · models a, b": a limits object in a line
function limitsText(limits) {
  if (!limits) return "none";
  const parts = [];
  if (limits.requests_per_minute) parts.push(`${limits.requests_per_minute} req/min`);
  if (limits.tokens_per_minute) parts.push(`${limits.tokens_per_minute} tok/min`);
  if (limits.daily_budget_usd !== undefined && limits.daily_budget_usd !== null) parts.push(`${money(limits.daily_budget_usd)}/day`);
  if (limits.monthly_budget_usd !== undefined && limits.monthly_budget_usd !== null) parts.push(`${money(limits.monthly_budget_usd)}/month`);
  if (limits.models) parts.push(`models ${limits.models.join(", ") || "none"}`);
  return parts.join(" · ") || "none";
}

// The limits a form's fields give (blank: no such limit); ``prefix`` names the fields.
function limitsFromForm(prefix) {
  const limits = {};
  const number = (id, key, whole) => {
    const field = $(`${prefix}-${id}`);
    if (!field || field.value.trim() === "") return;
    limits[key] = whole ? parseInt(field.value, 10) : Number(field.value);
  };
  number("rpm", "requests_per_minute", true);
  number("tpm", "tokens_per_minute", true);
  number("daily", "daily_budget_usd", false);
  number("monthly", "monthly_budget_usd", false);
  const models = $(`${prefix}-models`).value.trim();
  if (models) limits.models = models.split(",").map((m) => m.trim()).filter(Boolean);
  return limits;
}

async function loadKeys() {
  setState("keys-state", "Loading…");
  const tbody = $("keys").querySelector("tbody");
  try {
    const [keys, limits] = await Promise.all([api("/admin/keys"),
      hasPlugin("rate_limits") ? api("/admin/limits") : { data: [] }]);
    const keyLimits = Object.fromEntries(limits.data.filter((e) => e.scope === "keys").map((e) => [e.id, e.limits]));
    tbody.replaceChildren();
    for (const key of keys.data) {
      const row = document.createElement("tr");
      row.dataset.key = key.id;
      cell(row, text(key.name));
      cell(row, key.owner);
      cell(row, key.role);
      cell(row, key.display);
      cell(row, when(key.created_at));
      cell(row, key.expires_at ? when(key.expires_at) : "never");
      cell(row, when(key.last_used_at));
      cell(row, money(key.spent_usd_this_month), "num");
      cell(row, limitsText(keyLimits[key.id]), "text");
      const expired = key.expires_at && new Date(key.expires_at) < new Date();
      const state = key.revoked_at ? "revoked" : expired ? "expired" : "active";
      pillCell(row, state, state === "active" ? "up" : "down");
      const actions = cell(row, "");
      if (!key.revoked_at && hasPlugin("rate_limits")) actions.appendChild(button("Limits", () => editLimit("keys", key.id, keyLimits[key.id])));
      if (!key.revoked_at) actions.appendChild(button("Revoke", () => revokeKey(key)));
      tbody.appendChild(row);
    }
    setState("keys-state", keys.data.length ? "" : "No API keys yet.");
  } catch (error) {
    fail("keys-state", error);
  }
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

async function createKey(event) {
  event.preventDefault();
  const body = { owner: $("key-owner").value.trim(), role: $("key-role").value };
  if ($("key-name").value.trim()) body.name = $("key-name").value.trim();
  if ($("key-expires").value.trim()) body.expires_in = $("key-expires").value.trim();
  const limits = limitsFromForm("key");
  if (Object.keys(limits).length) body.limits = limits;
  try {
    const created = await api("/admin/keys", { method: "POST", body });
    $("key-secret-value").textContent = created.key;
    $("key-secret").hidden = false;
    $("key-form").reset();
    await loadKeys();
  } catch (error) {
    $("key-secret").hidden = true;
    fail("keys-state", error);
  }
}

async function revokeKey(key) {
  if (!window.confirm(`Revoke ${key.name || key.display} of ${key.owner}? Calls with it stop at once.`)) return;
  try {
    await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    await loadKeys();
  } catch (error) {
    fail("keys-state", error);
  }
}

// --- limits ----------------------------------------------------------------------------------------
async function loadLimits() {
  loadAllLimits();
  loadUserLimits();
}

async function loadAllLimits() {
  setState("all-limits-state", "Loading…");
  const tbody = $("all-limits").querySelector("tbody");
  try {
    const answer = await api("/admin/limits");
    $("limits-refresh").textContent = "Set here, a limit holds on every worker and instance within " +
      `${answer.refresh_seconds} s; it replaces the config's for its scope and id.`;
    tbody.replaceChildren();
    for (const entry of answer.data) {
      const row = document.createElement("tr");
      row.dataset.limit = `${entry.scope}/${entry.id}`;
      const limits = entry.limits || {};
      cell(row, entry.scope);
      cell(row, entry.id);
      cell(row, text(limits.requests_per_minute), "num");
      cell(row, text(limits.tokens_per_minute), "num");
      cell(row, limits.daily_budget_usd === undefined ? "—" : money(limits.daily_budget_usd), "num");
      cell(row, limits.monthly_budget_usd === undefined ? "—" : money(limits.monthly_budget_usd), "num");
      cell(row, limits.models ? limits.models.join(", ") || "none" : "any", "text");
      pillCell(row, entry.source, entry.source === "config" ? "" : entry.source === "lifted" ? "down" : "up");
      cell(row, entry.changed_by ? `${entry.changed_by}, ${new Date(entry.changed_at * 1000).toLocaleString()}` : "—");
      const actions = cell(row, "");
      actions.appendChild(button("Edit", () => editLimit(entry.scope, entry.id, entry.limits)));
      if (entry.source !== "lifted") actions.appendChild(button("Remove", () => removeLimit(entry)));
      tbody.appendChild(row);
    }
    setState("all-limits-state", answer.data.length ? "" : "No limits are set: every call is let through.");
  } catch (error) {
    fail("all-limits-state", error);
  }
}

// Fill the limit form with one scope and id's limits, on the Limits tab.
function editLimit(scope, id, limits) {
  const values = limits || {};
  $("edit-scope").value = scope;
  $("edit-id").value = id;
  $("edit-rpm").value = values.requests_per_minute || "";
  $("edit-tpm").value = values.tokens_per_minute || "";
  $("edit-daily").value = values.daily_budget_usd ?? "";
  $("edit-monthly").value = values.monthly_budget_usd ?? "";
  $("edit-models").value = values.models ? values.models.join(", ") : "";
  if (location.hash !== "#limits") location.hash = "#limits";
  $("edit-id").focus();
}

async function saveLimit(event) {
  event.preventDefault();
  const scope = $("edit-scope").value, id = $("edit-id").value.trim();
  try {
    await api(`/admin/limits/${encodeURIComponent(scope)}/${encodeURIComponent(id)}`,
      { method: "PUT", body: limitsFromForm("edit") });
    $("limit-edit").reset();
    await loadAllLimits();
    setState("all-limits-state", `Saved the limits of ${scope}/${id}.`);
  } catch (error) {
    fail("all-limits-state", error);
  }
}

async function removeLimit(entry) {
  const what = entry.config ? " (the config's too, until set again)" : "";
  if (!window.confirm(`Remove every limit of ${entry.scope}/${entry.id}${what}?`)) return;
  try {
    await api(`/admin/limits/${encodeURIComponent(entry.scope)}/${encodeURIComponent(entry.id)}`, { method: "DELETE" });
    await loadAllLimits();
  } catch (error) {
    fail("all-limits-state", error);
  }
}

async function loadUserLimits() {
  if (!$("limits-user").value && me) $("limits-user").value = me.user;
  setState("limits-state", "Loading…");
  const tbody = $("limits").querySelector("tbody");
  try {
    const params = new URLSearchParams({ user: $("limits-user").value.trim(), role: $("limits-role").value });
    const answer = await api(`/observability/limits?${params}`);
    tbody.replaceChildren();
    $("limits-storage").textContent = `${answer.user} (${answer.role}); counters kept in ${answer.storage}.`;
    for (const limit of answer.limits) {
      const row = document.createElement("tr");
      const isMoney = limit.limit.endsWith("_usd");
      cell(row, limit.id ? `${limit.scope} ${limit.id}` : limit.scope);
      cell(row, limit.limit);
      if (limit.limit === "models") {
        cell(row, limit.value.join(", ") || "none", "text");
        for (let i = 0; i < 3; i++) cell(row, "—");
        tbody.appendChild(row);
        continue;
      }
      cell(row, isMoney ? money(limit.value) : text(limit.value), "num");
      const used = isMoney ? limit.spent_usd : limit.remaining === undefined || limit.remaining === null
        ? null : limit.value - limit.remaining;
      cell(row, isMoney ? money(used) : text(used), "num");
      cell(row, isMoney ? money(limit.remaining) : text(limit.remaining), "num");
      cell(row, limit.resets_at ? new Date(limit.resets_at * 1000).toLocaleString() : "—");
      tbody.appendChild(row);
    }
    setState("limits-state", answer.limits.length ? "" : "No limit applies to this user.");
  } catch (error) {
    fail("limits-state", error);
  }
}

// --- models ----------------------------------------------------------------------------------------
async function loadModels() {
  setState("catalog-state", "Loading…");
  const tbody = $("catalog").querySelector("tbody");
  try {
    const [catalog, backends] = await Promise.all([api("/admin/models"),
      (me.plugins || []).includes("observability") ? api("/observability/models") : null]);
    const reachable = Object.fromEntries(((backends && backends.backends) || []).map((b) => [b.backend, b]));
    tbody.replaceChildren();
    const rows = (catalog && catalog.data) || [];
    for (const model of rows) {
      const row = document.createElement("tr");
      cell(row, model.model + (model.alias ? " (alias)" : ""));
      cell(row, model.backend);
      cell(row, model.upstream_model);
      cell(row, model.roles.join(", ") || "nobody");
      cell(row, perMillion(model.input_cost_per_token), "num");
      cell(row, perMillion(model.output_cost_per_token), "num");
      cell(row, model.fallbacks.join(" → ") || "—");
      const backend = reachable[model.backend];
      const state = !backend || backend.reachable === undefined || backend.reachable === null ? "unknown"
        : backend.reachable ? "yes" : `no: ${backend.error || "unreachable"}`;
      cell(row, state, backend && backend.reachable === false ? "text error" : "");
      tbody.appendChild(row);
    }
    setState("catalog-state", rows.length ? "" : "No models are served.");
  } catch (error) {
    fail("catalog-state", error);
  }
}

// --- documents --------------------------------------------------------------------------------------
async function loadDocuments() {
  setState("documents-state", "Loading…");
  const tbody = $("documents").querySelector("tbody");
  try {
    const listing = await api("/documents/collections");
    const owner = $("documents-owner").value.trim(), wanted = $("documents-status").value;
    const chosen = listing.collections.filter((c) => !owner || c.owner === owner);
    const detailed = await Promise.all(chosen.map((c) => api(`/documents/collections/${encodeURIComponent(c.id)}`)));
    tbody.replaceChildren();
    const counts = {};
    for (const collection of detailed) {
      for (const file of collection.files) {
        counts[file.status] = (counts[file.status] || 0) + 1;
        if (wanted && file.status !== wanted) continue;
        const row = document.createElement("tr");
        row.dataset.file = file.id;
        cell(row, collection.name);
        cell(row, collection.owner);
        cell(row, file.name, "text");
        cell(row, `${Math.ceil(file.size / 1024)} KB`, "num");
        pillCell(row, file.status, file.status === "ready" ? "up" : file.status === "failed" ? "down" : "degraded");
        cell(row, `${Math.round((file.progress || 0) * 100)}%`, "num");
        cell(row, text(file.error), "text");
        cell(row, when(new Date(file.created_at * 1000).toISOString()));
        const actions = cell(row, "");
        if (file.status === "failed") actions.appendChild(button("Retry", () => fileAction(file, "retry")));
        actions.appendChild(button("Delete", () => fileAction(file, "delete")));
        tbody.appendChild(row);
      }
    }
    $("documents-totals").textContent = `${detailed.length} collection(s); files: ` +
      (Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ") || "none");
    setState("documents-state", tbody.children.length ? "" : "No files match.");
  } catch (error) {
    fail("documents-state", error);
  }
}

async function fileAction(file, action) {
  if (action === "delete" && !window.confirm(`Delete ${file.name}? Its chunks leave every search at once.`)) return;
  try {
    if (action === "retry") await api(`/documents/files/${encodeURIComponent(file.id)}/retry`, { method: "POST" });
    else await api(`/documents/files/${encodeURIComponent(file.id)}`, { method: "DELETE" });
    await loadDocuments();
    setState("documents-state", action === "retry" ? `${file.name} is queued again.` : `${file.name} is deleted.`);
  } catch (error) {
    fail("documents-state", error);
  }
}

// --- agents ----------------------------------------------------------------------------------------
async function loadAgents() {
  setState("agents-state", "Loading…");
  const tbody = $("agents").querySelector("tbody");
  try {
    const user = $("agents-user").value.trim();
    const body = { limit: 100, sort_by: "updated_at", sort_order: "desc" };
    if (user) body.metadata = { portal_owner: user };
    const threads = await api("/agents/threads/search", { method: "POST", body });
    tbody.replaceChildren();
    threads.sort((a, b) => String((a.metadata || {}).portal_owner).localeCompare(String((b.metadata || {}).portal_owner)));
    for (const thread of threads) {
      const row = document.createElement("tr");
      cell(row, text((thread.metadata || {}).portal_owner));
      cell(row, thread.thread_id);
      pillCell(row, text(thread.status), thread.status === "error" ? "down" : thread.status === "busy" ? "degraded" : "up");
      cell(row, when(thread.created_at));
      cell(row, when(thread.updated_at));
      const runs = cell(row, "", "text");
      runs.appendChild(button("Show runs", () => showRuns(thread, runs)));
      tbody.appendChild(row);
    }
    setState("agents-state", threads.length ? "" : "No agent threads.");
  } catch (error) {
    fail("agents-state", error);
  }
}

async function showRuns(thread, target) {
  try {
    const runs = await api(`/agents/threads/${encodeURIComponent(thread.thread_id)}/runs`);
    target.textContent = runs.length ? runs.map((r) => `${r.status} ${when(r.created_at)}`).join(" · ") : "no runs";
  } catch (error) {
    target.textContent = describe(error);
  }
}

// --- audit -----------------------------------------------------------------------------------------
let auditBefore = null;

function stateText(value) { return value === null || value === undefined ? "—" : JSON.stringify(value); }

async function loadAudit(older) {
  setState("audit-state", "Loading…");
  const tbody = $("audit").querySelector("tbody");
  try {
    const params = new URLSearchParams({ limit: "100" });
    if ($("audit-action").value) params.set("action", $("audit-action").value);
    if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
    if (older && auditBefore) params.set("before", auditBefore);
    const answer = await api(`/admin/audit?${params}`);
    if (!older) tbody.replaceChildren();
    for (const change of answer.data) {
      const row = document.createElement("tr");
      cell(row, when(change.at));
      cell(row, change.actor);
      cell(row, change.action);
      cell(row, change.target, "text");
      cell(row, stateText(change.before), "text");
      cell(row, stateText(change.after), "text");
      tbody.appendChild(row);
    }
    auditBefore = answer.next_before;
    $("audit-older").hidden = answer.data.length < 100;
    setState("audit-state", tbody.children.length ? "" : "No admin changes yet.");
  } catch (error) {
    fail("audit-state", error);
  }
}

const LOADERS = { overview: loadOverview, usage: loadUsage, calls: loadCalls, keys: loadKeys, limits: loadLimits,
  models: loadModels, documents: loadDocuments, agents: loadAgents, audit: () => loadAudit(false) };

// --- wiring ----------------------------------------------------------------------------------------
async function start() {
  loaded.clear();
  if (await signIn()) showTab(true);
}

document.addEventListener("DOMContentLoaded", () => {
  $("overview-form").addEventListener("submit", (event) => { event.preventDefault(); loadOverview(); });
  $("usage-form").addEventListener("submit", (event) => { event.preventDefault(); loadUsage(); });
  $("usage-csv").addEventListener("click", exportCsv);
  $("errors-filter").addEventListener("input", showFailedCalls);
  $("errors-form").addEventListener("submit", (event) => event.preventDefault());
  $("key-form").addEventListener("submit", createKey);
  $("limits-form").addEventListener("submit", (event) => { event.preventDefault(); loadUserLimits(); });
  $("limit-edit").addEventListener("submit", saveLimit);
  $("documents-form").addEventListener("submit", (event) => { event.preventDefault(); loadDocuments(); });
  $("agents-form").addEventListener("submit", (event) => { event.preventDefault(); loadAgents(); });
  $("audit-form").addEventListener("submit", (event) => { event.preventDefault(); loadAudit(false); });
  $("audit-older").addEventListener("click", () => loadAudit(true));
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    showSignIn("Signed out.");
  });
  window.addEventListener("hashchange", () => { if (me) showTab(false); });
  start();
});
