// Shared helpers of every desk page: window.Desk.{toast, csrfToken, fetchHTML, postForm,
// isTyping, onKey}, auto-submitting selects and the ticking SLA clocks.
// No inline scripts anywhere (the Content-Security-Policy forbids them).
(function () {
  "use strict";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function toast(message, kind) {
    const box = document.querySelector("[data-toasts]");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast" + (kind ? " " + kind : "");
    item.textContent = message; // never innerHTML: messages may quote social text
    box.appendChild(item);
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
  }

  // GET a server-rendered fragment. Resolves to the response text; rejects on HTTP errors.
  async function fetchHTML(url) {
    const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return response.text();
  }

  // POST a FormData (or object) with the CSRF token; resolves to the Response.
  async function postForm(url, data) {
    const body = data instanceof FormData ? data : new URLSearchParams(data || {});
    return fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "X-Requested-With": "fetch" },
    });
  }

  // True while focus is in a field where keys are text, not shortcuts.
  function isTyping(event) {
    const target = event.target;
    return !!(target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)));
  }

  // Register a single-key shortcut (ignored while typing or with Ctrl/Alt/Meta).
  function onKey(key, handler) {
    document.addEventListener("keydown", (event) => {
      if (event.key !== key || event.ctrlKey || event.altKey || event.metaKey || isTyping(event)) return;
      handler(event);
    });
  }

  // SLA clocks: <time data-sla-due="ISO" data-sla-state="ok|at_risk|breached">
  function formatLeft(ms) {
    const late = ms < 0;
    let minutes = Math.floor(Math.abs(ms) / 60000);
    const days = Math.floor(minutes / 1440); minutes -= days * 1440;
    const hours = Math.floor(minutes / 60); minutes -= hours * 60;
    const text = days ? `${days}d ${hours}h` : hours ? `${hours}h ${minutes}m` : `${minutes}m`;
    return late ? "−" + text : text;
  }

  function tickClocks(root) {
    const now = Date.now();
    (root || document).querySelectorAll("[data-sla-due]").forEach((el) => {
      const due = Date.parse(el.dataset.slaDue);
      if (Number.isNaN(due)) return;
      const left = due - now;
      let state = el.dataset.slaState || "ok";
      if (left <= 0) state = "breached";
      el.className = "sla sla-" + state;
      el.textContent = formatLeft(left);
    });
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.requestSubmit();
  });

  // My own status follows a lead's change live (presence.changed for me).
  document.addEventListener("desk:events", (event) => {
    const me = Number(document.body.dataset.userId);
    const select = document.querySelector("select[data-presence]");
    if (!select) return;
    for (const item of event.detail.events) {
      if (item.type === "presence.changed" && item.payload && item.payload.agent_id === me) {
        select.dataset.presence = item.payload.presence;
        select.value = item.payload.presence === "away" ? "away" : "online";
      }
    }
  });

  window.Desk = { toast, csrfToken, fetchHTML, postForm, isTyping, onKey, tickClocks };
  tickClocks();
  setInterval(tickClocks, 15000);
})();
