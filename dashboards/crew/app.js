/* The crew dashboard (物业/网格 duty room): the site plan with every device coloured by health,
   counters, the open tickets by SLA deadline, and a device panel.
   It loads the plan, the devices and the open tickets once after sign-in; after that every change
   arrives over Server-Sent Events (GET /api/v1/events): the page never polls. The countdowns tick
   locally. Every text from the server goes through textContent (never innerHTML); nothing loads
   from another origin. */
"use strict";

(function () {
  const CATALOGUES = window.LINLI_CREW_I18N;
  const LANG_KEY = "linli.lang"; // shared with the resident page
  const TOKEN_KEY = "linli.crew.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const API = "/api/v1";
  const ACTIVE = ["open", "acknowledged", "in_progress", "on_hold"];
  const WAITING = ["open", "acknowledged"]; // nobody on site yet (api/views.py: WAITING)
  const BEING_FIXED = ["in_progress", "on_hold", "resolved", "verified"];
  const HEALTHS = ["ok", "fault", "offline", "maintenance"];
  const LIT_RATIO = 0.10; // lit at 10% of rated power, as the lamp_failure detector
  const RECONNECT_MS = 5000;

  let lang = readLang();
  let token = readToken();
  let siteId = null;
  let plan = null; // GET /sites/{site}/plan
  const devices = new Map(); // id -> device (GET /devices item, updated by events)
  const tickets = new Map(); // id -> active ticket
  const pendingTickets = new Set(); // ids being fetched after an event
  let source = null; // the EventSource
  let panelDevice = null;

  // ------------------------------------------------------------ words

  function readLang() {
    try {
      const saved = window.localStorage.getItem(LANG_KEY);
      if (saved && Object.prototype.hasOwnProperty.call(CATALOGUES, saved)) return saved;
    } catch (e) { /* storage may be disabled */ }
    return "zh-CN";
  }

  function readToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function keepToken(value) {
    token = value;
    try {
      if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* kept in memory only */ }
  }

  function t(key) {
    const value = CATALOGUES[lang][key];
    return typeof value === "string" ? value : key;
  }

  function word(group, key) {
    const words = CATALOGUES[lang][group] || {};
    return words[key] || key;
  }

  function localName(item) {
    if (!item) return "";
    return lang === "en" && item.name_en ? item.name_en : item.name;
  }

  function faultWord(ticket) {
    const name = ticket.fault_name || {};
    return (lang === "en" ? name.en : name.zh) || ticket.fault || "";
  }

  // ------------------------------------------------------------ DOM helpers

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function num(value, fallback) {
    const n = Number(value);
    return Number.isFinite(n) ? n : fallback;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (!iso || Number.isNaN(date.getTime())) return "—";
    return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "zh-CN", {
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
    }).format(date);
  }

  function showMessage(text) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function setLive(key) {
    const badge = $("live");
    badge.hidden = !key;
    badge.dataset.state = key || "";
    badge.textContent = key ? t(key) : "";
  }

  // ------------------------------------------------------------ API

  class Unauthorized extends Error {}

  async function api(path, options) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(API + path, Object.assign({ headers: headers, cache: "no-store" }, options || {}));
    if (response.status === 401) throw new Unauthorized(path);
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  async function signIn(event) {
    event.preventDefault();
    showMessage("");
    const form = new URLSearchParams();
    form.set("username", $("username").value);
    form.set("password", $("password").value);
    try {
      const response = await fetch(API + "/auth/token", {
        method: "POST", body: form, headers: { Accept: "application/json" }
      });
      if (response.status === 401 || response.status === 400) {
        showMessage(t("signInFailed"));
        return;
      }
      if (!response.ok) throw new Error("token " + response.status);
      keepToken((await response.json()).access_token);
      $("password").value = "";
      await start();
    } catch (error) {
      showMessage(t("signInError"));
    }
  }

  function signOut() {
    keepToken(null);
    if (source) source.close();
    source = null;
    missed = false;
    siteId = null;
    plan = null;
    devices.clear();
    tickets.clear();
    closePanel();
    setLive(null);
    showSignIn();
  }

  function showSignIn() {
    $("board").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    applyStaticWords();
  }

  // ------------------------------------------------------------ loading

  async function chooseSite() {
    const fromQuery = new URLSearchParams(window.location.search).get("site");
    const me = await api("/auth/me");
    if (fromQuery && me.sites.includes(fromQuery)) return fromQuery;
    return me.sites.length ? me.sites[0] : null;
  }

  async function start() {
    if (!token) {
      showSignIn();
      return;
    }
    $("sign-in").hidden = true;
    showMessage(t("loading"));
    try {
      siteId = await chooseSite();
      if (!siteId) {
        showMessage(t("noSite"));
        return;
      }
      await loadAll();
      showMessage("");
      $("board").hidden = false;
      $("sign-out").hidden = false;
      render();
      listen();
    } catch (error) {
      if (error instanceof Unauthorized) {
        signOut();
        return;
      }
      showMessage(t("loadFailed"));
    }
  }

  async function loadAll() {
    const site = encodeURIComponent(siteId);
    const statuses = ACTIVE.map((s) => "&status=" + s).join("");
    const [planData, deviceData, ticketData] = await Promise.all([
      api("/sites/" + site + "/plan"),
      api("/devices?site=" + site + "&limit=1000"),
      api("/tickets?site=" + site + statuses + "&limit=500")
    ]);
    plan = planData;
    devices.clear();
    for (const device of deviceData.items) devices.set(device.id, device);
    tickets.clear();
    for (const ticket of ticketData.items) tickets.set(ticket.id, ticket);
  }

  // ------------------------------------------------------------ live updates (SSE)

  let retryMs = RECONNECT_MS;
  let missed = false; // the stream was down: what happened meanwhile is loaded again once it is back

  function listen() {
    if (source) source.close();
    setLive(missed ? "reconnecting" : "connecting");
    source = new EventSource(API + "/events?token=" + encodeURIComponent(token));
    source.addEventListener("open", onOpen);
    source.addEventListener("device", (event) => onDevice(parse(event)));
    source.addEventListener("ticket", (event) => onTicket(parse(event)));
    source.addEventListener("error", () => {
      missed = true;
      setLive("reconnecting");
      if (source && source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // Refused (token expired, server gone): try again later, less and less often.
      source = null;
      window.setTimeout(reconnect, retryMs);
      retryMs = Math.min(retryMs * 2, 60000);
    });
  }

  async function reconnect() {
    if (!token) return;
    try {
      await api("/auth/me"); // an expired token signs out instead of knocking forever
    } catch (error) {
      if (error instanceof Unauthorized) {
        signOut();
        return;
      }
    }
    listen();
  }

  async function onOpen() {
    retryMs = RECONNECT_MS;
    setLive("live");
    if (!missed) return;
    missed = false;
    try {
      await loadAll();
      render();
    } catch (error) {
      missed = true;
    }
  }

  function parse(event) {
    try { return JSON.parse(event.data); } catch (e) { return null; }
  }

  function onDevice(data) {
    if (!data || data.site !== siteId) return;
    const device = devices.get(data.device_id);
    if (!device) return;
    if (typeof data.online === "boolean") device.online = data.online;
    if (data.last && typeof data.last === "object") device.last = Object.assign({}, device.last, data.last);
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
      api("/tickets/" + data.id).then((full) => {
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
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.getAttribute("data-i18n"));
    const button = $("lang");
    button.textContent = t("switchLabel");
    button.setAttribute("aria-label", t("switchTo"));
    const name = plan ? localName(plan) : null;
    $("site-name").textContent = name ? t("titleOf").replace("{site}", name) : t("title");
    document.title = $("site-name").textContent;
    if ($("live").dataset.state) setLive($("live").dataset.state);
  }

  function render() {
    applyStaticWords();
    if (!plan) return;
    renderPlan();
    renderLegend();
    renderCounters();
    renderTickets();
    if (panelDevice) renderPanelFacts();
  }

  function isLit(device) {
    const last = device.last || {};
    const rated = (plan.devices.find((d) => d.id === device.id) || {}).rated_power_w;
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

  // Devices that share a point (the elevators of one building) are spread along a short row.
  function placed() {
    const byPoint = new Map();
    for (const device of plan.devices) {
      if (!device.position) continue;
      const key = device.position.x + "," + device.position.y;
      if (!byPoint.has(key)) byPoint.set(key, []);
      byPoint.get(key).push(device);
    }
    const out = [];
    for (const group of byPoint.values()) {
      group.forEach((device, index) => {
        const shift = (index - (group.length - 1) / 2) * 26;
        out.push({ device: device, x: num(device.position.x, 0) + shift, y: num(device.position.y, 0) });
      });
    }
    return out;
  }

  function marker(kind, x, y) {
    if (kind === "elevator") return svg("rect", { x: x - 10, y: y - 10, width: 20, height: 20, rx: 3 });
    if (kind === "charger") return svg("path", { d: "M" + x + " " + (y - 13) + " l13 13 l-13 13 l-13 -13 z" });
    return svg("circle", { cx: x, cy: y, r: 10 });
  }

  function renderPlan() {
    const root = $("plan");
    const width = num(plan.width, 1000);
    const height = num(plan.height, 700);
    root.replaceChildren();
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.append(svg("rect", { x: 0, y: 0, width: width, height: height, class: "plan-ground" }));
    for (const compound of plan.compounds) {
      if (!compound.area) continue;
      const a = compound.area;
      const group = svg("g", { class: "plan-area" });
      group.append(svg("rect", { x: a.x, y: a.y, width: a.w, height: a.h, rx: 12 }));
      const label = svg("text", { x: num(a.x, 0) + 12, y: num(a.y, 0) + 28 });
      label.textContent = localName(compound);
      group.append(label);
      root.append(group);
    }
    // circuits: a thin line from the cabinet through its lights, in site-file order
    const cabinets = new Map(plan.cabinets.map((c) => [c.id, c]));
    const circuits = new Map();
    for (const device of plan.devices) {
      if (device.kind !== "streetlight" || !device.circuit || !device.position) continue;
      if (!circuits.has(device.circuit)) circuits.set(device.circuit, { cabinet: device.cabinet, points: [] });
      circuits.get(device.circuit).points.push(device.position);
    }
    for (const circuit of circuits.values()) {
      const cabinet = cabinets.get(circuit.cabinet);
      const points = (cabinet && cabinet.position ? [cabinet.position] : []).concat(circuit.points);
      root.append(svg("polyline", { class: "plan-circuit", points: points.map((p) => p.x + "," + p.y).join(" ") }));
    }
    for (const building of plan.buildings) {
      if (!building.position) continue;
      const p = building.position;
      const group = svg("g", { class: "plan-building" });
      group.append(svg("rect", { x: p.x - 48, y: p.y - 26, width: 96, height: 52, rx: 4 }));
      const label = svg("text", { x: p.x, y: p.y + 6, "text-anchor": "middle" });
      label.textContent = localName(building);
      group.append(label);
      root.append(group);
    }
    for (const cabinet of plan.cabinets) {
      if (!cabinet.position) continue;
      const p = cabinet.position;
      const group = svg("g", { class: "plan-cabinet" });
      group.append(svg("rect", { x: p.x - 9, y: p.y - 12, width: 18, height: 24 }));
      const title = svg("title");
      title.textContent = localName(cabinet);
      group.append(title);
      root.append(group);
    }
    for (const spot of placed()) {
      const device = spot.device;
      const node = svg("g", {
        class: "dev", tabindex: 0, role: "button",
        "data-device": device.id, "data-kind": device.kind
      });
      node.append(marker(device.kind, spot.x, spot.y), svg("title"));
      node.addEventListener("click", () => openPanel(device.id));
      node.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          openPanel(device.id);
        }
      });
      root.append(node);
      paintDevice(node, devices.get(device.id));
    }
  }

  function paintDevice(node, device) {
    const health = device ? device.health : "offline";
    node.setAttribute("data-health", health);
    node.setAttribute("class", "dev h-" + health + (device && device.kind === "streetlight" && isLit(device) ? " lit" : ""));
    const planDevice = plan.devices.find((d) => d.id === node.getAttribute("data-device"));
    const label = localName(planDevice) + " · " + word("health", health);
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

  function duration(ms) {
    const units = CATALOGUES[lang].units;
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return (h ? h + units.h : "") + pad(m) + units.m + pad(s) + units.s;
  }

  function countdownText(ticket, now) {
    const due = deadline(ticket);
    const at = dueMillis(ticket);
    if (at === Infinity) return { text: t("noDeadline"), late: false };
    const left = at - now;
    const text = left >= 0
      ? t(due.key) + " · " + t("left") + " " + duration(left)
      : t(due.key) + " · " + t("overdue") + " " + duration(left);
    return { text: text, late: left < 0 };
  }

  function deviceName(id) {
    const device = plan ? plan.devices.find((d) => d.id === id) : null;
    return device ? localName(device) : id;
  }

  function ticketRow(ticket, withCountdown) {
    const row = el("li", "row ticket sev-" + (ticket.severity || ""));
    row.dataset.ticket = String(ticket.id);
    const what = el("div", "ticket-what");
    const head = el("div", "ticket-head");
    head.append(el("span", "sev", ticket.severity || ""), el("span", "row-name", faultWord(ticket)));
    what.append(head);
    const where = (ticket.device_ids || []).map(deviceName).join("、");
    if (where) what.append(el("span", "ticket-where", where));
    if (withCountdown) what.append(el("span", "countdown"));
    else what.append(el("span", "ticket-where", t("opened") + " " + formatTime(ticket.opened_at)));
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
    const now = Date.now();
    for (const row of $("tickets").querySelectorAll("[data-ticket]")) {
      const ticket = tickets.get(Number(row.dataset.ticket));
      const node = row.querySelector(".countdown");
      if (!ticket || !node) continue;
      const shown = countdownText(ticket, now);
      node.textContent = shown.text;
      node.classList.toggle("late", shown.late);
    }
  }

  // ------------------------------------------------------------ device panel

  async function openPanel(id) {
    panelDevice = id;
    $("panel").hidden = false;
    renderPanelFacts();
    const list = $("panel-tickets");
    list.replaceChildren(el("li", "empty", t("loading")));
    try {
      const answer = await api("/tickets?site=" + encodeURIComponent(siteId) + "&device_id=" + encodeURIComponent(id) +
        "&sort=-opened_at&limit=20");
      if (panelDevice !== id) return;
      list.replaceChildren();
      if (!answer.items.length) list.append(el("li", "empty", t("noDeviceTickets")));
      for (const ticket of answer.items) list.append(ticketRow(ticket, false));
    } catch (error) {
      if (panelDevice === id) list.replaceChildren(el("li", "empty", t("loadFailed")));
    }
    $("panel-close").focus();
  }

  function closePanel() {
    panelDevice = null;
    $("panel").hidden = true;
  }

  function fact(list, term, value) {
    list.append(el("dt", null, term), el("dd", null, value === undefined || value === null || value === "" ? "—" : value));
  }

  function renderPanelFacts() {
    const device = devices.get(panelDevice);
    const planDevice = plan.devices.find((d) => d.id === panelDevice);
    if (!device || !planDevice) return;
    $("panel-title").textContent = localName(planDevice) + " (" + device.id + ")";
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
    fact(facts, t("lastSeen"), device.last_seen ? formatTime(device.last_seen) : t("never"));
    const readings = $("panel-readings");
    readings.replaceChildren();
    for (const [key, value] of Object.entries(device.last || {})) {
      if (key === "ts" || key === "seq" || (value !== null && typeof value === "object")) continue;
      fact(readings, key, String(value));
    }
  }

  // ------------------------------------------------------------ start

  function toggleLanguage() {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    try { window.localStorage.setItem(LANG_KEY, lang); } catch (e) { /* not kept */ }
    render();
  }

  $("lang").addEventListener("click", toggleLanguage);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("panel-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });
  window.setInterval(tick, 1000);
  applyStaticWords();
  start();
})();
