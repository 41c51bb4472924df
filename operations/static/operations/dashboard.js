// Draw the dashboard's charts from the data the page carries (json_script), with the vendored Chart.js.
(function () {
  function draw(canvas) {
    const data = JSON.parse(document.getElementById(canvas.dataset.chart + "-data").textContent);
    const line = canvas.dataset.kind === "line";
    new Chart(canvas, {
      type: canvas.dataset.kind,
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (set) {
          return { label: set.label, data: set.data, spanGaps: true, pointRadius: line ? 0 : undefined, borderWidth: line ? 1.5 : 0 };
        }),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: !line, ticks: { maxTicksLimit: 8, maxRotation: 0 } },
          y: { stacked: !line, beginAtZero: true },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
