// Small improvements only: every page works without this file.
// After a form is refused, move the focus to the summary of what to fix.
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
});
