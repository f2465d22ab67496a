// A long run (issuing a month, expiring vouchers) says it is running, keeps its button from a second click
// and, when the page gave an expected duration, shows the seconds gone by against it with a progress bar.
// The run itself is one transaction (all or nothing), so the bar measures time, not vouchers written.
// Without this file the form still posts once per form key (the server's own guard).
document.addEventListener("DOMContentLoaded", function () {
  function words(template, elapsed, expected) {
    return template.replace("{elapsed}", elapsed).replace("{expected}", expected);
  }

  function showProgress(form, status) {
    var expected = parseInt(form.getAttribute("data-expected-seconds"), 10);
    if (!expected) { return; }
    var bar = document.createElement("progress");
    bar.max = expected;
    bar.value = 0;
    bar.setAttribute("aria-hidden", "true");  // the words below say the same for a screen reader
    var said = document.createElement("p");
    status.appendChild(bar);
    status.appendChild(said);
    var started = Date.now();
    var tick = function () {
      var elapsed = Math.floor((Date.now() - started) / 1000);
      bar.value = Math.min(elapsed, expected * 0.95);
      // Spoken every 5 seconds at most: a live region that changes every second is noise.
      if (elapsed % 5 === 0 || elapsed === 1) {
        var template = elapsed > expected ? form.getAttribute("data-overdue") : form.getAttribute("data-elapsed");
        said.textContent = words(template, elapsed, expected);
      }
    };
    tick();
    window.setInterval(tick, 1000);
  }

  document.querySelectorAll("form[data-running]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var status = form.querySelector(".running");
      if (status && !status.hasChildNodes()) {
        var first = document.createElement("p");
        first.textContent = form.getAttribute("data-running");
        status.appendChild(first);
        showProgress(form, status);
      }
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        // Disabled after the browser has taken the submission, so the click itself still posts.
        window.setTimeout(function () { button.disabled = true; }, 0);
      });
    });
  });
});
