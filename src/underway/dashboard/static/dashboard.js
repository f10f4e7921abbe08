/* underway dashboard: confirm dialogs and live updates. Every page works without it. */
(function () {
  "use strict";

  // A submit button or form with data-confirm asks first.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var text = (button && button.getAttribute("data-confirm")) ||
      event.target.getAttribute("data-confirm");
    if (text && !window.confirm(text)) {
      event.preventDefault();
    }
  });

  // The element with data-live is fetched again every data-live-interval seconds (the
  // same address, with the X-Underway-Live header: the server answers with that part
  // alone), unless the reader is busy in it (a box ticked, a field focused).
  var seconds = parseFloat(document.body.getAttribute("data-live-interval") || "0");
  var target = document.querySelector("[data-live]");
  var toggle = document.querySelector("[data-live-toggle]");
  if (!seconds || !target) {
    return;
  }
  var key = "underway-live";
  var on = window.sessionStorage.getItem(key) !== "off";

  function show() {
    toggle.textContent = on ? "Live: on" : "Live: off";
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
  }

  if (toggle) {
    toggle.hidden = false;
    show();
    toggle.addEventListener("click", function () {
      on = !on;
      window.sessionStorage.setItem(key, on ? "on" : "off");
      show();
    });
  }

  function busy() {
    var focused = document.activeElement;
    return document.hidden || target.querySelector("input:checked") !== null ||
      (focused !== null && focused !== document.body && target.contains(focused));
  }

  function refresh() {
    if (!on || busy()) {
      return;
    }
    window.fetch(window.location.href, {
      headers: { "X-Underway-Live": "1" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && !busy()) {
        target.innerHTML = html;
      }
    }).catch(function () { /* the next tick tries again */ });
  }

  window.setInterval(refresh, seconds * 1000);
})();
