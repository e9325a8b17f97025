// Small helpers for the operator screens (no framework, nothing from the internet).
// 1. Status bar: polls the URL in data-status-url and shows each device's state (reader, sensor, card);
//    a value that is data, not a sentence (an operator's certificate name), is marked translate="no".
// 2. Auto-refresh: an element with data-refresh-url reloads its inner HTML (capture progress).
// 3. Steps one by one: a form with data-steps (a JSON URL) sends a fresh token with its POST, then polls
//    the URL with that token and ticks each step of the list data-steps-list as the server reports it;
//    a refusal is shown in data-steps-refusal with what to do. Without JavaScript the form still posts
//    and the answer shows every step at once.
// 4. File pickers: the line data-file-name-for names the (visually hidden) file input whose chosen file it
//    shows, a file name marked translate="no" (data); "no file chosen" is the line's own text, in the page's
//    language. Without JavaScript the line stays hidden and the form still posts the file. A required picker
//    saved with no file says so on that line, in the page's language (data-missing), not in the browser's.
(function () {
  "use strict";
  function showFileName(input, line) {
    var names = Array.prototype.map.call(input.files || [], function (f) { return f.name; });
    if (names.length) {
      line.textContent = names.join(", ");
      line.setAttribute("translate", "no");
    } else {
      line.textContent = line.dataset.none;
      line.removeAttribute("translate");
    }
    line.hidden = false;
  }
  function poll(bar) {
    fetch(bar.dataset.statusUrl, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        bar.querySelectorAll("[data-status-key]").forEach(function (pill) {
          var item = data[pill.dataset.statusKey];
          if (!item) { return; }
          var val = pill.querySelector(".val");
          val.textContent = item.text;
          if (item.data) { val.setAttribute("translate", "no"); } else { val.removeAttribute("translate"); }
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
    document.querySelectorAll("[data-file-name-for]").forEach(function (line) {
      var input = document.getElementById(line.dataset.fileNameFor);
      if (!input) { return; }
      line.dataset.none = line.textContent;
      showFileName(input, line);  // a file the browser kept (back button) is shown too
      input.addEventListener("change", function () {
        input.setCustomValidity("");
        line.classList.remove("missing");
        showFileName(input, line);
      });
      if (line.dataset.missing) {
        input.addEventListener("invalid", function () {
          if (input.validity.valueMissing || input.validity.customError) {
            input.setCustomValidity(line.dataset.missing);
            line.textContent = line.dataset.missing;
            line.removeAttribute("translate");
            line.classList.add("missing");
            line.hidden = false;
          }
        });
      }
    });
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
    document.querySelectorAll("form[data-steps]").forEach(function (form) {
      form.addEventListener("submit", function () {
        var list = document.getElementById(form.dataset.stepsList);
        var box = document.getElementById(form.dataset.stepsRefusal);
        var token = Math.random().toString(36).slice(2) + Date.now().toString(36);
        var field = form.querySelector("input[name=token]");
        if (field) { field.value = token; }
        document.querySelectorAll("[data-read-result]").forEach(function (el) { el.hidden = true; });
        if (list) {
          list.querySelectorAll("li[data-step]").forEach(function (li, i) {
            li.className = i === 0 ? "current" : "pending";
          });
        }
        var url = form.dataset.steps + (form.dataset.steps.indexOf("?") < 0 ? "?" : "&") +
          "token=" + encodeURIComponent(token);
        var timer = setInterval(function () {
          fetch(url, {credentials: "same-origin", cache: "no-store"})
            .then(function (r) { return r.json(); })
            .then(function (d) {
              (d.steps || []).forEach(function (step) {
                var li = list && list.querySelector("li[data-step='" + step.name + "']");
                if (li && li.className !== step.state) { li.className = step.state; }
              });
              if (d.problem && box && box.hidden) {
                box.querySelector(".problem").textContent = d.problem.problem;
                box.querySelector(".next-step").textContent = d.problem.next_step;
                box.dataset.reason = d.problem.code;
                box.hidden = false;
              }
              if (d.done) { clearInterval(timer); }
            })
            .catch(function () { /* the next poll tries again */ });
        }, 200);
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
