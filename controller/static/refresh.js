// Re-fetch a page region every few seconds: any element with data-refresh-url is replaced
// by the HTML fragment that URL returns. A region the user is working in (focus inside it,
// or a form field edited) is left alone until they are done.
(function () {
  "use strict";
  function dirty(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var fields = region.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") { continue; }
      if ((f.type === "checkbox" || f.type === "radio") ? f.checked !== f.defaultChecked : f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }
  function refresh(region) {
    if (document.hidden || dirty(region)) { return; }
    var url = region.getAttribute("data-refresh-url");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null || dirty(region)) { return; }
        region.innerHTML = html;
        region.setAttribute("data-refreshed-at", new Date().toISOString());
        var stamp = document.querySelector("[data-refresh-stamp]");
        if (stamp) { stamp.textContent = new Date().toISOString().substring(11, 19) + " UTC"; }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  function start() {
    var regions = document.querySelectorAll("[data-refresh-url]");
    regions.forEach(function (region) {
      var every = parseInt(region.getAttribute("data-refresh-ms") || "5000", 10);
      window.setInterval(function () { refresh(region); }, Math.max(every, 1000));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
