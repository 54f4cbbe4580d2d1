// Gatehouse console: the only script (no inline script anywhere; CSP script-src 'self').
// It adds conveniences; every page works without it.
(function () {
  "use strict";
  // Copy buttons: <button data-copy="element-id">.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (!el) { return; }
      var text = el.value || el.textContent;
      var done = function () { b.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { el.select && el.select(); });
      } else if (el.select) {
        el.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* select is enough */ }
      }
    });
  });
})();
