// Agent Portal dashboard: no build step, no dependencies. Reads the admin-only observability API
// with the Open WebUI session cookie (same site) or a pasted token kept in sessionStorage.
"use strict";

const TOKEN_KEY = "agent-portal-token";
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Returns the JSON body; throws HttpError unless the status is 2xx or listed in ``allow``.
async function api(path, allow = []) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { credentials: "same-origin", headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok && !allow.includes(response.status)) {
    const message = (body && body.error && body.error.message) || `HTTP ${response.status}`;
    throw new HttpError(response.status, message);
  }
  return body;
}

function text(value) { return value === null || value === undefined ? "—" : String(value); }
function money(value) { return value === null || value === undefined ? "—" : `$${Number(value).toFixed(4)}`; }
function msText(value) { return value === null || value === undefined ? "—" : `${Number(value).toFixed(0)} ms`; }

function cell(row, value, numeric) {
  const td = document.createElement("td");
  td.textContent = value;
  if (numeric) td.className = "num";
  row.appendChild(td);
  return td;
}

function setState(id, message, isError) {
  const element = $(id);
  element.textContent = message || "";
  element.classList.toggle("error", Boolean(isError));
  element.hidden = !message;
  const panel = element.closest(".panel");
  if (panel) panel.setAttribute("aria-busy", message === "Loading…" ? "true" : "false");
}

