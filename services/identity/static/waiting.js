// Where the signed-in person stands in a community's queue (the gateway's front door, as themselves), and
// the place offered to them, which they take or decline here: no claim code needed when signed in.
const place = document.getElementById("place");
const status = document.getElementById("place-status");
const offer = document.getElementById("offer");
const outcome = document.getElementById("outcome");
const base = `/v1/join/${place.dataset.community}`;
const headers = {"content-type": "application/json", "x-csrf-token": place.dataset.csrf, "accept": "application/json"};
let offerId = null;

async function show() {
  const response = await fetch(`${base}/my-place`, {credentials: "same-origin", headers});
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    status.textContent = `${place.dataset.failed}: ${answer.detail || response.status}`;
    return;
  }
  offerId = answer.offer_id;
  offer.hidden = answer.status !== "offered";
  if (answer.status === "member") {
    status.textContent = place.dataset.member;
  } else if (answer.status === "offered") {
    const until = new Date(answer.offer_expires_at).toLocaleString(place.dataset.lang === "ja" ? "ja-JP" : "en-GB",
                                                                   {dateStyle: "medium", timeStyle: "short"});
    status.textContent = place.dataset.offered.replace("{until}", until);
  } else {
    status.textContent = place.dataset.position.replace("{position}", answer.position).replace("{waiting}", answer.waiting);
  }
}

async function answer(kind) {
  const response = await fetch(`${base}/offers/${offerId}/${kind}`, {
    method: "POST", credentials: "same-origin", headers, body: "{}"});
  const body = await response.json().catch(() => ({}));
  outcome.textContent = response.ok ? "" : `${place.dataset.failed}: ${body.detail || response.status}`;
  await show();
}

document.getElementById("take-place").addEventListener("click", () => answer("acceptance"));
document.getElementById("decline-place").addEventListener("click", () => answer("decline"));
show();
// A place offered while the page is open appears without a reload: the place is asked for again every 5 s
// while the page is visible (a waitlist moves in hours, so a poll is enough here).
setInterval(() => { if (document.visibilityState === "visible" && offer.hidden) show(); }, 5000);
