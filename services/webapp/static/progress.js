// My data: while an export is being gathered, ask how far it has come every 1.5 seconds and move the progress
// bar; once it is ready, load the page again to show the download links. Without this script the page offers
// a link to look again. (A meta refresh would do without a script, but reloads a page the person may be
// reading — WCAG 2.2.1, which axe reports as critical.)
(function () {
  var bar = document.getElementById("export-progress");
  if (!bar || !bar.dataset.follow) { return; }
  var label = document.getElementById("export-progress-label");
  function look() {
    fetch(bar.dataset.follow, {headers: {accept: "application/json"}, credentials: "same-origin"})
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (view) {
        if (!view) { return; }
        bar.value = view.steps_done;
        bar.max = view.steps_total;
        if (label && label.dataset.template) {
          label.textContent = label.dataset.template.replace("{done}", view.steps_done)
            .replace("{total}", view.steps_total);
        }
        if (view.status === "ready") { window.location.reload(); return; }
        window.setTimeout(look, 1500);
      })
      .catch(function () { window.setTimeout(look, 5000); });
  }
  window.setTimeout(look, 1500);
})();
