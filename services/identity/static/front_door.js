// Join or claim through the gateway's front door as the signed-in person: the form's fields (and the
// JSON in data-extra) go as the body, the session cookie along, the CSRF token in a header; then the
// outcome is shown and the account page opened.
const form = document.querySelector("form[data-front-door]");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const outcome = document.getElementById("outcome");
  const body = {...Object.fromEntries(new FormData(form)), ...JSON.parse(form.dataset.extra || "{}")};
  const response = await fetch(form.action, {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-csrf-token": form.dataset.csrf},
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) {
    const waiting = answer.status === "waitlisted" && form.dataset.waitlisted;
    outcome.textContent = waiting ? form.dataset.waitlisted : form.dataset.done;
    setTimeout(() => { window.location.assign("/me"); }, 800);
  } else {
    outcome.textContent = `${form.dataset.failed}: ${answer.detail || response.status}`;
  }
});
