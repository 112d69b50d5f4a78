// hiem operators' console: keeps a page live without reloading it. Every few seconds the page asks the
// server for its own live fragment (same URL, header X-Hiem-Partial: 1) and swaps it in; relative ages
// ("3 min ago") tick every second in between. No framework, no build step.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stamp = document.getElementById("updated");
  var seconds = Number(document.body.getAttribute("data-poll")) || 5;

  function ago(iso) {
    var s = (Date.now() - Date.parse(iso)) / 1000, ahead = s < 0, text;
    s = Math.abs(s);
    if (s < 60) text = Math.floor(s) + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h";
    else text = Math.floor(s / 86400) + " d";
    return ahead ? "in " + text : text + " ago";
  }

  function tick() {
    var ages = document.querySelectorAll(".age[data-t]");
    for (var i = 0; i < ages.length; i++) ages[i].textContent = ago(ages[i].getAttribute("data-t"));
  }

  function say(text) { if (stamp) stamp.textContent = text; }

  function refresh() {
    if (document.hidden || !live) return;
    fetch(location.href, {headers: {"X-Hiem-Partial": "1"}, credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 401) {
          location.href = "/ops/login?next=" + encodeURIComponent(location.pathname + location.search);
          return null;
        }
        if (!r.ok) { say("update failed (HTTP " + r.status + "), retrying"); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null) return;
        live.innerHTML = html;
        tick();
        say("updated " + new Date().toISOString().slice(11, 19) + " UTC");
      })
      .catch(function () { say("server unreachable, retrying"); });
  }

  if (live && live.getAttribute("data-poll") !== "off") {
    setInterval(refresh, seconds * 1000);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  }
  setInterval(tick, 1000);
})();
