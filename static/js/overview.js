// Overview: a card per location, the occupancy chart, the map and the alert feed, all kept live.
(function () {
  "use strict";

  const WINDOW_MS = 30 * 60 * 1000; // the chart shows the last 30 minutes
  const CHART_REDRAW_MS = 500; // at most two redraws a second, however fast readings come
  const RESOLVED_SHOWN = 5;

  const locations = new Map(); // id -> {info, state, points: [{x, y}], counts: [{t, c}], card, marker}
  CM.config.locations.forEach(function (info, index) {
    locations.set(info.id, {
      info: info,
      color: CM.SERIES_COLORS[index % CM.SERIES_COLORS.length],
      state: {
        current_count: info.current_count,
        capacity_limit: info.capacity_limit,
        occupancy_percentage: info.occupancy_percentage,
        density_level: info.density_level,
        alert: info.alert,
        timestamp: info.timestamp,
      },
      points: [],
      counts: [],
      card: document.getElementById("location-" + info.id),
      marker: null,
    });
  });

  function addSample(loc, timestamp, count, occupancy) {
    const t = Date.parse(timestamp);
    if (occupancy != null && !loc.points.some((p) => p.x === t)) {
      loc.points.push({ x: t, y: occupancy });
      if (loc.points.length > 1 && loc.points[loc.points.length - 2].x > t) loc.points.sort((a, b) => a.x - b.x);
    }
    if (count != null && !loc.counts.some((s) => s.t === t)) {
      loc.counts.push({ t: t, c: count });
      if (loc.counts.length > 1 && loc.counts[loc.counts.length - 2].t > t) loc.counts.sort((a, b) => a.t - b.t);
    }
  }

  function prune(loc) {
    const cutoff = CM.now() - WINDOW_MS - 60000;
    while (loc.points.length && loc.points[0].x < cutoff) loc.points.shift();
    while (loc.counts.length > 2 && loc.counts[0].t < cutoff) loc.counts.shift();
  }

  // --- Cards ------------------------------------------------------------------------------------------------------

  function renderCard(loc) {
    if (loc.card) CM.renderLocationCard(loc.card, loc);
  }

  function renderSummary() {
    let people = 0;
    let high = 0;
    let noData = 0;
    locations.forEach(function (loc) {
      const level = CM.shownLevel(loc.state, loc.info.expected_interval_seconds);
      if (level === "NO_DATA") noData++;
      else people += loc.state.current_count || 0;
      if (level === "HIGH") high++;
    });
    document.getElementById("sum-people").textContent = people.toLocaleString();
    document.getElementById("sum-high").textContent = high;
    document.getElementById("sum-nodata").textContent = noData;
    let open = 0;
    let unacked = 0;
    CM.alerts.forEach(function (alert) {
      if (alert.status !== "RESOLVED") open++;
      if (alert.status === "ACTIVE") unacked++;
    });
    document.getElementById("sum-alerts").textContent = open;
    document.getElementById("sum-unacked").textContent = unacked ? unacked + " not acknowledged" : "";
  }

  // --- Chart ------------------------------------------------------------------------------------------------------

  const chartCanvas = document.getElementById("occupancy-chart");
  const ids = Array.from(locations.keys());
  const chart = new Chart(chartCanvas, {
    type: "line",
    data: {
      datasets: ids.map(function (id) {
        const loc = locations.get(id);
        return {
          label: loc.info.name,
          data: loc.points,
          borderColor: loc.color,
          backgroundColor: loc.color,
          borderWidth: 2,
          pointRadius: 0, // only the newest value gets a dot (CM.newestPointDots)
          pointHoverRadius: 5,
          tension: 0.2,
          spanGaps: 5 * 60 * 1000,
        };
      }),
    },
    options: {
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: {
        x: Object.assign(CM.timeAxis(), { min: CM.now() - WINDOW_MS, max: CM.now() }),
        y: { min: 0, suggestedMax: 100, ticks: { callback: (v) => v + "%" }, grid: { color: "rgba(148, 163, 184, 0.12)" } },
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12, usePointStyle: true } },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? CM.time(items[0].parsed.x) : ""),
            label: (item) => item.dataset.label + ": " + CM.percent(item.parsed.y),
          },
        },
      },
    },
    plugins: [
      CM.newestPointDots,
      CM.thresholdLines(function () {
        const thresholds = new Set();
        locations.forEach((loc) => thresholds.add(loc.info.alert_threshold));
        const lines = Array.from(thresholds).map((value) => ({ value: value, label: "alert " + value + "%", color: "#f87171" }));
        lines.push({ value: 100, label: "capacity", color: "#94a3b8" });
        return lines;
      }),
    ],
  });

  const queueChart = CM.throttledRedraw(function () {
    const now = CM.now();
    chart.options.scales.x.min = now - WINDOW_MS;
    chart.options.scales.x.max = now;
    chart.update("none");
    // The chart's text alternative: the newest value of every series.
    const parts = ids.map(function (id) {
      const loc = locations.get(id);
      const last = loc.points[loc.points.length - 1];
      return loc.info.name + " " + (last ? CM.percent(last.y) : "no data");
    });
    chartCanvas.setAttribute("aria-label", "Occupancy over the last 30 minutes. Latest: " + parts.join(", ") + ".");
    chartCanvas.dataset.points = ids.map((id) => locations.get(id).points.length).join(",");
  }, CHART_REDRAW_MS);

  // --- Map --------------------------------------------------------------------------------------------------------

  const mapNode = document.getElementById("map");
  const map = L.map(mapNode, { attributionControl: Boolean(CM.config.map_tiles.url), scrollWheelZoom: false, zoomSnap: 0.25 });
  if (CM.config.map_tiles.url) {
    L.tileLayer(CM.config.map_tiles.url, { attribution: CM.config.map_tiles.attribution, maxZoom: 19 }).addTo(map);
  }
  // Names sit below the markers: where places are close, a label must never hide another place's colour.
  map.createPane("labels").style.zIndex = 350;
  const placed = [];
  const unplaced = [];
  locations.forEach(function (loc) {
    if (loc.info.latitude == null || loc.info.longitude == null) unplaced.push(loc.info.name);
    else placed.push(loc);
  });
  // The view first: Leaflet creates a marker's element only once the map has one.
  const corners = placed.map((loc) => [loc.info.latitude, loc.info.longitude]);
  if (corners.length > 1) map.fitBounds(corners, { padding: [90, 50], maxZoom: 17 });
  else if (corners.length === 1) map.setView(corners[0], 16);
  else map.setView([20, 0], 1);
  placed.forEach(function (loc) {
    loc.marker = L.circleMarker([loc.info.latitude, loc.info.longitude], {
      radius: 12,
      weight: 3,
      color: "#e2e8f0",
      fillColor: CM.LEVEL_COLORS.NO_DATA,
      fillOpacity: 0.95,
      className: "location-marker",
    })
      // An element, not the name itself: Leaflet puts string content in as HTML, and names are typed by people.
      .bindTooltip(CM.el("span", { text: loc.info.name }), {
        permanent: true,
        direction: "top",
        offset: [0, -12],
        className: "map-label",
        pane: "labels",
      })
      .bindPopup(function () {
        return popupContent(loc);
      })
      .addTo(map);
    loc.marker.getElement().dataset.locationId = loc.info.id;
  });
  if (unplaced.length) {
    const note = document.getElementById("map-unplaced");
    note.textContent = "Not on the map (no coordinates): " + unplaced.join(", ");
    note.hidden = false;
  }
  if (window.ResizeObserver) new ResizeObserver(() => map.invalidateSize()).observe(mapNode);

  function popupContent(loc) {
    const level = CM.shownLevel(loc.state, loc.info.expected_interval_seconds);
    return CM.el(
      "div",
      { class: "grid gap-1" },
      CM.el("a", { class: "font-semibold", href: "/locations/" + loc.info.id + "/", text: loc.info.name }),
      CM.el("span", {}, CM.el("span", { class: "chip", dataset: { level: level }, text: CM.LEVEL_LABELS[level] })),
      CM.el("span", { text: (loc.state.current_count == null ? "–" : loc.state.current_count) + " / " + loc.state.capacity_limit + " people (" + CM.percent(loc.state.occupancy_percentage) + ")" }),
      CM.el("span", { class: "muted text-xs", text: "Updated " + CM.ago(loc.state.timestamp) })
    );
  }

  function renderMarker(loc) {
    if (!loc.marker) return;
    const level = CM.shownLevel(loc.state, loc.info.expected_interval_seconds);
    const element = loc.marker.getElement();
    if (element.dataset.level === level) return;
    loc.marker.setStyle({ fillColor: CM.LEVEL_COLORS[level], color: level === "HIGH" ? "#fecaca" : "#e2e8f0" });
    element.dataset.level = level;
    element.setAttribute("class", element.getAttribute("class").replace(/\s*marker-level-\S+/g, "") + " marker-level-" + level);
    if (level === "HIGH") loc.marker.bringToFront();
  }

  // --- Live state -------------------------------------------------------------------------------------------------

  function render(loc) {
    renderCard(loc);
    renderMarker(loc);
  }

  function applyCrowdUpdate(msg) {
    const loc = locations.get(msg.location_id);
    if (!loc) return;
    const shown = loc.state.timestamp ? Date.parse(loc.state.timestamp) : 0;
    // A snapshot or a delayed message must never replace a newer state already on screen.
    if (msg.timestamp && Date.parse(msg.timestamp) < shown) return;
    if (!msg.timestamp && shown) return;
    loc.state = msg;
    if (msg.timestamp) addSample(loc, msg.timestamp, msg.current_count, msg.occupancy_percentage);
    prune(loc);
    render(loc);
    renderSummary();
    queueChart();
  }

  // Readings stored while the socket was down, so the chart has no hole (the snapshot only has the newest).
  function catchUpReadings() {
    locations.forEach(function (loc) {
      const since = new Date(Math.max(CM.now() - WINDOW_MS, loc.points.length ? loc.points[loc.points.length - 1].x : 0));
      CM.api("/api/locations/" + loc.info.id + "/readings/?page_size=1000&since=" + encodeURIComponent(since.toISOString()))
        .then(function (res) {
          if (!res.ok) return;
          res.body.results.forEach(function (r) {
            addSample(loc, r.timestamp, r.count, r.occupancy_percentage);
          });
          renderCard(loc);
          queueChart();
        })
        .catch(function () {});
    });
  }

  // Seed the chart with the last hour's per-minute averages.
  function seedHistory() {
    locations.forEach(function (loc) {
      CM.api("/api/locations/" + loc.info.id + "/history/?range=hour")
        .then(function (res) {
          if (!res.ok) return;
          const bucket = res.body.bucket_seconds * 1000;
          // Minute averages of the minutes before the first reading shown; from there on the readings themselves.
          const firstShown = loc.points.length ? loc.points[0].x : Infinity;
          res.body.points.forEach(function (p) {
            const start = Date.parse(p.t);
            if (start + bucket > firstShown) return;
            addSample(loc, new Date(start + bucket / 2).toISOString(), Math.round(p.avg_count), p.avg_occupancy);
          });
          renderCard(loc);
          queueChart();
        })
        .catch(function () {});
    });
  }

  // --- Alert feed -------------------------------------------------------------------------------------------------

  const feed = document.getElementById("alert-feed");
  const resolvedFeed = document.getElementById("resolved-feed");
  const noAlerts = document.getElementById("no-alerts");
  const noResolved = document.getElementById("no-resolved");

  function showAlert(alert, isNew) {
    if (alert.status === "RESOLVED") {
      const open = document.getElementById("alert-" + alert.id);
      if (open) open.remove();
      CM.placeAlert(resolvedFeed, CM.renderAlert(alert, { idPrefix: "resolved-alert-", compact: true }));
      while (resolvedFeed.children.length > RESOLVED_SHOWN) resolvedFeed.lastElementChild.remove();
    } else {
      const node = CM.renderAlert(alert, { compact: true });
      if (isNew) node.classList.add("is-new");
      CM.placeAlert(feed, node);
    }
    noAlerts.hidden = feed.children.length > 0;
    noResolved.hidden = resolvedFeed.children.length > 0;
    renderSummary();
  }

  CM.onAlert(showAlert);
  (CM.config.resolved_alerts || []).slice().reverse().forEach((alert) => showAlert(alert, false));
  CM.alerts.forEach((alert) => showAlert(alert, false));

  // --- Start ------------------------------------------------------------------------------------------------------

  locations.forEach(function (loc) {
    if (loc.state.timestamp) addSample(loc, loc.state.timestamp, loc.state.current_count, loc.state.occupancy_percentage);
    render(loc);
  });
  renderSummary();
  queueChart();
  seedHistory();

  CM.connect("/ws/crowd/", {
    onMessage: function (msg) {
      if (msg.type === "crowd_update") applyCrowdUpdate(msg);
      else if (msg.type === "alert_update") CM.handleAlertMessage(msg);
    },
    onOpen: function (info) {
      if (info.reconnect) {
        CM.catchUpAlerts(info.downSince);
        catchUpReadings();
      }
    },
  });

  // Freshness is re-judged every second: a feed that stops turns into "no data" by itself.
  CM.onTick(function () {
    locations.forEach(function (loc) {
      prune(loc);
      render(loc);
    });
    renderSummary();
    queueChart();
  });
})();