function range() {
  const days = Number($("range").value);
  const to = new Date();
  const from = new Date(to.getTime() - days * 86400 * 1000);
  return `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
}

function describe(error) {
  if (error.status === 401) return "Not signed in: paste an admin token above.";
  if (error.status === 403) return "Admins only: this account may not see the dashboard.";
  return `Could not load: ${error.message}`;
}

function needAuth(error) {
  if (error.status === 401 || error.status === 403) {
    $("auth").hidden = false;
    $("auth-error").textContent = describe(error);
    return true;
  }
  return false;
}

async function loadHealth() {
  setState("health-state", "Loading…");
  const tbody = $("health").querySelector("tbody");
  try {
    const health = await api("/observability/health", [503]); // a down stack answers 503
    tbody.replaceChildren();
    $("overall").textContent = health.status;
    $("overall").className = `pill ${health.status}`;
    for (const [name, component] of Object.entries(health.components)) {
      const row = document.createElement("tr");
      cell(row, name + (component.required ? " *" : ""));
      const status = cell(row, component.status);
      status.className = `pill ${component.status}`;
      cell(row, msText(component.latency_ms), true);
      cell(row, text(component.detail));
      tbody.appendChild(row);
    }
    setState("health-state", Object.keys(health.components).length ? "" : "No health checks are enabled.");
  } catch (error) {
    needAuth(error);
    setState("health-state", describe(error), true);
  }
}

function fillUsage(tableId, stateId, rows, key) {
  const tbody = $(tableId).querySelector("tbody");
  tbody.replaceChildren();
  rows.sort((a, b) => (b.cost || 0) - (a.cost || 0));
  for (const usage of rows) {
    const row = document.createElement("tr");
    cell(row, text(usage[key]));
    cell(row, text(usage.requests), true);
    cell(row, `${text(usage.prompt_tokens)} / ${text(usage.completion_tokens)}`, true);
    cell(row, money(usage.cost), true);
    cell(row, text(usage.errors), true);
    cell(row, msText(usage.p95_latency_ms), true);
    tbody.appendChild(row);
  }
  setState(stateId, rows.length ? "" : "No calls in this range.");
}

async function loadUsage() {
  for (const id of ["users-state", "models-state", "chart-state"]) setState(id, "Loading…");
  try {
    const [users, models, days] = await Promise.all([
      api(`/observability/usage?group_by=user&${range()}`),
      api(`/observability/usage?group_by=model&${range()}`),
      api(`/observability/usage?group_by=day&${range()}`),
    ]);
    fillUsage("users", "users-state", users.data, "user");
    fillUsage("models", "models-state", models.data, "model");
    drawChart(everyDay(days.data));
  } catch (error) {
    needAuth(error);
    for (const id of ["users-state", "models-state", "chart-state"]) setState(id, describe(error), true);
  }
}

// One entry per day of the chosen range, zero where the ledger has none.
function everyDay(rows) {
  const byDay = Object.fromEntries(rows.map((row) => [row.day, row]));
  const days = [];
  const count = Number($("range").value);
  for (let i = count - 1; i >= 0; i--) {
    const day = new Date(Date.now() - i * 86400 * 1000).toISOString().slice(0, 10);
    days.push(byDay[day] || { day, cost: 0, requests: 0, errors: 0 });
  }
  return rows.length ? days : [];
}

function svg(name, attributes, content) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (content !== undefined) element.textContent = content;
  return element;
}

function drawChart(days) {
  const chart = $("chart");
  chart.replaceChildren();
  if (!days.length) {
    setState("chart-state", "No calls in this range.");
    $("totals").textContent = "";
    return;
  }
  const width = 720, height = 220, left = 40, bottom = 24, top = 10;
  const maxCost = Math.max(...days.map((d) => d.cost || 0), 1e-9);
  const maxCalls = Math.max(...days.map((d) => d.requests || 0), 1);
  const step = (width - left) / days.length;
  const points = [];
  days.forEach((day, i) => {
    const barHeight = ((day.cost || 0) / maxCost) * (height - bottom - top);
    const x = left + i * step + step * 0.15;
    const bar = svg("rect", { class: "bar", x, y: height - bottom - barHeight, width: step * 0.7, height: barHeight });
    bar.appendChild(svg("title", {}, `${day.day}: ${money(day.cost)}, ${day.requests} calls`));
    chart.appendChild(bar);
    if (days.length <= 31 || i % Math.ceil(days.length / 15) === 0) {
      chart.appendChild(svg("text", { x: x, y: height - 8 }, day.day.slice(5)));
    }
    points.push(`${x + step * 0.35},${height - bottom - ((day.requests || 0) / maxCalls) * (height - bottom - top)}`);
  });
  chart.appendChild(svg("polyline", { class: "calls", points: points.join(" ") }));
  chart.appendChild(svg("text", { x: 0, y: top + 4 }, money(maxCost)));
  const total = days.reduce((sum, d) => ({ cost: sum.cost + (d.cost || 0), calls: sum.calls + (d.requests || 0),
    errors: sum.errors + (d.errors || 0) }), { cost: 0, calls: 0, errors: 0 });
  $("totals").textContent = `${total.calls} calls, ${total.errors} errors, ${money(total.cost)} in this range (bars: cost; line: calls).`;
  setState("chart-state", "");
}

async function loadErrors() {
  setState("errors-state", "Loading…");
  const tbody = $("errors").querySelector("tbody");
  try {
    const calls = await api("/observability/calls?outcome=error&limit=200");
    tbody.replaceChildren();
    for (const call of calls.data.slice(0, 20)) {
      const row = document.createElement("tr");
      cell(row, new Date(call.started_at).toLocaleString());
      cell(row, text(call.actor_id));
      cell(row, text(call.model));
      cell(row, text(call.outcome));
      cell(row, text(call.error));
      tbody.appendChild(row);
    }
    setState("errors-state", calls.data.length ? "" : "No failed calls recently.");
  } catch (error) {
    needAuth(error);
    setState("errors-state", describe(error), true);
  }
}

let socket = null;
function connectLive() {
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const current = new WebSocket(`${scheme}://${location.host}/ws/events`);
  socket = current;
  const state = $("live-state");
  const show = (label, kind) => {
    if (socket !== current) return; // a replaced socket's late events must not repaint the state
    state.textContent = label;
    state.className = `pill ${kind}`;
  };
  current.onopen = () => {
    if (token()) current.send(JSON.stringify({ type: "auth", token: token() }));
    show("connecting", "");
  };
  current.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "hello" || event.type === "ready") show("live", "up");
    if (event.type !== "call") return;
    const item = document.createElement("li");
    item.className = event.outcome === "ok" ? "" : "failed";
    item.textContent = `${new Date(event.started_at * 1000).toLocaleTimeString()} ${event.actor_id} → ${event.model}: ` +
      `${event.outcome}, ${event.prompt_tokens}+${event.completion_tokens} tokens, ${money(event.cost)}, ` +
      `${(event.duration * 1000).toFixed(0)} ms`;
    const list = $("live");
    list.prepend(item);
    while (list.children.length > 50) list.lastChild.remove();
  };
  current.onclose = (event) => show(event.code === 1008 ? "not allowed" : "disconnected", "down");
}

const PANEL_STATES = ["health-state", "users-state", "models-state", "chart-state", "errors-state"];

async function refresh() {
  let me;
  try {
    me = await api("/me");
  } catch (error) {
    needAuth(error);
    for (const id of PANEL_STATES) setState(id, describe(error), true);
    return;
  }
  $("who").textContent = `signed in as ${me.user} (${me.role})`;
  if (me.role !== "admin") {
    const refusal = new HttpError(403, "admins only");
    needAuth(refusal);
    for (const id of PANEL_STATES) setState(id, describe(refusal), true);
    $("live-state").textContent = "not allowed";
    $("live-state").className = "pill down";
    return;
  }
  $("auth").hidden = true;
  await Promise.all([loadHealth(), loadUsage(), loadErrors()]);
  connectLive();
}

document.addEventListener("DOMContentLoaded", () => {
  $("controls").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("auth").hidden = true;
    refresh();
  });
  refresh();
});
