// Invite someone by email from my account page: a community token from my session, an invitation from the
// members API with it, then identity mails the invitation's link to the address (only its hash is kept).
for (const form of document.querySelectorAll("form.invite")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = form.querySelector(".invite-outcome");
    const community = form.dataset.community;
    const json = {"content-type": "application/json", "x-csrf-token": form.dataset.csrf, "accept": "application/json"};
    const failed = async (response) => {
      const body = await response.json().catch(() => ({}));
      outcome.textContent = `${form.dataset.failed}: ${body.detail || response.status}`;
    };
    const granted = await fetch("/v1/me/tokens", {method: "POST", credentials: "same-origin", headers: json,
                                                  body: JSON.stringify({community_id: community})});
    if (!granted.ok) return failed(granted);
    const {token} = await granted.json();
    const issued = await fetch(`/v1/communities/${community}/invitations`, {
      method: "POST", headers: {"content-type": "application/json", "authorization": `Bearer ${token}`},
      body: JSON.stringify({note: "by email"})});
    if (!issued.ok) return failed(issued);
    const invitation = await issued.json();
    const sent = await fetch("/me/invitations", {method: "POST", credentials: "same-origin", headers: json,
      body: JSON.stringify({community_id: community, invitation_id: invitation.invitation_id, code: invitation.code,
                            email: form.elements.email.value, expires_at: invitation.expires_at,
                            language: document.documentElement.lang})});
    if (!sent.ok) return failed(sent);
    outcome.textContent = form.dataset.sent;
    form.reset();
  });
}
