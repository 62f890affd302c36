// A unit's reference picture and the facts beside it ([data-reference]): the picture of the
// unit chosen in the form (data-unit-source) or of the page's unit (data-unit); "Ask ... for
// a new picture" sends the request through the JSON API (data-ask-url) and follows it until
// the picture comes or the unit says why not. The facts are the server's HTML
// (data-about-url, with {unit} for the unit); the shown picture's SHA-256 is kept in the
// field named by data-sha-field: a PIA records which picture its masks were drawn on.
(function () {
  "use strict";
  var POLL_MS = 1500;
  var POLL_LIMIT_MS = 120000;
  var PLACEHOLDER = "/static/frame-placeholder.svg";

  function setup(box) {
    var img = box.querySelector("img[data-reference-picture]");
    var facts = box.querySelector("[data-reference-facts]");
    var shaField = document.getElementById(box.getAttribute("data-sha-field") || "");
    var source = document.getElementById(box.getAttribute("data-unit-source") || "");
    var timer = null;
    var started = 0;
    var generation = 0;
    var shown = img ? img.getAttribute("data-shown") || "" : "";
    var initial = facts.innerHTML;

    function unit() { return source ? source.value : box.getAttribute("data-unit") || ""; }
    function url(attribute, u) {
      return box.getAttribute(attribute).split("{unit}").join(encodeURIComponent(u));
    }
    function csrf() {
      var field = document.querySelector("input[name=csrf_token]");
      return field ? field.value : "";
    }
    function say(text) {
      var old = facts.querySelector("[data-reference-error]");
      if (old) { old.parentNode.removeChild(old); }
      var p = document.createElement("p");
      p.className = "warning small";
      p.setAttribute("data-reference-error", "");
      p.textContent = text;
      facts.appendChild(p);
    }
    function picture(address, key) {
      if (!img || key === shown) { return; }
      shown = key;
      img.setAttribute("data-shown", key);
      img.hidden = false;
      img.src = address;
    }
    function show(root, u) {
      var sha = root.getAttribute("data-sha256") || "";
      if (shaField) { shaField.value = sha; }
      if (sha) {
        picture(root.getAttribute("data-picture-url"), sha);
      } else {
        picture(root.getAttribute("data-grid-url"), "grid:" + u);
      }
    }
    function load(requestId) {
      var u = unit();
      if (timer) { window.clearTimeout(timer); timer = null; }
      generation += 1;
      var mine = generation;
      if (!u) {
        if (shaField) { shaField.value = ""; }
        facts.innerHTML = initial;
        picture(PLACEHOLDER, "");
        return;
      }
      var query = [];
      var sha = shaField ? shaField.value : "";
      if (sha) { query.push("sha256=" + encodeURIComponent(sha)); }
      if (requestId) { query.push("request=" + encodeURIComponent(requestId)); }
      fetch(url("data-about-url", u) + (query.length ? "?" + query.join("&") : ""), {
        credentials: "same-origin",
        headers: { "Accept": "text/html", "X-Page-Refresh": "1" }
      })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null || mine !== generation) { return; }
          facts.innerHTML = html;
          var root = facts.querySelector(".reference-facts");
          if (!root) { return; }
          show(root, u);
          follow(root);
        })
        .catch(function () {
          if (mine === generation) { timer = window.setTimeout(function () { load(requestId); }, POLL_MS); }
        });
    }
    function follow(root) {
      if (root.getAttribute("data-state") !== "waiting") { return; }
      if (!started) { started = Date.now(); }
      if (Date.now() - started > POLL_LIMIT_MS) { return; }
      var requestId = root.getAttribute("data-request-id");
      timer = window.setTimeout(function () { load(requestId); }, POLL_MS);
    }
    box.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("[data-action=ask-picture]") : null;
      if (!button || !box.contains(button)) { return; }
      event.preventDefault();
      button.disabled = true;
      fetch(url("data-ask-url", unit()), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf() }
      })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (answer) {
          if (!answer.ok) {
            button.disabled = false;
            say(answer.body.detail || "The request could not be sent.");
            return;
          }
          started = Date.now();
          load(answer.body.request_id);
        })
        .catch(function () {
          button.disabled = false;
          say("The request could not be sent: the control room did not answer. Try again.");
        });
    });
    if (source) {
      source.addEventListener("change", function () {
        if (shaField) { shaField.value = ""; }
        started = 0;
        load(null);
      });
      load(null);
    } else {
      var root = facts.querySelector(".reference-facts");
      if (root) { follow(root); }
    }
  }
  function start() { document.querySelectorAll("[data-reference]").forEach(setup); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
