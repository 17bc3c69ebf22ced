// The ticket view: live conversation and panel, enhanced control forms, the composer with its
// per-platform length counter, hold-back of replies written while the conversation moved on,
// and the page's keyboard shortcuts. Plain script; every fragment it inserts is rendered (and
// escaped) by our own server views, everything else goes in with textContent.
(function (global) {
  "use strict";

  // --- Reply length as the platform counts it (mirror of inbox/connectors/limits.py) ---------
  const URL_RE = /https?:\/\/[^\s]*[^\s.,;:!?'")\]}>]/giu;
  const EMOJI_RE = /[\p{Extended_Pictographic}\p{Regional_Indicator}]/u;
  const X_LIGHT_RANGES = [[0, 4351], [8192, 8205], [8208, 8223], [8242, 8247]];
  const segmenter = typeof Intl !== "undefined" && Intl.Segmenter
    ? new Intl.Segmenter(undefined, { granularity: "grapheme" }) : null;

  function graphemes(text) {
    // Without Intl.Segmenter (old browsers) code points: never fewer than graphemes, and the
    // server's count decides anyway.
    if (!segmenter) return Array.from(text);
    return Array.from(segmenter.segment(text), (part) => part.segment);
  }

  function xLight(codePoint) {
    return X_LIGHT_RANGES.some(([low, high]) => codePoint >= low && codePoint <= high);
  }

  function plainLength(text, counting) {
    if (counting === "graphemes") return graphemes(text).length;
    if (counting === "x") {
      let total = 0;
      for (const cluster of graphemes(text)) {
        if (EMOJI_RE.test(cluster)) { total += 2; continue; }
        for (const char of cluster) total += xLight(char.codePointAt(0)) ? 1 : 2;
      }
      return total;
    }
    return Array.from(text).length;
  }

  // counting: "code_points" | "graphemes" | "x"; urlLength: what each http(s) link counts, or null.
  function replyLength(text, counting, urlLength) {
    if (counting === "x") text = text.normalize("NFC");
    if (urlLength === null || urlLength === undefined) return plainLength(text, counting);
    let total = 0;
    let position = 0;
    for (const match of text.matchAll(URL_RE)) {
      total += plainLength(text.slice(position, match.index), counting) + urlLength;
      position = match.index + match[0].length;
    }
    return total + plainLength(text.slice(position), counting);
  }

  global.DeskReplyLength = { count: replyLength };

  if (typeof document === "undefined") return;
  const root = document.querySelector("[data-ticket-page]");
  if (!root) return;

  const ticketId = Number(root.dataset.watchTicket);
  const me = Number(document.body.dataset.userId || 0);
  const conversation = root.querySelector("[data-conversation]");
  const liveStatus = root.querySelector("[data-live-status]");
  const composer = root.querySelector("[data-composer-form]");
  const textarea = composer.querySelector("textarea[data-composer]");
  const seenInput = composer.querySelector("[data-seen-message-id]");
  const templateInput = composer.querySelector("input[name=reply_template]");
  const countLine = composer.querySelector("[data-composer-count]");
  const errorLine = composer.querySelector("[data-composer-error]");
  const sendButton = composer.querySelector("[data-send]");
  const heldBox = composer.querySelector("[data-held-back-box]");
  const heldText = composer.querySelector("[data-held-back-text]");
  const draftKey = "desk.draft." + ticketId;

  const say = (name) => root.dataset[name] || composer.dataset[name] || "";
  const fill = (template, values) =>
    template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));

  function announce(message) {
    if (!message) return;
    liveStatus.textContent = "";
    // A fresh text node after a tick, so screen readers announce repeats too.
    setTimeout(() => { liveStatus.textContent = message; }, 50);
  }

  function parseFragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html; // rendered and escaped by our own server view
    return template.content;
  }

  async function errorText(response) {
    const type = response.headers.get("Content-Type") || "";
    const body = await response.text();
    if (type.startsWith("text/plain") && body.trim()) return body.trim();
    return response.status + " " + response.statusText;
  }

  // Replace an element, keeping focus (and typed text) on the same control inside it.
  function replaceKeepingFocus(current, fresh) {
    const active = document.activeElement;
    let restore = null;
    if (active && active !== document.body && current.contains(active)) {
      restore = {
        id: active.id,
        name: active.getAttribute("name"),
        value: active.value,
        typed: active.matches("input:not([type]), input[type=text], input[type=search], textarea"),
      };
    }
    current.replaceWith(fresh);
    if (!restore) return;
    let target = restore.id ? fresh.querySelector("#" + CSS.escape(restore.id)) : null;
    if (!target && restore.name && !restore.typed) {
      // The same button (e.g. "Pending"); never a different one of the same name (another
      // tag's remove button), so a second Enter cannot do something else.
      target = fresh.querySelector(`button[name="${CSS.escape(restore.name)}"][value="${CSS.escape(restore.value || "")}"]`);
    }
    if (target && !target.disabled) {
      if (restore.typed) target.value = restore.value;
      target.focus();
    } else {
      fresh.setAttribute("tabindex", "-1");
      fresh.focus();
    }
  }

  // --- Conversation -----------------------------------------------------------------------------

  function lastShownId() {
    let newest = 0;
    conversation.querySelectorAll("li[data-message-id]").forEach((item) => {
      newest = Math.max(newest, Number(item.dataset.messageId));
    });
    return newest;
  }

  function insertInOrder(item) {
    const key = item.dataset.sortKey;
    for (const other of conversation.querySelectorAll(":scope > li[data-message-id]")) {
      if (other.dataset.sortKey > key) { conversation.insertBefore(item, other); return; }
    }
    conversation.appendChild(item);
  }

  // From someone else: what makes a reply being written out of date (as the server decides).
  function changesTheConversation(item) {
    return item.dataset.direction === "in" || Number(item.dataset.authorId || 0) !== me;
  }

  // Put the fragment's messages in the conversation (replacing those shown). Returns the new ones.
  function mergeMessages(fragment, highlight) {
    const added = [];
    fragment.querySelectorAll("li[data-message-id]").forEach((item) => {
      const existing = conversation.querySelector(`li[data-message-id="${item.dataset.messageId}"]`);
      if (existing) {
        if (existing.classList.contains("is-new")) item.classList.add("is-new");
        const before = existing.querySelector("[data-delivery-state]");
        const after = item.querySelector("[data-delivery-state]");
        replaceKeepingFocus(existing, item);
        if (before && after && before.dataset.deliveryState !== after.dataset.deliveryState
            && Number(item.dataset.authorId || 0) === me) {
          const label = after.querySelector(".delivery-state");
          announce(fill(say("textReplyState"), { state: label ? label.textContent.trim() : after.dataset.deliveryState }));
        }
      } else {
        insertInOrder(item);
        added.push(item);
      }
      if (highlight) item.classList.add("is-new");
    });
    const empty = conversation.querySelector("[data-empty]");
    if (empty && conversation.querySelector("li[data-message-id]")) empty.remove();
    return added;
  }

  function afterLiveMessages(added) {
    const fresh = added.filter(changesTheConversation);
    if (!fresh.length) return;
    fresh.forEach((item) => item.classList.add("just-arrived"));
    announce(fresh.some((item) => item.dataset.direction === "in")
      ? say("textNewCustomerMessage") : say("textNewMessage"));
    if (textarea.value.trim()) {
      // The server holds the reply back anyway; say so now, before the agent presses send.
      fresh.forEach((item) => item.classList.add("is-new"));
      showHeldBack(say("textHeldBackLive"));
    } else if (!heldBack) {
      // Nothing written yet: the agent writes with these messages on screen.
      seenInput.value = String(lastShownId());
    }
    markSeenSoon();
  }

  // --- Live updates -----------------------------------------------------------------------------

  const pending = { after: false, ids: new Set(), panel: false };
  let flushTimer = null;
  let retryDelay = 2000;

  function schedule(delay) {
    if (flushTimer) return;
    flushTimer = setTimeout(flush, delay === undefined ? 250 : delay);
  }

  async function flush() {
    flushTimer = null;
    const after = pending.after;
    const ids = Array.from(pending.ids);
    const panel = pending.panel;
    pending.after = false;
    pending.ids.clear();
    pending.panel = false;
    const jobs = [];
    if (after || ids.length) jobs.push(loadMessages(after, ids));
    if (panel) jobs.push(loadPanel());
    const results = await Promise.all(jobs);
    if (results.every(Boolean)) { retryDelay = 2000; return; }
    // Not lost: asked again shortly (and when the connection is live again).
    if (after) pending.after = true;
    ids.forEach((id) => pending.ids.add(id));
    if (panel) pending.panel = true;
    schedule(retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  async function loadMessages(after, ids) {
    const params = new URLSearchParams();
    if (after) params.set("after", String(lastShownId()));
    if (ids.length) params.set("ids", ids.join(","));
    let html;
    try {
      html = await Desk.fetchHTML(root.dataset.messagesUrl + "?" + params.toString());
    } catch (error) {
      Desk.toast(say("textFailedLoad") + " (" + error.message + ")", "error");
      return false;
    }
    afterLiveMessages(mergeMessages(parseFragment(html), false));
    return true;
  }

  async function loadPanel() {
    let html;
    try {
      html = await Desk.fetchHTML(root.dataset.panelUrl);
    } catch (error) {
      Desk.toast(say("textFailedLoad") + " (" + error.message + ")", "error");
      return false;
    }
    swapParts(parseFragment(html));
    return true;
  }

  function swapParts(fragment) {
    fragment.querySelectorAll("[data-part]").forEach((fresh) => {
      const current = root.querySelector(`[data-part="${fresh.dataset.part}"]`);
      if (current) replaceKeepingFocus(current, fresh);
    });
    Desk.tickClocks(root);
  }

  const PANEL_EVENT = /^(ticket|sla|customer)\./;

  document.addEventListener("desk:events", (event) => {
    let touched = false;
    for (const item of event.detail.events) {
      if (item.ticket_id !== ticketId) continue;
      touched = true;
      if (item.type === "message.created") {
        pending.after = true;
        const payload = item.payload || {};
        if (textarea.value.trim() && (payload.direction === "in" || item.actor_id !== me)) {
          showHeldBack(say("textHeldBackLive"));
        }
      } else if (item.type === "delivery.updated" && item.payload && item.payload.message_id) {
        pending.ids.add(item.payload.message_id);
      }
      if (PANEL_EVENT.test(item.type)) pending.panel = true;
    }
    if (touched) schedule();
  });

  document.addEventListener("desk:reset", () => {
    pending.after = true;
    pending.panel = true;
    schedule(0);
  });

  document.addEventListener("desk:connection", (event) => {
    if (event.detail.state === "live" && (pending.after || pending.ids.size || pending.panel)) {
      clearTimeout(flushTimer);
      flushTimer = null;
      schedule(0);
    }
  });

  // Tell the server the agent saw the live messages (clears "unread" in the lists).
  let seenTimer = null;
  let seenWanted = false;
  function markSeenSoon() {
    if (document.visibilityState !== "visible") { seenWanted = true; return; }
    clearTimeout(seenTimer);
    seenTimer = setTimeout(() => {
      seenWanted = false;
      Desk.postForm(root.dataset.seenUrl, {}).then((response) => {
        if (!response.ok) console.warn("marking the ticket seen failed:", response.status);
      }, (error) => console.warn("marking the ticket seen failed:", error));
    }, 1000);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && seenWanted) markSeenSoon();
  });

  // --- Control forms (status, priority, assignee, tags, VIP, merge, delivery actions) ---------

  root.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-ajax]")) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const data = new FormData(form);
    const submitter = event.submitter;
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    if (form.getAttribute("aria-busy") === "true") return;
    form.setAttribute("aria-busy", "true");
    let response;
    try {
      response = await Desk.postForm(form.action, data);
    } catch (error) {
      form.removeAttribute("aria-busy");
      Desk.toast(say("textNetworkError"), "error");
      return;
    }
    form.removeAttribute("aria-busy");
    if (!response.ok) {
      Desk.toast(await errorText(response), "error");
      return;
    }
    const fragment = parseFragment(await response.text());
    if (form.dataset.ajax === "message") {
      mergeMessages(fragment, false);
    } else {
      const merging = form.closest("[data-merge-results]");
      swapParts(fragment);
      if (merging) {
        merging.replaceChildren();
        const search = root.querySelector("[data-customer-search] input[name=q]");
        if (search) search.value = "";
      }
      announce(say("textUpdated"));
    }
  });

  // --- Customer search for merging ---------------------------------------------------------------

  const searchForm = root.querySelector("[data-customer-search]");
  const searchResults = root.querySelector("[data-merge-results]");
  let searchTimer = null;
  let searchSerial = 0;

  async function searchCustomers() {
    const serial = ++searchSerial;
    const query = new URLSearchParams(new FormData(searchForm)).toString();
    let html;
    try {
      html = await Desk.fetchHTML(searchForm.action + "?" + query);
    } catch (error) {
      Desk.toast(error.message, "error");
      return;
    }
    if (serial !== searchSerial) return; // a newer search is under way
    searchResults.replaceChildren(parseFragment(html));
  }

  if (searchForm) {
    searchForm.addEventListener("submit", (event) => { event.preventDefault(); searchCustomers(); });
    searchForm.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(searchCustomers, 300);
    });
  }

  // --- Composer -------------------------------------------------------------------------------

  let heldBack = !heldBox.hidden;
  let sending = false;
  let overLimit = false;

  function kind() {
    const checked = composer.querySelector("[data-kind]:checked");
    return checked ? checked.value : "reply";
  }

  function currentLimit() {
    if (kind() === "note") return null;
    const input = composer.querySelector("[data-visibility]:checked")
      || composer.querySelector("input[type=hidden][data-visibility]");
    if (!input) return null;
    return {
      max: input.dataset.maxLength ? Number(input.dataset.maxLength) : null,
      counting: input.dataset.counting || "code_points",
      urlLength: input.dataset.urlLength ? Number(input.dataset.urlLength) : null,
    };
  }

  function selectedVisibility() {
    const input = composer.querySelector("[data-visibility]:checked")
      || composer.querySelector("input[type=hidden][data-visibility]");
    return input ? input.value : "";
  }

  // Meta's reply windows: the notice of the chosen kind of reply is shown; a closed window
  // cannot be sent into (the server refuses it too).
  function windowClosed() {
    if (kind() !== "reply") return false;
    let closed = false;
    composer.querySelectorAll("[data-window-for]").forEach((notice) => {
      const chosen = notice.dataset.windowFor === selectedVisibility();
      notice.hidden = !chosen;
      if (chosen && notice.dataset.windowState === "closed") closed = true;
    });
    return closed;
  }

  function updateSendState() {
    const noReply = kind() === "reply" && composer.querySelector("[data-no-reply]");
    sendButton.disabled = sending || heldBack || overLimit || Boolean(noReply) || windowClosed()
      || !textarea.value.trim();
  }

  function updateCounter() {
    const text = textarea.value.trim();
    const limit = currentLimit();
    const platform = textarea.dataset.platform || "";
    const wasOver = overLimit;
    overLimit = false;
    if (!limit || limit.max === null) {
      countLine.textContent = text ? fill(say("textCountFree"), { count: Array.from(text).length }) : "";
    } else {
      const length = replyLength(text, limit.counting, limit.urlLength);
      overLimit = length > limit.max;
      countLine.textContent = fill(say("textCount"), { count: length, limit: limit.max, platform });
      countLine.classList.toggle("is-near", !overLimit && length > limit.max * 0.9);
      if (overLimit) {
        errorLine.textContent = fill(say("textOver"), { platform, over: length - limit.max });
      }
    }
    countLine.classList.toggle("is-over", overLimit);
    textarea.setAttribute("aria-invalid", overLimit ? "true" : "false");
    if (wasOver && !overLimit) errorLine.textContent = "";
    updateSendState();
  }

  function updateKind() {
    const note = kind() === "note";
    composer.classList.toggle("is-note", note);
    composer.querySelectorAll("[data-reply-only]").forEach((element) => { element.hidden = note; });
    composer.querySelector("[data-label-reply]").hidden = note;
    composer.querySelector("[data-label-note]").hidden = !note;
    composer.querySelector("[data-send-reply]").hidden = note;
    composer.querySelector("[data-send-note]").hidden = !note;
    const noReply = composer.querySelector("[data-no-reply]");
    if (noReply) noReply.hidden = note;
    updateCounter();
  }

  function showHeldBack(message) {
    heldBack = true;
    heldText.textContent = message;
    heldBox.hidden = false;
    updateSendState();
  }

  composer.querySelector("[data-held-back-show]").addEventListener("click", () => {
    const first = conversation.querySelector("li.is-new");
    if (!first) return;
    first.setAttribute("tabindex", "-1");
    first.scrollIntoView({ block: "center" });
    first.focus();
  });

  composer.querySelector("[data-held-back-confirm]").addEventListener("click", () => {
    // Only now: the agent says they have read what arrived.
    seenInput.value = String(lastShownId());
    heldBack = false;
    heldBox.hidden = true;
    conversation.querySelectorAll(".is-new").forEach((item) => item.classList.remove("is-new"));
    updateSendState();
    textarea.focus();
  });

  composer.addEventListener("change", (event) => {
    if (event.target.matches("[data-kind], [data-visibility]")) updateKind();
  });

  textarea.addEventListener("input", () => {
    updateCounter();
    try {
      if (textarea.value) sessionStorage.setItem(draftKey, textarea.value);
      else sessionStorage.removeItem(draftKey);
    } catch (error) {
      console.warn("the draft could not be kept in this tab:", error);
    }
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      composer.requestSubmit();
    } else if (event.key === "Escape" && !event.defaultPrevented) {
      textarea.blur();
      conversation.setAttribute("tabindex", "-1");
      conversation.focus();
    }
  });

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    updateCounter();
    if (sending || heldBack || sendButton.disabled) return;
    const note = kind() === "note";
    sending = true;
    updateSendState();
    errorLine.textContent = "";
    countLine.textContent = say("textSending");
    let response;
    try {
      response = await Desk.postForm(composer.action, new FormData(composer));
    } catch (error) {
      sending = false;
      errorLine.textContent = say("textNetworkError");
      updateCounter();
      return;
    }
    sending = false;
    if (response.ok) {
      mergeMessages(parseFragment(await response.text()), false);
      textarea.value = "";
      templateInput.value = "";
      try { sessionStorage.removeItem(draftKey); } catch (error) { console.warn(error); }
      announce(note ? say("textNoteAdded") : say("textReplyQueued"));
    } else if (response.status === 409) {
      const fragment = parseFragment(await response.text());
      const notice = fragment.querySelector("[data-held-back-notice]");
      const message = notice ? notice.textContent.trim() : await errorText(response);
      mergeMessages(fragment, true);
      showHeldBack(message);
      const first = conversation.querySelector(".is-new");
      if (first) first.scrollIntoView({ block: "center", behavior: "smooth" });
    } else {
      errorLine.textContent = await errorText(response);
    }
    updateCounter();
  });

  // A draft from before a reload in this tab comes back.
  if (!textarea.value) {
    try {
      const kept = sessionStorage.getItem(draftKey);
      if (kept) textarea.value = kept;
    } catch (error) {
      console.warn("the draft could not be read:", error);
    }
  }
  updateKind();

  // --- Keyboard -------------------------------------------------------------------------------

  function clickStatus(status) {
    const button = root.querySelector(`[data-part="controls"] button[data-status="${status}"]`);
    if (button && !button.disabled) button.click();
  }

  Desk.onKey("r", (event) => { event.preventDefault(); textarea.focus(); });
  Desk.onKey("t", (event) => {
    event.preventDefault();
    document.dispatchEvent(new CustomEvent("desk:open-template-picker", { detail: { ticketId } }));
  });
  Desk.onKey("s", (event) => {
    event.preventDefault();
    if (window.confirm(say("textConfirmSolve"))) clickStatus("solved");
  });
  Desk.onKey("p", (event) => { event.preventDefault(); clickStatus("pending"); });
  Desk.onKey("n", (event) => { event.preventDefault(); window.location.assign(root.dataset.nextUrl); });
  Desk.onKey("?", (event) => {
    const dialog = root.querySelector("[data-shortcuts]");
    if (dialog && !dialog.open) { event.preventDefault(); dialog.showModal(); }
  });
})(typeof window !== "undefined" ? window : globalThis);
