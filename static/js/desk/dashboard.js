// Lead dashboard: live fragments, bulk and drag-and-drop reassignment, forms without reloads.
// Every fragment is HTML rendered (and escaped) by our own views; data from events is only
// read, never inserted. Without this script every form still works (plain POST + redirect).
(function () {
  "use strict";

  const root = document.querySelector("[data-dashboard]");
  if (!root || !window.Desk) return;

  const PARTS = ["queues", "agents", "tickets"];
  const DEBOUNCE_MS = 500;
  const boxes = {};
  PARTS.forEach((name) => { boxes[name] = root.querySelector(`[data-fragment="${name}"]`); });
  const announcer = root.querySelector("[data-dashboard-announce]");
  const urls = { queues: root.dataset.urlQueues, agents: root.dataset.urlAgents, tickets: root.dataset.urlTickets };

  let query = root.dataset.query || "";   // queue, show, page of what the page shows
  const selected = new Set();             // ticket ids the lead checked (kept across refreshes)
  const wanted = new Set();               // fragments to fetch in the next burst
  const deferred = new Set();             // fragments held back while the lead types in them
  let timer = null;
  let busy = false;
  let failedOnce = false;
  let dragging = null;                    // ticket ids being dragged

  // --- Which fragments an event touches --------------------------------------------------
  function partsFor(type) {
    if (type.startsWith("ticket.") || type.startsWith("sla.")) return PARTS;
    if (type === "message.created") return ["queues", "tickets"];
    if (type === "presence.changed" || type === "agent.capacity_changed") return ["queues", "agents", "tickets"];
    if (type === "queue.auto_assign_changed") return ["queues", "tickets"];
    if (type === "customer.merged") return ["tickets"];
    return [];
  }

  document.addEventListener("desk:events", (event) => {
    const events = (event.detail && event.detail.events) || [];
    events.forEach((item) => partsFor(String(item.type || "")).forEach((name) => wanted.add(name)));
    if (wanted.size) schedule(DEBOUNCE_MS);
  });

  document.addEventListener("desk:reset", () => {
    PARTS.forEach((name) => wanted.add(name));
    schedule(0);
  });

  // One burst → at most one request per fragment: the first event opens a window, later
  // events join it, and events arriving during a fetch start the next window afterwards.
  function schedule(delay) {
    if (timer !== null) return;
    timer = setTimeout(flush, delay);
  }

  async function flush() {
    timer = null;
    if (busy) return; // the running flush schedules again when it ends
    const names = PARTS.filter((name) => wanted.has(name));
    wanted.clear();
    if (!names.length) return;
    busy = true;
    try {
      await Promise.all(names.map(refresh));
    } finally {
      busy = false;
      if (wanted.size) schedule(DEBOUNCE_MS);
    }
  }

  function refreshAll() {
    PARTS.forEach((name) => wanted.add(name));
    if (timer !== null) { clearTimeout(timer); timer = null; }
    schedule(0);
  }

  // --- Fetch and swap one fragment ---------------------------------------------------------
  function editing(box) {
    const active = document.activeElement;
    return !!(active && box.contains(active) && active.matches("input[type=number], input[type=text], input[type=search], textarea"));
  }

  async function refresh(name) {
    const box = boxes[name];
    if (!box) return;
    if (editing(box)) { deferred.add(name); return; }
    let html;
    try {
      html = await fetchFragment(urls[name] + (query ? "?" + query : ""));
    } catch (error) {
      if (!failedOnce) Desk.toast(error.sessionEnded ? root.dataset.msgSession : root.dataset.msgFailed, "error");
      failedOnce = true;
      return;
    }
    failedOnce = false;
    if (editing(box)) { deferred.add(name); return; }
    const before = name === "queues" ? queueAlarms(box) : null;
    const kept = capture(box);
    box.innerHTML = html; // our own server-rendered, escaped fragment
    restore(box, kept);
    Desk.tickClocks(box);
    tickAges(box);
    if (name === "tickets") syncSelection();
    if (before) announce(before, queueAlarms(box));
  }

  // Like Desk.fetchHTML, but a fragment request sent to the login page (session ended) is an
  // error too: the login form must never land inside the dashboard.
  async function fetchFragment(url) {
    const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (response.redirected || !response.ok) {
      const error = new Error(response.status + " " + response.statusText);
      error.sessionEnded = response.redirected;
      throw error;
    }
    return response.text();
  }

  // A fragment held back while the lead typed is fetched once they leave the field.
  root.addEventListener("focusout", () => {
    setTimeout(() => {
      const names = [...deferred].filter((name) => !editing(boxes[name]));
      if (!names.length) return;
      names.forEach((name) => { deferred.delete(name); wanted.add(name); });
      schedule(0);
    }, 0);
  });

  // Focus, open <details>, chosen options and typed values survive a swap (by id or data-key).
  function keyOf(el) { return el.id ? "#" + el.id : el.dataset.key ? "@" + el.dataset.key : ""; }
  function find(box, key) {
    if (!key) return null;
    if (key[0] === "#") return box.querySelector("#" + CSS.escape(key.slice(1)));
    return box.querySelector(`[data-key="${CSS.escape(key.slice(1))}"]`);
  }

  function capture(box) {
    const active = document.activeElement;
    const state = { focus: active && box.contains(active) ? keyOf(active) : "", open: [], values: [] };
    box.querySelectorAll("details[open][data-key]").forEach((el) => state.open.push(keyOf(el)));
    box.querySelectorAll("select[id], input[id]:not([type=checkbox]):not([type=hidden])").forEach((el) => {
      const changed = el.tagName === "SELECT" ? el.dataset.touched === "1" : el.value !== el.defaultValue;
      if (changed) state.values.push([keyOf(el), el.value]);
    });
    box.querySelectorAll("input[type=checkbox][id]:not([name=ticket]):not([data-select-all])").forEach((el) => {
      if (el.checked !== el.defaultChecked) state.values.push([keyOf(el), el.checked]);
    });
    return state;
  }

  function restore(box, state) {
    state.open.forEach((key) => { const el = find(box, key); if (el) el.open = true; });
    state.values.forEach(([key, value]) => {
      const el = find(box, key);
      if (!el) return;
      if (typeof value === "boolean") { el.checked = value; return; }
      if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === value)) return;
      el.value = value;
      if (el.tagName === "SELECT") el.dataset.touched = "1";
    });
    const target = find(box, state.focus);
    if (target) target.focus({ preventScroll: true });
  }

  root.addEventListener("change", (event) => {
    const el = event.target;
    if (el.tagName === "SELECT") el.dataset.touched = "1";
    if (el.matches("input[name=ticket]")) {
      if (el.checked) selected.add(el.value); else selected.delete(el.value);
      syncSelection();
    } else if (el.matches("[data-select-all]")) {
      boxes.tickets.querySelectorAll("input[name=ticket]").forEach((box) => {
        box.checked = el.checked;
        if (el.checked) selected.add(box.value); else selected.delete(box.value);
      });
      syncSelection();
    }
  });

  // Re-check by ticket id; tickets no longer in the table leave the selection.
  function syncSelection() {
    const boxesOnPage = [...boxes.tickets.querySelectorAll("input[name=ticket]")];
    const present = new Set(boxesOnPage.map((box) => box.value));
    [...selected].forEach((id) => { if (!present.has(id)) selected.delete(id); });
    boxesOnPage.forEach((box) => {
      box.checked = selected.has(box.value);
      const row = box.closest("tr");
      if (row) row.classList.toggle("is-selected", box.checked);
    });
    const all = boxes.tickets.querySelector("[data-select-all]");
    if (all) {
      all.checked = boxesOnPage.length > 0 && selected.size === boxesOnPage.length;
      all.indeterminate = selected.size > 0 && selected.size < boxesOnPage.length;
    }
    const count = boxes.tickets.querySelector("[data-selected-count]");
    if (count) count.textContent = selected.size ? `${selected.size} ${count.dataset.label || ""}`.trim() : "";
  }

  // --- Live announcements: "Queue KLM NL: 3 breached" ---------------------------------------
  function queueAlarms(box) {
    const map = new Map();
    box.querySelectorAll("[data-queue-id]").forEach((card) => {
      map.set(card.dataset.queueId, {
        breached: Number(card.dataset.breached || 0), atRisk: Number(card.dataset.atRisk || 0),
        sayBreached: card.dataset.announceBreached, sayAtRisk: card.dataset.announceAtRisk,
      });
    });
    return map;
  }

  function announce(before, after) {
    const lines = [];
    after.forEach((now, id) => {
      const was = before.get(id) || { breached: 0, atRisk: 0 };
      if (now.breached > was.breached) lines.push(now.sayBreached);
      else if (now.atRisk > was.atRisk) lines.push(now.sayAtRisk);
    });
    if (announcer && lines.length) announcer.textContent = lines.join(". ");
  }

  // --- Oldest waiting ticks like the SLA clocks ------------------------------------------------
  function formatAge(ms) {
    let minutes = Math.max(0, Math.floor(ms / 60000));
    const days = Math.floor(minutes / 1440); minutes -= days * 1440;
    const hours = Math.floor(minutes / 60); minutes -= hours * 60;
    return days ? `${days}d ${hours}h` : hours ? `${hours}h ${minutes}m` : `${minutes}m`;
  }

  function tickAges(scope) {
    const now = Date.now();
    (scope || root).querySelectorAll("time[data-since]").forEach((el) => {
      const since = Date.parse(el.dataset.since);
      if (!Number.isNaN(since)) el.textContent = formatAge(now - since);
    });
  }
  setInterval(() => tickAges(root), 30000);

  // --- Moving between queues, tabs and pages without a reload -----------------------------------
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-dashboard-nav]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(new URL(link.href, location.href).search.slice(1), true);
  });

  window.addEventListener("popstate", () => navigate(location.search.slice(1), false));

  function navigate(next, push) {
    const sameQueue = new URLSearchParams(next).get("queue") === new URLSearchParams(query).get("queue");
    query = next;
    if (!sameQueue) selected.clear();
    if (push) history.pushState(null, "", root.dataset.urlPage + (query ? "?" + query : ""));
    refreshAll();
  }

  // --- Forms: POST with CSRF, toast the answer, refresh at once ----------------------------------
  root.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-dashboard-form]");
    if (!form) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const data = new FormData(form);
    const submitter = event.submitter;
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    // getAttribute: a control named "action" (the reassign buttons) shadows form.action.
    const ok = await send(form.getAttribute("action"), data, submitter);
    if (ok && form.matches("[data-reassign-form]")) selected.clear();
  });

  async function send(url, data, button) {
    if (button) button.disabled = true;
    let ok = false;
    try {
      const response = await Desk.postForm(url, data);
      const type = response.headers.get("Content-Type") || "";
      if (!type.includes("application/json")) {
        Desk.toast(response.redirected ? root.dataset.msgSession : `${root.dataset.msgError} (${response.status})`, "error");
        return false;
      }
      const body = await response.json();
      ok = response.ok;
      Desk.toast(ok ? body.message : body.error || root.dataset.msgError, ok ? "" : "error");
    } catch (error) {
      Desk.toast(root.dataset.msgError, "error");
    } finally {
      if (button && button.isConnected) button.disabled = false;
      refreshAll();
    }
    return ok;
  }

  // --- Drag a ticket row onto an agent card --------------------------------------------------------
  // The checkbox form is the keyboard-accessible way to do the same.
  root.addEventListener("dragstart", (event) => {
    const row = event.target.closest && event.target.closest("tr[data-ticket-id]");
    if (!row) return;
    const id = row.dataset.ticketId;
    dragging = selected.has(id) ? [...selected] : [id];
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragging.map((t) => "#" + t).join(" "));
    row.classList.add("dragging");
    root.classList.add("is-dragging");
  });

  root.addEventListener("dragend", () => {
    dragging = null;
    root.classList.remove("is-dragging");
    root.querySelectorAll(".dragging, .drop-over").forEach((el) => el.classList.remove("dragging", "drop-over"));
  });

  root.addEventListener("dragover", (event) => {
    const card = dragging && event.target.closest && event.target.closest("[data-drop-agent]");
    if (!card) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    card.classList.add("drop-over");
  });

  root.addEventListener("dragleave", (event) => {
    const card = event.target.closest && event.target.closest("[data-drop-agent]");
    if (card && !card.contains(event.relatedTarget)) card.classList.remove("drop-over");
  });

  root.addEventListener("drop", async (event) => {
    const card = dragging && event.target.closest && event.target.closest("[data-drop-agent]");
    if (!card) return;
    event.preventDefault();
    card.classList.remove("drop-over");
    const ids = dragging;
    dragging = null;
    const data = new FormData();
    const form = boxes.tickets.querySelector("[data-reassign-form]");
    const next = form && form.querySelector("input[name=next]");
    ids.forEach((id) => data.append("ticket", id));
    data.append("assignee", card.dataset.dropAgent);
    data.append("action", "assign");
    if (next) data.append("next", next.value);
    const ok = await send(root.dataset.urlReassign, data, null);
    if (ok) ids.forEach((id) => selected.delete(id));
  });

  syncSelection();
  tickAges(root);
})();
