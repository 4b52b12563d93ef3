// The job page follows its job while it is queued or running: it asks the API for the job
// every few seconds and updates state, stage, progress, timings and error in place.
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) return;
  var url = root.dataset.url;
  var pollMs = parseInt(root.dataset.pollMs, 10) || 1500;
  var ORDER = ["fetch", "analyse", "load", "detect", "validate", "score", "total"];

  function field(name) { return root.querySelector('[data-field="' + name + '"]'); }
  function text(name, value) { var el = field(name); if (el) el.textContent = value; }
  function time(value) { return value ? value.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "–"; }

  function render(job) {
    root.dataset.state = job.state;
    var state = field("state");
    state.innerHTML = "";
    var badge = document.createElement("span");
    badge.className = "state state-" + job.state;
    badge.textContent = job.state;
    state.appendChild(badge);
    text("stage", job.stage || "–");
    var bar = field("progress");
    if (job.progress) {
      bar.max = job.progress.total;
      bar.value = job.progress.done;
      text("progress-text", job.progress.done + "/" + job.progress.total);
    } else {
      bar.removeAttribute("value");
      text("progress-text", "");
    }
    // The whole job's time left, from measured rates (the API's eta): while it runs. The overall
    // bar is the time so far over the time so far plus the time left.
    var overall = field("overall");
    if (job.eta) {
      var ran = job.eta.elapsed_seconds || 0;
      overall.max = ran + job.eta.seconds;
      overall.value = ran;
    } else if (job.state === "succeeded") {
      overall.max = 1;
      overall.value = 1;
    } else {
      overall.removeAttribute("value");
    }
    text("eta", job.eta ? "about " + Math.round(job.eta.seconds) + " s" : "–");
    text("eta-basis", job.eta ? "(" + job.eta.basis + ")" : "");
    text("attempts", job.attempts + "/" + job.max_attempts);
    text("started", time(job.started_at));
    text("finished", time(job.finished_at));
    text("worker", job.lease_owner || "–");
    text("error", job.last_error || "–");
    var rows = field("timings");
    rows.innerHTML = "";
    Object.keys(job.timings || {}).sort(function (a, b) {
      var i = ORDER.indexOf(a), j = ORDER.indexOf(b);
      return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || (a < b ? -1 : 1);
    }).forEach(function (step) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      name.textContent = step;
      var seconds = document.createElement("td");
      seconds.className = "num";
      seconds.textContent = Number(job.timings[step]).toFixed(1);
      tr.appendChild(name);
      tr.appendChild(seconds);
      rows.appendChild(tr);
    });
    if (job.state === "succeeded") {
      var result = field("result");
      result.innerHTML = "";
      var link = document.createElement("a");
      link.href = "/models/" + job.model_id.split("/").map(encodeURIComponent).join("/") + "#rev-" + job.revision;
      link.textContent = "coordinates of this revision";
      result.appendChild(link);
    }
  }

  function live(state) { return state === "queued" || state === "running"; }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (job) render(job);
        if (!job || live(job.state)) {
          setTimeout(poll, pollMs);
        } else {
          text("live", "");
        }
      })
      .catch(function () { setTimeout(poll, pollMs * 2); });
  }

  if (live(root.dataset.state)) setTimeout(poll, pollMs);
})();
