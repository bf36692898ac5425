/* The technician console (技术员 / 维修), phone first: the tickets of my teams, acknowledge (签收) for my
   own team, start on site, hold with a reason, resume, resolve (办结) with a note and photos from the
   phone's camera; the device's live readings beside the ticket and the way to it on the site plan.
   It loads the plan, the devices and the tickets once after sign-in; after that every change arrives
   over Server-Sent Events (GET /api/v1/events), which carry a ticket's new state and history entry,
   so the page never polls. Shared code (words, API client, SSE, plan) is window.Linli
   (/static/common/linli.js). Every text from the server goes through textContent. */
"use strict";

(function () {
  const L = window.Linli;
  const words = L.words(window.LINLI_TECH_I18N);
  const api = L.client("linli.tech.token");
  const $ = L.$;
  const el = L.el;
  const t = (key) => words.t(key);

  const SHOWN = ["open", "acknowledged", "in_progress", "on_hold", "resolved"];
  const ENDED = ["verified", "closed", "cancelled"];
  const TEAM_ROLES = ["technician", "grid_officer"];
  const MANAGING = ["admin", "manager"];
  const MAX_PHOTOS = 6; // as POST /tickets/{id}/resolve takes
  const SEVERITY_ORDER = { P0: 0, P1: 1, P2: 2, P3: 3 };

  let me = null; // GET /auth/me
  let siteId = null;
  let plan = null; // GET /sites/{site}/plan
  let planNodes = new Map(); // device id -> <g> on the plan
  const devices = new Map(); // id -> GET /devices item, updated by device events
  const tickets = new Map(); // id -> ticket (GET /tickets item), updated by ticket events
  const fetching = new Set(); // ticket ids fetched once after an event named them first
  const photos = new Map(); // photo URL -> object URL (each photo is fetched once)
  let zoomed = true;
  let chosen = []; // files picked for the resolve
  let busy = false;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  // ------------------------------------------------------------ sign-in and loading (Linli.signedInPage)

  const page = L.signedInPage({
    client: api,
    words: words,
    async onStart(account, site) {
      me = account;
      siteId = site;
      listen(); // the stream first, then the snapshot (docs/live-updates.md)
      await loadAll();
    },
    onShown: render,
    onSignOut() {
      me = null;
      siteId = null;
      plan = null;
      devices.clear();
      tickets.clear();
      window.location.hash = "";
    },
    onSignInShown() {
      $("who").hidden = true;
      renderStatic();
    },
    onLanguage() {
      render();
      showPreviews();
    }
  });
  const setLive = page.setLive;
  const signOut = page.signOut;

  async function loadAll() {
    const snapshot = await L.siteSnapshot(api, siteId, SHOWN, "&sort=ack_due_at&limit=500");
    plan = snapshot.plan;
    planNodes = new Map();
    devices.clear();
    for (const device of snapshot.devices) devices.set(device.id, device);
    for (const ticket of snapshot.tickets) tickets.set(ticket.id, ticket);
  }

  // ------------------------------------------------------------ live updates (SSE)

  function listen() {
    page.listen({ ticket: onTicket, device: onDevice }, (state, missed) => {
      if (state === "refused") return page.checkSignIn();
      setLive(state === "live" ? "live" : state);
      if (state === "live" && missed) {
        loadAll().then(render).catch(() => { /* the next reconnect tries again */ });
      }
      return true;
    });
  }

  function sameEntry(a, b) {
    return a.type === b.type && a.actor === b.actor && Date.parse(a.at) === Date.parse(b.at);
  }

  function onTicket(data) {
    if (!data || data.site !== siteId || typeof data.id !== "number") return;
    const known = tickets.get(data.id);
    if (!known) {
      if (fetching.has(data.id)) return;
      fetching.add(data.id); // a ticket new to this page: its title and history, once
      api.api("/tickets/" + data.id).then((full) => {
        tickets.set(full.id, full);
        render();
      }).catch(() => { /* not ours after all */ });
      return;
    }
    if (typeof data.version !== "number" || typeof known.version !== "number" || data.version >= known.version) {
      for (const key of ["status", "severity", "teams", "device_ids", "acks", "assignee", "version",
        "ack_due_at", "start_due_at", "resolve_due_at"]) {
        if (data[key] !== undefined) known[key] = data[key];
      }
    }
    const entry = data.entry;
    if (entry && typeof entry === "object" && !(known.history || []).some((e) => sameEntry(e, entry))) {
      known.history = (known.history || []).concat([entry]);
      known.history.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    }
    render();
  }

  function onDevice(data) {
    const device = L.deviceEvent(devices, siteId, data);
    if (!device) return;
    if (typeof data.health === "string") device.health = data.health;
    if (data.at) device.last_seen = data.at;
    const open = current();
    if (open && deviceIds(open).includes(device.id)) {
      renderReadings(open);
      paintPlan(open);
    }
  }

  // ------------------------------------------------------------ what a ticket says

  function deviceIds(ticket) {
    const ids = (ticket.device_ids || []).slice();
    if (ticket.device_id && !ids.includes(ticket.device_id)) ids.unshift(ticket.device_id);
    return ids;
  }

  function deviceName(id) {
    const device = plan ? plan.devices.find((d) => d.id === id) : null;
    return device ? words.localName(device) + " (" + id + ")" : id;
  }

  function ticketTitle(ticket) {
    const fault = words.faultWord(ticket);
    const ids = deviceIds(ticket);
    if (ids.length && plan) return deviceName(ids[0]) + " · " + fault;
    return ticket.title || fault;
  }

  /* The deadline that matters now: acknowledge while open, be on site (P0/P1), then fix. */
  function deadline(ticket) {
    if (ticket.status === "open") return { key: "dueAck", at: ticket.ack_due_at };
    if (ticket.status === "acknowledged" && ticket.start_due_at) return { key: "dueStart", at: ticket.start_due_at };
    if (ticket.status === "acknowledged" || ticket.status === "in_progress") return { key: "dueResolve", at: ticket.resolve_due_at };
    return null;
  }

  function dueText(ticket) {
    if (ticket.status === "on_hold") return { text: t("paused"), late: false };
    if (ticket.status === "resolved") return { text: t("waitingVerify"), late: false };
    const due = deadline(ticket);
    if (!due || !due.at) return { text: "", late: false };
    const left = Date.parse(due.at) - L.serverNow();
    const values = { what: t(due.key), time: words.duration(left) };
    return { text: fill(t(left < 0 ? "timeOver" : "timeLeft"), values), late: left < 0 };
  }

  function myTeamsOn(ticket) {
    return (me && me.teams ? me.teams : []).filter((team) => (ticket.teams || []).includes(team));
  }

  /* The team this account would acknowledge for, or null: a team member for their own team only. */
  function teamToAck(ticket) {
    if (!["open", "acknowledged"].includes(ticket.status) || !me) return null;
    const acks = ticket.acks || {};
    if (TEAM_ROLES.includes(me.role)) return myTeamsOn(ticket).find((team) => !acks[team]) || null;
    if (MANAGING.includes(me.role)) {
      const lead = (ticket.teams || [])[0];
      return lead && !acks[lead] ? lead : null;
    }
    return null;
  }

  function mayWork() {
    return me && (TEAM_ROLES.includes(me.role) || MANAGING.includes(me.role));
  }

  function sortKey(ticket) {
    const due = deadline(ticket);
    const at = due && due.at ? Date.parse(due.at) : Number.MAX_SAFE_INTEGER;
    const parked = ["on_hold", "resolved"].includes(ticket.status) ? 1 : 0;
    return [parked, at, SEVERITY_ORDER[ticket.severity] || 9, ticket.id];
  }

  function compare(a, b) {
    const x = sortKey(a);
    const y = sortKey(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  }

  // ------------------------------------------------------------ rendering

  function current() {
    const match = /^#ticket-(\d+)$/.exec(window.location.hash);
    return match ? tickets.get(Number(match[1])) || null : null;
  }

  function renderStatic() {
    words.applyStatic();
    document.title = t("title");
    if ($("live").dataset.state) setLive($("live").dataset.state);
    if (me) {
      const teams = (me.teams || []).map((team) => words.word("team", team)).join("、") || t("noTeam");
      $("who").textContent = fill(t("whoIs"), { user: me.full_name || me.username, teams: teams });
      $("who").hidden = false;
    }
  }

  function render() {
    renderStatic();
    if (!plan) return;
    renderList();
    const open = current();
    $("list-view").hidden = Boolean(open);
    $("detail").hidden = !open;
    if (open) renderDetail(open);
  }

  function renderList() {
    const list = $("tickets");
    list.replaceChildren();
    const shown = Array.from(tickets.values()).filter((ticket) => SHOWN.includes(ticket.status)).sort(compare);
    $("ticket-count").textContent = shown.length ? "(" + shown.length + ")" : "";
    if (!shown.length) {
      list.append(el("li", "empty", t("noTickets")));
      return;
    }
    for (const ticket of shown) {
      const row = el("li", "row sev-" + ticket.severity);
      row.dataset.ticket = String(ticket.id);
      const link = el("a", "row-link");
      link.href = "#ticket-" + ticket.id;
      const head = el("span", "ticket-head");
      head.append(el("span", "sev", ticket.severity), el("span", "row-name", ticketTitle(ticket)));
      const due = dueText(ticket);
      const countdown = el("span", "countdown" + (due.late ? " late" : ""), due.text);
      countdown.dataset.ticket = String(ticket.id);
      link.append(head, countdown);
      const badge = el("span", "badge ts-" + ticket.status, words.word("ticketStatus", ticket.status));
      row.append(link, badge);
      list.append(row);
    }
  }

  function fact(list, term, value) {
    list.append(el("dt", null, term), el("dd", null, value));
  }

  function renderDetail(ticket) {
    $("detail").dataset.ticket = String(ticket.id);
    $("detail-severity").textContent = ticket.severity;
    $("detail-severity").className = "sev sev-" + ticket.severity;
    $("detail-title").textContent = ticketTitle(ticket);
    const status = $("detail-status");
    status.textContent = words.word("ticketStatus", ticket.status);
    status.className = "badge ts-" + ticket.status;
    status.dataset.status = ticket.status;
    tickDetail(ticket);

    const facts = $("detail-facts");
    facts.replaceChildren();
    fact(facts, t("fault"), words.faultWord(ticket));
    const ids = deviceIds(ticket);
    if (ids.length) fact(facts, ids.length > 1 ? t("devices") : t("device"), ids.map(deviceName).join("、"));
    else if (ticket.subject && ticket.subject.id) fact(facts, t("place"), ticket.subject.id);
    fact(facts, t("opened"), words.formatTime(ticket.opened_at));
    fact(facts, t("assignee"), ticket.assignee || t("nobody"));

    const acks = $("detail-acks");
    acks.replaceChildren();
    const mine = myTeamsOn(ticket);
    for (const team of ticket.teams || []) {
      const ack = (ticket.acks || {})[team];
      const item = el("li", ack ? "acked" : "not-acked");
      item.dataset.team = team;
      item.dataset.acked = ack ? "true" : "false";
      const name = el("span", "team-name", words.word("team", team) + (mine.includes(team) ? t("mine") : ""));
      const state = el("span", "ack-state",
        ack ? fill(t("acked"), { by: ack.by, at: words.formatTime(ack.at) }) : t("notAcked"));
      item.append(name, state);
      acks.append(item);
    }

    renderActions(ticket);
    renderReadings(ticket);
    renderPlan(ticket);
    renderHistory(ticket);
  }

  function tickDetail(ticket) {
    const due = dueText(ticket);
    const node = $("detail-due");
    node.textContent = due.text;
    node.className = "countdown" + (due.late ? " late" : "");
  }

  function renderActions(ticket) {
    const can = mayWork();
    const status = ticket.status;
    const show = {
      "do-ack": can && Boolean(teamToAck(ticket)),
      "do-start": can && ["open", "acknowledged"].includes(status),
      "do-resume": can && status === "on_hold",
      "show-hold": can && status === "in_progress",
      "show-resolve": can && ["acknowledged", "in_progress"].includes(status)
    };
    for (const [id, visible] of Object.entries(show)) {
      $(id).hidden = !visible;
      $(id).disabled = busy;
    }
    if (!show["show-hold"]) $("hold-form").hidden = true;
    if (!show["show-resolve"]) $("resolve-form").hidden = true;
    $("resolve-submit").disabled = busy;
    const none = $("no-actions");
    let why = "";
    if (ENDED.includes(status)) why = t("noActionsEnded");
    else if (status === "resolved") why = t("noActionsResolved");
    else if (!can) why = t("noActionsViewer");
    none.textContent = why;
    none.hidden = !why;
  }

  function readingValue(value) {
    if (value === true) return t("yes");
    if (value === false) return t("no");
    return String(value);
  }

  function renderReadings(ticket) {
    const box = $("detail-readings");
    box.replaceChildren();
    const ids = deviceIds(ticket);
    if (!ids.length) {
      box.append(el("p", "hint", t("noDevice")));
      return;
    }
    for (const id of ids) {
      const device = devices.get(id);
      const block = el("div", "device-readings");
      block.dataset.device = id;
      const head = el("p", "device-head");
      head.append(el("strong", null, deviceName(id)));
      if (device) {
        head.append(" ", el("span", "badge h-" + (device.health || "offline"), words.word("health", device.health || "offline")));
      }
      block.append(head);
      if (device) {
        const facts = el("dl", "facts readings");
        fact(facts, t("lastSeen"), device.last_seen ? words.formatTime(device.last_seen) : t("never"));
        let any = false;
        for (const [key, value] of Object.entries(device.last || {})) {
          if (key === "ts" || key === "seq" || value === null || typeof value === "object") continue;
          fact(facts, words.word("reading", key), readingValue(value));
          any = true;
        }
        block.append(facts);
        if (!any) block.append(el("p", "hint", t("noReadings")));
      }
      box.append(block);
    }
  }

  function renderPlan(ticket) {
    const root = $("plan");
    if (!planNodes.size || root.dataset.lang !== words.lang) {
      planNodes = L.drawPlan(root, plan, (item) => words.localName(item), null);
      root.dataset.lang = words.lang;
    }
    paintPlan(ticket);
  }

  function paintPlan(ticket) {
    const ids = deviceIds(ticket);
    const spots = [];
    for (const [id, node] of planNodes) {
      const target = ids.includes(id);
      node.classList.toggle("target", target);
      const device = devices.get(id);
      node.dataset.health = device ? device.health || "offline" : "offline";
      node.querySelector("title").textContent = deviceName(id);
      if (target) node.parentNode.append(node); // on top of its neighbours
    }
    for (const device of plan.devices) {
      if (ids.includes(device.id) && device.position) {
        spots.push({ x: L.num(device.position.x, 0) - 30, y: L.num(device.position.y, 0) - 30, width: 60, height: 60 });
      }
    }
    const root = $("plan");
    const width = L.num(plan.width, 1000);
    const height = L.num(plan.height, 700);
    let view = "0 0 " + width + " " + height;
    if (zoomed && spots.length) {
      const left = Math.min(...spots.map((b) => b.x));
      const top = Math.min(...spots.map((b) => b.y));
      const right = Math.max(...spots.map((b) => b.x + b.width));
      const bottom = Math.max(...spots.map((b) => b.y + b.height));
      const w = Math.min(width, Math.max(right - left + 240, width * 0.45));
      const h = w * height / width;
      const x = Math.max(0, Math.min(width - w, (left + right) / 2 - w / 2));
      const y = Math.max(0, Math.min(height - h, (top + bottom) / 2 - h / 2));
      view = [x, y, w, h].map((n) => Math.round(n)).join(" ");
    }
    root.setAttribute("viewBox", view);
    const button = $("plan-zoom");
    button.hidden = !spots.length;
    button.textContent = zoomed ? t("wholePlan") : t("zoomIn");
  }

  function renderHistory(ticket) {
    const list = $("detail-history");
    list.replaceChildren();
    for (const entry of (ticket.history || []).slice().reverse()) {
      if (entry.type === "notified") continue; // delivery attempts of notifications: not the technician's
      const item = el("li", "entry");
      item.dataset.type = entry.type;
      const head = el("p", "entry-head");
      const actor = entry.actor === "system" ? t("system") : entry.actor;
      head.append(el("span", "entry-what", words.word("event", entry.type)),
        el("span", "entry-who", actor + " · " + words.formatTime(entry.at)));
      item.append(head);
      if (entry.team) item.append(el("p", "entry-team", words.word("team", entry.team)));
      if (entry.note) item.append(el("p", "entry-note", entry.note));
      if (Array.isArray(entry.photos) && entry.photos.length) {
        const strip = el("ul", "photos");
        for (const url of entry.photos) strip.append(photoItem(url));
        item.append(strip);
      }
      list.append(item);
    }
  }

  /* A resolve's photo: fetched once with the token (an <img> cannot send it) and shown from a blob: URL. */
  function photoItem(url) {
    const item = el("li", "photo");
    const img = el("img");
    img.alt = t("photoAlt");
    img.dataset.src = url;
    item.append(img);
    const ready = photos.get(url);
    if (typeof ready === "string") {
      img.src = ready;
    } else if (ready === undefined) {
      photos.set(url, null);
      api.api(url).then((blob) => {
        const local = URL.createObjectURL(blob);
        photos.set(url, local);
        for (const node of document.querySelectorAll("img[data-src]")) {
          if (node.dataset.src === url) node.src = local;
        }
      }).catch(() => {
        photos.set(url, false);
        for (const node of document.querySelectorAll("img[data-src]")) {
          if (node.dataset.src === url) node.replaceWith(el("span", "hint", t("photoFailed")));
        }
      });
    } else if (ready === false) {
      img.replaceWith(el("span", "hint", t("photoFailed")));
    }
    return item;
  }

  function tick() {
    for (const node of document.querySelectorAll("#tickets .countdown")) {
      const ticket = tickets.get(Number(node.dataset.ticket));
      if (!ticket) continue;
      const due = dueText(ticket);
      node.textContent = due.text;
      node.classList.toggle("late", due.late);
    }
    const open = current();
    if (open && !$("detail").hidden) tickDetail(open);
  }

  // ------------------------------------------------------------ actions

  function failed(error) {
    if (error instanceof L.Unauthorized) {
      signOut();
      return;
    }
    const status = error instanceof L.ApiError ? error.status : 0;
    if (status === 409) L.showMessage(t("conflict"));
    else if (status === 403) L.showMessage(t("forbidden"));
    else if (status === 413 || status === 415) L.showMessage(t("photoRefused"));
    else L.showMessage(t("actionFailed"));
  }

  async function act(path, body, progress) {
    const ticket = current();
    if (!ticket || busy) return null;
    busy = true;
    renderActions(ticket);
    L.showMessage(progress || t("sending"));
    try {
      const json = Object.assign({ version: ticket.version }, body || {});
      const updated = await api.api("/tickets/" + ticket.id + "/" + path, { method: "POST", json: json });
      tickets.set(updated.id, updated);
      L.showMessage("");
      return updated;
    } catch (error) {
      failed(error);
      return null;
    } finally {
      busy = false;
      render();
    }
  }

  function acknowledge() {
    const ticket = current();
    if (!ticket) return;
    const team = teamToAck(ticket);
    act("ack", TEAM_ROLES.includes(me.role) && team ? { team: team } : {});
  }

  function holdSubmit(event) {
    event.preventDefault();
    const reason = $("hold-reason").value.trim();
    if (!reason) return;
    act("hold", { reason: reason }).then((done) => {
      if (done) {
        $("hold-reason").value = "";
        $("hold-form").hidden = true;
      }
    });
  }

  function showPreviews() {
    const list = $("photo-previews");
    for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    list.replaceChildren();
    chosen.forEach((file, index) => {
      const item = el("li", "photo");
      const img = el("img");
      img.alt = file.name;
      img.src = URL.createObjectURL(file);
      const remove = el("button", "plain small", t("removePhoto"));
      remove.type = "button";
      remove.addEventListener("click", () => {
        chosen.splice(index, 1);
        showPreviews();
      });
      item.append(img, remove);
      list.append(item);
    });
    if (chosen.length) list.append(el("li", "hint", fill(t("photoCount"), { n: chosen.length })));
  }

  /* A phone's camera gives one photo per pick: each pick adds to those already chosen. */
  function photosChosen() {
    chosen = chosen.concat(Array.from($("resolve-photos").files || []));
    $("resolve-photos").value = "";
    if (chosen.length > MAX_PHOTOS) {
      L.showMessage(fill(t("tooManyPhotos"), { n: MAX_PHOTOS }));
      chosen = chosen.slice(0, MAX_PHOTOS);
    } else {
      L.showMessage("");
    }
    showPreviews();
  }

  async function resolveSubmit(event) {
    event.preventDefault();
    const ticket = current();
    const note = $("resolve-note").value.trim();
    if (!ticket || !note || busy) return;
    busy = true;
    renderActions(ticket);
    const ids = [];
    try {
      for (let i = 0; i < chosen.length; i++) {
        L.showMessage(fill(t("uploading"), { i: i + 1, n: chosen.length }));
        const form = new FormData();
        form.append("ticket_id", String(ticket.id));
        form.append("photo", chosen[i], chosen[i].name || "photo.jpg");
        const uploaded = await api.api("/uploads", { method: "POST", body: form });
        ids.push(uploaded.id);
      }
    } catch (error) {
      busy = false;
      failed(error);
      renderActions(ticket);
      return;
    }
    busy = false;
    const done = await act("resolve", { note: note, photos: ids });
    if (done) {
      $("resolve-note").value = "";
      $("resolve-photos").value = "";
      chosen = [];
      showPreviews();
      $("resolve-form").hidden = true;
    }
  }

  function toggleForm(id) {
    const form = $(id);
    form.hidden = !form.hidden;
    const other = id === "hold-form" ? "resolve-form" : "hold-form";
    $(other).hidden = true;
    if (!form.hidden) form.querySelector("textarea").focus();
  }

  // ------------------------------------------------------------ start

  $("back").addEventListener("click", () => { window.location.hash = ""; });
  $("do-ack").addEventListener("click", acknowledge);
  $("do-start").addEventListener("click", () => act("start", {}));
  $("do-resume").addEventListener("click", () => act("resume", {}));
  $("show-hold").addEventListener("click", () => toggleForm("hold-form"));
  $("show-resolve").addEventListener("click", () => toggleForm("resolve-form"));
  for (const button of document.querySelectorAll(".cancel-form")) {
    button.addEventListener("click", () => { button.closest("form").hidden = true; });
  }
  $("hold-form").addEventListener("submit", holdSubmit);
  $("resolve-form").addEventListener("submit", resolveSubmit);
  $("resolve-photos").addEventListener("change", photosChosen);
  $("plan-zoom").addEventListener("click", () => {
    zoomed = !zoomed;
    const open = current();
    if (open) paintPlan(open);
  });
  window.addEventListener("hashchange", () => {
    $("hold-form").hidden = true;
    $("resolve-form").hidden = true;
    L.showMessage("");
    render();
    window.scrollTo(0, 0);
  });
  window.setInterval(tick, 1000);
  renderStatic();
  page.start();
})();
