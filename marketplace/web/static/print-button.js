// A "打印" button for pages made to be printed (voucher cards). Without this file the button stays
// hidden and the browser's own print command does the same.
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-print]");
  for (var i = 0; i < buttons.length; i += 1) {
    buttons[i].hidden = false;
    buttons[i].addEventListener("click", function () { window.print(); });
  }
}());
