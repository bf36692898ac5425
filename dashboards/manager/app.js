/* The manager pages (社区经理 / 物业经理; the grid centre reads the monthly report too):
   - service levels over time: tickets opened, acknowledged and fixed within SLA and the median
     times, per week or day, for all tickets, one severity or one team (GET /reports/sla), drawn
     with uPlot;
   - the monthly report of the three-party meeting: the three lists, downloads, publishing.
   Everything is loaded once after sign-in or when the manager asks for another range or month.
   After that, ticket changes arrive over Server-Sent Events (GET /api/v1/events) and the figures
   are asked for again "as of" the moment of the change: the page never polls. Every text from the
   server goes through textContent; nothing loads from another origin. */
"use strict";

(function () {
  const L = window.Linli;
  const $ = L.$;
  const el = L.el;
  const words = L.words(window.LINLI_MANAGER_I18N);
  const client = L.client("linli.manager.token");
  const SEVERITIES = ["P0", "P1", "P2", "P3"];
  const SLA_ROLES = ["admin", "manager"];
  const PUBLISH_ROLES = ["admin", "manager"];
  // Ticket changes that can move an SLA figure (comments, photos, notifications cannot).
  const COUNTED = ["opened", "acknowledged", "started", "held", "resumed", "resolved", "reopened", "cancelled",
    "severity_raised", "escalated", "member_changed"];
  const REFRESH_AFTER_MS = 800; // changes arriving together are counted with one request
  const CHART_HEIGHT = 190;
  const COLORS = { opened: "#17324d", ack: "#2e7d32", fix: "#c77700" };
  const DEFAULT_TZ = "Asia/Shanghai";

  let me = null; // GET /auth/me
  let siteId = null;
  let sla = null; // the latest GET /reports/sla answer shown
  let group = "all"; // "all" | "sev:P1" | "team:property"
  let charts = [];
  let refreshTimer = null;
  let latestChangeAt = 0; // ms: the latest ticket change heard of
  const months = new Map(); // "YYYY-MM" -> the monthly report as loaded (or as published)
  let month = null; // the month shown

  // ------------------------------------------------------------ words

  function t(key, params) {
    let text = words.t(key);
    for (const [name, value] of Object.entries(params || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  function timezone() {
    return (sla && sla.timezone) || (months.get(month) || {}).timezone || DEFAULT_TZ;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (!iso || Number.isNaN(date.getTime())) return t("none");
    return new Intl.DateTimeFormat(words.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: timezone(), month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
    }).format(date);
  }

  /* The local day "YYYY-MM-DD" of a moment in the site's time zone. */
  function localDay(ms) {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: timezone(), year: "numeric", month: "2-digit", day: "2-digit"
    }).formatToParts(new Date(ms));
    const get = (type) => (parts.find((p) => p.type === type) || {}).value;
    return get("year") + "-" + get("month") + "-" + get("day");
  }

  function pct(value) {
    return value === null || value === undefined ? t("none") : t("percent", { x: value });
  }

  function duration(minutes) {
    if (minutes === null || minutes === undefined) return t("none");
    if (minutes < 1) return t("underMinute");
    if (minutes < 120) return t("minutes", { x: Math.round(minutes) });
    if (minutes < 48 * 60) return t("hours", { x: (minutes / 60).toFixed(1) });
    return t("days", { x: (minutes / 1440).toFixed(1) });
  }

  function dayLabel(iso) { return String(iso || "").slice(5, 10); } // "2026-11-23T00:00+08:00" -> "11-23"

  function periodLabel(bucket) {
    if (!sla || sla.bucket === "day") return dayLabel(bucket.start);
    const last = new Date(Date.parse(bucket.end) - 1);
    return dayLabel(bucket.start) + "–" + localDay(last.getTime()).slice(5);
  }

  // ------------------------------------------------------------ sign-in and loading (Linli.signedInPage)

  const page = L.signedInPage({
    client: client,
    words: words,
    async onStart(account, site) {
      me = account;
      siteId = site;
      fillSites();
      // The per-period table is open on a wide screen; on a phone the charts come first.
      $("series-details").open = window.matchMedia("(min-width: 700px)").matches;
      $("board").hidden = false; // the charts take the width they are shown at
      $("sign-out").hidden = false;
      listen(); // the stream first, then the figures: a change in between is not lost
      await loadSite();
    },
    onSignOut() {
      me = null;
      siteId = null;
      sla = null;
      months.clear();
      month = null;
      destroyCharts();
    },
    onSignInShown() { words.applyStatic(); },
    onLanguage: render
  });
  const setLive = page.setLive;
  const failed = page.failed;

  async function loadSite() {
    const mayChart = SLA_ROLES.includes(me.role);
    $("sla-denied").hidden = mayChart;
    $("sla-body").hidden = !mayChart;
    if (mayChart) await loadSla({ bucket: $("bucket").value || "week" });
    fillMonths();
    await showMonth($("month").value);
    render();
  }

  function slaPath(query, asOf) {
    const params = new URLSearchParams({ site: siteId, bucket: query.bucket });
    if (query.from) params.set("from", query.from);
    if (query.to) params.set("to", query.to);
    if (asOf) params.set("as_of", asOf);
    return "/reports/sla?" + params.toString();
  }

  /* The figures for `query` ({from, to, bucket}); asOf (ISO) after a change heard over SSE. */
  let slaAsked = 0; // answers to an earlier request than the latest are dropped

  async function loadSla(query, asOf) {
    const asked = ++slaAsked;
    const answer = await client.api(slaPath(query, asOf));
    if (answer.site !== siteId || asked !== slaAsked) return;
    sla = answer;
    $("from").value = sla.from;
    $("to").value = sla.to;
    $("bucket").value = sla.bucket;
  }

  async function askSla(event) {
    event.preventDefault();
    L.showMessage("");
    try {
      await loadSla({ from: $("from").value, to: $("to").value, bucket: $("bucket").value });
      renderSla();
    } catch (error) {
      if (error instanceof L.ApiError && error.status === 400) {
        L.showMessage(t("badRange", { detail: error.detail || "" }));
        return;
      }
      failed(error);
    }
  }

  // ------------------------------------------------------------ live updates (SSE)

  function listen() {
    page.listen({ ticket: onTicket }, (state, missed) => {
      if (state === "refused") return client.signedIn(); // false: signed out, stop trying
      setLive(state);
      if (state === "live" && missed) refreshSoon(); // what happened while the stream was down
      return true;
    });
  }

  function onTicket(data) {
    if (!data || data.site !== siteId || !COUNTED.includes(data.event) || !sla) return;
    const at = Date.parse(data.at || "");
    if (!Number.isNaN(at)) {
      if (at >= Date.parse(sla.buckets[sla.buckets.length - 1].end)) return; // after the range shown
      latestChangeAt = Math.max(latestChangeAt, at);
    }
    refreshSoon();
  }

  function refreshSoon() {
    if (refreshTimer !== null || !sla) return;
    refreshTimer = window.setTimeout(refresh, REFRESH_AFTER_MS);
  }

  /* The shown range again, as of now on the server's clock (and never before the change heard of,
     nor before the figures shown): the bucket the change falls in moves, the others stay. */
  async function refresh() {
    refreshTimer = null;
    if (!sla) return;
    const shownAsOf = Date.parse(sla.as_of);
    const asOf = new Date(Math.max(L.serverNow(), latestChangeAt, (Number.isNaN(shownAsOf) ? 0 : shownAsOf) + 1));
    try {
      await loadSla({ from: sla.from, to: sla.to, bucket: sla.bucket }, asOf.toISOString());
      renderSla();
    } catch (error) {
      failed(error);
    }
  }

  // ------------------------------------------------------------ SLA: figures of the chosen group

  function partOf(bucket) {
    if (group === "all") return bucket;
    const [kind, key] = group.split(":");
    const table = kind === "sev" ? bucket.by_severity : bucket.by_team;
    return (table && table[key]) || { opened: 0, ack: {}, fix: {} };
  }

  function fillGroups() {
    const select = $("group");
    const options = [["all", t("groupAll")]];
    for (const severity of SEVERITIES) options.push(["sev:" + severity, t("groupSeverity", { x: severity })]);
    for (const [team, names] of Object.entries((sla && sla.teams) || {})) {
      options.push(["team:" + team, t("groupTeam", { x: words.lang === "en" ? names.name_en : names.name_zh })]);
    }
    if (!options.some(([value]) => value === group)) group = "all";
    select.replaceChildren(...options.map(([value, text]) => {
      const option = el("option", null, text);
      option.value = value;
      return option;
    }));
    select.value = group;
  }

  function renderSla() {
    if (!sla) return;
    fillGroups();
    $("sla-asof").textContent = t("asOf", { time: formatTime(sla.as_of) });
    renderCards();
    renderCharts();
    renderSeriesTable();
    renderBreakdown();
  }

  function renderCards() {
    const last = sla.buckets[sla.buckets.length - 1];
    if (!last) return;
    const current = !last.complete;
    $("cards-title").textContent = current ? t(sla.bucket === "day" ? "latestDay" : "latestWeek")
      : t("periodFrom", { day: dayLabel(last.start) });
    const part = partOf(last);
    const card = (id, value, sub) => {
      $(id).querySelector(".card-value").textContent = value;
      const small = $(id).querySelector(".card-sub");
      if (small) small.textContent = sub || "";
    };
    card("card-opened", String(part.opened || 0));
    card("card-ack", pct(part.ack.within_sla_pct), t("ofCounted", { on: part.ack.on_time || 0, all: part.ack.counted || 0 }));
    card("card-fix", pct(part.fix.within_sla_pct), t("ofCounted", { on: part.fix.on_time || 0, all: part.fix.counted || 0 }));
    card("card-ack-time", duration(part.ack.median_minutes));
    card("card-fix-time", duration(part.fix.median_minutes));
    $("card-opened").dataset.value = String(part.opened || 0);
  }

  function table(node, headers, rows) {
    const head = el("thead");
    const headRow = el("tr");
    for (const header of headers) headRow.append(el("th", null, header));
    head.append(headRow);
    const body = el("tbody");
    for (const cells of rows) {
      const row = el("tr");
      cells.forEach((cell, index) => {
        const td = el("td", null, cell === null || cell === undefined || cell === "" ? t("none") : cell);
        td.setAttribute("data-label", headers[index]); // the column's name on a phone's stacked rows
        row.append(td);
      });
      body.append(row);
    }
    node.replaceChildren(head, body);
  }

  function figureCells(part) {
    return [
      String(part.opened || 0),
      pct(part.ack.within_sla_pct) + " (" + t("ofCounted", { on: part.ack.on_time || 0, all: part.ack.counted || 0 }) + ")",
      pct(part.fix.within_sla_pct) + " (" + t("ofCounted", { on: part.fix.on_time || 0, all: part.fix.counted || 0 }) + ")",
      duration(part.ack.median_minutes),
      duration(part.fix.median_minutes)
    ];
  }

  function renderSeriesTable() {
    const headers = [t("tablePeriod"), t("tableOpened"), t("tableAck"), t("tableFix"), t("tableAckTime"), t("tableFixTime")];
    const rows = sla.buckets.slice().reverse().map((bucket) => [periodLabel(bucket)].concat(figureCells(partOf(bucket))));
    table($("series-table"), headers, rows);
  }

  function renderBreakdown() {
    const headers = [t("breakdownWho"), t("tableOpened"), t("tableAck"), t("tableFix"), t("tableAckTime"), t("tableFixTime")];
    const rows = [[t("groupAll")].concat(figureCells(sla.total))];
    for (const severity of SEVERITIES) rows.push([severity].concat(figureCells(sla.total.by_severity[severity])));
    for (const [team, names] of Object.entries(sla.teams)) {
      rows.push([words.lang === "en" ? names.name_en : names.name_zh].concat(figureCells(sla.total.by_team[team])));
    }
    table($("breakdown-table"), headers, rows);
  }

  // ------------------------------------------------------------ SLA: charts (uPlot)

  function destroyCharts() {
    for (const chart of charts) chart.plot.destroy();
    charts = [];
  }

  const resizer = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = charts.find((c) => c.box === entry.target);
      const width = Math.floor(entry.contentRect.width);
      if (chart && width > 0 && width !== chart.plot.width) chart.plot.setSize({ width: width, height: CHART_HEIGHT });
    }
  }) : null;

  function hours(minutes) {
    return minutes === null || minutes === undefined ? null : Math.round(minutes / 6) / 10;
  }

  function renderCharts() {
    destroyCharts();
    if (!window.uPlot) return; // the tables still say it all
    const labels = sla.buckets.map((b) => dayLabel(b.start));
    const x = sla.buckets.map((b, i) => i);
    const parts = sla.buckets.map(partOf);
    draw($("chart-opened"), labels, [x, parts.map((p) => p.opened || 0)],
      [{ label: t("seriesOpened"), color: COLORS.opened, bars: true }], [0, null]);
    draw($("chart-pct"), labels, [x, parts.map((p) => p.ack.within_sla_pct), parts.map((p) => p.fix.within_sla_pct)],
      [{ label: t("seriesAckPct"), color: COLORS.ack, unit: "%" }, { label: t("seriesFixPct"), color: COLORS.fix, unit: "%" }],
      [0, 100]);
    draw($("chart-time"), labels, [x, parts.map((p) => hours(p.ack.median_minutes)), parts.map((p) => hours(p.fix.median_minutes))],
      [{ label: t("seriesAckTime"), color: COLORS.ack, unit: "h" }, { label: t("seriesFixTime"), color: COLORS.fix, unit: "h" }],
      [0, null]);
  }

  function draw(box, labels, data, lines, range) {
    const n = labels.length;
    const width = Math.max(160, Math.floor(box.clientWidth || box.parentNode.clientWidth || 320));
    const shown = (v, unit) => (v === null || v === undefined ? t("none") : v + (unit === "%" ? "%" : unit === "h" ? " h" : ""));
    const series = [{ label: t("tablePeriod"), value: (u, v) => (v === null || v === undefined ? t("none") : labels[v] || "") }];
    for (const line of lines) {
      series.push(Object.assign({
        label: line.label, stroke: line.color, width: 2, spanGaps: false,
        value: (u, v) => shown(v, line.unit)
      }, line.bars ? {
        fill: line.color + "cc", paths: window.uPlot.paths.bars({ size: [0.6, 48] }), points: { show: false }
      } : { points: { show: true, size: 6, fill: line.color } }));
    }
    const plot = new window.uPlot({
      width: width,
      height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: () => [-0.5, n - 0.5] },
        y: { range: (u, min, max) => [range[0], range[1] !== null ? range[1] : Math.max(1, Math.ceil((max || 0) * 1.15))] }
      },
      axes: [
        { space: 44, grid: { show: false }, values: (u, splits) => splits.map((v) => (Number.isInteger(v) && labels[v] ? labels[v] : "")) },
        { size: 44 }
      ],
      series: series
    }, data, box);
    charts.push({ box: box, plot: plot });
    if (resizer) resizer.observe(box);
    // What the chart shows, for whoever checks the page (tests, assistive tools).
    box.dataset.points = String(n);
    const values = [].concat(...data.slice(1)).filter((v) => v !== null && v !== undefined);
    box.dataset.values = String(values.length);
    box.dataset.sum = String(values.reduce((sum, v) => sum + v, 0));
    box.parentNode.querySelector(".chart-empty").hidden = lines[0].bars || values.length > 0;
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", box.parentNode.querySelector("figcaption").textContent);
  }

  // ------------------------------------------------------------ the monthly report

  function currentMonth() {
    return localDay(L.serverNow()).slice(0, 7);
  }

  function monthLabel(value) {
    const [y, m] = value.split("-");
    return t("monthLabel", { y: y, m: String(Number(m)) });
  }

  function fillMonths() {
    const select = $("month");
    const chosen = select.value;
    const now = currentMonth();
    let [y, m] = now.split("-").map(Number);
    const values = [];
    for (let i = 0; i < 13; i++) {
      values.push(y + "-" + String(m).padStart(2, "0"));
      m -= 1;
      if (m === 0) { m = 12; y -= 1; }
    }
    select.replaceChildren(...values.map((value) => {
      const option = el("option", null, monthLabel(value));
      option.value = value;
      return option;
    }));
    select.value = values.includes(chosen) ? chosen : now;
  }

  function monthPath(value, format) {
    const params = new URLSearchParams({ site: siteId, month: value });
    if (format) {
      params.set("format", format);
      params.set("lang", words.lang === "en" ? "en" : "zh");
    }
    return "/reports/monthly?" + params.toString();
  }

  async function showMonth(value) {
    month = value;
    $("publish-confirm").hidden = true;
    if (!months.has(value)) months.set(value, await client.api(monthPath(value)));
    if (month === value) renderMonth();
  }

  async function pickMonth() {
    L.showMessage("");
    try {
      await showMonth($("month").value);
    } catch (error) {
      failed(error);
    }
  }

  /* The catalog's name; a free-title ticket's fault is "other", said in the page's words. */
  function faultName(problem, en) {
    const name = en ? problem.fault_en : problem.fault_zh;
    return name && name !== problem.fault ? name : words.word("fault", problem.fault);
  }

  function yesNo(value) {
    return value === true ? t("yes") : value === false ? t("no") : t("none");
  }

  function renderMonth() {
    const report = months.get(month);
    if (!report) return;
    $("month-state").textContent = report.frozen
      ? t("frozen", { time: formatTime(report.published_at), who: report.published_by || "" })
      : t("draft") + " · " + t("generatedAt", { time: formatTime(report.generated_at) });
    $("month-state").dataset.frozen = String(Boolean(report.frozen));
    $("publish").hidden = !(me && PUBLISH_ROLES.includes(me.role)) || report.frozen || month >= currentMonth();

    const f = report.figures;
    const figures = $("month-figures");
    figures.replaceChildren();
    const fact = (term, value) => figures.append(el("dt", null, term), el("dd", null, value));
    fact(t("fOpened"), String(f.opened));
    fact(t("fCarried"), String(f.carried_in));
    fact(t("fClosed"), String(f.closed));
    fact(t("fOpenAtEnd"), String(f.open_at_end));
    fact(t("fAck"), pct(f.ack.within_sla_pct) + " (" + t("ofCounted", { on: f.ack.on_time, all: f.ack.counted }) + ")");
    fact(t("fFix"), pct(f.fix.within_sla_pct) + " (" + t("ofCounted", { on: f.fix.on_time, all: f.fix.counted }) + ")");
    fact(t("fAckMedian"), duration(f.ack.median_minutes));
    fact(t("fFixMedian"), duration(f.fix.median_minutes));
    fact(t("fReopenRate"), pct(f.reopen_rate_pct));
    fact(t("fRepeat"), String(f.repeat_faults));
    fact(t("fResidents"), String((f.resident_reports || {}).total || 0));

    const en = words.lang === "en";
    const ticketNo = (id) => t("ticketNo", { x: id });
    list($("problems"), [t("colTicket"), t("colOpened"), t("colItem"), t("colSubject"), t("colFault"), t("colSeverity"),
      t("colSource"), t("colStatus"), t("colCarried")], report.problems.map((p) => [
      ticketNo(p.ticket_id), formatTime(p.opened_at), p.title, p.subject_id, faultName(p, en), p.severity,
      words.word("source", p.source), words.word("status", p.status), yesNo(p.carried_in)
    ]));
    list($("responsibilities"), [t("colTicket"), t("colTeam"), t("colRole"), t("colAssignee"), t("colDispatched"),
      t("colAckDue"), t("colAcked"), t("colAckOnTime")], report.responsibilities.map((r) => [
      ticketNo(r.ticket_id), en ? r.team_en : r.team_zh, t(r.role === "lead" ? "lead" : "assist"), r.assignee,
      formatTime(r.dispatched_at), formatTime(r.ack_due_at), r.acknowledged_at ? formatTime(r.acknowledged_at) : null,
      yesNo(r.ack_on_time)
    ]));
    list($("rectifications"), [t("colTicket"), t("colFixDue"), t("colResolved"), t("colClosed"), t("colFixTime"),
      t("colHeld"), t("colFixOnTime"), t("colReopened"), t("colOutcome")], report.rectifications.map((r) => [
      ticketNo(r.ticket_id), formatTime(r.resolve_due_at), r.resolved_at ? formatTime(r.resolved_at) : null,
      r.closed_at ? formatTime(r.closed_at) : null, duration(r.fix_minutes), r.held_minutes ? duration(r.held_minutes) : null,
      yesNo(r.fix_on_time), String(r.reopen_count), words.word("outcome", r.outcome)
    ]));
  }

  function list(node, headers, rows) {
    table(node, headers, rows);
    node.dataset.rows = String(rows.length);
    if (!rows.length) {
      const row = el("tr");
      const cell = el("td", "empty", t("emptyList"));
      cell.colSpan = headers.length;
      row.append(cell);
      node.querySelector("tbody").append(row);
    }
  }

  async function download(format) {
    L.showMessage("");
    const shown = month;
    try {
      const blob = await client.api(monthPath(shown, format));
      const link = el("a");
      link.href = URL.createObjectURL(blob);
      link.download = "linli-" + siteId + "-" + shown + (words.lang === "en" ? "-en" : "") + "." + format;
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    } catch (error) {
      failed(error, "downloadFailed");
    }
  }

  function askPublish() {
    $("publish-ask").textContent = t("publishAsk", { month: monthLabel(month) });
    $("publish-confirm").hidden = false;
    $("publish-yes").focus();
  }

  async function publish() {
    $("publish-confirm").hidden = true;
    const shown = month;
    try {
      const body = await client.api("/reports/monthly/publish?" + new URLSearchParams({ site: siteId, month: shown }), { method: "POST" });
      months.set(shown, body);
      if (month === shown) renderMonth();
      L.showMessage(t("published", { month: monthLabel(shown) }));
    } catch (error) {
      if (error instanceof L.ApiError && error.status === 409) {
        L.showMessage(shown >= currentMonth() ? t("publishNotEnded") : t("publishConflict", { detail: error.detail || "" }));
        return;
      }
      failed(error, "publishFailed");
    }
  }

  // ------------------------------------------------------------ page

  function fillSites() {
    const select = $("site");
    select.replaceChildren(...me.sites.map((id) => {
      const option = el("option", null, id);
      option.value = id;
      return option;
    }));
    select.value = siteId;
    $("site-choice").hidden = me.sites.length < 2;
  }

  async function pickSite() {
    siteId = $("site").value;
    sla = null;
    months.clear();
    latestChangeAt = 0;
    L.showMessage(t("loading"));
    try {
      await loadSite();
      L.showMessage("");
    } catch (error) {
      failed(error);
    }
  }

  function render() {
    words.applyStatic();
    const name = (sla && sla.site_name) || (months.get(month) || {}).site_name;
    $("site-name").textContent = name ? t("titleOf", { site: name }) : t("title");
    document.title = $("site-name").textContent;
    if (page.listening()) setLive($("live").dataset.state || null);
    if (me && SLA_ROLES.includes(me.role)) renderSla();
    if (month) {
      const chosen = $("month").value;
      fillMonths();
      $("month").value = chosen;
      renderMonth();
    }
  }

  $("sla-form").addEventListener("submit", askSla);
  $("group").addEventListener("change", () => {
    group = $("group").value;
    renderSla();
  });
  $("month").addEventListener("change", pickMonth);
  $("site").addEventListener("change", pickSite);
  for (const button of document.querySelectorAll("[data-format]")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
  $("publish").addEventListener("click", askPublish);
  $("publish-yes").addEventListener("click", publish);
  $("publish-no").addEventListener("click", () => { $("publish-confirm").hidden = true; });
  words.applyStatic();
  page.start();
})();
