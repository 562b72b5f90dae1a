// While I wait, the page looks at my standing every 5 s (a waitlist moves in hours, so asking is enough) and
// reloads itself when it changed — an application decided, a place offered — unless I am typing a reason.
const place = document.getElementById("place");
if (place && window.fetch) {
  setInterval(async () => {
    if (document.visibilityState !== "visible" || document.activeElement?.tagName === "INPUT") return;
    const response = await fetch(place.dataset.standing, {
      credentials: "same-origin", headers: {"accept": "application/json", "x-csrf-token": place.dataset.csrf}});
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.status !== place.dataset.status) window.location.reload();
  }, 5000);
}
