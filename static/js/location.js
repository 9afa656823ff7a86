// One location: live figures and chart, the latest camera frame with person boxes and a heatmap of where
// people stood, the location's alerts, and its history by hour / day / week.
(function () {
  "use strict";

  const WINDOW_MS = 30 * 60 * 1000;
  const CHART_REDRAW_MS = 500; // at most two redraws a second, however fast readings come
  const info = CM.config.location;
  const loc = {
    info: info,
    state: {
      current_count: info.current_count,
      capacity_limit: info.capacity_limit,
      occupancy_percentage: info.occupancy_percentage,
      density_level: info.density_level,
      alert: info.alert,
      timestamp: info.timestamp,
    },
    points: [], // {x: ms, y: occupancy, c: count}
    counts: [], // {t: ms, c: count}
  };
  const card = document.getElementById("location-" + info.id);

  function thresholdLines() {
    return [
      { value: info.alert_threshold, label: "alert " + info.alert_threshold + "%", color: "#f87171" },
      { value: info.high_threshold, label: "high " + info.high_threshold + "%", color: "#fbbf24" },
      { value: 100, label: "capacity", color: "#94a3b8" },
    ];
  }

  // --- Live figures and chart ---------------------------------------------------------------------------------------

  function addSample(timestamp, count, occupancy) {
    const t = Date.parse(timestamp);
    if (occupancy != null && !loc.points.some((p) => p.x === t)) {
      loc.points.push({ x: t, y: occupancy, c: count });
      loc.points.sort((a, b) => a.x - b.x);
    }
    if (count != null && !loc.counts.some((s) => s.t === t)) {
      loc.counts.push({ t: t, c: count });
      loc.counts.sort((a, b) => a.t - b.t);
    }
    const cutoff = CM.now() - WINDOW_MS - 60000;
    while (loc.points.length && loc.points[0].x < cutoff) loc.points.shift();
    while (loc.counts.length > 2 && loc.counts[0].t < cutoff) loc.counts.shift();
  }

  const liveCanvas = document.getElementById("live-chart");
  const liveChart = new Chart(liveCanvas, {
    type: "line",
    data: {
      datasets: [
        {
          label: "Occupancy",
          data: loc.points,
          borderColor: "#38bdf8",
          backgroundColor: "rgba(56, 189, 248, 0.15)",
          fill: "origin",
          borderWidth: 2,
          pointRadius: 0, // only the newest value gets a dot (CM.newestPointDots)
          pointBackgroundColor: "#38bdf8",
          pointHoverRadius: 5,
          tension: 0.2,
          spanGaps: 5 * 60 * 1000,
        },
      ],
    },
    options: {
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: {
        x: Object.assign(CM.timeAxis(), { min: CM.now() - WINDOW_MS, max: CM.now() }),
        y: { min: 0, suggestedMax: Math.max(100, info.alert_threshold + 10), ticks: { callback: (v) => v + "%" } },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? CM.time(items[0].parsed.x) : ""),
            label: (item) => CM.percent(item.parsed.y) + (item.raw.c != null ? " · " + item.raw.c + " people" : ""),
          },
        },
      },
    },
    plugins: [CM.newestPointDots, CM.thresholdLines(thresholdLines)],
  });

  const queueLive = CM.throttledRedraw(function () {
    liveChart.options.scales.x.min = CM.now() - WINDOW_MS;
    liveChart.options.scales.x.max = CM.now();
    liveChart.update("none");
    const last = loc.points[loc.points.length - 1];
    liveCanvas.setAttribute(
      "aria-label",
      "Occupancy over the last 30 minutes, " + loc.points.length + " readings. Latest: " + (last ? CM.percent(last.y) : "no data") + "."
    );
    liveCanvas.dataset.points = loc.points.length;
  }, CHART_REDRAW_MS);

  function render() {
    CM.renderLocationCard(card, loc);
  }

  function applyCrowdUpdate(msg) {
    if (msg.location_id !== info.id) return;
    const shown = loc.state.timestamp ? Date.parse(loc.state.timestamp) : 0;
    if (msg.timestamp && Date.parse(msg.timestamp) < shown) return; // older than what is on screen
    if (!msg.timestamp && shown) return;
    const fresh = msg.timestamp && msg.timestamp !== loc.state.timestamp;
    loc.state = msg;
    if (msg.timestamp) addSample(msg.timestamp, msg.current_count, msg.occupancy_percentage);
    render();
    queueLive();
    if (fresh) {
      cameras.refreshSoon();
      if (history.range === "hour") history.refreshSoon();
    }
  }

  // Every reading of the last 30 minutes (or since the newest shown, after a reconnect).
  function loadReadings(sinceNewest) {
    const newest = sinceNewest && loc.points.length ? loc.points[loc.points.length - 1].x : 0;
    const since = new Date(Math.max(CM.now() - WINDOW_MS, newest));
    return CM.api("/api/locations/" + info.id + "/readings/?page_size=1000&since=" + encodeURIComponent(since.toISOString()))
      .then(function (res) {
        if (!res.ok) return;
        res.body.results.forEach((r) => addSample(r.timestamp, r.count, r.occupancy_percentage));
        render();
        queueLive();
      })
      .catch(function () {});
  }

  // --- Count quality: how far a camera's count can be trusted, in an operator's words ----------------------------------

  // quality: the `quality` of GET /api/cameras/<id>/latest/ (null: the counter judged nothing); count: the count shown.
  // The interval is widened to whole people, never narrowed; a saturated count is a lower bound, said as such.
  function qualityWords(quality, count) {
    const words = { counted: "detected", interval: "", dense: false, saturated: "" };
    if (!quality) return words;
    if (quality.mode_used !== "detect") words.counted = "estimated";
    words.dense = quality.dense;
    if (quality.saturated) {
      words.saturated = "At least " + count + " — crowd beyond reliable detection";
      return words;
    }
    const low = quality.low == null ? null : Math.floor(quality.low);
    const high = quality.high == null ? null : Math.ceil(quality.high);
    if (low != null && high != null) words.interval = "likely " + (low === high ? low : low + "–" + high);
    else if (low != null) words.interval = "at least " + low;
    else if (high != null) words.interval = "likely at most " + high;
    return words;
  }

  // --- Cameras: latest frame with boxes, heatmap ------------------------------------------------------------------------

  const cameras = (function () {
    const select = document.getElementById("camera-select");
    const nameNode = document.getElementById("camera-name");
    const statusNode = document.getElementById("camera-status");
    const seenNode = document.getElementById("camera-seen");
    const sumNode = document.getElementById("camera-sum");
    const none = document.getElementById("camera-none");
    const body = document.getElementById("camera-body");
    const img = document.getElementById("frame-img");
    const empty = document.getElementById("frame-empty");
    const boxCanvas = document.getElementById("box-canvas");
    const heatCanvas = document.getElementById("heat-canvas");
    const countNode = document.getElementById("frame-count");
    const intervalNode = document.getElementById("frame-interval");
    const denseNode = document.getElementById("frame-dense");
    const saturatedNode = document.getElementById("frame-saturated");
    const saturatedText = document.getElementById("frame-saturated-text");
    const timeNode = document.getElementById("frame-time");
    const heatStats = document.getElementById("heat-stats");
    const showBoxes = document.getElementById("show-boxes");
    const showHeat = document.getElementById("show-heat");
    const periodGroup = document.getElementById("heat-period");

    let list = [];
    let selectedId = null;
    let frame = null; // the `latest` response shown
    let heat = null; // the `heatmap` response shown
    let heatMinutes = 60;
    let timer = null;
    let lastHeatAt = 0;

    function selected() {
      return list.find((c) => c.id === selectedId) || null;
    }

    function renderStatus() {
      const camera = selected();
      if (!camera) return;
      nameNode.textContent = list.length > 1 ? "" : camera.name;
      const status = camera.enabled ? camera.status : "OFFLINE";
      statusNode.hidden = false;
      statusNode.dataset.status = status;
      statusNode.textContent = camera.enabled ? camera.status.toLowerCase() : "disabled";
      seenNode.textContent = "";
      seenNode.append("Last seen ", CM.relativeTime(CM.el("time"), camera.last_seen_at));
    }

    // With several cameras the location's count is the sum of each enabled camera's newest count; a camera that
    // stopped counting keeps its last count in the sum (held), which the operator must be able to see.
    function renderSum() {
      sumNode.hidden = list.length < 2;
      sumNode.textContent = "";
      if (sumNode.hidden) return;
      const parts = list.filter((c) => c.enabled && c.count != null);
      sumNode.append(parts.length ? "Count = sum of cameras: " : "No camera has counted yet.");
      parts.forEach(function (c, i) {
        if (i) sumNode.append(" + ");
        const part = CM.el("span", { dataset: { camera: c.id } }, c.name + " " + c.count);
        if (CM.isStale(c.counted_at, info.expected_interval_seconds)) {
          part.dataset.held = "";
          part.className = "font-semibold text-amber-200";
          part.append(" (held: counted ", CM.relativeTime(CM.el("time"), c.counted_at), ")");
        }
        sumNode.append(part);
      });
    }

    function loadList() {
      return CM.api("/api/cameras/?page_size=100&location=" + info.id).then(function (res) {
        if (!res.ok) return;
        list = res.body.results;
        renderSum();
        none.hidden = list.length > 0;
        body.hidden = list.length === 0;
        if (!list.length) return;
        if (!selected()) selectedId = list[0].id;
        select.hidden = list.length < 2;
        // Rebuilt when a camera is added, removed or renamed (not on every refresh: an open dropdown would close).
        const options = list.map((c) => c.id + ":" + c.name).join("\n");
        if (list.length > 1 && select.dataset.options !== options) {
          select.dataset.options = options;
          select.textContent = "";
          list.forEach((c) => select.append(CM.el("option", { value: c.id, text: c.name })));
        }
        select.value = String(selectedId);
        renderStatus();
      });
    }

    function loadFrame() {
      const camera = selected();
      if (!camera) return Promise.resolve();
      if (!camera.has_frame) {
        showFrame(null);
        return Promise.resolve();
      }
      return CM.api("/api/cameras/" + camera.id + "/latest/").then(function (res) {
        if (res.ok) showFrame(res.body);
        else if (res.status === 404) showFrame(null);
      });
    }

    function showFrame(latest) {
      if (!latest) {
        frame = null;
        img.hidden = true;
        empty.hidden = false;
        img.removeAttribute("src");
        countNode.textContent = "No frame yet";
        timeNode.textContent = "";
        showQuality(qualityWords(null));
        drawBoxes();
        drawHeat();
        return;
      }
      const changed = !frame || frame.image_url !== latest.image_url;
      frame = latest;
      const words = qualityWords(latest.quality, latest.count);
      countNode.textContent = latest.count + (latest.count === 1 ? " person " : " people ") + words.counted;
      showQuality(words);
      // With its date unless it is today's: a camera that stopped days ago must not look like it sent this frame today.
      timeNode.textContent = "· frame of " + CM.dateTime(latest.captured_at);
      if (changed) {
        img.alt = "Latest frame from " + (selected() ? selected().name : "the camera") + ", " + countNode.textContent;
        img.src = latest.image_url; // boxes are drawn once it has loaded, at its displayed size
      } else {
        drawBoxes();
      }
    }

    function showQuality(words) {
      intervalNode.textContent = words.interval;
      intervalNode.hidden = !words.interval;
      denseNode.hidden = !words.dense;
      saturatedText.textContent = words.saturated;
      saturatedNode.hidden = !words.saturated;
    }

    // Canvases follow the image's displayed size (in device pixels, so lines stay sharp).
    function fitCanvas(canvas) {
      const w = Math.round(canvas.clientWidth * window.devicePixelRatio);
      const h = Math.round(canvas.clientHeight * window.devicePixelRatio);
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, w, h);
      ctx.scale(window.devicePixelRatio, window.devicePixelRatio);
      return ctx;
    }

    function drawBoxes() {
      const ctx = fitCanvas(boxCanvas);
      boxCanvas.dataset.boxes = "0";
      if (!frame || img.hidden || !showBoxes.checked || !img.complete) return;
      // Boxes are in original-frame pixels; the image may be downscaled and is shown at yet another size.
      const sx = boxCanvas.clientWidth / frame.width;
      const sy = boxCanvas.clientHeight / frame.height;
      ctx.lineWidth = 2;
      ctx.font = "600 11px " + getComputedStyle(document.body).fontFamily;
      frame.boxes.forEach(function (box) {
        const x = box[0] * sx;
        const y = box[1] * sy;
        const w = (box[2] - box[0]) * sx;
        const h = (box[3] - box[1]) * sy;
        ctx.strokeStyle = "rgba(2, 6, 23, 0.8)";
        ctx.lineWidth = 4;
        ctx.strokeRect(x, y, w, h);
        ctx.strokeStyle = "#a3e635";
        ctx.lineWidth = 2;
        ctx.strokeRect(x, y, w, h);
        if (w > 28 && box[4] != null) {
          const label = Math.round(box[4] * 100) + "%";
          const tw = ctx.measureText(label).width + 6;
          ctx.fillStyle = "#a3e635";
          ctx.fillRect(x - 1, Math.max(0, y - 15), tw, 15);
          ctx.fillStyle = "#020617";
          ctx.fillText(label, x + 2, Math.max(11, y - 4));
        }
      });
      boxCanvas.dataset.boxes = String(frame.boxes.length);
    }

    // Colour ramp for the heatmap: blue (few) -> yellow -> red (many).
    function ramp(v) {
      const stops = [
        [0, [59, 130, 246]],
        [0.5, [253, 224, 71]],
        [1, [220, 38, 38]],
      ];
      for (let i = 1; i < stops.length; i++) {
        if (v <= stops[i][0]) {
          const a = stops[i - 1];
          const b = stops[i];
          const f = (v - a[0]) / (b[0] - a[0]);
          return a[1].map((c, k) => Math.round(c + (b[1][k] - c) * f));
        }
      }
      return stops[stops.length - 1][1];
    }

    function drawHeat() {
      const ctx = fitCanvas(heatCanvas);
      heatCanvas.dataset.cells = "0";
      if (!heat || !showHeat.checked) return;
      let max = 0;
      heat.cells.forEach((row) => row.forEach((v) => (max = Math.max(max, v))));
      if (!max) return;
      // Paint the grid at its own resolution, then let the browser scale it up smoothly.
      const small = document.createElement("canvas");
      small.width = heat.cols;
      small.height = heat.rows;
      const sctx = small.getContext("2d");
      const image = sctx.createImageData(heat.cols, heat.rows);
      let lit = 0;
      heat.cells.forEach(function (row, r) {
        row.forEach(function (v, c) {
          const i = (r * heat.cols + c) * 4;
          if (!v) return;
          lit++;
          const norm = Math.sqrt(v / max); // sqrt: single visits stay visible next to busy spots
          const rgb = ramp(norm);
          image.data[i] = rgb[0];
          image.data[i + 1] = rgb[1];
          image.data[i + 2] = rgb[2];
          image.data[i + 3] = Math.round(255 * (0.35 + 0.45 * norm));
        });
      });
      sctx.putImageData(image, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(small, 0, 0, heatCanvas.clientWidth, heatCanvas.clientHeight);
      heatCanvas.dataset.cells = String(lit);
    }

    function loadHeat() {
      const camera = selected();
      if (!camera) return Promise.resolve();
      lastHeatAt = Date.now();
      const until = new Date(CM.now());
      const since = new Date(until.getTime() - heatMinutes * 60000);
      const query = "?cols=32&rows=24&since=" + encodeURIComponent(since.toISOString()) + "&until=" + encodeURIComponent(until.toISOString());
      return CM.api("/api/cameras/" + camera.id + "/heatmap/" + query).then(function (res) {
        if (!res.ok) return;
        heat = res.body;
        heatStats.textContent = heat.readings
          ? heat.people + " person detections in " + heat.readings + " readings"
          : "No detections in this period";
        drawHeat();
      });
    }

    function refresh() {
      timer = null;
      loadList()
        .then(loadFrame)
        .then(function () {
          if (Date.now() - lastHeatAt > 30000) return loadHeat();
        })
        .catch(function () {});
    }

    // Readings can arrive every second; the frame is re-fetched at most every 2 s.
    function refreshSoon() {
      if (!timer) timer = setTimeout(refresh, 2000);
    }

    img.addEventListener("load", function () {
      img.hidden = false;
      empty.hidden = true;
      drawBoxes();
      drawHeat();
    });
    img.addEventListener("error", function () {
      countNode.textContent = "The frame could not be loaded";
    });
    select.addEventListener("change", function () {
      selectedId = Number(select.value);
      frame = heat = null;
      renderStatus();
      loadFrame().then(loadHeat);
    });
    showBoxes.addEventListener("change", drawBoxes);
    showHeat.addEventListener("change", drawHeat);
    periodGroup.addEventListener("click", function (event) {
      const button = event.target.closest("button[data-minutes]");
      if (!button) return;
      heatMinutes = Number(button.dataset.minutes);
      periodGroup.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", b === button ? "true" : "false"));
      loadHeat();
    });
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        drawBoxes();
        drawHeat();
      }).observe(document.getElementById("frame-wrap"));
    }

    return {
      start: function () {
        loadList()
          .then(loadFrame)
          .then(loadHeat)
          .catch(function () {});
        setInterval(refresh, 15000); // status and "last seen" even when no readings arrive
      },
      refreshSoon: refreshSoon,
    };
  })();

  // --- History -----------------------------------------------------------------------------------------------------------

  const history = (function () {
    const canvas = document.getElementById("history-chart");
    const empty = document.getElementById("history-empty");
    const group = document.getElementById("history-range");
    const state = { range: "hour", timer: null };
    const chart = new Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          {
            label: "Peak occupancy",
            data: [],
            borderColor: "#f472b6",
            backgroundColor: "rgba(244, 114, 182, 0.12)",
            borderWidth: 1.5,
            borderDash: [4, 3],
            pointRadius: 0,
            fill: "+1",
          },
          {
            label: "Average occupancy",
            data: [],
            borderColor: "#38bdf8",
            backgroundColor: "#38bdf8",
            borderWidth: 2,
            pointRadius: 0,
            pointHoverRadius: 4,
          },
        ],
      },
      options: {
        parsing: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: CM.timeAxis(),
          y: { min: 0, suggestedMax: Math.max(100, info.alert_threshold + 10), ticks: { callback: (v) => v + "%" } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? CM.dateTime(items[0].parsed.x) : ""),
              label: (item) => item.dataset.label + ": " + CM.percent(item.parsed.y),
              afterBody: (items) =>
                items.length ? items[0].raw.readings + " readings · " + items[0].raw.min + "–" + items[0].raw.max + " people" : "",
            },
          },
        },
      },
      plugins: [CM.thresholdLines(thresholdLines)],
    });

    function load() {
      state.timer = null;
      const range = state.range;
      return CM.api("/api/locations/" + info.id + "/history/?range=" + range)
        .then(function (res) {
          if (!res.ok || range !== state.range) return;
          const half = (res.body.bucket_seconds * 1000) / 2;
          const points = res.body.points.map(function (p) {
            // Mid-bucket, but never in the future (the current bucket is still filling).
            return { x: Math.min(Date.parse(p.t) + half, CM.now()), readings: p.readings, min: p.min_count, max: p.max_count, avg: p.avg_occupancy, peak: p.max_occupancy };
          });
          chart.data.datasets[0].data = points.map((p) => Object.assign({}, p, { y: p.peak }));
          chart.data.datasets[1].data = points.map((p) => Object.assign({}, p, { y: p.avg }));
          // Sparse history (a new location, a quiet week) would be invisible as bare lines: mark each interval.
          chart.data.datasets.forEach((dataset) => (dataset.pointRadius = points.length < 40 ? 2.5 : 0));
          const spans = { hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };
          chart.options.scales.x = Object.assign(CM.timeAxis(range === "week" ? "day" : "time"), {
            min: CM.now() - spans[range],
            max: CM.now(),
          });
          chart.update("none");
          empty.hidden = points.length > 0;
          canvas.dataset.points = String(points.length);
          canvas.setAttribute("aria-label", "Occupancy history, " + range + ": " + points.length + " intervals.");
        })
        .catch(function () {});
    }

    group.addEventListener("click", function (event) {
      const button = event.target.closest("button[data-range]");
      if (!button) return;
      state.range = button.dataset.range;
      group.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", b === button ? "true" : "false"));
      load();
    });

    return {
      get range() {
        return state.range;
      },
      load: load,
      refreshSoon: function () {
        if (!state.timer) state.timer = setTimeout(load, 10000);
      },
    };
  })();

  // --- Alerts at this location -----------------------------------------------------------------------------------------

  const alertList = document.getElementById("location-alerts");
  const noAlerts = document.getElementById("no-location-alerts");
  function showAlert(alert, isNew) {
    if (alert.location_id !== info.id) return;
    const node = CM.renderAlert(alert, { showLocation: false, compact: true });
    if (isNew && alert.status !== "RESOLVED") node.classList.add("is-new");
    CM.placeAlert(alertList, node);
    while (alertList.children.length > 20) alertList.lastElementChild.remove();
    noAlerts.hidden = alertList.children.length > 0;
  }
  CM.onAlert(showAlert);
  CM.alerts.forEach((alert) => showAlert(alert, false));
  CM.api("/api/alerts/?page_size=20&location=" + info.id).then(function (res) {
    if (res.ok) res.body.results.forEach((alert) => CM.putAlert(alert));
  });

  // --- Start -----------------------------------------------------------------------------------------------------------

  if (loc.state.timestamp) addSample(loc.state.timestamp, loc.state.current_count, loc.state.occupancy_percentage);
  render();
  queueLive();
  loadReadings();
  cameras.start();
  history.load();

  // All locations' socket: crowd updates for this one, alerts from everywhere (a surge elsewhere is announced too).
  CM.connect("/ws/crowd/", {
    onMessage: function (msg) {
      if (msg.type === "crowd_update") applyCrowdUpdate(msg);
      else if (msg.type === "alert_update") CM.handleAlertMessage(msg);
    },
    onOpen: function (connected) {
      if (connected.reconnect) {
        CM.catchUpAlerts(connected.downSince);
        loadReadings(true);
        cameras.refreshSoon();
      }
    },
  });

  CM.onTick(function () {
    render();
    queueLive();
  });
})();
