// Who else is viewing or typing on a ticket, on the ticket page and in every list.
//
// A page showing a ticket marks an element data-watch-ticket="<id>": every time the desk socket
// connects, this script watches that ticket (the server checks permission), and it unwatches
// when the page goes away. Typing in a textarea[data-composer] (inside that element, or on the
// page) is reported: true at most every 3 s while keys come, false after 4 s without a key, on
// leaving the field and on sending the form (the server also lets typing run out after ~6 s).
// Announcements (desk:collision from socket.js) are rendered into every
// [data-viewers-for="<id>"] element as text: one <span class="viewer"> per other agent
// ("Anna viewing", "Pierre typing…", class "typing" added), the element gets class "typing"
// while anyone types and "has-viewers" while anyone is there, and data-viewer-count.
// Words come from data-i18n-viewing / data-i18n-typing ("{name} viewing") on the element or an
// ancestor (the body), else English. Never innerHTML: names are user-controlled text.
(function () {
  "use strict";

  const TYPING_RESEND_MS = 3000;
  const TYPING_IDLE_MS = 4000;
  const FALLBACK = { viewing: "{name} viewing", typing: "{name} typing…" };
  const myId = Number.parseInt(document.body.dataset.userId, 10);

  function send(frame) {
    document.dispatchEvent(new CustomEvent("desk:send", { detail: frame }));
  }

  function ticketIdOf(el) {
    const id = el ? Number.parseInt(el.dataset.watchTicket, 10) : NaN;
    return Number.isInteger(id) && id > 0 ? id : null;
  }

  function watchedIds() {
    const ids = new Set();
    document.querySelectorAll("[data-watch-ticket]").forEach((el) => {
      const id = ticketIdOf(el);
      if (id !== null) ids.add(id);
    });
    return [...ids];
  }

  // --- Watching ---------------------------------------------------------------------------

  let watching = false; // "watch" sent on the current connection
  const typing = new Map(); // ticket id → {active, sentAt, idle}

  function watchAll() {
    if (watching) return;
    watching = true;
    watchedIds().forEach((id) => send({ type: "watch", ticket_id: id }));
  }

  document.addEventListener("desk:connection", (event) => {
    const state = event.detail && event.detail.state;
    if (state === "catching-up" || state === "live") {
      watchAll();
    } else {
      watching = false; // a new connection knows nothing: watch again, typing again
      typing.forEach((entry) => {
        clearTimeout(entry.idle);
        entry.active = false;
      });
    }
  });

  window.addEventListener("pagehide", () => {
    watchedIds().forEach((id) => {
      stopTyping(id);
      send({ type: "unwatch", ticket_id: id });
    });
    watching = false;
  });
  window.addEventListener("pageshow", (event) => {
    // Restored from the back/forward cache on a connection that stayed open.
    const socket = window.DeskSocket;
    if (event.persisted && socket && (socket.state === "live" || socket.state === "catching-up")) watchAll();
  });

  // --- Typing -----------------------------------------------------------------------------

  function composerTicket(target) {
    if (!(target instanceof HTMLTextAreaElement) || !target.matches("textarea[data-composer]")) return null;
    return ticketIdOf(target.closest("[data-watch-ticket]") || document.querySelector("[data-watch-ticket]"));
  }

  function stopTyping(id) {
    const entry = typing.get(id);
    if (!entry) return;
    clearTimeout(entry.idle);
    if (entry.active) {
      entry.active = false;
      send({ type: "typing", ticket_id: id, typing: false });
    }
  }

  document.addEventListener("input", (event) => {
    const id = composerTicket(event.target);
    if (id === null) return;
    let entry = typing.get(id);
    if (!entry) {
      entry = { active: false, sentAt: 0, idle: null };
      typing.set(id, entry);
    }
    const now = Date.now();
    if (!entry.active || now - entry.sentAt >= TYPING_RESEND_MS) {
      entry.active = true;
      entry.sentAt = now;
      send({ type: "typing", ticket_id: id, typing: true });
    }
    clearTimeout(entry.idle);
    entry.idle = setTimeout(() => stopTyping(id), TYPING_IDLE_MS);
  });

  document.addEventListener("focusout", (event) => {
    const id = composerTicket(event.target);
    if (id !== null) stopTyping(id);
  });

  document.addEventListener(
    "submit",
    (event) => {
      const composer = event.target.querySelector && event.target.querySelector("textarea[data-composer]");
      const id = composer ? composerTicket(composer) : null;
      if (id !== null) stopTyping(id);
    },
    true,
  );

  // --- Rendering --------------------------------------------------------------------------

  function phrase(el, kind, name) {
    const source = el.closest("[data-i18n-" + kind + "]");
    const template = (source && source.getAttribute("data-i18n-" + kind)) || FALLBACK[kind];
    return template.replace("{name}", () => name); // a function: "$&" in a name stays literal
  }

  function render(el, others) {
    const parts = [];
    others.forEach((viewer, index) => {
      if (index) parts.push(document.createTextNode(", "));
      const span = document.createElement("span");
      span.className = viewer.typing ? "viewer typing" : "viewer";
      span.textContent = phrase(el, viewer.typing ? "typing" : "viewing", String(viewer.name));
      parts.push(span);
    });
    el.replaceChildren(...parts);
    el.classList.toggle("typing", others.some((viewer) => viewer.typing));
    el.classList.toggle("has-viewers", others.length > 0);
    el.dataset.viewerCount = String(others.length);
  }

  document.addEventListener("desk:collision", (event) => {
    const detail = event.detail || {};
    if (!Number.isInteger(detail.ticket_id) || !Array.isArray(detail.viewers)) return;
    const others = detail.viewers.filter((viewer) => viewer && viewer.user_id !== myId);
    document
      .querySelectorAll('[data-viewers-for="' + detail.ticket_id + '"]')
      .forEach((el) => render(el, others));
  });
})();
