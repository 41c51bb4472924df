// Refresh a server-rendered fragment while its job runs: every element with data-poll-url is replaced by a
// fresh copy every two seconds, until the server renders it without data-poll-url (the job has finished).
(function () {
  function poll(element) {
    const url = element.dataset.pollUrl;
    if (!url || element.dataset.polling) return;
    element.dataset.polling = "1";
    setTimeout(async function () {
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        if (response.ok) {
          const holder = document.createElement("div");
          holder.innerHTML = await response.text();
          const fresh = holder.querySelector("[class]");
          element.replaceWith(fresh);
          poll(fresh);
          return;
        }
      } catch (e) { /* network blip: try again */ }
      delete element.dataset.polling;
      poll(element);
    }, 2000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll-url]").forEach(poll);
  });
})();
