// KYM console: the approvals countdown, confirmations, amount hints that follow a form's currency
// and typed input kept across a new sign-in. Everything else works without JavaScript; htmx
// (vendored beside this file) refreshes the inbox when the event stream says so.
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
  // A form's amount hints follow the currency chosen in it (its currency field, or the credit
  // line picked in a select whose options name theirs): "in JPY, e.g. 1250 · now ¥1,250", as the
  // server writes them (money.format_amount), which also reads the amounts in that currency.
  var SYMBOLS = {EUR: "€", USD: "$", GBP: "£", JPY: "¥", INR: "₹", KRW: "₩"};
  function currencyOf(form) {
    var chooser = form.elements[form.getAttribute("data-currency-field") || ""];
    var code = "";
    if (chooser && chooser.tagName === "SELECT" && chooser.selectedIndex >= 0) {
      code = chooser.options[chooser.selectedIndex].getAttribute("data-currency") || "";
    } else if (chooser) { code = chooser.value; }
    return code.trim().toUpperCase() || form.getAttribute("data-currency-default") || "EUR";
  }
  function written(typed, code, digits) {
    var found = /^([0-9]*)(?:\.([0-9]*))?$/.exec(typed);
    if (!found || !(found[1] || found[2]) || (found[2] || "").length > digits) { return null; }
    var whole = (found[1] || "0").replace(/^0+(?=[0-9])/, "").replace(/\B(?=([0-9]{3})+$)/g, ",");
    var number = whole + (digits ? "." + (found[2] || "").padEnd(digits, "0") : "");
    return SYMBOLS[code] ? SYMBOLS[code] + number : code + " " + number;
  }
  function amountHint(code, digits, extra, typed) {
    var example = digits ? "12.5" + "0".repeat(digits - 1) : "1250";
    var text = "in " + code + ", e.g. " + example + (extra ? "; " + extra : "");
    var shown = typed ? written(typed, code, digits) : null;
    var has = digits ? digits + " decimal" + (digits === 1 ? "" : "s") : "no decimals";
    if (shown) { return text + " · now " + shown; }
    if (/^[0-9]*\.[0-9]+$/.test(typed)) { return text + " · " + code + " has " + has; }
    return typed ? text + " · not an amount: write it as " + example + " is written" : text;
  }
  function followCurrency(form) {
    var code = currencyOf(form), table = JSON.parse(form.getAttribute("data-decimals") || "{}");
    var digits = Object.prototype.hasOwnProperty.call(table, code) ? table[code] : 2;
    form.querySelectorAll("input[data-amount]").forEach(function (input) {
      input.setAttribute("inputmode", digits ? "decimal" : "numeric");
      var hint = input.parentNode.querySelector("[data-amount-hint]");
      if (hint) {
        hint.textContent = amountHint(code, digits, hint.getAttribute("data-amount-hint"), input.value.trim());
      }
    });
    var area = form.closest("section, details") || form, example = amountHint(code, digits, "", "");
    area.querySelectorAll("[data-currency-code]").forEach(function (el) { el.textContent = code; });
    area.querySelectorAll("[data-currency-example]").forEach(function (el) {
      el.textContent = example.split("e.g. ")[1];
    });
    area.querySelectorAll("[data-currency-example-money]").forEach(function (el) {
      el.textContent = written(example.split("e.g. ")[1], code, digits);
    });
  }
  function onTyped(event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-decimals")) { followCurrency(form); }
  }
  document.addEventListener("input", onTyped);
  document.addEventListener("change", onTyped);
  // A form sent after the session ended comes back as the sign-in page. What was typed in it
  // (never a password or a hidden field) waits in this tab's sessionStorage, and goes back into
  // the same form once the same owner has signed in again and is back on its page. An answer
  // that is not the sign-in page (the form was taken, or refused with its fields kept) drops it;
  // so does any but a form refused as opened before the latest sign-in (`data-kept-stale`).
  var KEPT = "kym:kept";
  function isSignIn() { return !!document.querySelector("form[action='/console/session']"); }
  function keep(event) {
    var form = event.target, action = form.getAttribute("action") || "";
    if (form.method !== "post" || /^\/console\/(session|sign-out)/.test(action)) { return; }
    var fields = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && !/^(hidden|password|submit|button)$/.test(el.type)) { fields[el.name] = el.value; }
    });
    var owner = document.body.getAttribute("data-owner") || "";
    try {
      sessionStorage.setItem(KEPT, JSON.stringify({owner: owner, action: action, fields: fields, state: "sent"}));
    } catch (e) { /* storage off: nothing is kept */ }
  }
  function restore() {
    var kept;
    try { kept = JSON.parse(sessionStorage.getItem(KEPT) || "null"); } catch (e) { return; }
    if (!kept) { return; }
    if (isSignIn() || document.querySelector("[data-kept-stale]")) {  // for the next page
      kept.state = "signing-in";
      sessionStorage.setItem(KEPT, JSON.stringify(kept));
      var note = document.querySelector("[data-kept-note]");
      if (note) { note.hidden = false; }
      return;
    }
    sessionStorage.removeItem(KEPT);
    var form = document.querySelector("form[action='" + CSS.escape(kept.action) + "']");
    if (kept.state !== "signing-in" || !form || kept.owner !== document.body.getAttribute("data-owner")) {
      return;
    }
    Object.keys(kept.fields).forEach(function (name) {
      var el = form.elements[name];
      if (el && el.name === name && el.type !== "hidden") { el.value = kept.fields[name]; }
    });
    var details = form.closest("details");
    if (details) { details.open = true; }
    var notice = document.createElement("p");
    notice.className = "notice";
    notice.setAttribute("role", "status");
    notice.setAttribute("data-kept", "");
    notice.textContent = "What you typed before signing in again is back in the form: check it and send it again.";
    form.parentNode.insertBefore(notice, form);
    if (form.hasAttribute("data-decimals")) { followCurrency(form); }
    notice.scrollIntoView({block: "center"});
  }
  document.addEventListener("submit", keep);
  document.addEventListener("DOMContentLoaded", restore);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("DOMContentLoaded", follow);
  document.addEventListener("DOMContentLoaded", redeemLink);
  document.addEventListener("htmx:afterSwap", tick);
  setInterval(tick, 1000);
})();
