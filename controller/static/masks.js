// Privacy-mask editor: click on the reference picture to add the points of a polygon, then
// "Finish polygon". Masks are kept in the hidden field named by data-field as JSON:
// [{"label": "...", "polygon": [[x, y], ...]}] with x, y normalised 0..1 of the frame.
(function () {
  "use strict";
  function setup(editor) {
    var img = editor.querySelector("img");
    var canvas = editor.querySelector("canvas");
    var field = document.getElementById(editor.getAttribute("data-field"));
    var status = document.getElementById(editor.getAttribute("data-status"));
    var labelField = editor.querySelector("[data-mask-label]");
    var ctx = canvas.getContext("2d");
    var polygons = [];
    var current = [];
    try {
      var stored = JSON.parse(field.value || "[]");
      if (Array.isArray(stored)) { polygons = stored; }
    } catch (e) { polygons = []; }

    function save() {
      field.value = JSON.stringify(polygons);
      var text = polygons.length + (polygons.length === 1 ? " mask" : " masks") + " drawn";
      if (current.length) { text += "; current polygon has " + current.length + " point" + (current.length === 1 ? "" : "s"); }
      status.textContent = text + ".";
    }
    function draw() {
      canvas.width = img.clientWidth;
      canvas.height = img.clientHeight;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      function path(points, close) {
        ctx.beginPath();
        points.forEach(function (p, i) {
          var x = p[0] * canvas.width, y = p[1] * canvas.height;
          if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
        });
        if (close) { ctx.closePath(); }
      }
      polygons.forEach(function (mask) {
        path(mask.polygon, true);
        ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
        ctx.fill();
        ctx.strokeStyle = "#ffbf47";
        ctx.lineWidth = 2;
        ctx.stroke();
      });
      if (current.length) {
        path(current, false);
        ctx.strokeStyle = "#1f6feb";
        ctx.lineWidth = 2;
        ctx.stroke();
        current.forEach(function (p) {
          ctx.beginPath();
          ctx.arc(p[0] * canvas.width, p[1] * canvas.height, 4, 0, 2 * Math.PI);
          ctx.fillStyle = "#1f6feb";
          ctx.fill();
        });
      }
    }
    function finish() {
      if (current.length < 3) { return; }
      var label = (labelField && labelField.value.trim()) || ("Mask " + (polygons.length + 1));
      polygons.push({ label: label, polygon: current });
      current = [];
      if (labelField) { labelField.value = ""; }
    }
    function round(v) { return Math.round(Math.min(Math.max(v, 0), 1) * 10000) / 10000; }
    canvas.addEventListener("click", function (event) {
      var box = canvas.getBoundingClientRect();
      current.push([round((event.clientX - box.left) / box.width), round((event.clientY - box.top) / box.height)]);
      draw();
      save();
    });
    editor.querySelector("[data-action=finish]").addEventListener("click", function () {
      finish();
      draw();
      save();
    });
    editor.querySelector("[data-action=undo]").addEventListener("click", function () {
      if (current.length) { current.pop(); } else if (polygons.length) { current = polygons.pop().polygon; }
      draw();
      save();
    });
    editor.querySelector("[data-action=clear]").addEventListener("click", function () {
      polygons = [];
      current = [];
      draw();
      save();
    });
    // An unfinished polygon with enough points is kept when the form is sent.
    var form = field.form;
    if (form) {
      form.addEventListener("submit", function () {
        finish();
        save();
      });
    }
    // The picture follows the unit chosen in the form (reference.js): redrawn on each.
    img.addEventListener("load", draw);
    if (img.complete) { draw(); }
    window.addEventListener("resize", draw);
    save();
  }
  function start() { document.querySelectorAll(".mask-editor").forEach(setup); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
