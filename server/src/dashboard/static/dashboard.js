// The dashboard's own script: keeps the log view at its end while the reader is there, bounds
// it, and says in the page when a live stream is lost (the API refused it or caasd went away).
(function () {
  "use strict";
  const MAX_LINES = 2000;
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    const el = e.target;
    if (el && (el.id === "logs" || el.id === "build-output")) {
      el.dataset.atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - 8 ? "1" : "";
    }
  });
  document.addEventListener("htmx:sseMessage", function (e) {
    const el = e.target;
    if (!el || (el.id !== "logs" && el.id !== "build-output")) return;
    if (el.id === "logs") {
      while (el.childElementCount > MAX_LINES) el.firstElementChild.remove();
    }
    if (el.dataset.atEnd !== "") el.scrollTop = el.scrollHeight;
  });
  document.addEventListener("htmx:sseError", function (e) {
    const status = document.getElementById("logs-status");
    if (status && e.target && e.target.id === "logs") {
      status.textContent = "The live log is not connected; reload the page to reconnect.";
    }
  });
})();
