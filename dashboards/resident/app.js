/* The resident page (居民页面), public and phone first: the community plan with every streetlight,
   elevator and charging pile in residents' words, repairs in progress, 一键报修 with a photo, a
   courier's hazard snapshot, and "我的报修" (my reports) with their progress.
   It opens the public event stream (GET /api/v1/public/events) first, then loads the plan, the
   status and my reports once; after that every change arrives over Server-Sent Events: the page
   never polls, and loads the snapshot again only after the stream was down (events are not
   replayed). Shared code (words, DOM helpers, the plan, live updates) is dashboards/common/linli.js;
   every text from the server goes through textContent. */
"use strict";

(function () {
  const L = window.Linli;
  const words = L.words(window.LINLI_RESIDENT_I18N);
  const api = L.client(null).api; // no account: the public routes only
  const $ = L.$;
  const el = L.el;

  const KINDS = ["streetlight", "elevator", "charger"];
  const LIST_KEY = { streetlight: "streetlights", elevator: "elevators", charger: "chargers" };
  const STATES = {
    streetlight: ["on", "off", "fault", "repairing"],
    elevator: ["in_service", "out_of_service"],
    charger: ["available", "in_use", "unavailable"]
  };
  // What a resident may report about each kind of device (linli/storage/resident_reports.py).
  const CATEGORIES = {
    streetlight: ["light_out", "light_flicker", "light_on_by_day", "hazard", "other"],
    elevator: ["elevator_fault", "elevator_trapped", "hazard", "other"],
    charger: ["charger_fault", "hazard", "other"],
    none: ["other", "hazard"]
  };
  const GONE = ["closed", "cancelled"]; // a repair in this status leaves the public list
  const MINE_KEY = "linli.resident.reports"; // report ids: each is the key to its report
  const MINE_MAX = 20;
  const PHOTO_MAX_BYTES = 10 * 1024 * 1024; // LINLI_UPLOAD_MAX_BYTES
  const SHRINK_OVER_BYTES = 1.5 * 1024 * 1024; // a phone's photo is sent at most 2048 px wide
  const SHRINK_SIDE = 2048;

  let siteId = null;
  let site = null; // {name, name_en}
  let plan = null; // GET /public/plan
  let nodes = new Map(); // device id -> its <g> on the plan
  const devices = new Map(); // device id -> {id, kind, name, name_en, building, state}
  const tickets = new Map(); // ticket id -> public ticket (active repairs of devices)
  const mine = new Map(); // report id -> GET /public/reports/{id} (null: gone)
  const photos = new Map(); // photo URL -> its <img>, made once (an image is fetched once)
  let mode = "resident"; // or "courier"
  let picked = null; // the device chosen for a report
  let place = null; // {x, y} on the plan, for a hazard
  let preview = null; // object URL of the chosen photo

  // ------------------------------------------------------------ words

  function stateWord(kind, state) {
    const table = words.table("state")[kind] || {};
    return table[state] || state;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (all, key) => (key in values ? String(values[key]) : all));
  }

  function applyWords() {
    words.applyStatic();
    const name = site ? words.localName(site) : null;
    $("site-name").textContent = name ? fill(words.t("titleOf"), { site: name }) : words.t("title");
    document.title = $("site-name").textContent;
    $("plan-hint").textContent = words.t(mode === "courier" ? "planHintCourier" : "planHintResident");
    $("place-state").textContent = words.t(place ? "placeSet" : "placeNone");
    const live = $("live");
    live.textContent = words.t(live.dataset.state || "connecting");
  }

  // ------------------------------------------------------------ the plan and the devices

  function drawPlan() {
    if (!plan) return;
    nodes = L.drawPlan($("plan"), plan, words.localName, pickDevice);
    for (const device of devices.values()) paintDevice(device);
    markPicked();
    drawPlace();
  }

  function paintDevice(device) {
    const node = nodes.get(device.id);
    if (!node) return;
    if (device.state) node.setAttribute("data-state", device.state);
    const title = node.querySelector("title");
    if (title) title.textContent = words.localName(device) + " · " + stateWord(device.kind, device.state);
  }

  function renderLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const kind of KINDS) {
      for (const state of STATES[kind]) {
        const item = el("li", "legend-item");
        const swatch = el("span", "swatch sw-" + kind);
        swatch.setAttribute("data-state", state);
        item.append(swatch, el("span", null, words.word("kind", kind) + " " + stateWord(kind, state)));
        legend.append(item);
      }
    }
  }

  function renderCounters() {
    for (const kind of KINDS) {
      const box = $("count-" + kind);
      box.replaceChildren();
      const items = [...devices.values()].filter((d) => d.kind === kind);
      const head = el("p", "counter-head");
      head.append(el("span", "counter-kind", words.t(LIST_KEY[kind])), el("span", "counter-total", items.length));
      const row = el("ul", "chips");
      for (const state of STATES[kind]) {
        const chip = el("li", "chip");
        chip.setAttribute("data-state", state);
        chip.append(el("span", "chip-word", stateWord(kind, state)),
          el("span", "chip-count", items.filter((d) => d.state === state).length));
        row.append(chip);
      }
      box.append(head, row);
    }
  }

  function badge(kind, state) {
    const node = el("span", "badge", stateWord(kind, state));
    node.setAttribute("data-state", state || "");
    return node;
  }

  function renderElevators() {
    const list = $("list-elevator");
    list.replaceChildren();
    const buildings = (plan && plan.buildings) || [];
    const lifts = [...devices.values()].filter((d) => d.kind === "elevator");
    if (!lifts.length) {
      list.append(el("li", "empty", words.t("empty")));
      return;
    }
    const known = new Set(buildings.map((b) => b.id));
    const groups = buildings.map((b) => [words.localName(b), lifts.filter((d) => d.building === b.id)])
      .concat([["", lifts.filter((d) => !known.has(d.building))]]);
    for (const [name, members] of groups) {
      if (!members.length) continue;
      const row = el("li", "row building");
      const down = members.filter((d) => d.state === "out_of_service").length;
      const head = el("div", "ticket-what");
      // the state in words too, not only in colour
      head.append(el("span", "row-name", name), el("span", "ticket-where",
        down ? stateWord("elevator", "out_of_service") + " " + down + "/" + members.length
          : stateWord("elevator", "in_service")));
      row.append(head);
      const chips = el("span", "lifts");
      for (const lift of members) {
        const chip = el("button", "lift", shortName(words.localName(lift), name));
        chip.type = "button";
        chip.setAttribute("data-device", lift.id);
        chip.setAttribute("data-state", lift.state || "");
        chip.setAttribute("aria-label", words.localName(lift) + " · " + stateWord("elevator", lift.state));
        chip.addEventListener("click", () => pickDevice(lift.id));
        chips.append(chip);
      }
      row.append(chips);
      list.append(row);
    }
  }

  /* "湾美一期1号楼A梯" in building "1号楼" is "A梯" there ("Building 1 lift A": "lift A"). */
  function shortName(full, building) {
    const at = building ? full.indexOf(building) : -1;
    return (at >= 0 && full.slice(at + building.length).trim()) || full;
  }

  function renderChargers() {
    const list = $("list-charger");
    list.replaceChildren();
    const piles = [...devices.values()].filter((d) => d.kind === "charger");
    if (!piles.length) list.append(el("li", "empty", words.t("empty")));
    for (const pile of piles) {
      const row = el("li", "row");
      row.setAttribute("data-device", pile.id);
      row.append(el("span", "row-name", words.localName(pile)), badge("charger", pile.state));
      list.append(row);
    }
  }

  function renderTickets() {
    const list = $("tickets");
    list.replaceChildren();
    // Repairs of devices; a report about a place is followed in 我的报修 only.
    const shown = [...tickets.values()].filter((t) => (t.device_ids || []).length).sort((a, b) => String(b.opened_at).localeCompare(String(a.opened_at)));
    if (!shown.length) {
      list.append(el("li", "empty", words.t("noRepairs")));
      return;
    }
    for (const ticket of shown) {
      const row = el("li", "row ticket");
      row.setAttribute("data-ticket", ticket.id);
      const what = el("div", "ticket-what");
      what.append(el("span", "row-name", words.faultWord(ticket)));
      const where = (ticket.device_ids || []).map((id) => (devices.has(id) ? words.localName(devices.get(id)) : id));
      if (where.length) what.append(el("span", "ticket-where", where.join("、")));
      what.append(el("span", "ticket-when", words.t("openedAt") + " " + words.formatTime(ticket.opened_at)));
      row.append(what, statusBadge(ticket.status));
      list.append(row);
    }
  }

  function statusBadge(status) {
    const node = el("span", "badge ts", words.word("ticketStatus", status));
    node.setAttribute("data-status", status || "");
    return node;
  }

  function renderDevices() {
    renderCounters();
    renderElevators();
    renderChargers();
  }

  function render() {
    applyWords();
    renderLegend();
    drawPlan();
    renderDevices();
    renderDeviceChoices();
    renderTickets();
    renderCategories();
    showPicked();
    renderMine();
  }

  // ------------------------------------------------------------ live

  function onDevice(event) {
    if (!event || event.site !== siteId || !devices.has(event.device_id)) return;
    const device = devices.get(event.device_id);
    if (device.state === event.state) return;
    device.state = event.state;
    paintDevice(device);
    renderDevices();
    // The choice in the form says the new state too; the list itself is not rebuilt under a thumb.
    const option = $("report-device").querySelector('option[value="' + CSS.escape(device.id) + '"]');
    if (option) option.textContent = choiceText(device);
    if (picked === device.id) showPicked();
  }

  function onTicket(event) {
    if (!event || event.site !== siteId || typeof event.id !== "number") return;
    if (GONE.includes(event.status)) tickets.delete(event.id);
    else tickets.set(event.id, Object.assign({}, tickets.get(event.id) || {}, event));
    renderTickets();
    // My reports on this ticket: the event is their new progress step (no need to ask again).
    for (const report of mine.values()) {
      const ticket = report && report.ticket;
      if (!ticket || ticket.id !== event.id) continue;
      ticket.status = event.status;
      const steps = ticket.progress || (ticket.progress = []);
      const last = steps[steps.length - 1];
      if (!last || last.status !== event.status) steps.push({ status: event.status, at: event.at });
    }
    renderMine();
  }

  function onLiveState(state, missed) {
    const live = $("live");
    live.dataset.state = state === "refused" ? "reconnecting" : state;
    live.textContent = words.t(live.dataset.state);
    if (state === "live" && missed) {
      // Events sent while the stream was down are not replayed: load what they would have said.
      loadStatus();
      loadMine();
    }
    return undefined; // "refused": keep trying (there is no sign-in to check)
  }

  // ------------------------------------------------------------ loading

  async function chooseSite() {
    const fromQuery = new URLSearchParams(window.location.search).get("site");
    if (fromQuery) return fromQuery;
    const sites = await api("/api/v1/public/sites");
    return sites.length ? sites[0].id : null;
  }

  async function loadPlan() {
    plan = await api("/api/v1/public/plan?site=" + encodeURIComponent(siteId));
    for (const item of plan.devices || []) {
      devices.set(item.id, Object.assign(devices.get(item.id) || {}, item));
    }
  }

  async function loadStatus() {
    const data = await api("/api/v1/public/status?site=" + encodeURIComponent(siteId));
    site = data;
    for (const kind of KINDS) {
      for (const item of data[LIST_KEY[kind]] || []) {
        const known = devices.get(item.id) || { id: item.id, kind: kind };
        devices.set(item.id, Object.assign(known, { name: item.name, name_en: item.name_en, state: item.state }));
      }
    }
    tickets.clear();
    for (const ticket of data.tickets || []) tickets.set(ticket.id, ticket);
    if (plan) render();
  }

  async function start() {
    applyWords();
    L.showMessage(words.t("loading"));
    try {
      siteId = await chooseSite();
      if (!siteId) {
        L.showMessage(words.t("noSite"));
        return;
      }
      // The stream first, then the snapshot: nothing that changes in between is lost.
      L.live("/api/v1/public/events?site=" + encodeURIComponent(siteId), { device: onDevice, ticket: onTicket },
        onLiveState);
      await Promise.all([loadPlan(), loadStatus()]);
      L.showMessage("");
      render();
    } catch (error) {
      L.showMessage(words.t("loadFailed"));
    }
    loadMine();
  }

  // ------------------------------------------------------------ my reports (我的报修)

  function keptIds() {
    try {
      const ids = JSON.parse(window.localStorage.getItem(MINE_KEY) || "[]");
      return Array.isArray(ids) ? ids.filter((id) => typeof id === "string" && /^[A-Za-z0-9_-]{16,43}$/.test(id)) : [];
    } catch (e) {
      return [];
    }
  }

  function keepIds(ids) {
    try { window.localStorage.setItem(MINE_KEY, JSON.stringify(ids.slice(0, MINE_MAX))); } catch (e) { /* not kept */ }
  }

  async function loadReport(id) {
    try {
      mine.set(id, await api("/api/v1/public/reports/" + encodeURIComponent(id)));
    } catch (error) {
      if (error instanceof L.ApiError && error.status === 404) {
        mine.delete(id); // removed (retention): forget its id
        keepIds(keptIds().filter((kept) => kept !== id));
      }
    }
  }

  async function loadMine() {
    const ids = keptIds();
    for (const id of ids) if (!mine.has(id)) mine.set(id, null);
    renderMine();
    await Promise.all(ids.map(loadReport));
    renderMine();
  }

  function photoOf(url) {
    if (!photos.has(url)) {
      const img = el("img", "thumb");
      img.alt = "";
      img.loading = "lazy";
      img.src = url;
      photos.set(url, img);
    }
    return photos.get(url);
  }

  function renderMine() {
    const list = $("mine");
    list.replaceChildren();
    const ids = keptIds().filter((id) => mine.has(id));
    if (!ids.length) {
      list.append(el("li", "empty", words.t("mineEmpty")));
      return;
    }
    for (const id of ids) {
      const report = mine.get(id);
      const row = el("li", "row report");
      row.setAttribute("data-report", id);
      if (!report) {
        row.append(el("span", "row-name", words.t("loading")));
        list.append(row);
        continue;
      }
      const ticket = report.ticket;
      const what = el("div", "report-what");
      const category = report.category_name || {};
      const title = (words.lang === "en" ? category.en : category.zh) || words.word("categories", report.category);
      what.append(el("span", "row-name", title));
      const device = report.device_id && devices.get(report.device_id);
      if (device) what.append(el("span", "ticket-where", words.localName(device)));
      if (report.source === "grid_officer") what.append(el("span", "ticket-where", words.t("sourceCourier")));
      what.append(el("span", "report-text", report.description));
      if (ticket) {
        const steps = el("ol", "progress");
        for (const step of ticket.progress || []) {
          const item = el("li", "step");
          item.setAttribute("data-status", step.status);
          item.append(el("span", null, words.word("ticketStatus", step.status)),
            el("time", "step-at", words.formatTime(step.at)));
          steps.append(item);
        }
        what.append(steps);
      }
      const pictures = el("div", "thumbs");
      for (const url of report.photos || []) pictures.append(photoOf(url));
      if (pictures.childElementCount) what.append(pictures);
      row.append(what, ticket ? statusBadge(ticket.status) : el("span", "badge", words.t("mineNoTicket")));
      list.append(row);
    }
  }

  // ------------------------------------------------------------ reporting (一键报修) and hazards

  function renderDeviceChoices() {
    const select = $("report-device");
    const chosen = picked || select.value;
    select.replaceChildren();
    const none = el("option", null, words.t("noDevice"));
    none.value = "";
    select.append(none);
    for (const kind of KINDS) {
      const group = el("optgroup");
      group.label = words.t(LIST_KEY[kind]);
      for (const device of devices.values()) {
        if (device.kind !== kind) continue;
        const option = el("option", null, choiceText(device));
        option.value = device.id;
        group.append(option);
      }
      if (group.childElementCount) select.append(group);
    }
    select.value = chosen && devices.has(chosen) ? chosen : "";
  }

  function choiceText(device) {
    return words.localName(device) + " · " + stateWord(device.kind, device.state);
  }

  function renderCategories() {
    const select = $("report-category");
    const before = select.value;
    const device = devices.get($("report-device").value);
    const codes = CATEGORIES[device ? device.kind : "none"];
    select.replaceChildren();
    for (const code of codes) {
      const option = el("option", null, words.word("categories", code));
      option.value = code;
      select.append(option);
    }
    select.value = codes.includes(before) ? before : codes[0];
  }

  function markPicked() {
    for (const node of nodes.values()) node.classList.remove("picked");
    if (picked && nodes.has(picked)) nodes.get(picked).classList.add("picked");
  }

  function showPicked() {
    const select = $("report-device");
    select.value = picked || "";
    renderCategories();
    markPicked();
    const device = picked && devices.get(picked);
    $("picked").hidden = !device;
    $("picked-name").textContent = device ? words.t("picked") + choiceText(device) : "";
  }

  function pickDevice(id) {
    if (mode !== "resident" || !devices.has(id)) return;
    picked = id;
    renderDeviceChoices();
    showPicked();
  }

  function drawPlace() {
    const root = $("plan");
    const old = root.querySelector(".place-pin");
    if (old) old.remove();
    if (!place || mode !== "courier") return;
    const pin = L.svg("path", {
      class: "place-pin",
      d: "M" + place.x + " " + place.y + " l-14 -30 a16 16 0 1 1 28 0 z"
    });
    root.append(pin);
  }

  function onPlanClick(event) {
    if (mode !== "courier" || !plan) return;
    const root = $("plan");
    const matrix = root.getScreenCTM();
    if (!matrix) return;
    const point = root.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const at = point.matrixTransform(matrix.inverse());
    const width = L.num(plan.width, 1000);
    const height = L.num(plan.height, 700);
    place = { x: Math.round(Math.min(Math.max(at.x, 0), width)), y: Math.round(Math.min(Math.max(at.y, 0), height)) };
    drawPlace();
    $("place-state").textContent = words.t("placeSet");
  }

  function setMode(next) {
    mode = next;
    const courier = mode === "courier";
    $("mode-resident").setAttribute("aria-pressed", String(!courier));
    $("mode-courier").setAttribute("aria-pressed", String(courier));
    $("resident-fields").hidden = courier;
    $("courier-fields").hidden = !courier;
    $("courier-note").hidden = !courier;
    $("report-submit").setAttribute("data-i18n", courier ? "submitHazard" : "submitReport");
    $("report-text").setAttribute("data-i18n-placeholder", courier ? "hazardPlaceholder" : "descriptionPlaceholder");
    $("plan").classList.toggle("placing", courier);
    applyWords();
    drawPlace();
    markPicked();
  }

  function say(key, values) {
    const box = $("report-status");
    box.textContent = key ? fill(words.t(key), values || {}) : "";
    box.hidden = !key;
  }

  function onPhoto() {
    const file = $("report-photo").files[0];
    const img = $("report-preview");
    if (preview) URL.revokeObjectURL(preview);
    preview = null;
    img.hidden = !file;
    if (!file) return;
    if (file.size > PHOTO_MAX_BYTES) say("photoTooBig");
    preview = URL.createObjectURL(file);
    img.src = preview;
  }

  /* A large photo is sent smaller (a cheap phone on a slow link); anything that fails sends it as is. */
  async function shrunk(file) {
    if (file.size <= SHRINK_OVER_BYTES || !window.createImageBitmap) return file;
    try {
      const bitmap = await window.createImageBitmap(file);
      const scale = Math.min(1, SHRINK_SIDE / Math.max(bitmap.width, bitmap.height));
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
      return blob && blob.size < file.size ? blob : file;
    } catch (e) {
      return file;
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    const courier = mode === "courier";
    const text = $("report-text").value.trim();
    if (!text) return say("needText");
    if (courier && !place) return say("needPlace");
    const file = $("report-photo").files[0];
    if (file && file.size > PHOTO_MAX_BYTES) return say("photoTooBig");
    const form = new FormData();
    form.set("site", siteId);
    form.set("description", text);
    const contact = $("report-contact").value.trim();
    if (contact) form.set("contact", contact);
    if (courier) {
      form.set("x", String(place.x));
      form.set("y", String(place.y));
      const where = $("report-place").value.trim();
      if (where) form.set("place", where);
    } else {
      const device = $("report-device").value;
      if (device) form.set("device_id", device);
      form.set("category", $("report-category").value);
    }
    const button = $("report-submit");
    button.disabled = true;
    say("sending");
    try {
      if (file) form.append("photos", await shrunk(file), file.name || "photo.jpg");
      const created = await api(courier ? "/api/v1/public/hazards" : "/api/v1/public/reports",
        { method: "POST", body: form });
      keepIds([created.id].concat(keptIds().filter((id) => id !== created.id)));
      say(created.duplicate_of ? "sentJoined" : "sent", { ticket: created.ticket_id });
      resetForm();
      mine.set(created.id, null);
      renderMine();
      await loadReport(created.id);
      renderMine();
    } catch (error) {
      const status = error instanceof L.ApiError ? error.status : 0;
      say([413, 415, 422, 429].includes(status) ? "refused" + status : "sendFailed");
    } finally {
      button.disabled = false;
    }
  }

  function resetForm() {
    $("report-text").value = "";
    $("report-place").value = "";
    $("report-photo").value = "";
    onPhoto();
    picked = null;
    place = null;
    showPicked();
    drawPlace();
    $("place-state").textContent = words.t("placeNone");
  }

  // ------------------------------------------------------------ start

  $("lang").addEventListener("click", () => {
    words.toggle();
    render();
  });
  $("mode-resident").addEventListener("click", () => setMode("resident"));
  $("mode-courier").addEventListener("click", () => setMode("courier"));
  $("plan").addEventListener("click", onPlanClick);
  $("report-device").addEventListener("change", () => {
    picked = $("report-device").value || null;
    showPicked();
  });
  $("report-photo").addEventListener("change", onPhoto);
  $("go-report").addEventListener("click", () => {
    $("report").scrollIntoView({ block: "start" });
    $("report-text").focus({ preventScroll: true });
  });
  $("report-form").addEventListener("submit", onSubmit);
  setMode("resident");
  start();
})();
