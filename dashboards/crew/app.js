/* The crew dashboard (物业/网格 duty room): the site plan with every device coloured by health,
   counters, the open tickets by SLA deadline, and a device panel (its last 24 h in charts, commands
   to a light and their answers, its tickets).
   It loads the plan, the devices and the open tickets once after sign-in; after that every change
   arrives over Server-Sent Events (GET /api/v1/events): the page never polls. The countdowns tick
   locally from the server's clock (Linli.serverNow: deadlines are on the system's clock, the
   simulator's in the demo). Shared code (words, API client, SSE, site plan) is in
   /static/common/linli.js; every text from the server goes through textContent (never innerHTML). */
"use strict";

(function () {
  const L = window.Linli;
  const words = L.words(window.LINLI_CREW_I18N);
  const t = (key) => words.t(key);
  const word = (group, key) => words.word(group, key);
  const $ = L.$;
  const el = L.el;
  const client = L.client("linli.crew.token");
  const ACTIVE = ["open", "acknowledged", "in_progress", "on_hold"];
  const WAITING = ["open", "acknowledged"]; // nobody on site yet (api/views.py: WAITING)
  const BEING_FIXED = ["in_progress", "on_hold", "resolved", "verified"];
  const HEALTHS = ["ok", "fault", "offline", "maintenance"];
  const COMMAND_STATUSES = ["sent", "acked", "failed", "expired"];
  const LIT_RATIO = 0.10; // lit at 10% of rated power, as the lamp_failure detector
  const DAY_S = 24 * 3600;
  /* The panel's charts per kind: GET /devices/{id}/telemetry aggregated per bucket (`every` s). */
  const CHARTS = {
    streetlight: [
      { key: "chartPower", field: "power_w", agg: "mean", every: 600, unit: "W", fromZero: true },
      { key: "chartVoltage", field: "voltage_v", agg: "mean", every: 600, unit: "V" },
      { key: "chartLeakage", field: "leakage_ma", agg: "max", every: 600, unit: "mA" }
    ],
    elevator: [
      { key: "chartTrips", field: "trips", agg: "increase", every: 3600, bars: true, fromZero: true },
      { key: "chartDoorFaults", field: "events", agg: "count", every: 3600, bars: true, zeros: true, fromZero: true,
        codes: ["door_fault", "door_open_moving"] }
    ],
    charger: [
      { key: "chartSessions", field: "session_id", agg: "distinct", every: 3600, bars: true, zeros: true, fromZero: true },
      { key: "chartEnergy", field: "energy_kwh", agg: "increase", every: 3600, bars: true, unit: "kWh", fromZero: true }
    ]
  };

  let siteId = null;
  let plan = null; // GET /sites/{site}/plan
  const devices = new Map(); // id -> device (GET /devices item, updated by events)
  const tickets = new Map(); // id -> active ticket
  const pendingTickets = new Set(); // ids being fetched after an event
  let panelDevice = null;
  let panelCommands = new Map(); // id -> command of the panel's device (GET .../commands, then events)
  let charts = []; // uPlot instances of the panel

  // ------------------------------------------------------------ small helpers

  function planDeviceOf(id) {
    return plan ? plan.devices.find((d) => d.id === id) : null;
  }

  function deviceName(id) {
    const device = planDeviceOf(id);
    return device ? words.localName(device) : id;
  }

  // ------------------------------------------------------------ sign-in and loading (Linli.signedInPage)

  const page = L.signedInPage({
    client: client,
    words: words,
    async onStart(me, site) {
      siteId = site;
      await loadAll();
    },
    onShown() {
      render();
      listen();
    },
    onSignOut() {
      siteId = null;
      plan = null;
      devices.clear();
      tickets.clear();
      closePanel();
    },
    onSignInShown: applyStaticWords,
    onLanguage: render
  });
  const setLive = page.setLive;
  const signOut = page.signOut;

  async function loadAll() {
    const snapshot = await L.siteSnapshot(client, siteId, ACTIVE, "&limit=500");
    plan = snapshot.plan;
    devices.clear();
    for (const device of snapshot.devices) devices.set(device.id, device);
    tickets.clear();
    for (const ticket of snapshot.tickets) tickets.set(ticket.id, ticket);
  }

  // ------------------------------------------------------------ live updates (SSE)

  function listen() {
    page.listen({ device: onDevice, ticket: onTicket, command: onCommand }, onStreamState);
  }

  function onStreamState(state, missed) {
    if (state === "refused") return page.checkSignIn();
    setLive(state);
    if (state === "live" && missed) {
      // what happened while the stream was down is not replayed: load it again
      loadAll().then(render).catch(() => { /* the next reconnect tries again */ });
    }
    return true;
  }

  function onDevice(data) {
    const device = L.deviceEvent(devices, siteId, data);
    if (!device) return;
    if (data.last_seen || data.at) device.last_seen = data.last_seen || data.at;
    // The server's word when the event carries it; else the same rule from what the page knows.
    device.health = HEALTHS.includes(data.health) ? data.health : healthFromTickets(device);
    if (Array.isArray(data.open_tickets)) device.open_tickets = data.open_tickets;
    updateDevice(device);
  }

  function onTicket(data) {
    if (!data || data.site !== siteId || typeof data.id !== "number") return;
    const known = tickets.get(data.id);
    if (!data.status && known) data.status = known.status; // an event that changed no status (a comment, say)
    const deviceIds = new Set((data.device_ids || []).concat(known ? known.device_ids || [] : []));
    if (!ACTIVE.includes(data.status)) {
      tickets.delete(data.id);
    } else if (known) {
      for (const key of ["status", "severity", "ack_due_at", "start_due_at", "resolve_due_at", "device_ids"]) {
        if (data[key] !== undefined) known[key] = data[key];
      }
    } else if (!pendingTickets.has(data.id)) {
      // A new ticket: its title, fault name and deadlines come from the API, once.
      pendingTickets.add(data.id);
      tickets.set(data.id, Object.assign({ fault_name: null, device_ids: [] }, data));
      client.api("/tickets/" + data.id).then((full) => {
        if (tickets.has(full.id)) tickets.set(full.id, full);
        renderTickets();
      }).catch(() => { /* keep what the event said */ }).finally(() => pendingTickets.delete(data.id));
    }
    // Health follows tickets as api/views.py health_of says; a device event corrects it if needed.
    for (const id of deviceIds) {
      const device = devices.get(id);
      if (device) {
        device.health = healthFromTickets(device);
        updateDevice(device);
      }
    }
    renderTickets();
  }

  function onCommand(data) {
    if (!data || data.site !== siteId || typeof data.id !== "string") return;
    if (data.device_id !== panelDevice || !COMMAND_STATUSES.includes(data.status)) return;
    panelCommands.set(data.id, Object.assign(panelCommands.get(data.id) || {}, data));
    renderCommands();
  }

  function healthFromTickets(device) {
    if (!device.online) return "offline";
    const statuses = [];
    for (const ticket of tickets.values()) {
      if ((ticket.device_ids || []).includes(device.id) || ticket.device_id === device.id) statuses.push(ticket.status);
    }
    if (statuses.some((s) => WAITING.includes(s))) return "fault";
    if (statuses.some((s) => BEING_FIXED.includes(s))) return "maintenance";
    // no ticket: a fault or silence is over; inspection mode and planned work stay until the server says
    return device.health === "fault" || device.health === "offline" ? "ok" : device.health;
  }

  // ------------------------------------------------------------ rendering

  function applyStaticWords() {
    words.applyStatic();
    const name = plan ? words.localName(plan) : null;
    $("site-name").textContent = name ? t("titleOf").replace("{site}", name) : t("title");
    document.title = $("site-name").textContent;
    if ($("live").dataset.state) setLive($("live").dataset.state);
    noteHeaderHeight();
  }

  function render() {
    applyStaticWords();
    if (!plan) return;
    renderPlan();
    renderLegend();
    renderCounters();
    renderTickets();
    if (panelDevice) {
      renderPanelFacts();
      renderCommands();
      drawCharts();
    }
  }

  function isLit(device) {
    const last = device.last || {};
    const rated = (planDeviceOf(device.id) || {}).rated_power_w;
    return device.online && last.relay === true && typeof last.power_w === "number" && rated > 0 &&
      last.power_w >= LIT_RATIO * rated;
  }

  function renderCounters() {
    const all = Array.from(devices.values());
    const of = (kind) => all.filter((d) => d.kind === kind);
    const lights = of("streetlight");
    const elevators = of("elevator");
    const chargers = of("charger");
    const inService = elevators.filter((d) => d.online && d.health === "ok" && (d.last || {}).mode === "normal");
    const free = chargers.filter((d) => d.online && d.health === "ok" && (d.last || {}).status === "Available");
    const set = (id, value, total) => {
      $(id).querySelector(".counter-value").textContent = total === undefined ? String(value) : value + " / " + total;
    };
    set("count-lights", lights.filter(isLit).length, lights.length);
    set("count-faults", all.filter((d) => d.health === "fault").length);
    set("count-elevators", inService.length, elevators.length);
    set("count-chargers", free.length, chargers.length);
  }

  function renderPlan() {
    const nodes = L.drawPlan($("plan"), plan, (item) => words.localName(item), openPanel);
    for (const [id, node] of nodes) paintDevice(node, devices.get(id));
  }

  function paintDevice(node, device) {
    const health = device ? device.health : "offline";
    node.setAttribute("data-health", health);
    node.setAttribute("class", "dev h-" + health + (device && device.kind === "streetlight" && isLit(device) ? " lit" : ""));
    const label = deviceName(node.getAttribute("data-device")) + " · " + word("health", health);
    node.querySelector("title").textContent = label;
    node.setAttribute("aria-label", label);
  }

  function updateDevice(device) {
    const node = $("plan").querySelector('[data-device="' + CSS.escape(device.id) + '"]');
    if (node) paintDevice(node, device);
    renderCounters();
    if (panelDevice === device.id) renderPanelFacts();
  }

  function renderLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const health of HEALTHS) {
      const item = el("li", "legend-item");
      item.append(el("span", "swatch h-" + health), el("span", null, word("health", health)));
      legend.append(item);
    }
  }

  // ------------------------------------------------------------ tickets and their countdowns

  // The deadline that matters now: acknowledge while open, start once acknowledged, then resolve.
  function deadline(ticket) {
    if (ticket.status === "open") return { key: "dueAck", at: ticket.ack_due_at };
    if (ticket.status === "acknowledged") return { key: "dueStart", at: ticket.start_due_at || ticket.resolve_due_at };
    return { key: "dueResolve", at: ticket.resolve_due_at };
  }

  function dueMillis(ticket) {
    const at = Date.parse(deadline(ticket).at || "");
    return Number.isNaN(at) ? Infinity : at;
  }

  function countdownText(ticket, now) {
    const due = deadline(ticket);
    const at = dueMillis(ticket);
    if (at === Infinity) return { text: t("noDeadline"), late: false, left: null };
    const left = at - now;
    const text = left >= 0
      ? t(due.key) + " · " + t("left") + " " + words.duration(left)
      : t(due.key) + " · " + t("overdue") + " " + words.duration(left);
    return { text: text, late: left < 0, left: left };
  }

  function ticketRow(ticket, withCountdown) {
    const row = el("li", "row ticket sev-" + (ticket.severity || ""));
    row.dataset.ticket = String(ticket.id);
    const what = el("div", "ticket-what");
    const head = el("div", "ticket-head");
    head.append(el("span", "sev", ticket.severity || ""), el("span", "row-name", words.faultWord(ticket)));
    what.append(head);
    const where = (ticket.device_ids || []).map(deviceName).join("、");
    if (where) what.append(el("span", "ticket-where", where));
    if (withCountdown) what.append(el("span", "countdown"));
    else what.append(el("span", "ticket-where", t("opened") + " " + words.formatTime(ticket.opened_at)));
    row.append(what, el("span", "badge ts-" + ticket.status, word("ticketStatus", ticket.status)));
    if (ticket.device_ids && ticket.device_ids.length) {
      row.classList.add("clickable");
      row.addEventListener("click", () => openPanel(ticket.device_ids[0]));
    }
    return row;
  }

  function renderTickets() {
    const list = $("tickets");
    list.replaceChildren();
    const open = Array.from(tickets.values()).filter((ticket) => ACTIVE.includes(ticket.status));
    open.sort((a, b) => dueMillis(a) - dueMillis(b) || a.id - b.id);
    $("ticket-count").textContent = "(" + open.length + ")";
    if (!open.length) list.append(el("li", "empty", t("noTickets")));
    for (const ticket of open) list.append(ticketRow(ticket, true));
    tick();
  }

  function tick() {
    const now = L.serverNow(); // the system's clock, not the browser's
    for (const row of $("tickets").querySelectorAll("[data-ticket]")) {
      const ticket = tickets.get(Number(row.dataset.ticket));
      const node = row.querySelector(".countdown");
      if (!ticket || !node) continue;
      const shown = countdownText(ticket, now);
      node.textContent = shown.text;
      node.classList.toggle("late", shown.late);
      if (shown.left === null) delete node.dataset.leftMs;
      else node.dataset.leftMs = String(Math.round(shown.left)); // for tests and tools: ms to the deadline
    }
  }

  // ------------------------------------------------------------ device panel

  async function openPanel(id) {
    panelDevice = id;
    panelCommands = new Map();
    $("panel").hidden = false;
    renderPanelFacts();
    const device = devices.get(id) || planDeviceOf(id) || {};
    $("panel-control").hidden = device.kind !== "streetlight";
    setCommandBusy(false);
    $("command-note").textContent = "";
    renderCommands();
    loadCharts(id, device.kind);
    loadCommands(id);
    const list = $("panel-tickets");
    list.replaceChildren(el("li", "empty", t("loading")));
    $("panel-close").focus();
    try {
      const answer = await client.api("/tickets?site=" + encodeURIComponent(siteId) + "&device_id=" +
        encodeURIComponent(id) + "&sort=-opened_at&limit=20");
      if (panelDevice !== id) return;
      list.replaceChildren();
      if (!answer.items.length) list.append(el("li", "empty", t("noDeviceTickets")));
      for (const ticket of answer.items) list.append(ticketRow(ticket, false));
    } catch (error) {
      if (panelDevice === id) list.replaceChildren(el("li", "empty", t("loadFailed")));
    }
  }

  function closePanel() {
    panelDevice = null;
    panelCommands = new Map();
    destroyCharts();
    $("panel").hidden = true;
  }

  function fact(list, term, value) {
    list.append(el("dt", null, term), el("dd", null, value === undefined || value === null || value === "" ? "—" : value));
  }

  function renderPanelFacts() {
    const device = devices.get(panelDevice);
    const planDevice = planDeviceOf(panelDevice);
    if (!device || !planDevice) return;
    $("panel-title").textContent = words.localName(planDevice) + " (" + device.id + ")";
    const facts = $("panel-facts");
    facts.replaceChildren();
    fact(facts, t("kindLabel"), word("kind", device.kind));
    const health = el("span", "badge h-" + device.health, word("health", device.health));
    facts.append(el("dt", null, t("healthLabel")));
    const dd = el("dd");
    dd.append(health);
    facts.append(dd);
    const places = ["compound", "building", "circuit", "cabinet"]
      .filter((key) => planDevice[key])
      .map((key) => word("place", key) + " " + planDevice[key]);
    fact(facts, t("where"), places.join(" · "));
    fact(facts, t("lastSeen"), device.last_seen ? words.formatTime(device.last_seen) : t("never"));
    const readings = $("panel-readings");
    readings.replaceChildren();
    for (const [key, value] of Object.entries(device.last || {})) {
      if (key === "ts" || key === "seq" || (value !== null && typeof value === "object")) continue;
      fact(readings, key, String(value));
    }
  }

  // ------------------------------------------------------------ commands (a light: on, off, dim)

  async function loadCommands(id) {
    try {
      const answer = await client.api("/devices/" + encodeURIComponent(id) + "/commands?site=" +
        encodeURIComponent(siteId) + "&limit=10");
      if (panelDevice !== id) return;
      for (const command of answer.items) {
        // an event may have come first: it is newer
        if (!panelCommands.has(command.id)) panelCommands.set(command.id, command);
      }
      renderCommands();
    } catch (error) {
      if (panelDevice === id) $("command-note").textContent = t("commandsLoadFailed");
    }
  }

  function commandWords(command) {
    const params = command.params || {};
    if (command.action === "set_light") {
      if (params.relay === false) return t("cmdOffDone");
      if (typeof params.dim_pct === "number" && params.dim_pct < 100) {
        return t("cmdDimDone").replace("{pct}", String(params.dim_pct));
      }
      return t("cmdOnDone");
    }
    if (command.action === "set_available") return t(params.available ? "cmdAvailable" : "cmdUnavailable");
    return word("actions", command.action);
  }

  function renderCommands() {
    const list = $("panel-commands");
    list.replaceChildren();
    const all = Array.from(panelCommands.values());
    all.sort((a, b) => Date.parse(b.sent_at || "") - Date.parse(a.sent_at || "") || (a.id < b.id ? -1 : 1));
    if (!all.length) list.append(el("li", "empty", t("noCommands")));
    for (const command of all.slice(0, 10)) {
      const row = el("li", "row command");
      row.dataset.command = command.id;
      row.dataset.status = command.status;
      const what = el("div", "ticket-what");
      what.append(el("span", "row-name", commandWords(command)));
      const by = command.requested_by === "system" ? t("bySystem") : command.requested_by;
      what.append(el("span", "ticket-where", words.formatTime(command.sent_at) + (by ? " · " + by : "")));
      if (command.error) what.append(el("span", "ticket-where command-error", command.error));
      row.append(what, el("span", "badge cs-" + command.status, word("commandStatus", command.status)));
      list.append(row);
    }
  }

  function setCommandBusy(busy) {
    for (const id of ["cmd-on", "cmd-off", "cmd-dim"]) $(id).disabled = busy;
  }

  async function sendCommand(params) {
    const id = panelDevice;
    if (!id) return;
    setCommandBusy(true);
    $("command-note").textContent = t("commandSending");
    try {
      const answer = await client.api("/devices/" + encodeURIComponent(id) + "/commands?site=" + encodeURIComponent(siteId), {
        method: "POST", json: { action: "set_light", params: params, reason: t("commandReason") }
      });
      if (panelDevice !== id) return;
      $("command-note").textContent = t("commandSent");
      if (!panelCommands.has(answer.id)) {
        // shown at once as sent; its `command` events say how it ended
        panelCommands.set(answer.id, {
          id: answer.id, device_id: id, action: "set_light", params: params, status: "sent",
          sent_at: new Date(L.serverNow()).toISOString(), requested_by: null
        });
      }
      renderCommands();
    } catch (error) {
      if (error instanceof L.Unauthorized) {
        signOut();
        return;
      }
      const why = error instanceof L.ApiError && error.status === 403 ? t("commandForbidden") : t("commandFailed");
      if (panelDevice === id) $("command-note").textContent = why;
    } finally {
      if (panelDevice === id) setCommandBusy(false);
    }
  }

  // ------------------------------------------------------------ charts (uPlot)

  function destroyCharts() {
    for (const chart of charts) chart.destroy();
    charts = [];
  }

  const chartData = new Map(); // chart key -> {spec, points} of the panel's device

  async function loadCharts(id, kind) {
    destroyCharts();
    chartData.clear();
    const box = $("panel-charts");
    box.replaceChildren();
    const specs = CHARTS[kind] || [];
    if (!specs.length) return;
    // the system's last 24 h (the demo's evening, not the browser's day), in whole seconds
    const until = new Date(Math.floor(L.serverNow() / 1000) * 1000);
    const since = new Date(until.getTime() - DAY_S * 1000);
    for (const spec of specs) {
      const figure = el("figure", "chart");
      figure.dataset.chart = spec.field;
      figure.dataset.state = "loading";
      figure.append(el("figcaption", "chart-title"), el("div", "chart-body"));
      box.append(figure);
    }
    renderChartTitles();
    await Promise.all(specs.map(async (spec) => {
      const figure = box.querySelector('[data-chart="' + spec.field + '"]');
      let query = "?site=" + encodeURIComponent(siteId) + "&field=" + encodeURIComponent(spec.field) +
        "&since=" + encodeURIComponent(since.toISOString()) + "&until=" + encodeURIComponent(until.toISOString()) +
        "&every=" + spec.every + "&agg=" + spec.agg;
      for (const code of spec.codes || []) query += "&code=" + encodeURIComponent(code);
      try {
        const answer = await client.api("/devices/" + encodeURIComponent(id) + "/telemetry" + query);
        if (panelDevice !== id) return;
        chartData.set(spec.field, { spec: spec, points: seriesOf(spec, answer.points, since) });
      } catch (error) {
        if (panelDevice !== id) return;
        chartData.set(spec.field, { spec: spec, points: null });
      }
      figure.dataset.state = "ready";
    }));
    if (panelDevice === id) drawCharts();
  }

  /* [[x s], [y]]: one point per bucket; counts fill the empty buckets with 0, readings leave gaps. */
  function seriesOf(spec, points, since) {
    const xs = [];
    const ys = [];
    const byBucket = new Map();
    for (const point of points || []) {
      const value = L.num(point.value, null);
      if (value !== null) byBucket.set(Math.round(Date.parse(point.ts) / 1000), value);
    }
    const first = Math.floor(since.getTime() / 1000);
    for (let x = first; x < first + DAY_S; x += spec.every) {
      xs.push(x);
      ys.push(byBucket.has(x) ? byBucket.get(x) : (spec.zeros ? 0 : null));
    }
    return { xs: xs, ys: ys, count: byBucket.size };
  }

  function renderChartTitles() {
    for (const figure of $("panel-charts").querySelectorAll("figure[data-chart]")) {
      const spec = (CHARTS[(devices.get(panelDevice) || {}).kind] || []).find((s) => s.field === figure.dataset.chart);
      if (spec) figure.querySelector(".chart-title").textContent = t(spec.key) + (spec.unit ? " (" + spec.unit + ")" : "");
    }
  }

  function drawCharts() {
    destroyCharts();
    renderChartTitles();
    const box = $("panel-charts");
    for (const figure of box.querySelectorAll("figure[data-chart]")) {
      const entry = chartData.get(figure.dataset.chart);
      const body = figure.querySelector(".chart-body");
      body.replaceChildren();
      const width = Math.max(160, Math.floor(body.clientWidth || 300)); // the panel's width: 360 px phones too
      if (!entry) continue;
      if (!entry.points) {
        body.append(el("p", "empty", t("chartFailed")));
        continue;
      }
      figure.dataset.points = String(entry.points.count);
      if (!entry.points.count && !entry.spec.zeros) {
        body.append(el("p", "empty", t("chartNoData")));
        continue;
      }
      charts.push(new window.uPlot(chartOptions(entry.spec, width, entry.points.count), [entry.points.xs, entry.points.ys], body));
    }
  }

  function chartOptions(spec, width, count) {
    const series = {
      label: t(spec.key), stroke: "#17324d", width: 1.5, spanGaps: false,
      fill: spec.bars ? "rgba(23, 50, 77, 0.35)" : "rgba(23, 50, 77, 0.08)",
      points: { show: count < 40, size: 5, fill: "#17324d" } // a few buckets (a device just started): dots, not an empty chart
    };
    if (spec.bars && window.uPlot.paths && window.uPlot.paths.bars) {
      series.paths = window.uPlot.paths.bars({ size: [0.8, 40] });
      series.points = { show: false };
    }
    const font = "11px system-ui, sans-serif";
    const y = { font: font, size: 40, stroke: "#5f6b73", grid: { stroke: "#eef1f3" } };
    if (spec.zeros) y.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]; // whole counts
    return {
      width: width,
      height: 140,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: spec.fromZero ? { range: (u, min, max) => [Math.min(0, min || 0), max > 0 ? max * 1.1 : 1] } : {} },
      axes: [
        { font: font, size: 28, space: 60, stroke: "#5f6b73", grid: { stroke: "#eef1f3" },
          values: (u, splits) => splits.map(clockTime) },
        y
      ],
      series: [{}, series]
    };
  }

  /* An axis tick (seconds) as the browser's local "HH:mm", the same in both languages. */
  function clockTime(seconds) {
    const date = new Date(seconds * 1000);
    return String(date.getHours()).padStart(2, "0") + ":" + String(date.getMinutes()).padStart(2, "0");
  }

  // ------------------------------------------------------------ start

  /* A side panel (wide screens) starts below the header, which stays usable (language, sign-out). */
  function noteHeaderHeight() {
    document.documentElement.style.setProperty("--top-h", document.querySelector(".top").offsetHeight + "px");
  }

  let resizeTimer = null;
  function onResize() {
    noteHeaderHeight();
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => { if (panelDevice) drawCharts(); }, 200);
  }

  $("panel-close").addEventListener("click", closePanel);
  $("cmd-on").addEventListener("click", () => sendCommand({ relay: true }));
  $("cmd-off").addEventListener("click", () => sendCommand({ relay: false }));
  $("cmd-dim").addEventListener("click", () => sendCommand({ relay: true, dim_pct: Number($("dim-level").value) }));
  $("dim-level").addEventListener("input", () => { $("dim-value").textContent = $("dim-level").value + "%"; });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });
  window.addEventListener("resize", onResize);
  window.setInterval(tick, 1000);
  applyStaticWords();
  page.start();
})();
