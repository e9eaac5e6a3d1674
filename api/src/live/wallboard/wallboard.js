// The wallboard: renders each update of the live state (server-sent events from
// /v1/live/events) without reloading. No framework, no network fetch but our own server.
"use strict";

const $ = (id) => document.getElementById(id);
const pct = (x) => (x === null || x === undefined ? "-" : (x * 100).toFixed(1) + " %");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function slaClass(x, s) {
  if (x === null || x === undefined) return "";
  return x < s.grave_floor ? "bad" : x < s.target ? "warn" : "ok";
}

function waitClass(w, s) {
  if (w === null || w === undefined) return "ok";
  return w >= s.threshold_s ? "bad" : w >= s.long_wait_s ? "warn" : "ok";
}

// The month's daily SLA as bars against the target line (inline SVG).
function chart(daily, s) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 310 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "daily");
  const y = (v) => 95 - v * 90;
  daily.forEach((d, i) => {
    if (d.sla === null) return;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", 2 + i * 10);
    r.setAttribute("width", 8);
    r.setAttribute("y", y(d.sla));
    r.setAttribute("height", 95 - y(d.sla));
    r.setAttribute("fill", d.sla < s.grave_floor ? "#ff6b6b" : d.sla < s.target ? "#ffc857" : "#5fd38d");
    const t = document.createElementNS(ns, "title");
    t.textContent = d.date + ": " + pct(d.sla);
    r.append(t);
    svg.append(r);
  });
  const line = document.createElementNS(ns, "line");
  line.setAttribute("x1", 0);
  line.setAttribute("x2", 310);
  line.setAttribute("y1", y(s.target));
  line.setAttribute("y2", y(s.target));
  line.setAttribute("stroke", "#9fb0c2");
  line.setAttribute("stroke-dasharray", "4 3");
  svg.append(line);
  return svg;
}

function render(s) {
  const o = s.operators;
  $("operators").textContent = o.logged_in + " / " + o.planned;
  $("operators").className = "big " + (o.logged_in < o.planned ? "warn" : "ok");
  $("busy").textContent = o.busy + " / " + o.paused;
  $("service").textContent = s.in_service ? "open" : "closed";
  $("seq").textContent = s.seq;
  $("threshold").textContent = s.threshold_s;
  $("target").textContent = pct(s.target);
  $("clock").textContent = new Date(s.at_ms).toLocaleString("it-IT", { timeZone: "Europe/Rome" });

  const alerts = $("alerts");
  alerts.replaceChildren();
  if (s.open_alerts.length === 0) alerts.append(el("li", { class: "none" }, "none"));
  for (const a of s.open_alerts) {
    alerts.append(el("li", { class: "alert " + a.severity, "data-rule": a.rule, "data-id": a.id },
      "[" + a.severity + "] " + a.rule + (a.line ? " (" + a.line + ")" : "") + ": " + a.message));
  }

  const lines = $("lines");
  lines.replaceChildren();
  for (const l of s.lines) {
    const w = l.longest_wait_s;
    const card = el("div", { class: "line", "data-line": l.line },
      el("h2", {}, l.line),
      el("div", { class: "grid" },
        el("div", {}, el("div", { class: "label" }, "waiting now"),
          el("div", { class: "big waiting" }, String(l.waiting))),
        el("div", {}, el("div", { class: "label" }, "longest wait"),
          el("div", { class: "big longest " + waitClass(w, s) }, w === null ? "-" : Math.floor(w) + " s")),
        el("div", {}, el("div", { class: "label" }, "last 15 min: offered / answered / abandoned / overflow"),
          el("div", {}, [l.last_15m.offered, l.last_15m.answered, l.last_15m.abandoned, l.last_15m.overflow].join(" / "))),
        el("div", {}, el("div", { class: "label" }, "SLA today"),
          el("div", { class: "big " + slaClass(l.today.sla, s) }, pct(l.today.sla))),
        el("div", {}, el("div", { class: "label" }, "SLA month to date"),
          el("div", { class: "big mtd " + slaClass(l.month_to_date.sla, s) }, pct(l.month_to_date.sla))),
        el("div", {}, el("div", { class: "label" }, "target"), el("div", { class: "big" }, pct(s.target)))),
      el("div", { class: "label" }, "daily SLA this month"),
      chart(l.daily, s));
    lines.append(card);
  }
}

// With tokens on, the live data need a read token: the page asks for it once and
// POSTs it in the Authorization header to /v1/live/session, which answers with an
// HttpOnly session cookie that the EventSource then sends (it cannot send a header).
// The token is not kept by the page.
async function start() {
  let r;
  try {
    r = await fetch("/v1/live", { credentials: "same-origin" });
  } catch (e) {
    setTimeout(start, 3000);
    return;
  }
  if (r.status === 401) {
    askToken("");
    return;
  }
  connect();
}

function askToken(message) {
  $("status").textContent = "token needed";
  $("status").className = "status down";
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  const r = await fetch("/v1/live/session", {
    method: "POST",
    headers: { Authorization: "Bearer " + token },
    credentials: "same-origin",
  });
  if (r.ok) {
    $("login").hidden = true;
    connect();
  } else {
    askToken(r.status === 403 ? "that token may not read" : "token refused");
  }
});

function connect() {
  const source = new EventSource("/v1/live/events");
  source.onmessage = (e) => {
    $("status").textContent = "live";
    $("status").className = "status live";
    render(JSON.parse(e.data));
  };
  source.onerror = () => {
    $("status").textContent = "reconnecting…";
    $("status").className = "status down";
    // Closed for good (a refusal: the session expired or the server restarted, or too
    // many streams): start over, which asks for the token again when needed.
    if (source.readyState === EventSource.CLOSED) setTimeout(start, 3000);
  };
}

start();
