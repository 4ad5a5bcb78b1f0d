// Live panels of the Consortium portal: the only script, no library, no build step.
//
// An element with data-src="<url>" is refreshed from that URL (a server-rendered partial):
// every data-refresh milliseconds when given, and at once when it has data-load-now.
// Polling pauses while the tab is hidden. Pages work without it: panels then show what
// the server rendered with the page, and a link to reload.
(function () {
  "use strict";

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
      panel.innerHTML = html;
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
