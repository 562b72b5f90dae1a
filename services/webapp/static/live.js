// While a page is open, what changes on it is announced without a reload: the server relays the community's
// event stream as the person may read it, and the page offers to show the change (what was typed stays).
const live = document.querySelector("[data-live]");
if (live && window.EventSource) {
  const notice = document.getElementById("live-notice");
  const source = new EventSource(`${live.dataset.live}?since=${encodeURIComponent(live.dataset.since)}`);
  source.addEventListener("changed", () => { notice.hidden = false; });
}
