// Live regions: an element with data-live="URL" takes each message of that
// event stream as its new content (HTML the server rendered and escaped); a
// "done" event is the last. Everything else works without this script.
document.querySelectorAll("[data-live]").forEach((el) => {
  const stream = new EventSource(el.dataset.live);
  stream.onmessage = (e) => {
    el.innerHTML = e.data;
  };
  stream.addEventListener("done", (e) => {
    el.innerHTML = e.data;
    el.removeAttribute("data-live");
    el.dataset.done = "true";
    stream.close();
  });
});
