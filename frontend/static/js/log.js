// The log viewer follows new text while the reader is at its bottom, and stops following when
// they scroll up to read (they follow again by scrolling back down). htmx appends the text.
(function () {
  function follow(box) {
    if (box.dataset.following !== undefined) return;
    box.dataset.following = "true";
    box.addEventListener("scroll", function () {
      var atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
      box.dataset.following = atBottom ? "true" : "false";
    });
    new MutationObserver(function () {
      if (box.dataset.following === "true") box.scrollTop = box.scrollHeight;
    }).observe(box, { childList: true, subtree: true, characterData: true });
  }
  function scan(root) {
    if (root.matches && root.matches("[data-log-follow]")) follow(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-log-follow]").forEach(follow);
  }
  // Deferred after htmx: the page is parsed; logs swapped in later (a new attempt) come by onLoad.
  scan(document);
  htmx.onLoad(scan);
})();
