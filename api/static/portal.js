// The usage page: reads /portal/data with the token from the URL fragment and
// renders it. Numbers are shown exactly as the API sends them (decimal strings).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function tokenFromFragment() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    return params.get("token");
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    $("content").hidden = true;
    $("status").textContent = "";
  }

  function cell(row, text, attrs) {
    const td = document.createElement("td");
    td.textContent = text;
    for (const [k, v] of Object.entries(attrs || {})) td.setAttribute(k, v);
    row.appendChild(td);
    return td;
  }

  function money(amount, currency) {
    return amount + " " + currency;
  }

  function limitsText(limit) {
    if (!limit) return "none";
    const parts = [];
    if (limit.soft_limit !== null) parts.push("soft " + limit.soft_limit);
    if (limit.hard_limit !== null) parts.push("hard " + limit.hard_limit);
    if (limit.thresholds_percent.length) {
      parts.push("alerts at " + limit.thresholds_percent.map((p) => p + "%").join(", "));
    }
    return parts.join("; ");
  }

  function svgEl(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }

  function chart(usage, daily) {
    const W = 720, H = 240, L = 60, R = 16, T = 16, B = 32;
    const start = Date.parse(usage.period.start), end = Date.parse(usage.period.end);
    const asOf = Math.min(Date.parse(usage.as_of), end);
    const points = daily.map((d) => [Date.parse(d.day) + 86400000, Number(d.cumulative)]);
    const top = Math.max(Number(usage.projection), Number(usage.total), ...points.map((p) => p[1]), 1);
    const x = (t) => L + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * (W - L - R);
    const y = (v) => H - B - (v / top) * (H - T - B);
    const svg = svgEl("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `Spend ${money(usage.total, usage.currency)} so far, projected `
        + `${money(usage.projection, usage.currency)} at the end of the period`,
    });
    svgEl("title", {}, svg).textContent = "Spend over the billing period";
    svgEl("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }, svg);
    svgEl("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }, svg);
    for (const v of [0, top / 2, top]) {
      const label = svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg);
      label.textContent = v.toFixed(2);
    }
    const first = svgEl("text", { x: L, y: H - 10 }, svg);
    first.textContent = usage.period.start.slice(0, 10);
    const last = svgEl("text", { x: W - R, y: H - 10, "text-anchor": "end" }, svg);
    last.textContent = usage.period.end.slice(0, 10);
    // Final spend steps up day by day and stays flat until now; provisional usage
    // (open windows) lifts it to the total.
    const final = points.length ? points[points.length - 1][1] : 0;
    const path = [[start, 0], ...points, [asOf, final]]
      .map(([t, v]) => `${x(t)},${y(v)}`).join(" ");
    svgEl("polyline", { class: "final", points: path }, svg);
    const now = [x(asOf), y(Number(usage.total))];
    svgEl("line", { class: "provisional", x1: now[0], y1: y(final), x2: now[0], y2: now[1] }, svg);
    svgEl("polyline", {
      class: "projected",
      points: `${now[0]},${now[1]} ${x(end)},${y(Number(usage.projection))}`,
    }, svg);
    svgEl("circle", { class: "now", cx: now[0], cy: now[1], r: 4 }, svg);
    $("chart").replaceChildren(svg);
  }

  function render(data) {
    const u = data.usage;
    $("tenant").textContent = u.tenant;
    $("plan").textContent = u.plan;
    $("period").textContent = u.period.start.slice(0, 10) + " – " + u.period.end.slice(0, 10);
    $("total").textContent = money(u.total, u.currency);
    $("projection").textContent = money(u.projection, u.currency);
    $("as-of").textContent = u.as_of;
    $("note").textContent = "Note: " + u.note + ".";
    const body = $("meters").tBodies[0];
    body.replaceChildren();
    for (const m of u.meters) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = m.meter;
      row.appendChild(th);
      const at = (field) => ({ "data-meter": m.meter, "data-field": field });
      cell(row, m.usage === null ? "—" : m.usage, at("usage"));
      cell(row, m.final, at("final"));
      cell(row, m.provisional, at("provisional"));
      cell(row, m.total, at("total"));
      cell(row, m.projection, at("projection"));
      cell(row, limitsText(data.limits[m.meter]), at("limits"));
    }
    const invoices = $("invoices").tBodies[0];
    invoices.replaceChildren();
    for (const inv of data.invoices) {
      const row = invoices.insertRow();
      cell(row, inv.period.start.slice(0, 10) + " – " + inv.period.end.slice(0, 10));
      cell(row, inv.plan);
      cell(row, money(inv.total, inv.currency), { "data-invoice": inv.period.start });
      cell(row, inv.open ? "open" : "closed");
    }
    chart(u, data.daily_spend);
    $("status").textContent = "";
    $("error").hidden = true;
    $("content").hidden = false;
  }

  async function load(token) {
    $("portal").setAttribute("aria-busy", "true");
    $("status").textContent = "Loading…";
    try {
      const response = await fetch("/portal/data", {
        headers: { Authorization: "Bearer " + token },
        cache: "no-store",
      });
      const body = await response.json();
      if (!response.ok) {
        showError(response.status === 401
          ? "This link is not valid or has expired. Ask for a new one."
          : "Usage cannot be shown right now (" + body.message + ").");
        $("login").hidden = response.status !== 401;
        return;
      }
      render(body);
    } catch (err) {
      showError("Usage cannot be loaded: check your connection and try again.");
    } finally {
      $("portal").setAttribute("aria-busy", "false");
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) load(token);
  });

  function start() {
    const token = tokenFromFragment();
    if (token) {
      // Out of the address bar and history once read.
      history.replaceState(null, "", window.location.pathname + window.location.search);
      load(token);
    } else if ($("content").hidden) {
      $("status").textContent = "";
      $("login").hidden = false;
      $("portal").setAttribute("aria-busy", "false");
    }
  }

  // A new token in the fragment (an embedding page renewing it) is used at once.
  window.addEventListener("hashchange", start);
  start();
})();
