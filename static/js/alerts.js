// The alert log: filter by status / kind / location / time, acknowledge and resolve with a note, live updates.
(function () {
  "use strict";

  const form = document.getElementById("alert-filters");
  const list = document.getElementById("alert-log");
  const empty = document.getElementById("alerts-empty");
  const error = document.getElementById("alerts-error");
  const summary = document.getElementById("alerts-summary");
  const more = document.getElementById("load-more");
  const FIELDS = ["status", "kind", "location", "since", "until"];
  let filters = {};
  let next = null;
  let total = 0;
  let generation = 0; // answers to an older query are dropped
  let arrived = new Set(); // ids of alerts raised live while the current query ran

  function readUrl() {
    const params = new URLSearchParams(window.location.search);
    FIELDS.forEach(function (name) {
      form.elements[name].value = params.get(name) || "";
    });
  }

  function readForm() {
    const values = {};
    FIELDS.forEach(function (name) {
      const value = form.elements[name].value;
      if (value) values[name] = value;
    });
    return values;
  }

  // datetime-local fields hold local wall-clock time; the API gets ISO-8601 with the offset resolved.
  function apiQuery(values) {
    const params = new URLSearchParams({ page_size: "50" });
    Object.keys(values).forEach(function (name) {
      let value = values[name];
      if (name === "since" || name === "until") {
        const date = new Date(value);
        // "Until 16:05" takes in the whole of that minute, as matches() does for the rows arriving live.
        if (name === "until") date.setTime(date.getTime() + 59999);
        value = isNaN(date) ? value : date.toISOString(); // let the server reject what is not a date
      }
      params.set(name, value);
    });
    return params.toString();
  }

  function matches(alert) {
    if (filters.status && alert.status !== filters.status) return false;
    if (filters.kind && alert.kind !== filters.kind) return false;
    if (filters.location && String(alert.location_id) !== String(filters.location)) return false;
    const t = Date.parse(alert.triggered_at);
    if (filters.since && t < new Date(filters.since).getTime()) return false;
    if (filters.until && t > new Date(filters.until).getTime() + 59999) return false;
    return true;
  }

  function renderSummary() {
    const shown = list.children.length;
    summary.textContent = total ? "Showing " + shown + " of " + total + " alerts" : "";
    empty.hidden = shown > 0 || !error.hidden;
    more.hidden = !next;
  }

  function add(results) {
    results.forEach(function (alert) {
      CM.putAlert(alert);
      const current = CM.alerts.get(alert.id);
      if (matches(current)) CM.placeAlert(list, CM.renderAlert(current));
    });
  }

  function load() {
    const mine = ++generation;
    arrived = new Set();
    filters = readForm();
    error.hidden = true;
    more.hidden = true;
    return CM.api("/api/alerts/?" + apiQuery(filters))
      .then(function (res) {
        if (mine !== generation) return;
        list.textContent = "";
        if (!res.ok) {
          next = null;
          total = 0;
          error.textContent = "These filters cannot be used: " + CM.errorText(res.body, "HTTP " + res.status) + ".";
          error.hidden = false;
          renderSummary();
          return;
        }
        total = res.body.count;
        next = res.body.next;
        add(res.body.results);
        // An alert raised while the query ran, newer than its answer: the answer does not hold it (the newest come
        // first), so it would vanish from the log with the rows the answer replaces.
        const answered = new Set(res.body.results.map((alert) => alert.id));
        arrived.forEach(function (id) {
          const alert = CM.alerts.get(id);
          if (answered.has(id) || !alert || !matches(alert)) return;
          CM.placeAlert(list, CM.renderAlert(alert));
          total++;
        });
        renderSummary();
      })
      .catch(function () {
        if (mine !== generation) return;
        error.textContent = "Could not load alerts: the server cannot be reached.";
        error.hidden = false;
      });
  }

  function apply() {
    const values = readForm();
    const query = new URLSearchParams(values).toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
    return load();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    apply();
  });
  ["status", "kind", "location"].forEach(function (name) {
    form.elements[name].addEventListener("change", apply);
  });
  document.getElementById("filter-reset").addEventListener("click", function () {
    FIELDS.forEach((name) => (form.elements[name].value = ""));
    apply();
  });
  function localValue(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + "T" + pad(date.getHours()) + ":" + pad(date.getMinutes());
  }
  document.getElementById("quick-ranges").addEventListener("click", function (event) {
    const button = event.target.closest("button[data-hours]");
    if (!button) return;
    form.elements.since.value = localValue(new Date(CM.now() - Number(button.dataset.hours) * 3600e3));
    form.elements.until.value = "";
    apply();
  });
  document.getElementById("quick-active").addEventListener("click", function () {
    form.elements.status.value = "ACTIVE";
    apply();
  });
  more.addEventListener("click", function () {
    if (!next) return;
    const mine = generation;
    more.disabled = true;
    CM.api(next)
      .then(function (res) {
        more.disabled = false;
        if (mine !== generation || !res.ok) return;
        next = res.body.next;
        add(res.body.results);
        renderSummary();
      })
      .catch(function () {
        more.disabled = false;
      });
  });

  // Live: rows change in place; a new alert that matches the filters appears at the top.
  CM.onAlert(function (alert, isNew) {
    if (isNew) arrived.add(alert.id);
    const existing = document.getElementById("alert-" + alert.id);
    if (!existing && !isNew) return;
    if (!matches(alert)) {
      if (existing) {
        existing.remove();
        total = Math.max(0, total - 1);
      }
    } else {
      const node = CM.renderAlert(alert);
      if (isNew) {
        node.classList.add("is-new");
        total++;
      }
      CM.placeAlert(list, node);
    }
    renderSummary();
  });

  readUrl();
  load();
  CM.connect("/ws/crowd/", {
    onMessage: function (msg) {
      if (msg.type === "alert_update") CM.handleAlertMessage(msg);
    },
    onOpen: function (info) {
      if (info.reconnect) {
        CM.catchUpAlerts(info.downSince);
        load();
      }
    },
  });
})();
