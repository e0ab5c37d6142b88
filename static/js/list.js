// The task list's small script: "tick all", ticks that survive live updates, and the error
// states of the filter form's requests. Everything here is an extra: the list works without it.
(function () {
  "use strict";
  // Loaded again by each boosted visit to the list (htmx runs the body's scripts): the
  // listeners are set up once; htmx:afterSettle then brings each new list up to date.
  if (window.taskdeckList) return;
  window.taskdeckList = true;

  // Ticked rows by id, so a row replaced by a live update keeps its tick.
  var ticked = new Set();

  function boxes() {
    return document.querySelectorAll("#bulk-untrack input[name=task]");
  }

  function syncAll() {
    var all = document.querySelector("input[data-select-all]");
    if (!all) return;
    all.hidden = false;
    var list = boxes();
    all.checked = list.length > 0 && Array.prototype.every.call(list, function (b) { return b.checked; });
  }

  function restore() {
    boxes().forEach(function (box) { box.checked = ticked.has(box.value); });
    syncAll();
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("input[data-select-all]")) {
      boxes().forEach(function (box) {
        box.checked = target.checked;
        if (target.checked) ticked.add(box.value); else ticked.delete(box.value);
      });
    } else if (target.matches("#bulk-untrack input[name=task]")) {
      if (target.checked) ticked.add(target.value); else ticked.delete(target.value);
      syncAll();
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    // Only the poller's own answer keeps the ticks: any other swap shows another view.
    if (!event.detail.target || event.detail.target.id !== "live-poller") ticked.clear();
    restore();
  });
  document.addEventListener("htmx:oobAfterSwap", restore);
  document.addEventListener("DOMContentLoaded", restore);

  // The bulk action button shares the untrack form but asks on its own page (with counts):
  // the form's "stop tracking?" question is not for it.
  document.addEventListener("htmx:confirm", function (event) {
    var submitter = event.detail.triggeringEvent && event.detail.triggeringEvent.submitter;
    if (submitter && submitter.hasAttribute("data-skip-confirm")) {
      event.preventDefault();
      event.detail.issueRequest(true);
    }
  });

  // A view that cannot be shown (400: a bad filter) comes with its message: show it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 400 && event.detail.target && event.detail.target.id === "results") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  function showError(text) {
    var results = document.getElementById("results");
    if (!results) return;
    var note = document.getElementById("list-error");
    if (!note) {
      note = document.createElement("p");
      note.id = "list-error";
      note.className = "message message-error";
      note.setAttribute("role", "alert");
      results.insertBefore(note, results.firstChild);
    }
    note.textContent = text;
  }

  document.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr.status === 400) return;
    showError("The list could not be loaded (HTTP " + event.detail.xhr.status + "). It shows the last view that loaded; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The server cannot be reached. The list shows the last view that loaded; it will catch up once the server answers.");
  });
})();
