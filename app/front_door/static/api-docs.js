// Swagger UI over the docs variant of the /api/v1 OpenAPI document (token and X-Tenant-ID
// set once with "Authorize"; kept across reloads in this browser's local storage).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    tryItOutEnabled: false,
  });
});
