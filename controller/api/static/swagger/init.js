// Ours, not Swagger UI's: starts the vendored Swagger UI on this app's schema. A file of its own
// because the page's CSP runs no inline script. validatorUrl null: no call to an online validator
// (a line PC has no internet).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapi || "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
