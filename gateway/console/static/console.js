// KYM console: the approvals countdown and confirmations. Everything else works without JavaScript;
// htmx (vendored beside this file) refreshes the inbox when the event stream says so.
(function () {
  "use strict";
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.round((Date.parse(el.getAttribute("data-expires")) - now) / 1000);
      if (isNaN(left)) { return; }
      if (left <= 0) { el.textContent = "expired"; el.classList.add("soon"); return; }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      var text = (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(s).padStart(2, "0");
      el.textContent = text + " left";
      el.classList.toggle("soon", left < 60);
    });
  }
  // A button with data-confirm asks first (no inline handlers: the pages' CSP forbids them).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
  });
  // A sign-in link carries its one-time token in the fragment: post it, then forget it.
  function redeemLink() {
    var form = document.getElementById("link-form");
    var token = window.location.hash.slice(1);
    if (!form || !token) { return; }
    history.replaceState(null, "", window.location.pathname);
    form.elements.token.value = token;
    form.submit();
  }
  // The inbox follows the owner's event stream (the session cookie admits it) and refreshes
  // itself whenever an approval appears, is decided or expires.
  function follow() {
    var inbox = document.querySelector("[data-events]");
    if (!inbox || !window.EventSource || !window.htmx) { return; }
    var source = new EventSource(inbox.getAttribute("data-events"));
    ["approval.pending", "approval.decided", "approval.expired"].forEach(function (type) {
      source.addEventListener(type, function () { htmx.trigger(inbox, "kym:refresh"); });
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("DOMContentLoaded", follow);
  document.addEventListener("DOMContentLoaded", redeemLink);
  document.addEventListener("htmx:afterSwap", tick);
  setInterval(tick, 1000);
})();
