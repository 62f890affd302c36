// Re-fetch a page region every few seconds: any element with data-refresh-url is replaced
// by the HTML fragment that URL returns. A region the user is working in (focus inside it,
// or a form field edited) is left alone until they are done.
// A region marked data-reload-on-change holds an element with data-state-key: when the
// fragment brings another key (the item moved on, e.g. a callout verified), the whole page
// is loaded again so every part of it agrees, unless a field on the page was edited.
(function () {
  "use strict";
  function edited(root) {
    var fields = root.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") { continue; }
      if ((f.type === "checkbox" || f.type === "radio") ? f.checked !== f.defaultChecked : f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }
  function stateKey(root) {
    var found = root.querySelector("[data-state-key]");
    return found ? found.getAttribute("data-state-key") : null;
  }
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
  // The time of day in the control room's zone, with the zone named ("14:02:11 BST").
  function localTime(date, zone) {
    try {
      return date.toLocaleTimeString("en-GB", { timeZone: zone || "Europe/London", timeZoneName: "short", hour12: false });
    } catch (e) {
      return date.toISOString().substring(11, 19) + " UTC";
    }
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
        if (region.hasAttribute("data-reload-on-change")) {
          var fresh = document.createElement("div");
          fresh.innerHTML = html;
          var before = stateKey(region), after = stateKey(fresh);
          if (before !== null && after !== null && before !== after && !edited(document.body)) {
            window.location.replace(window.location.pathname + window.location.hash);
            return;
          }
        }
        region.innerHTML = html;
        region.setAttribute("data-refreshed-at", new Date().toISOString());
        var stamp = document.querySelector("[data-refresh-stamp]");
        if (stamp) { stamp.textContent = localTime(new Date(), stamp.getAttribute("data-zone")); }
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
