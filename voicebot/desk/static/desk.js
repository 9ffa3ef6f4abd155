// The agent desk's page script: live updates (server-sent events, else polling), claim and close
// without leaving the page, ticking waiting times, j/k between cards. The server renders every
// card; this only swaps in the cards that changed, so focus and a half-chosen outcome survive.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.apiUrl) { return; }
  var board = document.getElementById("board");
  var live = document.getElementById("live");
  var connection = document.getElementById("connection");
  var messages = document.getElementById("messages");
  var problem = document.getElementById("problem");
  var pollMs = (parseInt(main.dataset.pollSeconds, 10) || 5) * 1000;
  var offsetMs = (parseInt(main.dataset.nowMs, 10) || Date.now()) - Date.now();
  var source = null, pollTimer = null, retryTimer = null;

  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    var mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function tick() {
    var now = Date.now() + offsetMs;
    board.querySelectorAll("time[data-since-ms]").forEach(function (el) {
      el.textContent = clock((now - parseInt(el.dataset.sinceMs, 10)) / 1000);
    });
  }

  function say(text) {
    messages.textContent = "";
    var p = document.createElement("p");
    p.className = "message";
    p.textContent = text;
    messages.appendChild(p);
  }

  function showProblem(text) {
    problem.textContent = text || "";
    problem.hidden = !text;
  }

  // Swap in the server's cards: unchanged ones stay (with their focus), changed ones are replaced.
  function apply(data) {
    if (!data || typeof data.html !== "string") { return; }
    showProblem("");
    offsetMs = data.now_ms - Date.now();
    var fresh = document.createElement("template");
    fresh.innerHTML = data.html;            // rendered and escaped by the server
    var oldList = board.querySelector("ol.cards");
    var newList = fresh.content.querySelector("ol.cards");
    var focused = document.activeElement, focusCard = null, focusKey = null;
    if (focused && board.contains(focused)) {
      focusCard = focused.closest("li.card");
      focusKey = focused.dataset.focusKey || null;
    }
    var before = {};
    if (oldList) { oldList.querySelectorAll(":scope > li.card").forEach(function (li) { before[li.id] = li; }); }
    var arrived = [];
    var items = Array.prototype.slice.call(newList.children);
    items.forEach(function (li, i) {
      var old = before[li.id];
      if (!old) { li.classList.add("new"); arrived.push(li); }
      if (old && old.dataset.version === li.dataset.version) { items[i] = old; }
    });
    var empty = fresh.content.querySelector("#empty");
    var oldEmpty = board.querySelector("#empty");
    if (oldEmpty) { oldEmpty.remove(); }
    if (empty) { board.insertBefore(empty, board.firstChild); }
    if (!oldList) { board.appendChild(newList); oldList = newList; }
    var same = oldList.children.length === items.length &&
      items.every(function (li, i) { return oldList.children[i] === li; });
    if (!same) {
      items.forEach(function (li, i) {
        if (oldList.children[i] !== li) { oldList.insertBefore(li, oldList.children[i] || null); }
      });
      while (oldList.children.length > items.length) { oldList.lastElementChild.remove(); }
    }
    if (focusCard && !document.body.contains(focused)) {
      var again = document.getElementById(focusCard.id);
      var target = again && (focusKey && again.querySelector("[data-focus-key='" + focusKey + "']") ||
                             again.querySelector("[data-focus-key]") || again.querySelector("article"));
      if (target) { target.focus(); }
    }
    var news = data.waiting + " waiting" + (arrived.length ? "; new: " + arrived.map(function (li) {
      var title = li.querySelector("h2");
      return title ? title.textContent.replace(/\s+/g, " ").trim() : "a transfer";
    }).join("; ") : "");
    if (live.textContent !== news) { live.textContent = news; }   // a live region: say only what changed
    document.title = (data.waiting ? "(" + data.waiting + ") " : "") + "Agent desk · voicebot";
    tick();
  }

  function poll() {
    fetch(main.dataset.apiUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 401) { window.location.href = main.dataset.loginUrl; return null; }
        return response.json().then(function (data) {
          if (response.ok) { apply(data); } else { showProblem(data.problem || "The board cannot be read."); }
        });
      })
      .catch(function () { showProblem("The server does not answer. Retrying."); });
  }

  function startPolling(why) {
    connection.textContent = why;
    if (!pollTimer) { poll(); pollTimer = setInterval(poll, pollMs); }
  }

  function stopPolling() {
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  function listen() {
    if (!main.dataset.eventsUrl || !window.EventSource) {
      startPolling("Live updates off: the board is read every " + pollMs / 1000 + " s");
      return;
    }
    source = new EventSource(main.dataset.eventsUrl);
    source.addEventListener("open", function () { connection.textContent = "Live"; stopPolling(); });
    source.addEventListener("board", function (e) { apply(JSON.parse(e.data)); });
    source.addEventListener("problem", function (e) { showProblem(JSON.parse(e.data).message); });
    source.addEventListener("bye", function () { source.close(); listen(); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (too many live desks, logged out, server restarting): poll, and try again later.
        startPolling("Live updates paused: the board is read every " + pollMs / 1000 + " s");
        clearTimeout(retryTimer);
        retryTimer = setTimeout(function () { listen(); }, 30000);
      } else {
        startPolling("Reconnecting…");
      }
    });
  }

  board.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.hasAttribute("data-ajax")) { return; }
    e.preventDefault();
    var button = form.querySelector("button");
    if (button) { button.disabled = true; }
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"Accept": "application/json", "X-CSRF-Token": main.dataset.csrf}})
      .then(function (response) {
        if (response.status === 401) { window.location.href = main.dataset.loginUrl; return null; }
        return response.json().then(function (data) {
          say(data.message || (response.ok ? "Done." : "That did not work."));
          if (data.board) { apply(data.board); }
        });
      })
      .catch(function () { say("The server does not answer: try again."); })
      .then(function () { if (button && document.body.contains(button)) { button.disabled = false; } });
  });

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") { return; }
    if (e.key !== "j" && e.key !== "k") { return; }
    var cards = Array.prototype.slice.call(board.querySelectorAll("li.card > article"));
    if (!cards.length) { return; }
    var at = cards.indexOf(document.activeElement && document.activeElement.closest("li.card > article"));
    var next = e.key === "j" ? Math.min(cards.length - 1, at + 1) : Math.max(0, at - 1);
    cards[next].focus();
    cards[next].scrollIntoView({block: "nearest"});
    e.preventDefault();
  });

  setInterval(tick, 1000);
  tick();
  listen();
})();
