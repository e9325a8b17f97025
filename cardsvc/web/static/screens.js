// Small helpers for the operator screens (no framework, nothing from the internet).
// 1. Status bar: polls the URL in data-status-url and shows each device's state (reader, sensor, card).
// 2. Auto-refresh: an element with data-refresh-url reloads its inner HTML (capture progress).
(function () {
  "use strict";
  function poll(bar) {
    fetch(bar.dataset.statusUrl, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        bar.querySelectorAll("[data-status-key]").forEach(function (pill) {
          var item = data[pill.dataset.statusKey];
          if (!item) { return; }
          pill.querySelector(".val").textContent = item.text;
          pill.className = "pill " + item.state;
        });
      })
      .catch(function () { /* the next poll tries again */ });
  }
  function refresh(el) {
    fetch(el.dataset.refreshUrl, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.text(); })
      .then(function (html) { el.innerHTML = html; })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-status-url]").forEach(function (bar) {
      poll(bar);
      setInterval(function () { poll(bar); }, 1500);
    });
    document.querySelectorAll("[data-refresh-url]").forEach(function (el) {
      setInterval(function () { refresh(el); }, 1000);
    });
    document.querySelectorAll("form[data-live]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var panel = document.getElementById(form.dataset.live);
        if (!panel) { return; }
        panel.hidden = false;
        var img = panel.querySelector("img"), text = panel.querySelector(".live-text");
        setInterval(function () {
          fetch(panel.dataset.liveUrl, {credentials: "same-origin", cache: "no-store"})
            .then(function (r) { return r.json(); })
            .then(function (d) {
              if (d.image) { img.src = d.image; img.hidden = false; }
              text.textContent = d.text || "";
            })
            .catch(function () {});
        }, 400);
      });
    });
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        var note = form.querySelector(".busy");
        if (note) { note.hidden = false; }
      });
    });
  });
})();
