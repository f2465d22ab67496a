// A long run (issuing a month, expiring vouchers) says it is running and keeps its button from a
// second click. Without this file the form still posts once per form key (the server's own guard).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-running]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var status = form.querySelector(".running");
      if (status) { status.textContent = form.getAttribute("data-running"); }
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        // Disabled after the browser has taken the submission, so the click itself still posts.
        window.setTimeout(function () { button.disabled = true; }, 0);
      });
    });
  });
});
