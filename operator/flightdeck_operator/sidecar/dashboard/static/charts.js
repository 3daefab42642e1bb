// Compare page: cost per run, mean latency and error rate per hour for both releases, with the
// policy's limit drawn as a line (uPlot, vendored). Data from /ui/data/compare, with the token.
(() => {
  "use strict";
  const charts = [];

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  async function draw(container) {
    const response = await fetch(container.dataset.seriesUrl, { headers: window.flightdeck.headers() });
    const note = document.getElementById("series-note");
    if (!response.ok) {
      note.textContent = `The series could not be loaded (${response.status}).`;
      return;
    }
    const data = await response.json();
    container.dataset.baselinePoints = String(data.baseline.points.length);
    container.dataset.candidatePoints = String(data.candidate.points.length);
    const seen = [
      ...new Set([...data.baseline.points, ...data.candidate.points].map((p) => Date.parse(p.hour) / 1000)),
    ].sort((a, b) => a - b);
    // An hour of margin on each side: a single hour still gets an axis, and the limit a line.
    const hours = seen.length ? [seen[0] - 3600, ...seen, seen[seen.length - 1] + 3600] : [];
    note.textContent = seen.length
      ? `${seen.length} hour(s) with runs in ${data.window}, environment ${data.environment}; policy ${data.limits.policy_id}.`
      : `No runs of either release in ${data.window}.`;
    for (const element of container.querySelectorAll(".chart")) {
      const metric = element.dataset.metric;
      const limit = data.limits[element.dataset.limit];
      const values = (side) => {
        const byHour = new Map(side.points.map((p) => [Date.parse(p.hour) / 1000, p[metric]]));
        return hours.map((hour) => (byHour.has(hour) ? byHour.get(hour) : null));
      };
      const series = [
        {},
        { label: "baseline", stroke: css("--baseline"), width: 2, points: { show: true } },
        { label: "candidate", stroke: css("--candidate"), width: 2, points: { show: true } },
      ];
      const columns = [hours, values(data.baseline), values(data.candidate)];
      if (limit !== null && limit !== undefined) {
        series.push({ label: "limit", stroke: css("--limit"), width: 1, dash: [6, 4], points: { show: false } });
        columns.push(hours.map(() => limit));
      }
      element.querySelector(".u-wrap")?.remove();
      const plot = new uPlot(
        {
          width: Math.max(280, element.clientWidth),
          height: 200,
          legend: { show: false },
          axes: [
            { stroke: css("--muted"), grid: { stroke: css("--border") } },
            { stroke: css("--muted"), grid: { stroke: css("--border") } },
          ],
          series,
        },
        columns,
        element,
      );
      element.dataset.points = String(columns[1].filter((v) => v !== null).length + columns[2].filter((v) => v !== null).length);
      charts.push(plot);
    }
  }

  function drawAll() {
    while (charts.length) charts.pop().destroy();
    document.querySelectorAll("[data-series-url]").forEach(draw);
  }

  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.querySelector && event.target.querySelector("[data-series-url]")) drawAll();
  });
  document.addEventListener("fd:theme", drawAll);
  let resizing;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(drawAll, 200);
  });
})();
