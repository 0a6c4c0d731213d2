// The operator dashboard. Vanilla JS, same-origin only. Every server string reaches the DOM as a
// text node or an attribute value, never as markup: nothing in this file assigns HTML.
"use strict";

(() => {
  const TOKEN_KEY = "clinic-dashboard-token";
  const REFRESH_MS = 2000;
  const STALE_HEARTBEAT_S = 30; // a running job's ledger heartbeat older than this is flagged
  const SOURCES = {
    queues: "/api/v1/queue/info",
    workers: "/api/v1/workers",
    running: "/api/v1/queue/jobs?status=running&limit=50",
    failures: "/api/v1/queue/failed?limit=20",
    batches: "/api/v1/batches?limit=10",
    alarms: "/api/v1/queue/health",
  };

  const $ = (selector) => document.querySelector(selector);
  let timer = null;
  let inFlight = false;
  let again = false;
  let session = 0; // bumped when the token goes away, so late answers are dropped
  let serverOffsetMs = 0; // server clock minus browser clock, from the Date header

  class AuthError extends Error {}

  // --- DOM helpers -------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, String(value)); // names are ours; values are inert text
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child)); // a string becomes a Text node
    }
    return node;
  }

  function badge(text, kind) {
    return el("span", { class: `badge ${kind || ""}` }, text);
  }

  function bar(done, total) {
    if (!total) return el("span", { class: "progress" }, el("progress", { "aria-label": "progress" }), " —");
    const value = Math.min(done, total);
    const percent = Math.floor((100 * value) / total);
    return el(
      "span",
      { class: "progress" },
      el("progress", { max: total, value, "aria-label": `${value} of ${total}` }),
      ` ${value} / ${total} (${percent}%)`,
    );
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.max(0, seconds);
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function since(timestamp) {
    if (!timestamp) return null;
    return (Date.now() + serverOffsetMs - Date.parse(timestamp)) / 1000;
  }

  function when(timestamp) {
    return timestamp ? new Date(timestamp).toLocaleString() : "—";
  }

  function detailOf(body, status) {
    const detail = body && body.detail;
    // a problem+json's `errors` (request validation) say more than its one-line `detail`
    if (body && Array.isArray(body.errors)) {
      return body.errors.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
    }
    if (typeof detail === "string") return detail;
    return `HTTP ${status}`;
  }

  // Rows are keyed (job id, worker id...): a row whose content did not change keeps its nodes, so a
  // refresh never swaps a button out from under the pointer.
  function syncRows(tbody, items, { key, cells, actions, rowClass, empty }) {
    const columns = tbody.closest("table").tHead.rows[0].cells.length;
    if (!items.length) {
      tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
      return;
    }
    const existing = new Map();
    for (const row of tbody.rows) if (row.dataset.key !== undefined) existing.set(row.dataset.key, row);
    const rows = items.map((item) => {
      const id = String(key(item));
      let row = existing.get(id);
      const content = cells(item);
      if (!row) {
        row = el("tr", { dataset: { key: id } });
        for (let i = 0; i < content.length; i++) row.append(el("td"));
        if (actions) row.append(el("td", { class: "actions" }, ...actions(item)));
      }
      content.forEach((value, i) => {
        const node = value instanceof Node ? value : document.createTextNode(value ?? "—");
        const signature = value instanceof Node ? node.outerHTML : `text:${node.data}`;
        const cell = row.cells[i];
        if (cell.dataset.signature !== signature) {
          cell.replaceChildren(node);
          cell.dataset.signature = signature;
        }
      });
      row.className = rowClass ? rowClass(item) : "";
      return row;
    });
    const same = rows.length === tbody.rows.length && rows.every((row, i) => tbody.rows[i] === row);
    if (!same) tbody.replaceChildren(...rows);
  }

  function sectionError(name, message) {
    const tbody = $(`#${name} tbody`);
    if (!tbody) return; // the alarms banner: it shows when there are alarms, not when it cannot load
    const columns = tbody.closest("table").tHead.rows[0].cells.length;
    tbody.replaceChildren(el("tr", { class: "error" }, el("td", { colspan: columns }, message)));
  }

  function button(action, jobId, label) {
    return el("button", { type: "button", dataset: { action, jobId } }, label);
  }

  // --- the panels ---------------------------------------------------------------------------------

  function renderQueues(queues) {
    syncRows($("#queues tbody"), queues, {
      key: (q) => q.name,
      empty: "No queues.",
      rowClass: (q) => (q.failed ? "warn" : ""),
      cells: (q) => [
        q.name,
        String(q.length),
        String(q.deferred),
        String(q.in_progress),
        q.failed ? badge(String(q.failed), "bad") : "0",
        String(q.finished),
        String(q.cancelled),
        String(q.interrupted),
        age(q.oldest_queued_age_s),
      ],
    });
  }

  function renderWorkers(body) {
    const summary = $("#workers .summary");
    $("#api-version").textContent = `API ${body.api_version}`;
    const parts = [
      `API version ${body.api_version}`,
      `worker versions: ${body.versions.join(", ") || "none"}`,
      `allowed: ${body.allowed_versions.join(", ") || "none"}`,
    ];
    summary.replaceChildren(
      body.skew ? badge("version skew", "bad") : badge("versions agree", "ok"),
      ` ${parts.join(" · ")}`,
    );
    summary.className = `summary${body.skew ? " skew" : ""}`;
    syncRows($("#workers tbody"), body.items, {
      key: (v) => v.worker.worker_id,
      empty: "No live workers.",
      rowClass: (v) => {
        const s = v.worker.state;
        if (v.fenced || s === "fenced" || s === "mismatch") return "bad";
        return v.version_skew || s !== "ok" ? "warn" : "";
      },
      cells: (v) => {
        const w = v.worker;
        const kind = { ok: "ok", draining: "warn", waiting: "warn" }[w.state] || "bad";
        const c = w.counters || {};
        return [
          el("span", { title: w.worker_id, class: "mono" }, w.worker_id),
          `${w.hostname} · ${w.pid}`,
          v.version_skew ? el("span", {}, w.version, " ", badge("≠ API", "bad")) : w.version,
          w.queue,
          el("span", {}, badge(w.state, kind), w.reason ? el("small", { class: "reason" }, w.reason) : null),
          el("span", { title: w.current_jobs.join("\n") }, `${v.leases} / ${w.max_jobs}`),
          `${c.complete ?? 0} · ${c.failed ?? 0} · ${c.retried ?? 0}`,
          w.rss_mb === null || w.rss_mb === undefined ? "—" : `${Math.round(w.rss_mb)} MB`,
          v.beat_overdue ? badge(`${age(v.heartbeat_age_s)}: overdue`, "bad") : age(v.heartbeat_age_s),
        ];
      },
    });
  }

  function renderRunning(jobs) {
    syncRows($("#running tbody"), jobs, {
      key: (j) => j.job_id,
      empty: "No running jobs.",
      rowClass: (j) => ((since(j.heartbeat_at) ?? 0) > STALE_HEARTBEAT_S ? "warn" : ""),
      actions: (j) => [button("cancel", j.job_id, "Cancel")],
      cells: (j) => {
        const beat = since(j.heartbeat_at);
        return [
          el("span", { class: "mono", title: j.job_id }, j.job_id),
          j.task,
          String(j.attempt),
          `${j.worker_id ?? "—"} · ${j.version ?? "—"}`,
          bar(j.progress.done, j.progress.total),
          age(since(j.started_at)),
          beat !== null && beat > STALE_HEARTBEAT_S ? badge(`${age(beat)} stale`, "bad") : age(beat),
        ];
      },
    });
  }

  // The health model (GET /api/v1/queue/health): every check that is not ok, and the alarms of the
  // last hour with their jobs, in one banner above everything else.
  function renderHealth(body) {
    const problems = (body.checks || []).filter((c) => c.level !== "ok" && c.name !== "alarms");
    const alarms = body.alarms || [];
    $("#alarms ul").replaceChildren(
      ...problems.map((c) =>
        el("li", { dataset: { check: c.name } }, badge(c.name, c.level === "down" ? "bad" : "warn"), ` ${c.message}`),
      ),
      ...alarms.map((a) =>
        el(
          "li",
          { dataset: { kind: a.kind } },
          badge(a.kind, "bad"),
          ` ${a.message} Jobs: `,
          el("span", { class: "mono" }, a.job_ids.join(", ")),
          ` (last ${when(a.last_at)}).`,
        ),
      ),
    );
    $("#alarms h2").textContent = `Health: ${body.status}`;
    $("#alarms").hidden = !(problems.length || alarms.length);
  }

  function renderFailures(body) {
    const counts = Object.entries(body.by_category).map(([category, n]) => `${category} ${n}`);
    $("#failures .summary").replaceChildren(
      badge(`${body.total} failed`, body.total ? "bad" : "ok"),
      ` ${counts.join(" · ")}`,
    );
    syncRows($("#failures tbody"), body.items, {
      key: (j) => j.job_id,
      empty: "No failed jobs.",
      actions: (j) => [button("retry", j.job_id, "Retry"), " ", button("cancel", j.job_id, "Cancel")],
      cells: (j) => [
        el("span", { class: "mono", title: j.job_id }, j.job_id),
        j.task,
        badge(j.error_category ?? "unknown", j.error_category === "transient" ? "warn" : "bad"),
        el("span", { class: "message", title: j.error_message ?? "" }, j.error_message ?? "—"),
        String(j.attempt),
        el("span", { class: "mono" }, j.worker_id ?? "—"),
        when(j.finished_at),
      ],
    });
  }

  function renderBatches(batches) {
    syncRows($("#batches tbody"), batches, {
      key: (b) => b.batch_id,
      empty: "No imports yet.",
      rowClass: (b) => (b.failed ? "warn" : ""),
      cells: (b) => [
        el("span", { title: b.batch_id }, b.filename),
        when(b.created_at),
        bar(b.done + b.failed, b.total),
        String(b.done),
        b.failed ? badge(String(b.failed), "bad") : "0",
        String(b.pending),
        String(b.rejected),
        b.finished ? badge("finished", "ok") : badge(b.done + b.failed ? "running" : "waiting", "warn"),
      ],
    });
  }

  const RENDER = {
    // lists answer one page: {items, next_cursor, total}; the first page is what the dashboard shows
    queues: (page) => renderQueues(page.items),
    workers: renderWorkers,
    running: (page) => renderRunning(page.items),
    failures: renderFailures,
    batches: (page) => renderBatches(page.items),
    alarms: renderHealth,
  };

  // --- talking to the API ------------------------------------------------------------------------

  async function api(path, method = "GET") {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new AuthError("");
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(`The token was refused (${response.status}: ${detailOf(body, response.status)}).`);
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) serverOffsetMs = date + 500 - Date.now(); // Date has 1 s resolution
    return { ok: response.ok, status: response.status, body };
  }

  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    clearTimeout(timer);
    timer = null;
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    inFlight = true;
    const mine = session;
    try {
      const answers = await Promise.all(
        Object.entries(SOURCES).map(async ([name, path]) => [name, await api(path)]),
      );
      if (mine !== session) return;
      for (const [name, answer] of answers) {
        if (answer.ok) RENDER[name](answer.body);
        else sectionError(name, `Cannot load: ${detailOf(answer.body, answer.status)}`);
      }
      $("#connection").hidden = true;
      $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (mine !== session) return;
      if (error instanceof AuthError) askToken(error.message);
      else showConnectionError(error);
    } finally {
      inFlight = false;
      if (again) {
        again = false;
        refresh();
      } else if (mine === session) {
        timer = setTimeout(tick, REFRESH_MS);
      }
    }
  }

  function tick() {
    if (document.visibilityState === "hidden") timer = setTimeout(tick, REFRESH_MS);
    else refresh();
  }

  function showConnectionError(error) {
    const banner = $("#connection");
    banner.textContent = `API unreachable (${error.message || error}); retrying every ${REFRESH_MS / 1000} s.`;
    banner.hidden = false;
  }

  function notice(message, kind) {
    const box = $("#notice");
    box.textContent = message;
    box.className = `banner ${kind}`;
    box.hidden = false;
  }

  async function act(target) {
    const { action, jobId } = target.dataset;
    target.disabled = true;
    try {
      const answer = await api(`/api/v1/queue/job/${encodeURIComponent(jobId)}/${action}`, "POST");
      if (!answer.ok) notice(`${action} ${jobId}: ${detailOf(answer.body, answer.status)}`, "bad");
      else if (action === "retry") {
        notice(`Retried ${jobId} as ${answer.body.job_id} (${answer.body.status}).`, "ok");
      } else notice(`Cancelled ${jobId}: now ${answer.body.status}.`, "ok");
    } catch (error) {
      if (error instanceof AuthError) return askToken(error.message);
      notice(`${action} ${jobId}: ${error.message || error}`, "bad");
    } finally {
      target.disabled = false;
    }
    refresh();
  }

  // --- token ---------------------------------------------------------------------------------------

  function askToken(message) {
    session += 1;
    clearTimeout(timer);
    timer = null;
    sessionStorage.removeItem(TOKEN_KEY);
    for (const tbody of document.querySelectorAll("#dashboard tbody")) tbody.replaceChildren();
    for (const p of document.querySelectorAll("#dashboard .summary, #notice")) p.replaceChildren();
    $("#notice").hidden = true;
    $("#dashboard").hidden = true;
    $("#sign-out").hidden = true;
    $("#api-version").textContent = "";
    $("#updated").textContent = "";
    $("#login-message").textContent = message || "";
    $("#login").hidden = false;
    $("#token").value = "";
    $("#token").focus();
  }

  function open() {
    $("#login").hidden = true;
    $("#dashboard").hidden = false;
    $("#sign-out").hidden = false;
    refresh();
  }

  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    open();
  });
  $("#sign-out").addEventListener("click", () => askToken(""));
  $("#dashboard").addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    if (target && !target.disabled) act(target);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !$("#dashboard").hidden) refresh();
  });

  if (sessionStorage.getItem(TOKEN_KEY)) open();
  else askToken("");
})();
