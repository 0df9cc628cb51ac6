// Behaviour every page shares, bound by data attributes: the dashboard runs no inline script
// (its Content-Security-Policy forbids it; docs/decisions/http-hardening.md).
//   data-dismiss          a click removes the element's parent (toasts, notices)
//   data-close-dialog     a click closes the enclosing <dialog>
//   data-select-on-focus  focusing the field selects its text
//   data-copy-from="id"   a click copies that field's value and says "Copied"
//   data-reset-on-success an htmx form is emptied after a successful request
document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const dismiss = target?.closest("[data-dismiss]");
  if (dismiss) dismiss.parentElement?.remove();
  const close = target?.closest("[data-close-dialog]");
  if (close) close.closest("dialog")?.close();
  const copy = target?.closest("[data-copy-from]");
  if (copy) {
    const field = document.getElementById(copy.dataset.copyFrom);
    navigator.clipboard.writeText(field ? field.value : "").then(() => {
      copy.textContent = "Copied";
    });
  }
});
document.addEventListener("focusin", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.matches("[data-select-on-focus]")) {
    event.target.select();
  }
});
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (event.detail.successful && form instanceof HTMLFormElement && form.matches("[data-reset-on-success]")) {
    form.reset();
  }
});
