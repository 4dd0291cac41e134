// pipectl console: live refresh from the API's watch streams, upload, sign-in.
// No framework and no build step: this file is served as written.
"use strict";

function refresh() {
  fetch(location.href, {credentials: "same-origin"})
    .then((r) => r.ok ? r.text() : Promise.reject(r.status))
    .then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
      if (fresh) document.getElementById("content").innerHTML = fresh.innerHTML;
    })
    .catch(() => {});
}

function watch() {
  const what = document.body.dataset.watch;
  if (!what || !window.EventSource) return;
  const url = what.startsWith("commits:")
    ? "/api/v1/watch/commits?repo=" + encodeURIComponent(what.slice(8))
    : "/api/v1/watch/jobs";
  const live = document.getElementById("live");
  const source = new EventSource(url);
  let timer = null;
  const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 250); };
  source.addEventListener("job", later);
  source.addEventListener("commit", later);
  source.onopen = () => live && live.classList.add("on");
  source.onerror = () => live && live.classList.remove("on");
}

// A POST from the console: its cookie plus the header another site's form cannot send.
function post(url, body, type = "application/json") {
  return fetch(url, {method: "POST", body, credentials: "same-origin",
                     headers: {"Content-Type": type, "X-Pipectl-Console": "1"}})
    .then((r) => r.json().then((json) => ({ok: r.ok, body: json})));
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  const status = form.querySelector(".status");
  if (form.id === "upload") {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    const dir = form.dataset.dir.replace(/\/+$/, "");
    // One multipart part per file, named by its path in the commit (percent-encoded); it replaces a file there.
    const body = new FormData();
    body.append(encodeURIComponent(dir + "/" + file.name), file, file.name);
    const url = "/api/v1/repos/" + encodeURIComponent(form.dataset.repo) + "/commits/"
      + encodeURIComponent(form.dataset.branch) + "/files?overwrite=true";
    status.textContent = "uploading…";
    fetch(url, {method: "POST", body, credentials: "same-origin", headers: {"X-Pipectl-Console": "1"}})
      .then((r) => r.json().then((body) => ({ok: r.ok, body})))
      .then(({ok, body}) => {
        if (!ok) throw new Error(body.error);
        location.href = "/repos/" + encodeURIComponent(form.dataset.repo) + "/commits/" + body.id + "/browse";
      })
      .catch((e) => { status.textContent = "failed: " + e.message; });
  } else if (form.id === "rerun") {
    event.preventDefault();
    status.textContent = "starting…";
    post("/api/v1/pipelines/" + encodeURIComponent(form.dataset.pipeline) + "/run", JSON.stringify({}))
      .then(({ok, body}) => {
        if (!ok) throw new Error(body.error);
        location.href = "/jobs/" + body.id;
      })
      .catch((e) => { status.textContent = "failed: " + e.message; });
  } else if (form.classList.contains("predict")) {
    event.preventDefault();
    const answer = form.querySelector(".answer");
    status.textContent = "asking…";
    post("/api/v1/serving/predictions/" + encodeURIComponent(form.dataset.model), form.elements.rows.value,
         "text/csv")
      .then(({ok, body}) => {
        status.textContent = ok ? "" : "failed: " + body.error;
        answer.textContent = JSON.stringify(body, null, 2);
        answer.hidden = false;
      })
      .catch((e) => { status.textContent = "failed: " + e.message; });
  } else if (form.id === "login") {
    event.preventDefault();
    fetch("/login", {method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
                     body: JSON.stringify({token: form.elements.token.value})})
      .then((r) => { if (!r.ok) throw new Error("unknown token"); location.href = form.dataset.next || "/"; })
      .catch((e) => { status.textContent = e.message; });
  }
});

watch();
