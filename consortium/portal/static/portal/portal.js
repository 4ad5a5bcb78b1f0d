// Live panels of the Consortium portal: the only script, no library, no build step.
//
// An element with data-src="<url>" is refreshed from that URL (a server-rendered partial):
// every data-refresh milliseconds when given, and at once when it has data-load-now.
// Polling pauses while the tab is hidden. Pages work without it: panels then show what
// the server rendered with the page, and a link to reload.
//
// An <input data-filter="<CSS selector>"> hides the matching items (list entries, table
// rows) whose text or link titles do not contain what is typed. Without the script every
// item stays listed.
(function () {
  "use strict";

  function haystack(item) {
    var titles = Array.prototype.map.call(item.querySelectorAll("[title]"), function (e) {
      return e.getAttribute("title");
    });
    return (item.textContent + " " + titles.join(" ")).toLowerCase();
  }

  function applyFilter(input) {
    var needle = input.value.trim().toLowerCase();
    var shown = 0;
    document.querySelectorAll(input.dataset.filter).forEach(function (item) {
      var keep = !needle || haystack(item).indexOf(needle) !== -1;
      item.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    var empty = document.querySelector('[data-filter-empty="#' + input.id + '"]');
    if (empty) {
      empty.hidden = shown > 0;
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input[data-filter]")) {
      applyFilter(event.target);
    }
  });

  // A refreshed panel keeps what the person typed and which lists they opened or closed.
  function remember(panel) {
    var state = { filters: {}, open: {} };
    panel.querySelectorAll("input[data-filter][id]").forEach(function (input) {
      state.filters[input.id] = input.value;
    });
    panel.querySelectorAll("details[id]").forEach(function (details) {
      state.open[details.id] = details.open;
    });
    return state;
  }

  function restore(panel, state) {
    Object.keys(state.open).forEach(function (id) {
      var details = panel.querySelector("#" + id);
      if (details) {
        details.open = state.open[id];
      }
    });
    Object.keys(state.filters).forEach(function (id) {
      var input = panel.querySelector("#" + id);
      if (input) {
        input.value = state.filters[id];
        applyFilter(input);
      }
    });
  }

  function load(panel) {
    return fetch(panel.dataset.src, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
      redirect: "manual",
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("refresh failed: " + response.status);
      }
      return response.text();
    }).then(function (html) {
      var state = remember(panel);
      panel.innerHTML = html;
      restore(panel, state);
      panel.removeAttribute("aria-busy");
      panel.dataset.refreshedAt = new Date().toISOString();
    });
  }

  // The interval is read again before every wait, so it can be changed on a live page.
  function every(panel) {
    return parseInt(panel.dataset.refresh || "0", 10);
  }

  function start(panel) {
    function tick() {
      var work = document.hidden ? Promise.resolve() : load(panel);
      work.catch(function () {
        panel.dataset.refreshError = "1";
      }).then(function () {
        if (every(panel) > 0) {
          window.setTimeout(tick, every(panel));
        }
      });
    }
    if (panel.hasAttribute("data-load-now")) {
      tick();
    } else if (every(panel) > 0) {
      window.setTimeout(tick, every(panel));
    }
  }

  document.querySelectorAll("[data-src]").forEach(start);
})();
