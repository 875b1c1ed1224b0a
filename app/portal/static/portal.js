// Progressive enhancement only: every flow works without this script.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var STORE = "stockbot.portal.key";

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; button.setAttribute("aria-live", "polite"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    // A key just created is kept for this tab only, to fill the docs' try-it forms.
    var created = document.querySelector("[data-new-key]");
    try {
      if (created) sessionStorage.setItem(STORE, created.value);
      var kept = sessionStorage.getItem(STORE);
      if (kept) {
        document.querySelectorAll("[data-try-key]").forEach(function (input) {
          if (!input.value) input.value = kept;
        });
      }
    } catch (e) { /* storage disabled: the developer pastes the key */ }
  });
})();
