// cloudkeep's only script of its own (htmx does the rest). No inline
// scripts anywhere: the Content-Security-Policy allows only these files.
"use strict";

// A form that changes something hard to undo asks first.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }
}, true);

// htmx asks the same for its own requests.
document.addEventListener("htmx:confirm", function (event) {
  var el = event.target;
  if (el.dataset && el.dataset.confirm && !(el instanceof HTMLFormElement)) {
    event.preventDefault();
    if (window.confirm(el.dataset.confirm)) {
      event.detail.issueRequest(true);
    }
  }
});

// After htmx replaces part of a page, move focus to what it announced, so
// keyboard and screen reader users land on the result.
document.addEventListener("htmx:afterSettle", function (event) {
  var target = event.detail.target;
  if (!target) return;
  var focus = target.querySelector("[data-focus]");
  if (focus) {
    focus.setAttribute("tabindex", "-1");
    focus.focus();
  }
});
