// Joins through the gateway's front door as the signed-in person (the session cookie goes along; the
// CSRF token rides in a header), then shows the outcome and goes to the account page.
document.getElementById("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target, outcome = document.getElementById("outcome");
  const response = await fetch(form.action, {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-csrf-token": form.dataset.csrf},
    body: JSON.stringify({display_name: form.display_name.value, waitlist_if_full: true}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    outcome.textContent = body.applicant_id && !body.member_id ? form.dataset.waitlisted : form.dataset.joined;
    setTimeout(() => { window.location.assign("/me"); }, 800);
  } else {
    outcome.textContent = `${form.dataset.failed}: ${body.detail || response.status}`;
  }
});
