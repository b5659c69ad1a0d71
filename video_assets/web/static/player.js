// Clicking a hit or a segment plays it in the page's player from its start (no page load).
(function () {
  const player = document.getElementById("player");
  if (!player) return;
  function play(src, seek) {
    const go = function () {
      player.currentTime = seek;
      const started = player.play();
      if (started && started.catch) started.catch(function () {});
    };
    if (player.getAttribute("src") !== src) {
      player.setAttribute("src", src);
      player.addEventListener("loadedmetadata", go, { once: true });
      player.load();
    } else if (player.readyState >= 1) {
      go();
    } else {
      player.addEventListener("loadedmetadata", go, { once: true });
    }
  }
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-src]");
    if (!link) return;
    event.preventDefault();
    document.querySelectorAll(".playing").forEach(function (el) { el.classList.remove("playing"); });
    link.classList.add("playing");
    play(link.dataset.src, parseFloat(link.dataset.seek) || 0);
  });
  const start = parseFloat(player.dataset.start || "0");
  if (start > 0) player.addEventListener("loadedmetadata", function () { player.currentTime = start; }, { once: true });
})();
