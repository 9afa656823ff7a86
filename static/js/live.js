// Live overview: keeps location cards and the open-alert list current over the WebSocket.
(function () {
  "use strict";
  const connection = document.getElementById("connection");
  const alertList = document.getElementById("alerts");
  const noAlerts = document.getElementById("no-alerts");
  const canHandle = alertList.dataset.canHandle === "true";
  const csrfToken = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const lastSeen = {}; // location id -> timestamp of the newest state shown

  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function isStale(card, timestamp) {
    if (!timestamp) return true;
    const limitMs = 3 * Number(card.dataset.interval) * 1000;
    return Date.now() - Date.parse(timestamp) > limitMs;
  }

  function renderLevel(card, level, timestamp) {
    const shown = level && !isStale(card, timestamp) ? level : "NO_DATA";
    card.dataset.level = shown;
    card.querySelector(".level").textContent = shown.replace("_", " ");
  }

  function applyCrowdUpdate(msg) {
    const card = document.getElementById("location-" + msg.location_id);
    if (!card) return;
    // A snapshot sent on reconnect may be older than a live message already shown.
    if (lastSeen[msg.location_id] && msg.timestamp && msg.timestamp < lastSeen[msg.location_id]) return;
    if (msg.timestamp) lastSeen[msg.location_id] = msg.timestamp;
    card.querySelector(".current-count").textContent = msg.current_count ?? "–";
    card.querySelector(".capacity").textContent = msg.capacity_limit;
    const occ = msg.occupancy_percentage;
    card.querySelector(".occupancy").textContent = occ == null ? "–" : occ.toFixed(1) + "%";
    card.querySelector(".gauge-fill").style.width = Math.min(occ || 0, 100) + "%";
    card.querySelector(".alert-flag").hidden = !msg.alert;
    const updated = card.querySelector(".updated");
    updated.dateTime = msg.timestamp || "";
    updated.textContent = msg.timestamp ? new Date(msg.timestamp).toLocaleTimeString() : "never";
    card.dataset.timestamp = msg.timestamp || "";
    card.dataset.reportedLevel = msg.density_level || "";
    renderLevel(card, msg.density_level, msg.timestamp);
  }

  function alertAction(id, action) {
    const note = action === "resolve" ? window.prompt("Resolution note (optional)", "") : "";
    if (note === null) return;
    fetch("/api/alerts/" + id + "/" + action + "/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify({ note: note }),
    }).then(function (response) {
      if (!response.ok) response.json().then(function (body) { window.alert(body.detail || "Failed"); });
    });
  }

  function applyAlertUpdate(msg) {
    let item = document.getElementById("alert-" + msg.id);
    if (msg.status === "RESOLVED") {
      if (item) item.remove();
    } else {
      if (!item) {
        item = document.createElement("li");
        item.id = "alert-" + msg.id;
        alertList.prepend(item);
      }
      item.className = "alert severity-" + msg.severity.toLowerCase();
      item.textContent = "";
      const text = document.createElement("span");
      text.textContent = msg.severity + " " + msg.kind + " — " + msg.location_name + ": " + msg.message +
        (msg.status === "ACKNOWLEDGED" ? " (acknowledged by " + msg.acknowledged_by + ")" : "");
      item.appendChild(text);
      if (canHandle) {
        if (msg.status === "ACTIVE") item.appendChild(button("Acknowledge", msg.id, "acknowledge"));
        item.appendChild(button("Resolve", msg.id, "resolve"));
      }
    }
    noAlerts.hidden = alertList.children.length > 0;
  }

  function button(label, id, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", function () { alertAction(id, action); });
    return b;
  }

  let delay = 1000;
  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + "/ws/crowd/");
    socket.onopen = function () { delay = 1000; setConnection("live", "Live"); };
    socket.onmessage = function (event) {
      const msg = JSON.parse(event.data);
      if (msg.type === "crowd_update") applyCrowdUpdate(msg);
      else if (msg.type === "alert_update") applyAlertUpdate(msg);
    };
    socket.onclose = function () {
      setConnection("reconnecting", "Reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  // Re-check freshness every second: a feed that stops must turn into "no data" by itself.
  setInterval(function () {
    document.querySelectorAll(".card").forEach(function (card) {
      renderLevel(card, card.dataset.reportedLevel, card.dataset.timestamp);
    });
  }, 1000);
  document.querySelectorAll(".card").forEach(function (card) {
    const time = card.querySelector(".updated").getAttribute("datetime");
    card.dataset.timestamp = time;
    card.dataset.reportedLevel = card.dataset.level === "NO_DATA" ? "" : card.dataset.level;
  });
  connect();
})();
