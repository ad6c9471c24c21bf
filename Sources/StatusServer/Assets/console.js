// NocoBridge operator console. Plain JavaScript, no build step, nothing fetched from other
// origins. Every value shown comes from users' records, so nothing here parses markup:
// elements are created with the DOM API and values are set as text (textContent /
// createTextNode), never as HTML, and no URL is ever taken from data. The server's
// Content-Security-Policy allows only this file and console.css besides.
"use strict";

(function () {
  const TOKEN_KEY = "nocobridge.token";
  const REFRESH_MS = 5000;
  const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0969da", "#57606a"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    tab: "overview",
    mode: null,
    tables: [],
    selected: new Set(),
    openPayloads: new Set(),
    timer: null,
    busy: false,
    again: false,
  };

  // ---- DOM helpers: text only ----

  function $(id) { return document.getElementById(id); }

  /** Creates an element; `attrs` takes only fixed attribute names, `children` are nodes or text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = String(value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (/^(id|type|title|colspan|value|max|aria-label|for)$/.test(name)) node.setAttribute(name, String(value));
      else throw new Error("attribute not allowed: " + name);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function show(id, visible) { $(id).hidden = !visible; }

  function message(text, kind) {
    const m = $("message");
    m.textContent = text || "";
    m.className = "message " + (kind || "");
    m.hidden = !text;
  }

  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function number(n, digits) {
    if (n === null || n === undefined) return "–";
    return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function shown(value) { return value === null || value === undefined ? "null" : String(value); }

  // ---- API ----

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  class ApiError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  async function api(path, body) {
    const headers = { "Accept": "application/json" };
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const init = { headers, cache: "no-store", credentials: "omit", redirect: "error", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The token was not accepted.");
      throw new ApiError(401, "unauthorized");
    }
    if (!response.ok) throw new ApiError(response.status, (data && data.error) || ("HTTP " + response.status));
    return data;
  }

  function query(params) {
    const parts = [];
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    }
    return parts.length ? "?" + parts.join("&") : "";
  }

  // ---- sign-in ----

  function showLogin(reason) {
    stopRefresh();
    for (const s of document.querySelectorAll("section.panel")) s.hidden = true;
    show("login", true);
    show("forget", false);
    message(reason || "", reason ? "error" : "");
    $("token").focus();
  }

  function signIn() {
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    show("login", false);
    message("");
    start();
  }

  // ---- tabs and refresh ----

  function selectTab(name) {
    state.tab = name;
    for (const b of document.querySelectorAll("#tabs .tab")) b.classList.toggle("active", b.dataset.tab === name);
    for (const s of document.querySelectorAll("section.panel")) s.hidden = s.id !== "tab-" + name;
    refresh();
  }

  function stopRefresh() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }

  async function refresh() {
    // One refresh at a time; one asked for meanwhile (a tab switch, a search) runs right after.
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    try {
      await ({ overview: loadOverview, conflicts: loadConflicts, "dead-letters": loadDeadLetters,
               history: loadHistory, resync: loadResync })[state.tab]();
      $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
      if ($("message").classList.contains("stale")) message("");
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) message("Could not refresh: " + e.message, "error stale");
    } finally {
      state.busy = false;
      if (state.again) { state.again = false; refresh(); }
    }
  }

  async function start() {
    let mode;
    try { mode = await fetch("/api/mode", { cache: "no-store", credentials: "omit" }).then((r) => r.json()); }
    catch (e) { message("The bridge does not answer: " + e.message, "error"); return; }
    state.mode = mode;
    $("version").textContent = "NocoBridge " + mode.version;
    if (!mode.readable) {
      show("closed", true);
      $("closed-reason").textContent = "Set STATUS_TOKEN on the bridge to use the console on a non-loopback address.";
      return;
    }
    if (mode.tokenRequired && !token()) { showLogin(); return; }
    show("forget", mode.tokenRequired);
    document.body.classList.toggle("read-only", !mode.actions);
    if (!mode.actions) message("Read-only: set STATUS_TOKEN on the bridge to retry, drop or resync from here.", "info");
    selectTab(state.tab);
    stopRefresh();
    state.timer = setInterval(refresh, REFRESH_MS);
  }

  // ---- overview ----

  function fillTableSelects(tables) {
    const names = [...new Set(tables.map((t) => t.table))];
    if (names.join("\n") === state.tables.join("\n")) return;
    state.tables = names;
    for (const select of document.querySelectorAll("select.table-select")) {
      const current = select.value;
      clear(select).appendChild(el("option", { value: "" }, "all tables"));
      for (const n of names) select.appendChild(el("option", { value: n }, n));
      select.value = names.includes(current) ? current : "";
    }
  }

  async function loadOverview() {
    const o = await api("/api/overview");
    fillTableSelects(o.tables);
    const status = $("status");
    status.textContent = o.status;
    status.className = "badge " + o.status;
    $("role").textContent = o.role;
    $("role").className = "badge role-" + o.role;

    const summary = clear($("summary"));
    const item = (label, value, cls) => el("div", { class: "figure " + (cls || "") }, el("span", { class: "label" }, label), el("span", { class: "value" }, value));
    summary.appendChild(item("PostgreSQL", o.postgres ? "up" : "down", o.postgres ? "good" : "bad"));
    summary.appendChild(item("MongoDB", o.mongo ? "up" : "down", o.mongo ? "good" : "bad"));
    summary.appendChild(item("This instance", o.instance + ": " + o.role + " (" + number(o.leases) + (o.leases === 1 ? " lease)" : " leases)")));
    summary.appendChild(item("Instances", o.instances.map((i) => i.id + (i.host ? "@" + i.host : "") + " " + i.units.length).join(", ") || "–"));
    summary.appendChild(item("Capture", o.capture));
    if (o.slot) summary.appendChild(item("Slot WAL retained", formatBytes(o.slot.retainedWalBytes) + " (" + o.slot.walStatus + ")", o.slot.walStatus === "lost" ? "bad" : ""));
    const waiting = o.tables.filter((t) => t.direction === o.tables[0].direction);
    const dead = waiting.reduce((n, t) => n + (t.deadLettersWaiting || 0), 0);
    const recent = waiting.reduce((n, t) => n + (t.conflictsLastDay || 0), 0);
    summary.appendChild(item("Dead letters waiting", number(dead), dead > 0 ? "bad" : ""));
    summary.appendChild(item("Conflicts, last 24 h", number(recent)));
    summary.appendChild(item("Resync", o.resyncRunning ? "running" : "idle"));
    summary.appendChild(item("History", o.historyDays > 0 ? "kept " + o.historyDays + " days" : "off"));

    const body = clear($("overview-table").tBodies[0]);
    for (const t of o.tables) {
      body.appendChild(el("tr", {},
        el("td", {}, t.direction),
        el("td", {}, t.table, t.collection !== t.table.split(".").pop() ? el("span", { class: "muted" }, " ⇄ " + t.collection) : null),
        el("td", {}, t.heldBy === null ? "–" : t.heldBy === o.instance ? t.heldBy + " (this)" : t.heldBy),
        t.heldBy !== null && t.heldBy !== o.instance
          ? el("td", { class: "muted" }, "elsewhere")
          : el("td", { class: t.running ? "good" : o.role === "standby" ? "" : "bad" }, t.running ? "running" : o.role === "standby" ? "standby" : "stopped"),
        el("td", {}, t.lagMs === null ? "–" : number(t.lagMs) + " ms"),
        el("td", {}, number(t.backlog)),
        el("td", {}, t.throughput === null ? "–" : number(t.throughput, 1) + "/s"),
        el("td", {}, number(t.applied)),
        el("td", {}, number(t.conflicts)),
        el("td", { class: t.deadLettersSent > 0 ? "bad" : "" }, number(t.deadLettersSent)),
        el("td", { class: "error-text" }, t.lastError || "")));
    }

    // Only the direction/table pairs that moved at all in the hour get a line.
    const active = (k) => [...o.series.lag[k], ...o.series.throughput[k]].some((v) => v !== null && v > 0);
    const keys = Object.keys(o.series.lag).filter(active);
    drawChart($("chart-lag"), o.series.times, keys.map((k) => o.series.lag[k]), keys, "s");
    drawChart($("chart-throughput"), o.series.times, keys.map((k) => o.series.throughput[k]), keys, "/s");
    const legend = clear($("legend"));
    keys.forEach((k, i) => {
      const swatch = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
      swatch.appendChild(svg("rect", { width: 12, height: 12, rx: 2, fill: PALETTE[i % PALETTE.length] }));
      legend.appendChild(el("li", {}, swatch, " " + k));
    });
    if (!keys.length) legend.appendChild(el("li", { class: "muted" }, "No activity in the samples so far (one every " + o.series.intervalSeconds + " s, an hour kept)."));
  }

  function formatBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Number(n), u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return number(v, 1) + " " + units[u];
  }

  /** Draws lines into an SVG with DOM calls; values are numbers or null (no sample). The
   *  time axis spans the samples kept (at most the last hour). */
  function drawChart(target, times, lines, names, unit) {
    clear(target);
    const W = 640, H = 200, L = 52, R = 12, T = 10, B = 24;
    const now = Date.now() / 1000;
    const x1 = Math.max(now, times.length ? times[times.length - 1] : now);
    const x0 = Math.min(x1 - 60, Math.max(x1 - 3600, times.length ? times[0] : x1 - 60));
    let ymax = 0;
    for (const line of lines) for (const v of line) if (v !== null && v > ymax) ymax = v;
    ymax = ymax > 0 ? niceCeiling(ymax) : 1;
    const digits = ymax < 0.1 ? 3 : ymax < 1 ? 2 : ymax < 10 ? 1 : 0;
    const px = (t) => L + (t - x0) / (x1 - x0) * (W - L - R);
    const py = (v) => T + (1 - v / ymax) * (H - T - B);
    target.appendChild(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "plot" }));
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4, y = py(v);
      target.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" });
      label.textContent = number(v, digits) + (i === 4 ? " " + unit : "");
      target.appendChild(label);
    }
    for (let i = 0; i <= 4; i++) {
      const t = x0 + (x1 - x0) * i / 4, ago = Math.round(x1 - t);
      const label = svg("text", { x: px(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis" });
      label.textContent = ago === 0 ? "now" : ago >= 120 ? "-" + Math.round(ago / 60) + " min" : "-" + ago + " s";
      target.appendChild(label);
    }
    lines.forEach((values, i) => {
      const color = PALETTE[names.indexOf(names[i]) % PALETTE.length];
      let points = [];
      const flush = () => {
        let mark = null;
        if (points.length > 1) mark = svg("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 1.6 });
        else if (points.length === 1) { const [x, y] = points[0].split(","); mark = svg("circle", { cx: x, cy: y, r: 2, fill: color }); }
        if (mark) {
          const title = svg("title", {});
          title.textContent = names[i];
          mark.appendChild(title);
          target.appendChild(mark);
        }
        points = [];
      };
      values.forEach((v, j) => {
        if (v === null || times[j] < x0) { flush(); return; }
        points.push(px(times[j]).toFixed(1) + "," + py(v).toFixed(1));
      });
      flush();
    });
  }

  function niceCeiling(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    // Multiples whose quarters (the grid lines) are round numbers too.
    for (const m of [1, 2, 4, 8, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // ---- conflicts ----

  async function loadConflicts() {
    if (!state.tables.length) fillTableSelects((await api("/api/overview")).tables);
    const data = await api("/api/conflicts" + query({ table: $("conflicts-table").value, key: $("conflicts-key").value.trim() }));
    const list = clear($("conflicts-list"));
    if (!data.conflicts.length) list.appendChild(el("p", { class: "muted" }, "No conflicts recorded."));
    for (const c of data.conflicts) list.appendChild(conflictCard(c));
  }

  function conflictCard(c) {
    const differing = new Set(c.differing);
    const fields = new Map();
    for (const [name, value] of c.nocodb.fields) fields.set(name, { nocodb: value });
    for (const [name, value] of c.mongo.fields) fields.set(name, Object.assign(fields.get(name) || {}, { mongo: value }));
    const rows = [...fields.keys()].sort().map((name) => {
      const f = fields.get(name);
      return el("tr", { class: differing.has(name) ? "differs" : "" },
        el("th", { class: "field" }, name),
        el("td", { class: "value" }, c.nocodb.deleted ? el("span", { class: "deleted" }, "(deleted)") : shown(f.nocodb)),
        el("td", { class: "value" }, c.mongo.deleted ? el("span", { class: "deleted" }, "(deleted)") : shown(f.mongo)));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "both versions deleted")));
    const head = (name, label, v) => el("th", { class: c.winner === name ? "winner" : "" }, label + (c.winner === name ? " (winner)" : ""),
      el("div", { class: "muted" }, v.at ? time(v.at) : ""));
    return el("article", { class: "card conflict", dataset: { id: String(c.id) } },
      el("h3", {}, el("span", { class: "key" }, c.key), el("span", { class: "muted" }, " in " + c.table + " · " + time(c.at))),
      el("p", {}, "Winner ", el("strong", {}, c.winner), " by rule ", el("code", {}, c.rule),
        differing.size ? " · differing: " + [...differing].join(", ") : ""),
      el("table", { class: "versions" },
        el("thead", {}, el("tr", {}, el("th", {}, "Field"), head("nocodb", "NocoDB", c.nocodb), head("mongo", "MongoDB", c.mongo))),
        el("tbody", {}, rows)));
  }

  // ---- dead letters ----

  async function loadDeadLetters() {
    if (!state.tables.length) fillTableSelects((await api("/api/overview")).tables);
    const data = await api("/api/dead-letters" + query({ table: $("dead-letters-table").value, key: $("dead-letters-key").value.trim() }));
    const present = new Set(data.deadLetters.map((d) => d.id));
    for (const id of [...state.selected]) if (!present.has(id)) state.selected.delete(id);
    const body = clear($("dead-letters-table-view").tBodies[0]);
    if (!data.deadLetters.length) body.appendChild(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No dead letters.")));
    for (const d of data.deadLetters) {
      const box = el("input", { type: "checkbox", "aria-label": "select " + d.id, dataset: { id: String(d.id) } });
      box.checked = state.selected.has(d.id);
      box.addEventListener("change", () => { if (box.checked) state.selected.add(d.id); else state.selected.delete(d.id); });
      const retry = el("button", { type: "button", class: "action retry", dataset: { id: String(d.id) } }, "Retry");
      retry.addEventListener("click", () => act("/api/dead-letters/retry", { ids: [d.id] }, "Retry"));
      const drop = el("button", { type: "button", class: "action danger drop", dataset: { id: String(d.id) } }, "Drop");
      drop.addEventListener("click", () => { if (confirm("Drop dead letter " + d.id + "? Its change will not cross.")) act("/api/dead-letters/drop", { ids: [d.id] }, "Drop"); });
      const details = el("details", {}, el("summary", {}, "payload"), el("pre", { class: "payload" }, d.payload === null ? "(none)" : d.payload));
      details.open = state.openPayloads.has(d.id);
      details.addEventListener("toggle", () => { if (details.open) state.openPayloads.add(d.id); else state.openPayloads.delete(d.id); });
      body.appendChild(el("tr", { class: "dead-letter", dataset: { id: String(d.id) } },
        el("td", {}, box), el("td", {}, String(d.id)), el("td", {}, time(d.createdAt)), el("td", {}, d.table || d.source),
        el("td", {}, d.direction), el("td", { class: "key" }, d.key === null ? "–" : d.key), el("td", {}, d.field || "–"),
        el("td", { class: "error-text" }, d.error), el("td", {}, String(d.retries)),
        el("td", { class: "row-actions" }, retry, " ", drop)));
      body.appendChild(el("tr", { class: "payload-row", dataset: { id: String(d.id) } }, el("td", {}), el("td", { colspan: 9 }, details)));
    }
  }

  async function act(path, body, label) {
    if (!state.mode || !state.mode.actions) { message("Actions need STATUS_TOKEN on the bridge.", "error"); return; }
    try {
      const r = await api(path, body);
      if ("resolved" in r) message(label + ": resolved " + r.resolved + ", still failing " + r.failing, r.failing ? "error" : "ok");
      else if ("dropped" in r) message(label + ": dropped " + r.dropped, "ok");
      else message(label + ": started", "ok");
      if (body && body.ids) for (const id of body.ids) state.selected.delete(id);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) message(label + " failed: " + e.message, "error");
    }
    await refresh();
  }

  // ---- history ----

  async function loadHistory() {
    if (!state.tables.length) fillTableSelects((await api("/api/overview")).tables);
    const key = $("history-key").value.trim();
    const params = { table: $("history-table").value };
    if (key) params[$("history-prefix").checked ? "prefix" : "key"] = key;
    const data = await api("/api/history" + query(params));
    $("history-retention").textContent = data.historyDays > 0 ? "kept " + data.historyDays + " days" : "history is off (SYNC_HISTORY_DAYS=0)";
    const list = clear($("history-list"));
    if (!data.history.length) list.appendChild(el("p", { class: "muted" }, "No history for this search."));
    const table = el("table", { class: "history" },
      el("thead", {}, el("tr", {}, el("th", {}, "When"), el("th", {}, "Record"), el("th", {}, "Changed on"), el("th", {}, "By"),
        el("th", {}, "What"), el("th", {}, "Decision"))));
    const body = el("tbody", {});
    for (const h of data.history) {
      body.appendChild(el("tr", { class: "history-entry", dataset: { id: String(h.id) } },
        el("td", {}, time(h.at)),
        el("td", {}, el("span", { class: "key" }, h.key), el("div", { class: "muted" }, h.table)),
        el("td", {}, h.side, el("div", { class: "muted" }, h.via)),
        el("td", {}, h.by || "–"),
        el("td", {}, el("strong", {}, h.op), changes(h)),
        el("td", {}, h.decision, h.winner ? el("div", {}, "winner " + h.winner + " by " + h.rule) : null,
          h.note ? el("div", { class: "error-text" }, h.note) : null)));
    }
    table.appendChild(body);
    if (data.history.length) list.appendChild(table);
  }

  function changes(h) {
    const out = el("div", { class: "changes" });
    if (h.changed && typeof h.changed === "object") {
      for (const [field, pair] of Object.entries(h.changed).sort((a, b) => a[0] < b[0] ? -1 : 1)) {
        out.appendChild(el("div", {}, el("span", { class: "field" }, field), ": ", el("span", { class: "before" }, shown(pair[0])),
          " → ", el("span", { class: "after" }, shown(pair[1]))));
      }
    }
    if (h.discarded && typeof h.discarded === "object") {
      for (const [side, fields] of Object.entries(h.discarded)) {
        out.appendChild(el("div", { class: "muted" }, "overwritten on " + side + ": " +
          Object.entries(fields).map(([k, v]) => k + " = " + shown(v)).join(", ")));
      }
    }
    return out;
  }

  // ---- resync ----

  async function loadResync() {
    const data = await api("/api/resync");
    const body = clear($("resync-table").tBodies[0]);
    if (!data.tables.length) body.appendChild(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No resync has run yet.")));
    for (const r of data.tables) {
      const bar = el("progress", { max: Math.max(r.estimate, r.done, 1), value: r.done });
      const stateText = r.running ? "running" : r.interrupted ? "interrupted" : "finished " + time(r.finishedAt);
      body.appendChild(el("tr", { class: r.running ? "running" : "" },
        el("td", {}, r.table), el("td", {}, bar), el("td", {}, number(r.done) + " / " + number(r.estimate)),
        el("td", {}, number(r.rate) + "/s"), el("td", {}, time(r.startedAt)),
        el("td", { class: r.interrupted ? "bad" : "" }, stateText + (r.dryRun ? " (dry run)" : ""))));
    }
    $("resync-start").disabled = data.running || !(state.mode && state.mode.actions);
    const c = data.console;
    $("resync-console").textContent = c.running ? "started here " + time(c.startedAt) + ", running"
      : c.finishedAt ? (c.failed ? "last run from this console failed: " : "last run from this console: ") + c.result : "";
  }

  // ---- wiring ----

  function wire() {
    for (const b of document.querySelectorAll("#tabs .tab")) b.addEventListener("click", () => selectTab(b.dataset.tab));
    $("sign-in").addEventListener("click", signIn);
    $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
    $("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
    for (const name of ["conflicts", "dead-letters", "history"]) {
      $(name + "-search").addEventListener("click", refresh);
      $(name + "-key").addEventListener("keydown", (e) => { if (e.key === "Enter") refresh(); });
      $(name + "-table").addEventListener("change", refresh);
    }
    $("dead-letters-all").addEventListener("change", (e) => {
      for (const box of document.querySelectorAll("#dead-letters-table-view tbody input[type=checkbox]")) {
        box.checked = e.target.checked;
        const id = Number(box.dataset.id);
        if (box.checked) state.selected.add(id); else state.selected.delete(id);
      }
    });
    $("dead-letters-retry-selected").addEventListener("click", () => {
      if (!state.selected.size) { message("Select dead letters first.", "error"); return; }
      act("/api/dead-letters/retry", { ids: [...state.selected] }, "Retry");
    });
    $("dead-letters-drop-selected").addEventListener("click", () => {
      if (!state.selected.size) { message("Select dead letters first.", "error"); return; }
      if (confirm("Drop " + state.selected.size + " dead letters? Their changes will not cross.")) act("/api/dead-letters/drop", { ids: [...state.selected] }, "Drop");
    });
    $("resync-start").addEventListener("click", () => act("/api/resync", {}, "Resync"));
  }

  document.addEventListener("DOMContentLoaded", () => { wire(); start(); });
})();
