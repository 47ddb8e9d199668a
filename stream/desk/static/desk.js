// Countdowns tick here; the rows themselves come from the server (server-sent events).
// Amber under five minutes, red under one and once overdue.
function tick() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("td.countdown[data-due]")) {
    const left = Math.round(parseFloat(cell.dataset.due) - now);
    const span = cell.querySelector(".left");
    if (!span) continue;
    const a = Math.abs(left), m = Math.floor(a / 60), s = a % 60;
    span.textContent = (left < 0 ? "-" : "") + m + ":" + String(s).padStart(2, "0");
    cell.classList.toggle("amber", left < 300 && left >= 60);
    cell.classList.toggle("red", left < 60);
  }
}
setInterval(tick, 1000);
document.addEventListener("htmx:afterSwap", tick);
document.addEventListener("htmx:sseMessage", tick);
tick();
