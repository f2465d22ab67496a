// The presence code page (/me/code): count down, and a little before the code expires fetch the page
// again (every visit draws a new code) and put its fresh code in place. Without this file the page
// still works: it says until when the code is good, and "换一个码" posts for a new one.
(function () {
  "use strict";
  var RENEW_BEFORE_SECONDS = 10;
  var MAX_RENEWALS = 15;  // about half an hour of a page left open; then the button is there
  var renewals = 0;
  var timer = null;

  function say(text) {
    var status = document.getElementById("presence-status");
    if (status) { status.textContent = text; }
  }

  function track() {
    var box = document.getElementById("presence");
    if (!box) { return; }
    var secondsLeft = parseInt(box.getAttribute("data-seconds-left"), 10) || 0;
    var started = Date.now();
    var shown = box.querySelector("[data-countdown]");
    var template = box.getAttribute("data-text-left");

    function tick() {
      var left = secondsLeft - Math.floor((Date.now() - started) / 1000);
      if (shown && left > 0) {
        shown.textContent = template.replace("{m}", Math.floor(left / 60)).replace("{s}", left % 60);
      }
      if (left <= RENEW_BEFORE_SECONDS) {
        clearInterval(timer);
        if (renewals < MAX_RENEWALS) {
          renew(box);
        } else if (shown) {
          shown.textContent = box.getAttribute("data-text-stopped");
        }
      }
    }
    timer = setInterval(tick, 1000);
    tick();
  }

  function renew(box) {
    renewals += 1;
    say(box.getAttribute("data-text-renewing"));
    fetch(window.location.pathname, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("presence");
        if (!fresh) { throw new Error("no code in the page"); }
        box.replaceWith(document.importNode(fresh, true));
        say(fresh.getAttribute("data-text-renewed"));
        track();
      })
      .catch(function () {
        say(box.getAttribute("data-text-failed"));
        var shown = box.querySelector("[data-countdown]");
        if (shown) { shown.textContent = box.getAttribute("data-text-failed"); }
      });
  }

  track();
}());
