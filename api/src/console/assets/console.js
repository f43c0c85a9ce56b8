// mailledger console: shows each <time datetime> in the browser's own time
// zone; the element's title keeps the UTC time. No other behaviour.
(function () {
  "use strict";
  function localise(root) {
    var els = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (el.dataset.local) { continue; }
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { continue; }
      el.textContent = d.toLocaleString();
      el.dataset.local = "1";
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSettle", function () { localise(document); });
})();
