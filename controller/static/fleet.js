// The fleet page keeps itself current: every few seconds it asks /fleet/changes for what
// changed on the page it shows, naming the rows it holds by their fingerprints (data-fp),
// and gets back the figures, the order of the page's units and only the rows it does not
// hold. A row the user has the focus in is left as it is until they move on. Times shown
// as "42 s ago" are kept current from their datetime and the server's clock.
(function () {
  "use strict";
  var region = document.getElementById("fleet-region");
  if (!region) { return; }
  var every = Math.max(parseInt(region.getAttribute("data-refresh-ms") || "5000", 10), 1000);
  var offset = Date.parse(region.getAttribute("data-server-time") || "") - Date.now();
  if (isNaN(offset)) { offset = 0; }
  var busy = false;

  function ago(seconds) {
    if (seconds < 0) { return "just now"; }
    var sizes = [[86400, "d"], [3600, "h"], [60, "min"]];
    for (var i = 0; i < sizes.length; i++) {
      if (seconds >= sizes[i][0]) { return Math.floor(seconds / sizes[i][0]) + " " + sizes[i][1] + " ago"; }
    }
    return Math.floor(seconds) + " s ago";
  }
  function tickAgo() {
    var now = Date.now() + offset;
    region.querySelectorAll("time[data-ago]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) {
        var text = ago((now - at) / 1000);
        if (el.textContent !== text) { el.textContent = text; }
      }
    });
  }
  function body() { return region.querySelector("#fleet-table tbody"); }
  function held() {
    var rows = body().querySelectorAll("tr[data-fp]");
    var prints = [];
    for (var i = 0; i < rows.length; i++) { prints.push(rows[i].getAttribute("data-fp")); }
    return prints.join(".");
  }
  function parseRow(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }
  function focusIn(row) {
    return row.contains(document.activeElement) && document.activeElement !== document.body;
  }
  function setText(attribute, values) {
    region.querySelectorAll("[" + attribute + "]").forEach(function (el) {
      var key = el.getAttribute(attribute);
      if (!Object.prototype.hasOwnProperty.call(values, key)) { return; }
      var text = Number(values[key]).toLocaleString("en-GB");  // as the page writes them: 10,000
      if (el.textContent !== text) { el.textContent = text; }
    });
  }
  function apply(data) {
    offset = Date.parse(data.at) - Date.now();
    setText("data-count", data.counts);
    setText("data-attention", data.attention);
    var caption = region.querySelector("[data-caption]");
    if (caption && caption.textContent !== data.caption) { caption.textContent = data.caption; }
    var pager = region.querySelector("[data-pager]");
    if (pager && pager.getAttribute("data-html") !== data.pager && !focusIn(pager)) {
      pager.innerHTML = data.pager;
      pager.setAttribute("data-html", data.pager);
    }
    var tbody = body();
    var current = {};
    tbody.querySelectorAll("tr[data-unit]").forEach(function (row) {
      current[row.getAttribute("data-unit")] = row;
    });
    var wanted = [];
    var complete = true;
    data.order.forEach(function (unit) {
      var row = current[unit];
      if (Object.prototype.hasOwnProperty.call(data.rows, unit) && !(row && focusIn(row))) {
        row = parseRow(data.rows[unit]);
      }
      if (row) { wanted.push(row); } else { complete = false; }
    });
    var same = wanted.length === tbody.children.length;
    for (var i = 0; same && i < wanted.length; i++) { same = tbody.children[i] === wanted[i]; }
    if (!same) {
      var empty = tbody.querySelector("tr[data-empty]");
      wanted.forEach(function (row, index) {
        if (tbody.children[index] !== row) { tbody.insertBefore(row, tbody.children[index] || null); }
      });
      while (tbody.children.length > wanted.length) { tbody.removeChild(tbody.lastElementChild); }
      if (!wanted.length) {
        if (!empty) {
          empty = document.createElement("tr");
          empty.setAttribute("data-empty", "");
          var cell = document.createElement("td");
          cell.colSpan = region.querySelectorAll("#fleet-table thead th").length;
          cell.className = "muted";
          cell.textContent = data.caption;
          empty.appendChild(cell);
        }
        tbody.appendChild(empty);
      }
    }
    var stamp = document.querySelector("[data-refresh-stamp]");
    if (stamp && stamp.textContent !== data.stamp) { stamp.textContent = data.stamp; }
    region.setAttribute("data-refreshed-at", new Date().toISOString());
    tickAgo();
    return complete;
  }
  function refresh(full) {
    if (busy || document.hidden) { return; }
    busy = true;
    var url = region.getAttribute("data-changes-url");
    url += (url.indexOf("?") >= 0 ? "&" : "?") + "have=" + (full ? "" : held());
    fetch(url, {
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-Page-Refresh": "1" }
    })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        busy = false;
        // A row the page no longer holds (moved away, then back): ask again for every row.
        if (data && !apply(data)) { refresh(true); }
      })
      .catch(function () { busy = false; /* the next tick tries again */ });
  }
  window.setInterval(function () { refresh(false); }, every);
  window.setInterval(tickAgo, 1000);
  tickAgo();
})();
