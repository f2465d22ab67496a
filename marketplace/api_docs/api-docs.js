// Starts Swagger UI on the docs page. A file of its own, not an inline script: the page's
// Content-Security-Policy runs only scripts loaded from this origin. The spec's URL and Swagger UI's
// settings come from the data attributes of #swagger-ui, written by the server.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui");
  var config = JSON.parse(container.getAttribute("data-config"));
  config.url = container.getAttribute("data-spec-url");
  config.dom_id = "#swagger-ui";
  window.ui = SwaggerUIBundle(config);
});
