/* The review queue without reloading: a verdict is sent with fetch and its row taken away; the
   keyboard focus moves to the next sentence. Without this script the same forms post and reload. */
(function () {
  "use strict";
  var messages = document.getElementById("messages");
  var count = document.getElementById("count");

  function say(text, problem) {
    if (!messages) { return; }
    var line = document.createElement("p");
    line.className = problem ? "problem" : "message";
    line.textContent = text;
    messages.replaceChildren(line);
  }

  function oneLess() {
    if (!count) { return; }
    var left = Math.max(0, parseInt(count.dataset.waiting, 10) - 1);
    count.dataset.waiting = String(left);
    count.textContent = left + (left === 1 ? " sentence" : " sentences") + " waiting";
  }

  function send(form, submitter) {
    var data = new FormData(form);
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    var row = form.closest("tr");
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"Accept": "application/json", "X-CSRF-Token": data.get("csrf_token")}})
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.json().then(function (body) { return {ok: response.ok, body: body}; });
      })
      .then(function (answer) {
        if (!answer) { return; }
        say(answer.body.message || "", !answer.ok);
        if (answer.ok && row) {
          var next = row.nextElementSibling || row.previousElementSibling;
          row.remove();
          oneLess();
          var target = next && next.querySelector("button, select");
          if (target) { target.focus(); }
          else if (!document.querySelector("#queue tbody tr")) {
            var empty = document.createElement("p");
            empty.className = "empty";
            empty.id = "empty";
            empty.textContent = "Nothing to review.";
            document.getElementById("queue").replaceWith(empty);
          }
        } else {
          buttons.forEach(function (b) { b.disabled = false; });
        }
      })
      .catch(function () {
        say("The server does not answer: try again.", true);
        buttons.forEach(function (b) { b.disabled = false; });
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-ajax]")) { return; }
    event.preventDefault();
    send(form, event.submitter);
  });
}());
