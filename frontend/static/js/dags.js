// The DAGs page's trigger dialog: htmx fills it, but only script can open a modal <dialog>
// (focus moves in, Escape closes it); a successful trigger closes it (HX-Trigger from the server).
document.addEventListener("htmx:afterSwap", (event) => {
  const dialog = event.detail.target;
  if (dialog.id === "trigger-dialog" && !dialog.open) dialog.showModal();
});
document.addEventListener("weir:run-triggered", () => {
  document.getElementById("trigger-dialog")?.close();
});
