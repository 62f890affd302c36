// "Add another" for repeating form groups (risks, evidence figures): clones the group's
// <template> with the next index in place of the list's placeholder (__i0__, __i1__ for a
// list inside a list item, ...).
(function () {
  "use strict";
  function start() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("[data-add-row]") : null;
      if (!button) { return; }
      (function () {
        var list = document.getElementById(button.getAttribute("data-add-row"));
        var template = document.getElementById(list.id + "-template");
        var index = parseInt(list.getAttribute("data-next") || "0", 10);
        var placeholder = list.getAttribute("data-placeholder") || "__i0__";
        var html = template.innerHTML.split(placeholder).join(String(index));
        var holder = document.createElement("div");
        holder.innerHTML = html;
        while (holder.firstChild) { list.appendChild(holder.firstChild); }
        list.setAttribute("data-next", String(index + 1));
        var first = list.lastElementChild && list.lastElementChild.querySelector("input, textarea, select");
        if (first) { first.focus(); }
      })();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
