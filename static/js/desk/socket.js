// The desk's live connection: one WebSocket per tab, never a missed update.
//
// Connects to ws(s)://<host> + <body data-ws-path> once the page's scripts have run, sends
// {"type":"resume","last_event_id":N} on every (re)connect (N starts at <body
// data-last-event-id>, rendered with the page) and turns what the server sends into DOM events
// on `document`:
//   desk:events      detail {events: [...], catchup: bool}  new events only (by id), in id order
//   desk:connection  detail {state: "connecting" | "live" | "catching-up" | "offline"}
//   desk:reset       detail {last_event_id}  too far behind: pages re-fetch their fragments once
//   desk:collision   detail {ticket_id, viewers: [{user_id, name, typing}], version}
//   desk:error       detail {code, message, ticket_id?}  the server refused a frame
// Pages send frames with document.dispatchEvent(new CustomEvent("desk:send", {detail: {...}}));
// frames sent while not connected are dropped (watching is re-sent on every connect).
// Reconnects with exponential back-off and jitter (1 s → 30 s), at once when the browser comes
// back online or the tab becomes visible. A heartbeat every 20 s keeps presence; a heartbeat
// not answered within 10 s means a dead connection (e.g. a sleeping laptop's Wi-Fi): drop it.
// window.DeskSocket = {state, lastEventId, send(frame), drop(), close()} for tests and pages.
// See docs/desk/realtime.md.
(function () {
  "use strict";

  const body = document.body;
  const path = body && body.dataset.wsPath;
  if (!path) return;

  const HEARTBEAT_MS = 20000;
  const PONG_TIMEOUT_MS = 10000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const SEEN_MAX = 5000;
  const VERSIONS_MAX = 2000;
  const LABELS = {
    connecting: "Connecting…",
    "catching-up": "Catching up…",
    live: "Live",
    offline: "Offline, reconnecting…",
  };

  let socket = null;
  let state = "connecting";
  let lastEventId = Number.parseInt(body.dataset.lastEventId, 10);
  if (!Number.isFinite(lastEventId) || lastEventId < 0) lastEventId = 0;
  const seen = new Set(); // ids already dispatched (bounded; oldest forgotten first)
  const collisionVersions = new Map(); // ticket id → newest collision version dispatched
  let attempts = 0;
  let retryTimer = null;
  let heartbeatTimer = null;
  let pongTimer = null;
  let closedForGood = false;

  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail }));
  }

  function camel(value) {
    return value.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  }

  function renderState() {
    document.querySelectorAll("[data-connection-status]").forEach((el) => {
      el.setAttribute("data-connection-status", state);
      const label = el.querySelector(".label");
      if (label) label.textContent = el.dataset["label" + camel("-" + state)] || LABELS[state];
    });
  }

  function setState(next) {
    if (next === state) return;
    state = next;
    renderState();
    emit("desk:connection", { state });
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function remember(id) {
    seen.add(id);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
  }

  function deliver(events, catchup) {
    if (!Array.isArray(events)) return;
    const fresh = [];
    for (const event of events) {
      if (!event || !Number.isInteger(event.id) || seen.has(event.id)) continue;
      remember(event.id);
      fresh.push(event);
      if (event.id > lastEventId) lastEventId = event.id;
    }
    if (!fresh.length) return;
    fresh.sort((a, b) => a.id - b.id);
    emit("desk:events", { events: fresh, catchup });
  }

  function collision(frame) {
    const ticketId = frame.ticket_id;
    if (!Number.isInteger(ticketId) || !Array.isArray(frame.viewers)) return;
    const known = collisionVersions.get(ticketId);
    if (known !== undefined && frame.version <= known) return; // an older announcement, late
    if (collisionVersions.size >= VERSIONS_MAX) collisionVersions.clear();
    collisionVersions.set(ticketId, frame.version);
    emit("desk:collision", { ticket_id: ticketId, viewers: frame.viewers, version: frame.version });
  }

  function onMessage(message) {
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch (err) {
      console.error("desk socket: a frame that is not JSON", err);
      return;
    }
    switch (frame && frame.type) {
      case "events":
        deliver(frame.events, frame.catchup === true);
        break;
      case "resumed":
        if (Number.isInteger(frame.last_event_id) && frame.last_event_id > lastEventId) {
          lastEventId = frame.last_event_id;
        }
        attempts = 0;
        setState("live");
        break;
      case "reset":
        // The server's position wins (the client may even be ahead of it, after a restore).
        if (Number.isInteger(frame.last_event_id)) lastEventId = frame.last_event_id;
        attempts = 0;
        setState("live");
        emit("desk:reset", { last_event_id: lastEventId });
        break;
      case "collision":
        collision(frame);
        break;
      case "pong":
        clearTimeout(pongTimer);
        pongTimer = null;
        break;
      case "error":
        console.warn("desk socket: server refused a frame:", frame.code, frame.message);
        emit("desk:error", frame);
        break;
      default:
        console.warn("desk socket: unknown frame", frame && frame.type);
    }
  }

  function heartbeat() {
    if (!send({ type: "heartbeat", ack: true })) return;
    if (pongTimer === null) pongTimer = setTimeout(drop, PONG_TIMEOUT_MS);
  }

  function stopTimers() {
    clearInterval(heartbeatTimer);
    clearTimeout(pongTimer);
    heartbeatTimer = null;
    pongTimer = null;
  }

  function scheduleReconnect() {
    if (closedForGood || retryTimer !== null) return;
    // While the browser knows it is offline, only try now and then: the "online" event
    // reconnects at once (and navigator.onLine is sometimes wrong, so do not stop trying).
    const ceiling = navigator.onLine === false
      ? BACKOFF_MAX_MS
      : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempts);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: no reconnect stampede
    attempts += 1;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (closedForGood) return;
    if (socket && (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN)) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    setState("connecting");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      console.error("desk socket: cannot open", err);
      setState("offline");
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      // "catching-up" first: its listeners (collision.js) send "watch" before the resume, so
      // the catch-up includes the watched tickets' events.
      setState("catching-up");
      send({ type: "resume", last_event_id: lastEventId });
      heartbeatTimer = setInterval(heartbeat, HEARTBEAT_MS);
    });
    ws.addEventListener("message", (message) => {
      if (socket === ws) onMessage(message);
    });
    ws.addEventListener("error", () => {
      if (socket === ws) ws.close(); // the close event follows and reconnects
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      stopTimers();
      setState("offline");
      scheduleReconnect();
    });
  }

  // Give up the current connection as if the network had dropped it, and reconnect.
  function drop() {
    if (!socket) return;
    const ws = socket;
    socket = null;
    stopTimers();
    ws.close(4000, "dropped by the client");
    setState("offline");
    scheduleReconnect();
  }

  // Right now, not after the back-off: the reason for waiting is gone.
  function reconnectNow() {
    if (closedForGood || socket) return;
    attempts = 0;
    connect();
  }

  function close() {
    closedForGood = true;
    clearTimeout(retryTimer);
    retryTimer = null;
    stopTimers();
    if (socket) {
      const ws = socket;
      socket = null;
      ws.close(1000, "closed by the page");
    }
    setState("offline");
  }

  document.addEventListener("desk:send", (event) => {
    if (event.detail && typeof event.detail === "object") send(event.detail);
  });
  window.addEventListener("online", reconnectNow);
  window.addEventListener("offline", drop);
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) reconnectNow(); // back from the back/forward cache
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    if (socket) heartbeat(); // a tab woken from sleep: is the connection still there?
    else reconnectNow();
  });

  window.DeskSocket = {
    get state() {
      return state;
    },
    get lastEventId() {
      return lastEventId;
    },
    send,
    drop,
    close,
  };

  function start() {
    renderState();
    connect();
  }
  // After every deferred page script has run, so no page misses the first events.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
