// Live parts: an element with data-live="jobs|media" re-reads itself (hx-trigger
// "refresh") when the server says something changed; bursts are folded into one read.
(function () {
  const sources = {};
  function listen(kind) {
    if (sources[kind]) return;
    const source = new EventSource("/console/events/" + kind);
    let timer = null;
    function refresh() {
      if (timer) return;
      timer = setTimeout(function () {
        timer = null;
        document.querySelectorAll('[data-live="' + kind + '"]').forEach(function (el) {
          htmx.trigger(el, "refresh");
        });
      }, 250);
    }
    source.addEventListener("refresh", refresh);
    // What changed between the page's rendering and the stream's (re)connection was
    // never sent: read once on every open.
    source.addEventListener("open", refresh);
    sources[kind] = source;
  }
  function scan() {
    document.querySelectorAll("[data-live]").forEach(function (el) { listen(el.dataset.live); });
  }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("htmx:afterSettle", scan);

  // The DELETE dialog: the button stays disabled until DELETE is typed.
  document.addEventListener("input", function (event) {
    const field = event.target;
    if (field.matches("[data-confirm]")) {
      field.form.querySelector("button[type=submit]").disabled = field.value !== "DELETE";
    }
  });
  document.addEventListener("click", function (event) {
    const opener = event.target.closest("[data-open]");
    if (opener) document.getElementById(opener.dataset.open).showModal();
    const closer = event.target.closest("[data-close]");
    if (closer) closer.closest("dialog").close();
  });

  // Expanded task rows stay expanded (and up to date) when the live table re-reads itself.
  const expanded = new Set();
  function expand(id) {
    const button = document.querySelector('[data-expand="' + id + '"]');
    if (!button) { expanded.delete(id); return; }
    button.setAttribute("aria-expanded", "true");
    htmx.ajax("GET", "/console/media/tasks/" + id + "/subtasks", {target: "#sub-" + id});
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-expand]");
    if (!button) return;
    const id = button.dataset.expand;
    if (expanded.has(id)) {
      expanded.delete(id);
      button.setAttribute("aria-expanded", "false");
      document.getElementById("sub-" + id).innerHTML = "";
    } else {
      expanded.add(id);
      expand(id);
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "media-tasks") expanded.forEach(expand);
  });

  // Search modes: show the fields of the chosen mode only.
  document.addEventListener("change", function (event) {
    const radio = event.target;
    if (radio.name === "mode" || radio.name === "input_kind") {
      document.querySelectorAll("[data-" + radio.name + "]").forEach(function (el) {
        el.hidden = el.getAttribute("data-" + radio.name) !== radio.value;
        el.querySelectorAll("input, select").forEach(function (f) { f.disabled = el.hidden; });
      });
    }
  });

  // Media create: a chosen file is uploaded first (with progress), then the form goes.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const file = form.querySelector("input[type=file]:not([disabled])");
    if (!form.matches("[data-upload]") || !file || !file.files.length || form.dataset.uploaded) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const bar = form.querySelector("progress.upload");
    const request = new XMLHttpRequest();
    request.open("PUT", "/console/media/uploads?name=" + encodeURIComponent(file.files[0].name));
    request.upload.onprogress = function (e) { if (bar) { bar.hidden = false; bar.value = e.loaded / e.total; } };
    request.onload = function () {
      if (request.status !== 200) { alert("upload failed: " + request.responseText); return; }
      form.querySelector("input[name=input_upload]").value = JSON.parse(request.responseText).upload_id;
      form.dataset.uploaded = "1";
      htmx.trigger(form, "submit");
    };
    request.send(file.files[0]);
  }, true);
})();
