// On a phone a table is shown as a list of cards (app.css, below 640 px): each cell then
// shows its column's name before it. The names come from the table's header row and are
// copied to the cells as data-label, with the table roles set explicitly so that a
// screen reader still reads a table whatever its layout; the table is then marked
// data-cards (without this script it stays a table, scrolling inside its frame). Regions
// that refresh themselves get the same when their new content arrives.
(function () {
  "use strict";
  function label(table) {
    var heads = table.querySelectorAll(":scope > thead > tr > th");
    if (!heads.length) { return; }
    var names = Array.prototype.map.call(heads, function (th) { return th.textContent.trim(); });
    table.setAttribute("role", "table");
    table.setAttribute("data-cards", "");
    Array.prototype.forEach.call(table.querySelectorAll(":scope > thead, :scope > tbody, :scope > tfoot"), function (group) {
      group.setAttribute("role", "rowgroup");
    });
    Array.prototype.forEach.call(table.querySelectorAll(":scope > * > tr"), function (row) {
      row.setAttribute("role", "row");
      var column = 0;
      Array.prototype.forEach.call(row.children, function (cell) {
        if (cell.tagName === "TH") {
          cell.setAttribute("role", row.parentElement.tagName === "THEAD" ? "columnheader" : "rowheader");
        } else {
          cell.setAttribute("role", "cell");
          if (names[column] && !cell.hasAttribute("colspan")) { cell.setAttribute("data-label", names[column]); }
        }
        column += parseInt(cell.getAttribute("colspan") || "1", 10);
      });
    });
  }
  function all() {
    Array.prototype.forEach.call(document.querySelectorAll("table"), label);
  }
  function start() {
    all();
    if (window.MutationObserver) {
      new MutationObserver(function (changes) {
        for (var i = 0; i < changes.length; i++) {
          if (changes[i].addedNodes.length) { all(); return; }
        }
      }).observe(document.body, { childList: true, subtree: true });
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
