// Reply templates on the ticket page (picker, "/shortcut", suggested templates with Alt+1..3)
// and the lead's template editor (live warning about unknown {variables}).
//
// Markup: templates/inbox/desk/_template_picker.html inside the composer form, next to
// textarea[data-composer] and input[name=reply_template]. Lists come from server-rendered
// fragments (escaped there); a chosen template's text is read from data-text and inserted as
// text with setRangeText, never as HTML.
(function () {
  "use strict";
  if (window.DeskTemplates) return; // the partial may be included more than once
  const DEBOUNCE_MS = 250;
  const SEARCH_DEBOUNCE_MS = 150;
  const SLASH = /^\/([a-z0-9][a-z0-9_-]{0,39})$/i;
  const state = new WeakMap(); // picker element -> {seq, suggestSeq, active, slash, timer}

  function stateOf(picker) {
    let s = state.get(picker);
    if (!s) { s = { seq: 0, suggestSeq: 0, active: -1, slash: null, timer: null }; state.set(picker, s); }
    return s;
  }

  function parts(picker) {
    const form = picker.closest("form");
    return {
      form,
      textarea: (form || document).querySelector("textarea[data-composer]"),
      templateInput: form ? form.querySelector("input[name=reply_template]") : null,
      toggle: picker.querySelector("[data-picker-toggle]"),
      panel: picker.querySelector("[data-picker-panel]"),
      search: picker.querySelector("[data-picker-search]"),
      results: picker.querySelector("[data-picker-results]"),
      status: picker.querySelector("[data-picker-status]"),
      announce: picker.querySelector("[data-picker-announce]"),
      suggestions: picker.querySelector("[data-template-suggestions]"),
    };
  }

  function fragment(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html; // our own server-rendered, escaped fragment
    return holder.content;
  }

  function allPickers() {
    return Array.from(document.querySelectorAll("[data-template-picker]"));
  }

  // The picker of the composer that has focus, else the first on the page.
  function currentPicker() {
    const focused = document.activeElement && document.activeElement.closest("form");
    const own = focused && focused.querySelector("[data-template-picker]");
    return own || allPickers()[0] || null;
  }

  // --- Inserting -------------------------------------------------------------------------------

  function insert(picker, choice) {
    const p = parts(picker);
    const s = stateOf(picker);
    if (!p.textarea) { Desk.toast(picker.dataset.noComposerLabel || "No reply box on this page.", "error"); return; }
    const text = choice.dataset.text || "";
    let start = p.textarea.selectionStart;
    let end = p.textarea.selectionEnd;
    // A "/shortcut" typed at the start is replaced by the template.
    if (s.slash && p.textarea.value.slice(0, s.slash.length) === s.slash) {
      start = 0;
      end = Math.max(end, s.slash.length);
    }
    s.slash = null;
    p.textarea.focus();
    p.textarea.setRangeText(text, start, end, "end");
    if (p.templateInput) p.templateInput.value = choice.dataset.templateId;
    p.textarea.dispatchEvent(new Event("input", { bubbles: true }));
    if (p.announce) p.announce.textContent = (picker.dataset.insertedLabel || "Inserted:") + " " + (choice.dataset.name || "");
  }

  // --- Picker ---------------------------------------------------------------------------------

  function options(picker) {
    return Array.from(parts(picker).results.querySelectorAll("[role=option][data-template-choice]"));
  }

  function setActive(picker, index) {
    const p = parts(picker);
    const opts = options(picker);
    const s = stateOf(picker);
    s.active = opts.length ? Math.max(0, Math.min(index, opts.length - 1)) : -1;
    opts.forEach((opt, i) => opt.setAttribute("aria-selected", i === s.active ? "true" : "false"));
    if (s.active >= 0) {
      p.search.setAttribute("aria-activedescendant", opts[s.active].id);
      opts[s.active].scrollIntoView({ block: "nearest" });
    } else {
      p.search.removeAttribute("aria-activedescendant");
    }
  }

  async function loadResults(picker) {
    const p = parts(picker);
    const s = stateOf(picker);
    const seq = ++s.seq;
    const url = picker.dataset.resultsUrl + "?q=" + encodeURIComponent(p.search.value);
    p.results.setAttribute("aria-busy", "true");
    let html;
    try {
      html = await Desk.fetchHTML(url);
    } catch (error) {
      if (seq === s.seq) {
        p.status.textContent = (picker.dataset.loadErrorLabel || "Templates could not be loaded:") + " " + error.message;
        p.results.removeAttribute("aria-busy");
      }
      return;
    }
    if (seq !== s.seq) return; // a newer search answered first
    p.results.replaceChildren(fragment(html));
    p.results.removeAttribute("aria-busy");
    const count = options(picker).length;
    const empty = p.results.querySelector("[data-picker-empty]");
    p.status.textContent = count ? "" : (empty ? empty.textContent : "");
    p.search.setAttribute("aria-expanded", count ? "true" : "false");
    setActive(picker, 0);
  }

  function open(picker, query) {
    const p = parts(picker);
    p.panel.hidden = false;
    p.toggle.setAttribute("aria-expanded", "true");
    p.search.value = query || "";
    p.search.focus();
    loadResults(picker);
  }

  function close(picker, focusComposer) {
    const p = parts(picker);
    if (p.panel.hidden) return;
    stateOf(picker).slash = null; // a "/word" left unresolved stays plain text
    p.panel.hidden = true;
    p.toggle.setAttribute("aria-expanded", "false");
    p.search.setAttribute("aria-expanded", "false");
    p.search.removeAttribute("aria-activedescendant");
    if (focusComposer && p.textarea) p.textarea.focus();
  }

  function choose(picker, choice) {
    insert(picker, choice);
    close(picker, false);
  }

  // "/delay" + Enter at the start of the reply box: the template with that shortcut, or the
  // only one whose shortcut starts so; otherwise the picker opens with the word searched.
  async function resolveSlash(picker, word, typed) {
    const s = stateOf(picker);
    let html;
    try {
      html = await Desk.fetchHTML(picker.dataset.resultsUrl + "?q=" + encodeURIComponent(word));
    } catch (error) {
      Desk.toast((picker.dataset.loadErrorLabel || "Templates could not be loaded:") + " " + error.message, "error");
      return;
    }
    const found = Array.from(fragment(html).querySelectorAll("[data-template-choice]"));
    const lower = word.toLowerCase();
    let match = found.find((el) => el.dataset.shortcut === lower);
    if (!match) {
      const prefixed = found.filter((el) => el.dataset.shortcut.startsWith(lower));
      if (prefixed.length === 1) match = prefixed[0];
    }
    s.slash = typed;
    if (match) insert(picker, match);
    else open(picker, word);
  }

  function scheduleSearch(picker) {
    const s = stateOf(picker);
    clearTimeout(s.timer);
    s.timer = setTimeout(() => loadResults(picker), SEARCH_DEBOUNCE_MS);
  }

  // --- Suggestions ----------------------------------------------------------------------------

  async function loadSuggestions(picker) {
    const p = parts(picker);
    if (!p.suggestions) return;
    const s = stateOf(picker);
    const seq = ++s.suggestSeq;
    p.suggestions.setAttribute("aria-busy", "true");
    try {
      const html = await Desk.fetchHTML(picker.dataset.suggestionsUrl);
      if (seq !== s.suggestSeq) return;
      p.suggestions.replaceChildren(fragment(html));
    } catch (error) {
      if (seq !== s.suggestSeq) return;
      const note = document.createElement("span");
      note.className = "muted";
      note.textContent = (picker.dataset.suggestErrorLabel || "Suggestions could not be loaded:") + " " + error.message;
      p.suggestions.replaceChildren(note);
    } finally {
      if (seq === s.suggestSeq) p.suggestions.removeAttribute("aria-busy");
    }
  }

  function initPicker(picker) {
    if (picker.dataset.ready || !window.Desk) return;
    picker.dataset.ready = "1";
    loadSuggestions(picker);
  }

  // Live: a new customer message (or a queue/language change) re-ranks the suggestions,
  // debounced, one request per picker.
  const pending = new Set();
  let suggestTimer = null;
  function scheduleSuggestions(pickers) {
    pickers.forEach((picker) => pending.add(picker));
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(() => {
      const batch = Array.from(pending);
      pending.clear();
      batch.filter((picker) => picker.isConnected).forEach(loadSuggestions);
    }, DEBOUNCE_MS);
  }

  document.addEventListener("desk:events", (event) => {
    const events = (event.detail && event.detail.events) || [];
    const touched = new Set();
    events.forEach((e) => {
      const inbound = e.type === "message.created" && e.payload && e.payload.direction === "in";
      if (inbound || e.type === "ticket.queue_changed" || e.type === "ticket.language_changed") {
        touched.add(String(e.ticket_id));
      }
    });
    if (!touched.size) return;
    scheduleSuggestions(allPickers().filter((picker) => touched.has(picker.dataset.ticketId)));
  });
  document.addEventListener("desk:reset", () => scheduleSuggestions(allPickers()));

  // --- Event wiring (delegated: the composer may be re-rendered) -------------------------------

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-picker-toggle]");
    if (toggle) {
      const picker = toggle.closest("[data-template-picker]");
      if (parts(picker).panel.hidden) open(picker, ""); else close(picker, true);
      return;
    }
    const choice = event.target.closest("[data-template-choice]");
    if (choice) {
      const picker = choice.closest("[data-template-picker]");
      if (picker) choose(picker, choice);
      return;
    }
    // A click outside an open picker closes it.
    allPickers().forEach((picker) => {
      if (!picker.contains(event.target)) close(picker, false);
    });
  });

  document.addEventListener("input", (event) => {
    const target = event.target;
    if (target.matches("[data-picker-search]")) {
      scheduleSearch(target.closest("[data-template-picker]"));
    } else if (target.matches("textarea[data-composer]") && target.value.trim() === "" && target.form) {
      // An emptied reply no longer starts from the template.
      const input = target.form.querySelector("input[name=reply_template]");
      if (input) input.value = "";
    }
  });

  // Capture phase: a key the picker handles (Enter after "/shortcut", Esc in the search)
  // must not also reach the composer's or the page's own key handlers.
  document.addEventListener("keydown", (event) => {
    const target = event.target;

    // Alt+1..3: insert a suggested template (event.code: Alt+digit types other characters on macOS).
    const digit = /^Digit([1-3])$/.exec(event.code || "");
    if (digit && event.altKey && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      const picker = currentPicker();
      const choice = picker && picker.querySelector(`[data-suggestion-key="${digit[1]}"]`);
      if (choice) {
        event.preventDefault();
        event.stopPropagation();
        choose(picker, choice);
      }
      return;
    }

    if (target.matches && target.matches("[data-picker-search]")) {
      const picker = target.closest("[data-template-picker]");
      const s = stateOf(picker);
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        setActive(picker, s.active + (event.key === "ArrowDown" ? 1 : -1));
      } else if (event.key === "Home" || event.key === "End") {
        if (!options(picker).length) return;
        event.preventDefault();
        setActive(picker, event.key === "Home" ? 0 : options(picker).length - 1);
      } else if (event.key === "Enter") {
        event.preventDefault(); // never submits the reply form
        event.stopPropagation();
        const opts = options(picker);
        if (s.active >= 0 && opts[s.active]) choose(picker, opts[s.active]);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close(picker, true);
      }
      return;
    }

    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey
        && target.matches && target.matches("textarea[data-composer]") && target.form) {
      const picker = target.form.querySelector("[data-template-picker]");
      if (!picker || target.selectionStart !== target.selectionEnd) return;
      const typed = target.value.slice(0, target.selectionStart);
      const match = SLASH.exec(typed);
      if (!match) return;
      event.preventDefault();
      event.stopPropagation();
      resolveSlash(picker, match[1], typed);
      return;
    }

    if (event.key === "Escape") {
      const picker = target.closest && target.closest("[data-template-picker]");
      if (picker && !parts(picker).panel.hidden) {
        event.stopPropagation();
        close(picker, true);
      }
    }
  }, true);

  // The ticket page's "t" shortcut.
  document.addEventListener("desk:open-template-picker", (event) => {
    const wanted = event.detail && (event.detail.ticket_id || event.detail.ticketId);
    const picker = (wanted && allPickers().find((p) => p.dataset.ticketId === String(wanted))) || currentPicker();
    if (picker) open(picker, "");
  });

  // --- Template editor: warn about unknown {variables} while typing ---------------------------

  function checkVariant(textarea) {
    const fieldset = textarea.closest("[data-variables]");
    const warning = textarea.parentElement.querySelector("[data-variant-warning]");
    if (!fieldset || !warning) return;
    const known = fieldset.dataset.variables.split(" ");
    const unknown = [];
    (textarea.value.match(/\{[^{}\n]*\}/g) || []).forEach((token) => {
      if (!known.includes(token.slice(1, -1)) && !unknown.includes(token)) unknown.push(token);
    });
    const stray = textarea.value.replace(/\{[^{}\n]*\}/g, "").search(/[{}]/) >= 0;
    const messages = [];
    if (unknown.length) messages.push((fieldset.dataset.unknownLabel || "Unknown variable:") + " " + unknown.join(", "));
    if (stray) messages.push(fieldset.dataset.strayLabel || "Braces are only for variables.");
    warning.textContent = messages.join(" ");
    warning.hidden = messages.length === 0;
  }

  document.addEventListener("input", (event) => {
    if (event.target.matches("textarea[data-variant-language]")) checkVariant(event.target);
  });

  function init() {
    allPickers().forEach(initPicker);
    document.querySelectorAll("textarea[data-variant-language]").forEach(checkVariant);
    const errors = document.querySelector("[data-form-errors]");
    if (errors) errors.focus();
  }

  // Pickers added later (a re-rendered composer) get their suggestions too.
  new MutationObserver((mutations) => {
    mutations.forEach((m) => m.addedNodes.forEach((node) => {
      if (node.nodeType !== 1) return;
      if (node.matches("[data-template-picker]")) initPicker(node);
      node.querySelectorAll("[data-template-picker]").forEach(initPicker);
    }));
  }).observe(document.documentElement, { childList: true, subtree: true });

  // This file may come before common.js (the partial sits inside the page body; both are
  // deferred): start once window.Desk exists, at the latest when the document is parsed.
  if (window.Desk) init();
  else document.addEventListener("DOMContentLoaded", init, { once: true });

  window.DeskTemplates = { open, close, insert, loadSuggestions };
})();
