// The inbox lists: live rows, keyboard navigation and the shortcut help.
//
// Live updates: the ticket ids of ticket.*, message.*, delivery.*, sla.* (and customer.*)
// events are collected for 250 ms, then ONE request asks the server how those tickets stand
// in this very list (/desk/rows?ids=…&<the list's query>). The answer is server-rendered
// rows (escaped there) with a sort key, and the ids that left the list. Rows are replaced,
// inserted where their sort key says (page 1; later pages show a "new tickets" notice) or
// removed. On desk:reset the whole page's rows are fetched once.
// No inline scripts (Content-Security-Policy); no innerHTML with data from JSON.
(function () {
  "use strict";

  const root = document.querySelector("[data-inbox]");
  if (!root) return;
  const body = root.querySelector("tbody[data-rows]");
  const summary = root.querySelector("[data-live-summary]");
  const notice = root.querySelector("[data-new-notice]");
  const noticeLink = root.querySelector("[data-new-link]");
  const empty = root.querySelector("[data-empty]");
  const search = root.querySelector("[data-inbox-search]");
  const nextForm = root.querySelector("[data-next-form]");
  const dialog = root.querySelector("dialog[data-shortcuts]");
  const strings = root.querySelector("[data-inbox-strings]").dataset;

  const listQuery = root.dataset.listQuery;
  const rowsUrl = root.dataset.rowsUrl;
  const pageNumber = Number(root.dataset.page) || 1;
  const pageSize = Number(root.dataset.pageSize) || 50;
  const countCap = Number(root.dataset.countCap) || 1000;

  const LIVE_TYPES = /^(ticket|message|delivery|sla|customer)\./;
  const DEBOUNCE_MS = 250;
  const MAX_IDS = 200; // the server's limit per request; more at once: re-fetch the page
  const RETRY_MS = 5000;
  const MAX_FAILURES = 3;
  const HIGHLIGHT_MS = 2000;

  const waiting = new Set(); // ticket ids whose rows must be asked for
  const created = new Set(); // of those, tickets that are new on the desk (ticket.created)
  let resyncWanted = false;
  let timer = null;
  let busy = false;
  let failures = 0;
  let newElsewhere = 0;

  // --- Strings (translated in the template) -----------------------------------------------------

  function say(name, n) {
    const text = n === 1 ? strings[name + "One"] : strings[name + "Other"];
    return text.replace("{n}", String(n));
  }

  function announce(parts) {
    if (!summary || !parts.length) return;
    summary.textContent = parts.join(". ");
  }

  // --- Rows ---------------------------------------------------------------------------------------

  function allRows() {
    return body ? Array.from(body.querySelectorAll("tr[data-ticket-id]")) : [];
  }

  function rowFor(id) {
    return allRows().find((row) => row.dataset.ticketId === String(id)) || null;
  }

  // Our own server-rendered fragment: <template data-inbox-fragment data-gone=… data-count-…>
  // followed by <tr> rows. Anything else (say, the login page after the session ended) is refused.
  function parseFragment(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html;
    const marker = holder.content.querySelector("template[data-inbox-fragment]");
    if (!marker) throw new Error("unexpected answer (signed out?)");
    const gone = (marker.dataset.gone || "").split(",").filter(Boolean);
    return { marker, gone, rows: Array.from(holder.content.querySelectorAll("tr[data-ticket-id]")) };
  }

  function updateCounts(marker) {
    root.querySelectorAll("[data-count-for]").forEach((badge) => {
      const key = "count" + badge.dataset.countFor.replace(/^./, (c) => c.toUpperCase());
      if (!(key in marker.dataset)) return;
      const count = Number(marker.dataset[key]);
      badge.textContent = count >= countCap ? countCap - 1 + "+" : String(count);
    });
  }

  // Put ``row`` where its sort key belongs. A row new to this page that sorts after the last
  // row of a full page belongs to a later page: not placed (returns false).
  function place(row, isNew) {
    const key = row.dataset.sortKey;
    const rows = allRows();
    const before = rows.find((other) => other.dataset.sortKey > key);
    if (before) {
      body.insertBefore(row, before);
      return true;
    }
    if (isNew && rows.length >= pageSize) return false;
    body.appendChild(row);
    return true;
  }

  function highlight(row) {
    row.classList.add("is-changed");
    setTimeout(() => row.classList.remove("is-changed"), HIGHLIGHT_MS);
  }

  function refreshEmptyState() {
    if (empty) empty.hidden = allRows().length > 0;
  }

  function showElsewhere(count) {
    if (!notice || !count) return;
    newElsewhere += count;
    noticeLink.textContent = say("elsewhere", newElsewhere);
    noticeLink.href = "?" + listQuery;
    notice.hidden = false;
  }

  function applyChanges(fragment) {
    let updated = 0;
    let added = 0;
    let removed = 0;
    let elsewhere = 0;
    const focused = currentRow();
    const focusedId = focused ? focused.dataset.ticketId : null;
    fragment.gone.forEach((id) => {
      const row = rowFor(id);
      if (!row) return;
      // Keyboard users keep their place: focus moves to the neighbour of a row that leaves.
      const neighbour = row === focused ? row.nextElementSibling || row.previousElementSibling : null;
      row.remove();
      removed += 1;
      if (neighbour) focusRow(neighbour);
    });
    fragment.rows.forEach((row) => {
      const old = rowFor(row.dataset.ticketId);
      if (old) {
        old.remove();
        place(row, false);
        updated += 1;
      } else if (pageNumber === 1) {
        if (!place(row, true)) return;
        added += 1;
      } else {
        // Later pages: a new ticket of this list sorts somewhere else; say so, do not guess.
        if (created.has(Number(row.dataset.ticketId))) elsewhere += 1;
        return;
      }
      window.Desk.tickClocks(row);
      highlight(row);
      if (focusedId === row.dataset.ticketId) focusRow(row);
    });
    fragment.rows.forEach((row) => created.delete(Number(row.dataset.ticketId)));
    fragment.gone.forEach((id) => created.delete(Number(id)));
    // Page 1 keeps one page of rows: what new rows pushed down belongs to page 2 now.
    allRows().slice(pageSize).forEach((row) => row.remove());
    updateCounts(fragment.marker);
    refreshEmptyState();
    showElsewhere(elsewhere);
    const parts = [];
    if (added) parts.push(say("added", added));
    if (updated) parts.push(say("updated", updated));
    if (removed) parts.push(say("removed", removed));
    announce(parts);
  }

  function replaceAll(fragment) {
    const focusedRow = currentRow();
    body.replaceChildren(...fragment.rows);
    created.clear();
    window.Desk.tickClocks(body);
    updateCounts(fragment.marker);
    refreshEmptyState();
    if (focusedRow) {
      const again = rowFor(focusedRow.dataset.ticketId);
      if (again) focusRow(again);
    }
    announce([strings.refreshed]);
  }

  // --- Fetching -----------------------------------------------------------------------------------

  function schedule(delay) {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      flush();
    }, delay === undefined ? DEBOUNCE_MS : delay);
  }

  async function flush() {
    if (busy || !body) return; // the running request schedules the next one
    if (!resyncWanted && waiting.size > MAX_IDS) resyncWanted = true;
    const resync = resyncWanted;
    const ids = resync ? [] : Array.from(waiting);
    if (!resync && !ids.length) return;
    resyncWanted = false;
    waiting.clear();
    busy = true;
    try {
      if (resync) {
        const url = window.location.pathname + "?" + listQuery + "&page=" + pageNumber + "&fragment=rows";
        replaceAll(parseFragment(await window.Desk.fetchHTML(url)));
      } else {
        const url = rowsUrl + "?ids=" + ids.join(",") + "&" + listQuery;
        applyChanges(parseFragment(await window.Desk.fetchHTML(url)));
      }
      failures = 0;
    } catch (error) {
      // Nothing is dropped: the same work is asked for again.
      if (resync) resyncWanted = true;
      ids.forEach((id) => waiting.add(id));
      failures += 1;
      window.Desk.toast(strings.failed + " (" + error.message + ")", "error");
    } finally {
      busy = false;
    }
    if (failures >= MAX_FAILURES) return; // wait for the next event or reset before trying again
    if (resyncWanted || waiting.size) schedule(failures ? RETRY_MS : DEBOUNCE_MS);
  }

  document.addEventListener("desk:events", (event) => {
    const events = (event.detail && event.detail.events) || [];
    let any = false;
    events.forEach((item) => {
      if (item.ticket_id && LIVE_TYPES.test(item.type)) {
        waiting.add(Number(item.ticket_id));
        if (item.type === "ticket.created") created.add(Number(item.ticket_id));
        any = true;
      }
    });
    if (any) {
      failures = 0;
      schedule();
    }
  });

  document.addEventListener("desk:reset", () => {
    failures = 0;
    resyncWanted = true;
    schedule(0);
  });

  // --- Keyboard and pointer -----------------------------------------------------------------------

  function linkOf(row) {
    return row.querySelector("[data-ticket-link]");
  }

  function focusRow(row) {
    const link = linkOf(row);
    if (!link) return;
    link.focus();
    row.scrollIntoView({ block: "nearest" });
  }

  function currentRow() {
    const active = document.activeElement;
    return active && active.closest ? active.closest("tr[data-ticket-id]") : null;
  }

  function move(delta) {
    const rows = allRows();
    if (!rows.length) return;
    const index = rows.indexOf(currentRow());
    const target = index === -1 ? (delta > 0 ? 0 : rows.length - 1) : index + delta;
    focusRow(rows[Math.max(0, Math.min(rows.length - 1, target))]);
  }

  function openCurrent(event) {
    const row = currentRow();
    if (!row) return;
    event.preventDefault();
    window.location.assign(linkOf(row).href);
  }

  function showShortcuts() {
    if (dialog && !dialog.open) dialog.showModal();
  }

  window.Desk.onKey("j", (event) => { event.preventDefault(); move(1); });
  window.Desk.onKey("k", (event) => { event.preventDefault(); move(-1); });
  window.Desk.onKey("o", openCurrent);
  window.Desk.onKey("Enter", (event) => {
    // On the link itself the browser follows it; elsewhere in a row we do.
    if (event.target.closest && event.target.closest("a, button")) return;
    openCurrent(event);
  });
  window.Desk.onKey("n", (event) => {
    if (!nextForm || (dialog && dialog.open)) return;
    event.preventDefault();
    nextForm.requestSubmit();
  });
  window.Desk.onKey("/", (event) => {
    if (!search) return;
    event.preventDefault();
    search.focus();
    search.select();
  });
  window.Desk.onKey("?", (event) => { event.preventDefault(); showShortcuts(); });

  // Wide screens have room for the filters: unfold them (folded on phones unless in use).
  const moreFilters = root.querySelector("[data-more-filters]");
  if (moreFilters && window.matchMedia("(min-width: 761px)").matches) moreFilters.open = true;

  const opener = root.querySelector("[data-shortcuts-open]");
  if (opener) opener.addEventListener("click", showShortcuts);

  // A click anywhere on a row opens its ticket (links, buttons and selecting text excepted).
  if (body) {
    body.addEventListener("click", (event) => {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      if (event.target.closest("a, button, input, select, textarea, label")) return;
      if (String(window.getSelection() || "")) return;
      const row = event.target.closest("tr[data-ticket-id]");
      if (row) window.location.assign(linkOf(row).href);
    });
  }
})();
