// A self-test asked for from a page shows "pending", then its result, without a reload.
// A form with data-live-selftest="<id of a live region>" is sent with fetch (its CSRF
// token travels in the form, as when it is posted); the controller answers with the URL
// of the request's progress (JSON), followed here until the unit has reported. Without
// scripts, or when the session has ended, the form is posted the ordinary way.
(function () {
  "use strict";
  var EVERY_MS = 1500;
  var GIVE_UP_MS = 180000;

  function say(box, text, testid) {
    var line = document.createElement("p");
    line.className = "small";
    line.setAttribute("data-testid", testid);
    line.textContent = text;
    box.replaceChildren(line);
  }

  function answer(response) {
    return response.json()
      .catch(function () { return {}; })
      .then(function (body) { return { status: response.status, body: body }; });
  }

  function follow(form, box, button, url, started) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(answer)
      .then(function (reply) {
        if (reply.status === 401) {
          say(box, "Your session has ended: reload the page to sign in again.", "selftest-live-error");
          button.disabled = false;
          return;
        }
        if (reply.status !== 200) {
          say(box, reply.body.detail || "The self-test's progress could not be read.", "selftest-live-error");
          button.disabled = false;
          return;
        }
        var state = reply.body;
        box.setAttribute("data-state", state.state);
        if (state.done) {
          if (state.html) {
            box.innerHTML = state.html;
          } else {
            say(box, state.message, "selftest-live-error");
          }
          button.disabled = false;
          return;
        }
        if (Date.now() - started > GIVE_UP_MS) {
          say(box, "The unit has not reported yet; its report will appear on this page when it does.", "selftest-live-error");
          button.disabled = false;
          return;
        }
        say(box, state.message, "selftest-live-pending");
        window.setTimeout(function () { follow(form, box, button, url, started); }, EVERY_MS);
      })
      .catch(function () {
        window.setTimeout(function () { follow(form, box, button, url, started); }, EVERY_MS * 2);
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-live-selftest")) { return; }
    var box = document.getElementById(form.getAttribute("data-live-selftest"));
    if (!box || !window.fetch) { return; }
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    say(box, "Asking the unit for a self-test…", "selftest-live-pending");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      body: new URLSearchParams(new FormData(form))
    })
      .then(answer)
      .then(function (reply) {
        if (reply.status === 202) {
          say(box, reply.body.message, "selftest-live-pending");
          follow(form, box, button, reply.body.status_url, Date.now());
        } else if (reply.status === 401 || reply.status === 403) {
          form.submit();  // signing in again, or the refusal page, the ordinary way
        } else {
          say(box, reply.body.detail || "The self-test could not be asked for.", "selftest-live-error");
          if (button) { button.disabled = false; }
        }
      })
      .catch(function () { form.submit(); });
  });
})();
