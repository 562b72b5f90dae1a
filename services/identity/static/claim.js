// Presents the owner's code through the gateway's front door as the signed-in person (session cookie, CSRF
// token in a header), then goes to the account page.
document.getElementById("claim").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target, outcome = document.getElementById("outcome");
  const response = await fetch(form.action, {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-csrf-token": form.dataset.csrf},
    body: JSON.stringify({code: form.code.value}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    outcome.textContent = form.dataset.done;
    setTimeout(() => { window.location.assign("/me"); }, 800);
  } else {
    outcome.textContent = `${form.dataset.failed}: ${body.detail || response.status}`;
  }
});
