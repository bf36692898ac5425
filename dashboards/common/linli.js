/* What every built-in page shares: words (one catalogue per language), DOM helpers, the API client
   with its sign-in, live updates over Server-Sent Events, the server's clock, and the site plan.
   Loaded before a page's own app.js as window.Linli. Every text from the server goes through
   textContent (never innerHTML); nothing loads from another origin. */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const LANG_KEY = "linli.lang"; // one choice for every page of the origin
  const API = "/api/v1";
  const RECONNECT_MS = 5000;

  // ------------------------------------------------------------ words

  /* words(catalogues): catalogues maps "zh-CN" and "en" to {key: text, group: {key: text}}, laid
     over the shared words of /static/common/i18n.js (window.LINLI_COMMON_I18N) when the page loads
     them: the page's key wins, and a group is merged key by key. */
  function words(pageCatalogues) {
    const catalogues = withCommon(pageCatalogues, window.LINLI_COMMON_I18N);
    let lang = readLang(catalogues);
    return {
      get lang() { return lang; },
      t(key) {
        const value = catalogues[lang][key];
        return typeof value === "string" ? value : key;
      },
      word(group, key) {
        const table = catalogues[lang][group] || {};
        return table[key] || key;
      },
      table(group) { return catalogues[lang][group] || {}; },
      localName(item) {
        if (!item) return "";
        return lang === "en" && item.name_en ? item.name_en : item.name;
      },
      /* What a ticket is about: its fault's name, or a manual ticket's own title (staff wrote it). */
      faultWord(ticket) {
        const name = ticket.fault_name || {};
        return (lang === "en" ? name.en : name.zh) || ticket.fault || ticket.title || "";
      },
      toggle() {
        lang = lang === "zh-CN" ? "en" : "zh-CN";
        try { window.localStorage.setItem(LANG_KEY, lang); } catch (e) { /* not kept */ }
        return lang;
      },
      /* Every [data-i18n] element gets its text; the #lang button names the other language. */
      applyStatic(root) {
        document.documentElement.lang = lang;
        for (const node of (root || document).querySelectorAll("[data-i18n]")) {
          node.textContent = this.t(node.getAttribute("data-i18n"));
        }
        for (const node of (root || document).querySelectorAll("[data-i18n-placeholder]")) {
          node.setAttribute("placeholder", this.t(node.getAttribute("data-i18n-placeholder")));
        }
        const button = document.getElementById("lang");
        if (button) {
          button.textContent = this.t("switchLabel");
          button.setAttribute("aria-label", this.t("switchTo"));
        }
      },
      formatTime(iso) {
        const date = new Date(iso);
        if (!iso || Number.isNaN(date.getTime())) return "—";
        return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "zh-CN", {
          month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"
        }).format(date);
      },
      /* "1h05m09s" in the catalogue's units ({units: {h, m, s}}). */
      duration(ms) {
        const units = catalogues[lang].units || { h: "h", m: "m", s: "s" };
        const total = Math.floor(Math.abs(ms) / 1000);
        const h = Math.floor(total / 3600);
        const m = Math.floor((total % 3600) / 60);
        const s = total % 60;
        const pad = (n) => String(n).padStart(2, "0");
        return (h ? h + units.h : "") + pad(m) + units.m + pad(s) + units.s;
      }
    };
  }

  function withCommon(catalogues, common) {
    if (!common) return catalogues;
    const merged = {};
    for (const [lang, own] of Object.entries(catalogues)) {
      const table = Object.assign({}, common[lang] || {});
      for (const [key, value] of Object.entries(own)) {
        const under = table[key];
        const both = value && under && typeof value === "object" && typeof under === "object";
        table[key] = both ? Object.assign({}, under, value) : value;
      }
      merged[lang] = table;
    }
    return merged;
  }

  function readLang(catalogues) {
    try {
      const saved = window.localStorage.getItem(LANG_KEY);
      if (saved && Object.prototype.hasOwnProperty.call(catalogues, saved)) return saved;
    } catch (e) { /* storage may be disabled */ }
    return "zh-CN";
  }

  // ------------------------------------------------------------ DOM

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

  function showMessage(text) {
    const box = $("message");
    if (!box) return;
    box.textContent = text || "";
    box.hidden = !text;
  }

  // ------------------------------------------------------------ the server's clock

  /* Deadlines are on the server's clock, which in the demo is the simulator's evening, not the
     browser's. Every API answer carries a Date header; the offset is kept from the latest one.
     (A server that sends X-Linli-Now, with milliseconds, wins over Date.) */
  let clockOffset = 0;

  function noteServerTime(response) {
    const exact = Date.parse(response.headers.get("X-Linli-Now") || "");
    const coarse = Date.parse(response.headers.get("Date") || "");
    const server = Number.isNaN(exact) ? coarse : exact;
    if (!Number.isNaN(server)) clockOffset = server - Date.now();
  }

  function serverNow() { return Date.now() + clockOffset; }

  function setServerNow(iso) {
    const at = Date.parse(iso || "");
    if (!Number.isNaN(at)) clockOffset = at - Date.now();
  }

  // ------------------------------------------------------------ API

  class Unauthorized extends Error {}

  /* Sign-in refused for a while after too many failures (429): retryAfter in seconds. */
  class TooManySignIns extends Error {
    constructor(retryAfter) {
      super("too many failed sign-ins");
      this.retryAfter = retryAfter;
    }
  }

  class ApiError extends Error {
    constructor(path, status, detail) {
      super(path + " answered " + status);
      this.status = status;
      this.detail = detail;
    }
  }

  /* client(tokenKey): one signed-in session per page kind, kept in sessionStorage (one tab). */
  function client(tokenKey) {
    let token = null;
    try { token = tokenKey ? window.sessionStorage.getItem(tokenKey) : null; } catch (e) { token = null; }

    function keep(value) {
      token = value;
      try {
        if (!tokenKey) return;
        if (value) window.sessionStorage.setItem(tokenKey, value);
        else window.sessionStorage.removeItem(tokenKey);
      } catch (e) { /* kept in memory only */ }
    }

    async function send(path, options) {
      const opts = Object.assign({ cache: "no-store" }, options || {});
      const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
      if (token) headers.Authorization = "Bearer " + token;
      if (opts.json !== undefined) {
        headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(opts.json);
        delete opts.json;
      }
      opts.headers = headers;
      const response = await fetch(path.startsWith("/") && !path.startsWith(API) ? API + path : path, opts);
      noteServerTime(response);
      if (response.status === 401 && token) throw new Unauthorized(path);
      if (!response.ok) {
        let detail = null;
        try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
        throw new ApiError(path, response.status, detail);
      }
      if (response.status === 204) return null;
      const type = response.headers.get("Content-Type") || "";
      return type.includes("json") ? response.json() : response.blob();
    }

    return {
      get token() { return token; },
      signedIn() { return Boolean(token); },
      signOut() { keep(null); },
      /* Path relative to /api/v1 ("/tickets") or absolute ("/api/v1/..."). options.json sends JSON. */
      api: send,
      /* true when signed in; false for wrong credentials; throws for anything else. */
      async signIn(username, password) {
        const form = new URLSearchParams();
        form.set("username", username);
        form.set("password", password);
        const response = await fetch(API + "/auth/token", {
          method: "POST", body: form, headers: { Accept: "application/json" }
        });
        noteServerTime(response);
        if (response.status === 401 || response.status === 400) return false;
        if (response.status === 429) {
          throw new TooManySignIns(Number(response.headers.get("Retry-After")) || 60);
        }
        if (!response.ok) throw new ApiError("/auth/token", response.status, null);
        keep((await response.json()).access_token);
        return true;
      },
      /* The private stream; see live(). */
      events(handlers, onState) {
        return live(API + "/events?token=" + encodeURIComponent(token), handlers, onState);
      }
    };
  }

  // ------------------------------------------------------------ live updates (SSE)

  /* live(url, {eventName: handler(data)}, onState(state, missed)): an EventSource that reports
     "connecting", "live" and "reconnecting", and after a gap calls onState("live", true) so the
     page loads again what it missed. A refused stream (expired token, server gone) is retried
     less and less often; onState("refused") lets the page check its sign-in first.
     Returns {close()}. */
  function live(url, handlers, onState) {
    let source = null;
    let missed = false;
    let closed = false;
    let retryMs = RECONNECT_MS;
    const state = onState || function () {};

    function open() {
      if (closed) return;
      state(missed ? "reconnecting" : "connecting", false);
      source = new EventSource(url);
      source.addEventListener("open", () => {
        retryMs = RECONNECT_MS;
        const wasMissed = missed;
        missed = false;
        state("live", wasMissed);
      });
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          let data = null;
          try { data = JSON.parse(event.data); } catch (e) { data = null; }
          if (data && typeof data.now === "string") setServerNow(data.now);
          handler(data);
        });
      }
      source.addEventListener("error", () => {
        missed = true;
        state("reconnecting", false);
        if (source && source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
        source = null;
        if (state("refused", false) === false) return; // the page signed out
        window.setTimeout(open, retryMs);
        retryMs = Math.min(retryMs * 2, 60000);
      });
    }

    open();
    return {
      close() {
        closed = true;
        if (source) source.close();
        source = null;
      }
    };
  }

  // ------------------------------------------------------------ a signed-in page

  /* deviceEvent(devices (Map id -> device), siteId, data): lays a `device` event's online flag and
     readings over the device it names; returns that device, or null for another site's event or
     a device the page does not know. */
  function deviceEvent(devices, siteId, data) {
    if (!data || data.site !== siteId) return null;
    const device = devices.get(data.device_id);
    if (!device) return null;
    if (typeof data.online === "boolean") device.online = data.online;
    if (data.last && typeof data.last === "object") device.last = Object.assign({}, device.last, data.last);
    return device;
  }

  /* siteSnapshot(client, siteId, statuses, ticketQuery): the site's plan, its devices and its
     tickets in those statuses, asked for together. Returns {plan, devices, tickets} (lists). */
  async function siteSnapshot(client, siteId, statuses, ticketQuery) {
    const site = encodeURIComponent(siteId);
    const wanted = statuses.map((s) => "&status=" + s).join("");
    const [plan, devices, tickets] = await Promise.all([
      client.api("/sites/" + site + "/plan"),
      client.api("/devices?site=" + site + "&limit=1000"),
      client.api("/tickets?site=" + site + wanted + (ticketQuery || ""))
    ]);
    return { plan: plan, devices: devices.items, tickets: tickets.items };
  }

  /* The badge in the header (#live) naming the stream's state ("connecting", "live",
     "reconnecting"); null or "" hides it. */
  function setLive(words, state) {
    const badge = $("live");
    if (!badge) return;
    badge.hidden = !state;
    badge.dataset.state = state || "";
    badge.textContent = state ? words.t(state) : "";
  }

  /* The sign-in, sign-out and start of a signed-in page (crew, tech, manager). The page's HTML has
     an empty <section id="sign-in" hidden> (the form is built here), #sign-out, #lang, #live,
     #message and <main id="board" hidden>.
     options: client (Linli.client), words (Linli.words), onStart(me, siteId) (async: loads the page
     for the site asked for with ?site= or the account's first), onShown() (after the board shows),
     onSignOut() (forget the page's state, close its stream), onSignInShown() (words of the signed-out
     page), onLanguage() (after the language changed).
     Returns {start(), signOut(), failed(error, key), setLive(state), checkSignIn(),
     listen(handlers, onState) (the private stream, one at a time, closed on sign-out),
     listening()}. */
  function signedInPage(options) {
    const client = options.client;
    const words = options.words;
    const t = (key) => words.t(key);
    const call = (name, ...args) => (options[name] ? options[name](...args) : undefined);
    let stream = null; // Linli.live handle

    function listen(handlers, onState) {
      if (stream) stream.close();
      stream = client.events(handlers, onState);
    }

    function buildSignIn() {
      const section = $("sign-in");
      const title = el("h2", null, t("signInTitle"));
      title.id = "sign-in-title";
      title.setAttribute("data-i18n", "signInTitle");
      const form = el("form");
      form.id = "sign-in-form";
      form.setAttribute("autocomplete", "on");
      const field = (key, attrs) => {
        const label = el("label");
        const word = el("span", null, t(key));
        word.setAttribute("data-i18n", key);
        const input = el("input");
        for (const [name, value] of Object.entries(attrs)) input.setAttribute(name, value);
        input.required = true;
        label.append(word, input);
        return label;
      };
      const submit = el("button", "primary", t("signIn"));
      submit.type = "submit";
      submit.setAttribute("data-i18n", "signIn");
      form.append(
        field("username", { id: "username", name: "username", autocomplete: "username", autocapitalize: "none" }),
        field("password", { id: "password", name: "password", type: "password", autocomplete: "current-password" }),
        submit
      );
      section.setAttribute("aria-labelledby", "sign-in-title");
      section.replaceChildren(title, form);
      form.addEventListener("submit", signIn);
    }

    async function signIn(event) {
      event.preventDefault();
      showMessage("");
      try {
        if (!(await client.signIn($("username").value, $("password").value))) {
          showMessage(t("signInFailed"));
          return;
        }
        $("password").value = "";
        await start();
      } catch (error) {
        if (error instanceof TooManySignIns) {
          showMessage(t("signInTooMany").replace("{min}", String(Math.ceil(error.retryAfter / 60))));
        } else {
          showMessage(t("signInError"));
        }
      }
    }

    function showSignIn() {
      $("board").hidden = true;
      $("sign-out").hidden = true;
      $("sign-in").hidden = false;
      call("onSignInShown");
    }

    function signOut() {
      client.signOut();
      if (stream) stream.close();
      stream = null;
      call("onSignOut");
      setLive(words, null);
      showSignIn();
    }

    function failed(error, key) {
      if (error instanceof Unauthorized) {
        signOut();
        return;
      }
      showMessage(t(key || "loadFailed"));
    }

    async function start() {
      if (!client.signedIn()) {
        showSignIn();
        return;
      }
      $("sign-in").hidden = true;
      showMessage(t("loading"));
      try {
        const me = await client.api("/auth/me");
        const asked = new URLSearchParams(window.location.search).get("site");
        const siteId = asked && me.sites.includes(asked) ? asked : me.sites[0] || null;
        if (!siteId) {
          showMessage(t("noSite"));
          return;
        }
        await options.onStart(me, siteId);
        showMessage("");
        $("board").hidden = false;
        $("sign-out").hidden = false;
        call("onShown");
      } catch (error) {
        failed(error);
      }
    }

    /* For a stream's "refused": an expired token signs out instead of knocking forever. */
    function checkSignIn() {
      client.api("/auth/me").catch((error) => { if (error instanceof Unauthorized) signOut(); });
      return client.signedIn();
    }

    buildSignIn();
    $("sign-out").addEventListener("click", signOut);
    $("lang").addEventListener("click", () => {
      words.toggle();
      call("onLanguage");
    });
    return {
      start: start,
      signOut: signOut,
      failed: failed,
      setLive: (state) => setLive(words, state),
      checkSignIn: checkSignIn,
      listen: listen,
      listening: () => Boolean(stream)
    };
  }

  // ------------------------------------------------------------ the site plan

  /* Devices that share a point (the elevators of one building) are spread along a short row. */
  function placed(plan) {
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

  /* drawPlan(root <svg>, plan (GET /sites/{site}/plan or the public plan), localName, onPick(id)):
     compounds, circuits (cabinet through its lights), buildings, cabinets, and one
     <g class="dev" data-device=id data-kind=kind> per placed device, which the page paints.
     Returns Map id -> node. */
  function drawPlan(root, plan, localName, onPick) {
    const width = num(plan.width, 1000);
    const height = num(plan.height, 700);
    root.replaceChildren();
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.append(svg("rect", { x: 0, y: 0, width: width, height: height, class: "plan-ground" }));
    for (const compound of plan.compounds || []) {
      if (!compound.area) continue;
      const a = compound.area;
      const group = svg("g", { class: "plan-area" });
      group.append(svg("rect", { x: a.x, y: a.y, width: a.w, height: a.h, rx: 12 }));
      const label = svg("text", { x: num(a.x, 0) + 12, y: num(a.y, 0) + 28 });
      label.textContent = localName(compound);
      group.append(label);
      root.append(group);
    }
    const cabinets = new Map((plan.cabinets || []).map((c) => [c.id, c]));
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
    for (const building of plan.buildings || []) {
      if (!building.position) continue;
      const p = building.position;
      const group = svg("g", { class: "plan-building" });
      group.append(svg("rect", { x: p.x - 48, y: p.y - 26, width: 96, height: 52, rx: 4 }));
      const label = svg("text", { x: p.x, y: p.y + 6, "text-anchor": "middle" });
      label.textContent = localName(building);
      group.append(label);
      root.append(group);
    }
    for (const cabinet of plan.cabinets || []) {
      if (!cabinet.position) continue;
      const p = cabinet.position;
      const group = svg("g", { class: "plan-cabinet" });
      group.append(svg("rect", { x: p.x - 9, y: p.y - 12, width: 18, height: 24 }));
      const title = svg("title");
      title.textContent = localName(cabinet);
      group.append(title);
      root.append(group);
    }
    const nodes = new Map();
    for (const spot of placed(plan)) {
      const device = spot.device;
      const node = svg("g", { class: "dev", "data-device": device.id, "data-kind": device.kind });
      node.append(marker(device.kind, spot.x, spot.y), svg("title"));
      if (onPick) {
        node.setAttribute("tabindex", "0");
        node.setAttribute("role", "button");
        node.addEventListener("click", () => onPick(device.id));
        node.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            onPick(device.id);
          }
        });
      }
      root.append(node);
      nodes.set(device.id, node);
    }
    return nodes;
  }

  window.Linli = {
    API: API,
    words: words,
    $: $,
    el: el,
    svg: svg,
    num: num,
    showMessage: showMessage,
    serverNow: serverNow,
    setServerNow: setServerNow,
    Unauthorized: Unauthorized,
    ApiError: ApiError,
    client: client,
    live: live,
    setLive: setLive,
    signedInPage: signedInPage,
    siteSnapshot: siteSnapshot,
    deviceEvent: deviceEvent,
    drawPlan: drawPlan
  };
})();
