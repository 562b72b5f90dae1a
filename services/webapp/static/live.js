// While a page is open, what changes on it is announced without a reload: the server relays the community's
// event stream as the person may read it, and the page offers to show the change (what was typed stays).
const live = document.querySelector("[data-live]");
if (live && window.EventSource) {
  const notice = document.getElementById("live-notice");
  const source = new EventSource(`${live.dataset.live}?since=${encodeURIComponent(live.dataset.since)}`);
  source.addEventListener("changed", () => { notice.hidden = false; });
}

// My unread count, kept current in place: the server sends the new count (in my words) when one is raised for
// me or read, here or elsewhere.
const unread = document.querySelector("[data-unread-live]");
if (unread && window.EventSource) {
  const counts = new EventSource(`${unread.dataset.unreadLive}?since=${encodeURIComponent(unread.dataset.since)}`);
  counts.addEventListener("unread", (event) => { unread.textContent = JSON.parse(event.data).label; });
}
