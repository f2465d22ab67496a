// The scan page (/provider/scan): where the browser may use a camera, read the QR code of a presence code or a
// voucher card with it and post its text in the page's form, as if it had been typed. The QR code is read by the
// browser's own BarcodeDetector where there is one, else by jsQR (vendored; loaded only when the camera starts).
// Without this file, without a camera, or outside a secure context, the page is the form for the 8 digits.
(function () {
  "use strict";
  var SCAN_EVERY_MS = 150;
  var MAX_SIDE = 800;  // frames are scaled down to this before jsQR reads them: enough for a code held up close

  var box = document.getElementById("camera");
  var form = document.getElementById("scan-form");
  var scanned = document.getElementById("scanned");
  var typed = document.getElementById("field-short_code");
  var insecure = document.getElementById("camera-insecure");
  if (!box || !form || !scanned) { return; }
  scanned.value = "";  // a page come back to (history) may have kept the last code read
  if (typed) { typed.addEventListener("input", function () { scanned.value = ""; }); }

  // The camera needs a secure context (HTTPS or this machine). The browser knows best: behind a proxy that
  // ends TLS the server may have thought the page insecure.
  if (!window.isSecureContext) {
    if (insecure) { insecure.hidden = false; }
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { return; }
  if (insecure) { insecure.hidden = true; }
  box.hidden = false;

  var video = document.getElementById("camera-video");
  var finder = box.querySelector(".viewfinder");
  var startButton = box.querySelector("[data-camera-start]");
  var stopButton = box.querySelector("[data-camera-stop]");
  var status = document.getElementById("camera-status");
  var stream = null;
  var timer = null;
  var reader = null;  // function (video) → Promise of the QR code's text, or null
  var found = false;

  function say(name) {
    status.textContent = box.getAttribute("data-text-" + name) || "";
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(script);
    });
  }

  function nativeReader() {
    if (!("BarcodeDetector" in window) || !window.BarcodeDetector.getSupportedFormats) {
      return Promise.resolve(null);
    }
    return window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      if (formats.indexOf("qr_code") < 0) { return null; }
      var detector = new window.BarcodeDetector({formats: ["qr_code"]});
      return function (source) {
        return detector.detect(source).then(function (codes) { return codes.length ? codes[0].rawValue : null; });
      };
    }).catch(function () { return null; });
  }

  function jsqrReader() {
    var load = window.jsQR ? Promise.resolve() : loadScript(box.getAttribute("data-decoder"));
    return load.then(function () {
      var canvas = document.createElement("canvas");
      var context = canvas.getContext("2d", {willReadFrequently: true});
      return function (source) {
        var width = source.videoWidth;
        var height = source.videoHeight;
        if (!width || !height) { return Promise.resolve(null); }
        var scale = Math.min(1, MAX_SIDE / Math.max(width, height));
        canvas.width = Math.round(width * scale);
        canvas.height = Math.round(height * scale);
        context.drawImage(source, 0, 0, canvas.width, canvas.height);
        var image = context.getImageData(0, 0, canvas.width, canvas.height);
        var code = window.jsQR(image.data, image.width, image.height, {inversionAttempts: "attemptBoth"});
        return Promise.resolve(code && code.data ? code.data : null);
      };
    });
  }

  function getReader() {
    if (reader) { return Promise.resolve(reader); }
    return nativeReader().then(function (native) { return native || jsqrReader(); })
      .then(function (chosen) { reader = chosen; return chosen; });
  }

  function show(running) {
    finder.hidden = !running;
    startButton.hidden = running;
    stopButton.hidden = !running;
  }

  function stopCamera() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (stream) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
    }
    video.srcObject = null;
    show(false);
  }

  function submit(text) {
    found = true;
    stopCamera();
    say("found");
    scanned.value = text.trim();
    form.submit();
  }

  function look() {
    timer = null;
    if (!stream || found) { return; }
    reader(video).then(function (text) {
      if (text && !found) {
        submit(text);
      } else if (stream) {
        timer = setTimeout(look, SCAN_EVERY_MS);
      }
    }).catch(function () {
      if (stream) { timer = setTimeout(look, SCAN_EVERY_MS); }
    });
  }

  function startCamera() {
    if (stream) { return; }
    found = false;
    say("starting");
    var constraints = {audio: false, video: {facingMode: {ideal: "environment"}}};
    Promise.all([navigator.mediaDevices.getUserMedia(constraints), getReader()])
      .then(function (results) {
        stream = results[0];
        video.srcObject = stream;
        show(true);
        return video.play();
      })
      .then(function () {
        say("looking");
        look();
      })
      .catch(function (error) {
        stopCamera();
        say(error && (error.name === "NotAllowedError" || error.name === "SecurityError") ? "denied" : "failed");
      });
  }

  startButton.addEventListener("click", startCamera);
  stopButton.addEventListener("click", function () {
    stopCamera();
    say("stopped");
  });
  window.addEventListener("pagehide", stopCamera);
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stopCamera(); }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {  // back from the next page (history): ready to scan again
      scanned.value = "";
      found = false;
      startIfAllowed();
    }
  });

  // Once the camera was allowed for this site, open it straight away: one tap less at every door. Not after a
  // refusal: the code still held up would be read and refused again and again; the button is there.
  function startIfAllowed() {
    if (document.getElementById("error-summary")) { return; }
    if (!navigator.permissions || !navigator.permissions.query) { return; }
    navigator.permissions.query({name: "camera"}).then(function (permission) {
      if (permission.state === "granted") { startCamera(); }
    }).catch(function () { /* this browser cannot say: the button is there */ });
  }
  startIfAllowed();
}());
