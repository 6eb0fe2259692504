// Live regions: every element with data-live="URL" is replaced by the server-rendered fragment
// at URL every data-every-ms milliseconds (2000 when not given), while the tab is visible.
// Nothing else on the pages needs a script: forms post and the server redirects back.
"use strict";
(function () {
  const status = document.getElementById("live-status");
  function say(text) {
    if (!status) return;
    status.textContent = text;
    status.hidden = !text;
  }
  for (const region of document.querySelectorAll("[data-live]")) {
    const url = region.dataset.live;
    const every = Number(region.dataset.everyMs) || 2000;
    let busy = false;
    let stopped = false;
    async function refresh() {
      if (busy || stopped || document.hidden) return;
      busy = true;
      try {
        const reply = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (reply.status === 401) {
          stopped = true;
          say("Your session has ended: reload the page to sign in again.");
          return;
        }
        if (!reply.ok) {
          say("Live updates paused: the hub answered " + reply.status + ".");
          return;
        }
        region.innerHTML = await reply.text();
        region.dataset.refreshedAt = String(Date.now());
        say("");
      } catch (e) {
        say("Live updates paused: the hub cannot be reached.");
      } finally {
        busy = false;
      }
    }
    setInterval(refresh, every);
  }
})();
