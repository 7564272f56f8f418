// OpenClaw console: a running run's page follows its server-sent events (no reload).
// The server renders (and escapes) the HTML; this only swaps it in.
"use strict";
(function () {
  var box = document.getElementById("run");
  if (!box || !window.EventSource) { return; }
  var source = new EventSource(box.getAttribute("data-events"));
  source.onmessage = function (e) {
    var d = JSON.parse(e.data);
    box.innerHTML = d.html;
    box.setAttribute("data-status", d.status);
    if (d.done) { source.close(); }
  };
  source.addEventListener("gone", function () { source.close(); });
})();
