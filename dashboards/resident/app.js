/* The resident page: loads the public status of one community once, and again on "Refresh".
   Every text from the server goes through textContent (never innerHTML); nothing loads from
   another origin. Live updates (SSE) come later; this page does not poll. */
"use strict";

(function () {
  const CATALOGUES = window.LINLI_I18N;
  const LANG_KEY = "linli.lang";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KINDS = ["streetlight", "elevator", "charger"];
  const LIST_KEY = { streetlight: "streetlights", elevator: "elevators", charger: "chargers" };
  const STATES = {
    streetlight: ["on", "off", "fault", "repairing"],
    elevator: ["in_service", "out_of_service"],
    charger: ["available", "in_use", "unavailable"]
  };

  let lang = readLang();
  let data = null; // the last public status
  let siteId = null;

  function readLang() {
    try {
      const saved = window.localStorage.getItem(LANG_KEY);
      if (saved && Object.prototype.hasOwnProperty.call(CATALOGUES, saved)) return saved;
    } catch (e) { /* storage may be disabled */ }
    return "zh-CN";
  }

  function t(key) {
    const value = CATALOGUES[lang][key];
    return typeof value === "string" ? value : key;
  }

  function stateWord(kind, state) {
    const words = CATALOGUES[lang].state[kind] || {};
    return words[state] || state;
  }

  function ticketWord(status) {
    return CATALOGUES[lang].ticketStatus[status] || status;
  }

  function localName(item) {
    return lang === "en" && item.name_en ? item.name_en : item.name;
  }

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
    if (Number.isNaN(date.getTime())) return "—";
    return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "zh-CN", {
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
    }).format(date);
  }

  function showMessage(text) {
    const box = document.getElementById("message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function applyStaticWords() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.getAttribute("data-i18n"));
    }
    const button = document.getElementById("lang");
    button.textContent = t("switchLabel");
    button.setAttribute("aria-label", t("switchTo"));
    const siteName = data ? localName(data) : null;
    document.getElementById("site-name").textContent = siteName ? t("titleOf").replace("{site}", siteName) : t("title");
    document.title = document.getElementById("site-name").textContent;
  }

  function renderCounters() {
    for (const kind of KINDS) {
      const box = document.getElementById("count-" + kind);
      box.replaceChildren();
      const items = data[LIST_KEY[kind]] || [];
      const head = el("p", "counter-head");
      head.append(el("span", "counter-kind", t(LIST_KEY[kind])), el("span", "counter-total", items.length));
      box.append(head);
      const row = el("ul", "chips");
      for (const state of STATES[kind]) {
        const n = items.filter((item) => item.state === state).length;
        const chip = el("li", "chip st-" + state);
        chip.append(el("span", "chip-word", stateWord(kind, state)), el("span", "chip-count", n));
        row.append(chip);
      }
      box.append(row);
    }
  }

  function renderPlan() {
    const plan = data.plan || {};
    const width = num(plan.width, 1000);
    const height = num(plan.height, 700);
    const root = document.getElementById("plan");
    root.replaceChildren();
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.append(svg("rect", { x: 0, y: 0, width: width, height: height, class: "plan-ground" }));
    for (const area of plan.areas || []) {
      const group = svg("g", { class: "plan-area" });
      group.append(svg("rect", { x: num(area.x, 0), y: num(area.y, 0), width: num(area.w, 0), height: num(area.h, 0), rx: 12 }));
      const label = svg("text", { x: num(area.x, 0) + 12, y: num(area.y, 0) + 30 });
      label.textContent = localName(area);
      group.append(label);
      root.append(group);
    }
    for (const light of data.streetlights || []) {
      if (!light.position) continue;
      const dot = svg("circle", {
        cx: num(light.position.x, 0), cy: num(light.position.y, 0), r: 11,
        class: "plan-light st-" + light.state
      });
      const title = svg("title");
      title.textContent = localName(light) + " · " + stateWord("streetlight", light.state);
      dot.append(title);
      root.append(dot);
    }
    const legend = document.getElementById("legend");
    legend.replaceChildren();
    for (const state of STATES.streetlight) {
      const item = el("li", "legend-item");
      item.append(el("span", "swatch st-" + state), el("span", null, stateWord("streetlight", state)));
      legend.append(item);
    }
  }

  function renderList(kind) {
    const list = document.getElementById("list-" + kind);
    list.replaceChildren();
    const items = data[LIST_KEY[kind]] || [];
    if (!items.length) {
      list.append(el("li", "empty", t("empty")));
      return;
    }
    for (const item of items) {
      const row = el("li", "row");
      row.append(el("span", "row-name", localName(item)), el("span", "badge st-" + item.state, stateWord(kind, item.state)));
      list.append(row);
    }
  }

  function renderTickets() {
    const list = document.getElementById("tickets");
    list.replaceChildren();
    const names = new Map();
    for (const kind of KINDS) for (const item of data[LIST_KEY[kind]] || []) names.set(item.id, localName(item));
    const tickets = data.tickets || [];
    if (!tickets.length) {
      list.append(el("li", "empty", t("noRepairs")));
      return;
    }
    for (const ticket of tickets) {
      const row = el("li", "row ticket");
      const what = el("div", "ticket-what");
      const fault = ticket.fault_name || {};
      what.append(el("span", "row-name", lang === "en" ? fault.en : fault.zh));
      const where = (ticket.device_ids || []).map((id) => names.get(id) || id).join("、");
      if (where) what.append(el("span", "ticket-where", where));
      what.append(el("span", "ticket-when", t("openedAt") + " " + formatTime(ticket.opened_at)));
      row.append(what, el("span", "badge ts-" + ticket.status, ticketWord(ticket.status)));
      list.append(row);
    }
  }

  function render() {
    applyStaticWords();
    if (!data) return;
    document.getElementById("updated").textContent = formatTime(data.generated_at);
    document.getElementById("updated").setAttribute("datetime", String(data.generated_at));
    renderCounters();
    renderPlan();
    renderTickets();
    for (const kind of KINDS) renderList(kind);
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  async function chooseSite() {
    const fromQuery = new URLSearchParams(window.location.search).get("site");
    if (fromQuery) return fromQuery;
    const sites = await getJson("/api/v1/public/sites");
    return sites.length ? sites[0].id : null;
  }

  async function load() {
    const button = document.getElementById("refresh");
    button.disabled = true;
    showMessage(t("loading"));
    try {
      siteId = siteId || (await chooseSite());
      if (!siteId) {
        showMessage(t("noSite"));
        return;
      }
      data = await getJson("/api/v1/public/status?site=" + encodeURIComponent(siteId));
      showMessage("");
      render();
    } catch (error) {
      showMessage(t("loadFailed"));
    } finally {
      button.disabled = false;
    }
  }

  function toggleLanguage() {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    try { window.localStorage.setItem(LANG_KEY, lang); } catch (e) { /* not kept */ }
    render();
  }

  document.getElementById("refresh").addEventListener("click", load);
  document.getElementById("lang").addEventListener("click", toggleLanguage);
  applyStaticWords();
  load();
})();
