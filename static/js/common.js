// Crowd Monitor: what every live page shares. The WebSocket with reconnect and back-off, the connection
// indicator, staleness, the alert store with its banner, sound and acknowledge / resolve dialog, formatting.
// Plain browser JavaScript, no build step; pages add their own script after this one and use window.CM.
(function () {
  "use strict";

  const CM = (window.CM = {});
  const config = JSON.parse(document.getElementById("cm-config").textContent);
  CM.config = config;
  CM.canHandle = Boolean(config.can_handle_alerts);

  // The page's idea of "now" follows the server's clock: a wall screen whose clock drifts must still
  // turn a silent feed into "no data" on time.
  const clockOffset = config.server_time ? config.server_time - Date.now() : 0;
  CM.now = function () {
    return Date.now() + clockOffset;
  };

  // --- Formatting -------------------------------------------------------------------------------------------------

  CM.LEVEL_COLORS = { LOW: "#22c55e", MEDIUM: "#f59e0b", HIGH: "#ef4444", NO_DATA: "#64748b" };
  CM.LEVEL_LABELS = { LOW: "Low", MEDIUM: "Medium", HIGH: "High", NO_DATA: "No data" };

  CM.time = function (value) {
    if (!value) return "–";
    return new Date(value).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  };
  CM.dateTime = function (value) {
    if (!value) return "–";
    const d = new Date(value);
    const sameDay = new Date(CM.now()).toDateString() === d.toDateString();
    return sameDay
      ? CM.time(value)
      : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  };
  CM.ago = function (value) {
    if (!value) return "never";
    const s = Math.max(0, Math.round((CM.now() - Date.parse(value)) / 1000));
    if (s < 5) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
    return CM.dateTime(value);
  };
  CM.percent = function (value) {
    return value == null ? "–" : Number(value).toFixed(1) + "%";
  };
  CM.humanize = function (value) {
    return String(value || "")
      .toLowerCase()
      .replace(/_/g, " ")
      .replace(/^\w/, function (c) {
        return c.toUpperCase();
      });
  };

  // Tiny element builder: el("span", {class: "x", text: "y", dataset: {a: 1}}, child, ...).
  CM.el = function (tag, props) {
    const node = document.createElement(tag);
    const p = props || {};
    Object.keys(p).forEach(function (key) {
      const value = p[key];
      if (value == null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "on") Object.keys(value).forEach((ev) => node.addEventListener(ev, value[ev]));
      else node.setAttribute(key, value === true ? "" : value);
    });
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  // <time> elements with data-relative keep saying "12 s ago" (refreshed by the ticker below).
  CM.relativeTime = function (node, value) {
    node.dataset.relative = value || "";
    node.dateTime = value || "";
    node.title = value ? new Date(value).toLocaleString() : "";
    node.textContent = CM.ago(value);
    return node;
  };

  // --- Staleness --------------------------------------------------------------------------------------------------

  // No reading for 3 expected intervals: the place is not LOW, it is unseen.
  CM.isStale = function (timestamp, intervalSeconds) {
    if (!timestamp) return true;
    return CM.now() - Date.parse(timestamp) > 3 * Number(intervalSeconds || 5) * 1000;
  };
  CM.shownLevel = function (state, intervalSeconds) {
    if (!state || !state.density_level || CM.isStale(state.timestamp, intervalSeconds)) return "NO_DATA";
    return state.density_level;
  };

  // --- A location's live figures (cards on the overview, the panel on the location page) -----------------------------

  const TREND_MS = 60 * 1000; // the trend arrow compares with a minute ago

  // loc: {info (the location's settings), state (the latest crowd_update), counts: [{t, c}] oldest first}.
  CM.trendOf = function (loc) {
    const counts = loc.counts;
    if (counts.length < 2) return null;
    const latest = counts[counts.length - 1];
    let reference = counts[counts.length - 2];
    for (let i = 0; i < counts.length - 1; i++) {
      if (counts[i].t >= latest.t - TREND_MS) {
        reference = counts[i];
        break;
      }
    }
    const delta = latest.c - reference.c;
    const capacity = loc.state.capacity_limit || 1;
    const direction = Math.abs(delta) < Math.max(1, capacity * 0.02) ? "steady" : delta > 0 ? "up" : "down";
    return { direction: direction, delta: delta };
  };

  CM.renderLocationCard = function (card, loc) {
    const state = loc.state;
    const level = CM.shownLevel(state, loc.info.expected_interval_seconds);
    card.dataset.level = level;
    card.dataset.alert = state.alert ? "true" : "false";
    const chip = card.querySelector(".level");
    chip.dataset.level = level;
    chip.textContent = CM.LEVEL_LABELS[level];
    card.querySelector(".current-count").textContent = state.current_count == null ? "–" : state.current_count;
    card.querySelector(".capacity").textContent = state.capacity_limit;
    const occ = state.occupancy_percentage;
    card.querySelector(".occupancy").textContent = CM.percent(occ);
    const gauge = card.querySelector(".gauge");
    gauge.setAttribute("aria-valuenow", occ == null ? 0 : Math.round(occ));
    gauge.setAttribute("aria-valuetext", occ == null ? "no data" : CM.percent(occ) + ", " + CM.LEVEL_LABELS[level]);
    card.querySelector(".gauge-fill").style.width = Math.min(occ || 0, 100) + "%";
    card.querySelector(".gauge-mark").style.left = Math.min(loc.info.alert_threshold, 100) + "%";
    card.querySelector(".badge-alert").hidden = !state.alert;
    // The count, not the rounded percentage: 10,004 people in a place for 10,000 is over capacity at "100.0 %".
    const overCapacity = state.current_count != null && state.current_count > state.capacity_limit;
    card.querySelector(".badge-over").hidden = !overCapacity;
    const updated = card.querySelector(".updated");
    if (updated.dataset.relative !== (state.timestamp || "")) CM.relativeTime(updated, state.timestamp);

    const trendNode = card.querySelector(".trend");
    const trend = level === "NO_DATA" ? null : CM.trendOf(loc);
    const words = { up: "Rising", down: "Falling", steady: "Steady" };
    trendNode.dataset.trend = trend ? trend.direction : "none";
    trendNode.querySelector(".trend-arrow").textContent = trend ? { up: "↑", down: "↓", steady: "→" }[trend.direction] : "";
    trendNode.querySelector(".trend-text").textContent =
      trend && trend.direction !== "steady" ? (trend.delta > 0 ? "+" : "") + trend.delta : "";
    trendNode.title = trend
      ? words[trend.direction] + " (" + (trend.delta >= 0 ? "+" : "") + trend.delta + " people in the last minute)"
      : "";
    if (trend) trendNode.setAttribute("aria-label", trendNode.title);
    else trendNode.removeAttribute("aria-label");
  };

  // --- Ticker: one timer for every per-second refresh ---------------------------------------------------------------

  const tickers = [];
  CM.onTick = function (fn) {
    tickers.push(fn);
  };
  const clock = document.getElementById("clock");
  setInterval(function () {
    if (clock) clock.textContent = new Date(CM.now()).toLocaleTimeString();
    document.querySelectorAll("time[data-relative]").forEach(function (node) {
      node.textContent = CM.ago(node.dataset.relative);
    });
    tickers.forEach(function (fn) {
      try {
        fn();
      } catch (err) {
        console.warn("tick failed", err); // one broken widget must not stop the others
      }
    });
  }, 1000);
  if (clock) clock.textContent = new Date(CM.now()).toLocaleTimeString();

  // --- HTTP -------------------------------------------------------------------------------------------------------

  const csrfInput = document.querySelector("input[name=csrfmiddlewaretoken]");
  CM.csrfToken = csrfInput ? csrfInput.value : "";

  // fetch() JSON from our API. Resolves to {ok, status, body}; rejects only on network failure.
  CM.api = function (url, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRFToken"] = CM.csrfToken;
    return fetch(url, opts).then(function (response) {
      return response
        .json()
        .catch(function () {
          return null;
        })
        .then(function (body) {
          return { ok: response.ok, status: response.status, body: body };
        });
    });
  };

  // A DRF error body as one readable sentence: {"since": ["Enter a valid date/time."]} -> "since: Enter ...".
  CM.errorText = function (body, fallback) {
    if (!body || typeof body !== "object") return fallback;
    if (typeof body.detail === "string") return body.detail;
    const parts = Object.keys(body).map(function (key) {
      const value = Array.isArray(body[key]) ? body[key].join(" ") : String(body[key]);
      return key === "non_field_errors" ? value : key + ": " + value;
    });
    return parts.join(" ") || fallback;
  };

  // --- Connection state -------------------------------------------------------------------------------------------

  const connection = document.getElementById("connection");
  const offlineBar = document.getElementById("offline-bar");
  const offlineDetail = document.getElementById("offline-detail");
  const CONNECTION_TEXT = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    "signed-out": "Signed out",
  };
  CM.connectionState = "connecting";
  function setConnection(state, detail) {
    CM.connectionState = state;
    document.body.dataset.connection = state;
    if (connection.dataset.state !== state) {
      connection.dataset.state = state;
      connection.textContent = CONNECTION_TEXT[state];
    }
    offlineBar.hidden = state === "live" || state === "connecting";
    if (detail) offlineDetail.textContent = detail;
  }

  // --- WebSocket with automatic reconnect -------------------------------------------------------------------------

  const INITIAL_DELAY = 500;
  const MAX_DELAY = 15000;
  const HEARTBEAT_MS = 20000; // we ping this often ...
  const SILENCE_LIMIT_MS = 45000; // ... and treat a socket silent for this long as dead (half-open TCP)
  const CLOSE_UNAUTHENTICATED = 4401;

  // handlers: onMessage(msg), onOpen({reconnect, downSince}).
  CM.connect = function (path, handlers) {
    let socket = null;
    let delay = INITIAL_DELAY;
    let retryTimer = null;
    let everOpen = false;
    let downSince = null; // server-clock ms when we last lost the connection
    let lastMessageAt = 0;

    function open() {
      clearTimeout(retryTimer);
      retryTimer = null;
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + window.location.host + path);
      socket = ws;
      ws.addEventListener("open", function () {
        delay = INITIAL_DELAY;
        lastMessageAt = Date.now();
        const info = { reconnect: everOpen, downSince: downSince };
        everOpen = true;
        downSince = null;
        setConnection("live");
        if (handlers.onOpen) handlers.onOpen(info);
      });
      ws.addEventListener("message", function (event) {
        lastMessageAt = Date.now();
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (msg && msg.type !== "pong") handlers.onMessage(msg);
      });
      let opened = false;
      ws.addEventListener("open", function () {
        opened = true;
      });
      ws.addEventListener("close", function (event) {
        if (socket !== ws) return;
        socket = null;
        if (downSince === null) downSince = CM.now();
        if (event.code === CLOSE_UNAUTHENTICATED) {
          signedOut();
          return;
        }
        setConnection("reconnecting", "Figures below may be out of date. Lost at " + CM.time(downSince) + "; retrying.");
        schedule();
        // A refused handshake looks like a network error to the page. If the server answers HTTP but not as
        // this user, the session has ended: say so rather than retrying for ever.
        if (!opened) {
          CM.api("/api/locations/?page_size=1")
            .then(function (res) {
              if (res.status === 401 || res.status === 403) {
                clearTimeout(retryTimer);
                retryTimer = null;
                signedOut();
              }
            })
            .catch(function () {}); // server unreachable: keep retrying
        }
      });
    }

    function signedOut() {
      setConnection("signed-out");
      offlineDetail.textContent = "Your session has ended. ";
      const next = encodeURIComponent(window.location.pathname + window.location.search);
      offlineDetail.append(CM.el("a", { href: "/login/?next=" + next, text: "Sign in again" }));
    }

    function schedule() {
      if (retryTimer) return;
      const jittered = delay * (0.8 + Math.random() * 0.4);
      retryTimer = setTimeout(open, jittered);
      delay = Math.min(delay * 2, MAX_DELAY);
    }

    // Come back at once when the network or the screen does, instead of waiting out the back-off.
    function retryNow() {
      if (socket || CM.connectionState === "signed-out") return;
      delay = INITIAL_DELAY;
      open();
    }
    window.addEventListener("online", retryNow);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") retryNow();
    });

    setInterval(function () {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - lastMessageAt > SILENCE_LIMIT_MS) {
        socket.close(); // the close handler reconnects
        return;
      }
      socket.send(JSON.stringify({ type: "ping" }));
    }, HEARTBEAT_MS);

    setConnection("connecting");
    open();
  };

  // --- Alerts: one store per page, fed by the page's data, the socket and API re-fetches -----------------------------

  const alerts = new Map();
  const alertListeners = [];
  CM.alerts = alerts;
  CM.onAlert = function (fn) {
    alertListeners.push(fn);
  };

  // Store an alert version; `announce` marks one the operator has not seen yet. Returns whether it was new.
  CM.putAlert = function (alert, options) {
    const opts = options || {};
    const known = alerts.get(alert.id);
    // Never go back: a re-fetched or snapshot copy may be older than the live update already shown.
    if (known && isOlder(alert, known)) return false;
    alerts.set(alert.id, alert);
    const isNew = !known;
    // An escalation (say, from 85 % to over capacity) is news even for an alert already shown or acknowledged.
    const escalated = !isNew && alert.status === "ACTIVE" && severityRank(alert) > severityRank(known);
    if ((isNew || escalated) && opts.announce && alert.status !== "RESOLVED") announce(alert, escalated);
    if (alert.status !== "ACTIVE") unannounce(alert.id);
    alertListeners.forEach(function (fn) {
      fn(alert, isNew);
    });
    return isNew;
  };
  const STATUS_RANK = { ACTIVE: 0, ACKNOWLEDGED: 1, RESOLVED: 2 };
  const SEVERITY_ORDER = ["INFO", "WARNING", "CRITICAL"];
  // Versions are ordered by when the alert last changed; an escalation makes an acknowledged alert ACTIVE again.
  function isOlder(alert, known) {
    const at = Date.parse(alert.updated_at);
    const knownAt = Date.parse(known.updated_at);
    if (at !== knownAt && !Number.isNaN(at) && !Number.isNaN(knownAt)) return at < knownAt;
    return STATUS_RANK[known.status] > STATUS_RANK[alert.status];
  }
  function severityRank(alert) {
    return SEVERITY_ORDER.indexOf(alert.severity);
  }
  (config.open_alerts || []).forEach(function (alert) {
    alerts.set(alert.id, alert);
  });

  // After a reconnect: whatever was raised while we could not hear it. The socket's snapshot covers open
  // alerts; this also catches ones raised and already resolved meanwhile.
  CM.catchUpAlerts = function (downSince) {
    const urls = ["/api/alerts/?status=ACTIVE&page_size=200"];
    if (downSince) {
      const since = new Date(downSince - 60000).toISOString(); // a minute's margin for clock differences
      urls.push("/api/alerts/?page_size=200&since=" + encodeURIComponent(since));
    }
    urls.forEach(function (url) {
      CM.api(url).then(function (res) {
        if (!res.ok || !res.body) return;
        res.body.results
          .slice()
          .reverse()
          .forEach(function (alert) {
            CM.putAlert(alert, { announce: true });
          });
      });
    });
  };

  // Alerts arriving over the socket. The snapshot on connect repeats known open alerts (not new, not announced).
  CM.handleAlertMessage = function (msg) {
    const alert = Object.assign({}, msg);
    delete alert.type;
    CM.putAlert(alert, { announce: true });
  };

  // --- New-alert banner, screen-reader announcement and sound --------------------------------------------------------

  const banner = document.getElementById("alert-banner");
  const bannerList = document.getElementById("alert-banner-list");
  const announcer = document.getElementById("alert-announcer");
  const announced = new Map(); // alert id -> banner line

  function bannerSeverity() {
    let worst = "INFO";
    announced.forEach(function (_line, id) {
      const alert = alerts.get(id);
      if (alert && SEVERITY_ORDER.indexOf(alert.severity) > SEVERITY_ORDER.indexOf(worst)) worst = alert.severity;
    });
    return worst;
  }

  function refreshBanner() {
    banner.hidden = announced.size === 0;
    banner.dataset.severity = bannerSeverity();
  }

  function announce(alert, escalated) {
    const severity = alert.severity.toLowerCase();
    const what = escalated ? "Alert escalated to " + severity : "New " + severity + " alert";
    const text = what + " at " + alert.location_name + ": " + alert.message;
    const line = CM.el(
      "li",
      { class: "flex flex-wrap items-baseline gap-x-2 text-sm sm:text-base", dataset: { alertId: alert.id } },
      CM.el("span", { class: "sev", dataset: { severity: alert.severity }, text: alert.severity }),
      CM.el("strong", {
        text: (escalated ? "Escalated: " : "") + CM.humanize(alert.kind) + " at " + alert.location_name,
      }),
      CM.el("span", { class: "min-w-0", text: alert.message }),
      CM.el("time", { class: "text-xs opacity-90", text: CM.time(alert.triggered_at) }),
      CM.el("a", { href: "/locations/" + alert.location_id + "/", text: "View location" })
    );
    const previous = announced.get(alert.id);
    if (previous) previous.remove();
    bannerList.prepend(line);
    announced.set(alert.id, line);
    while (bannerList.children.length > 4) {
      const last = bannerList.lastElementChild;
      announced.delete(Number(last.dataset.alertId));
      last.remove();
    }
    refreshBanner();
    announcer.textContent = text;
    CM.sound.play(alert.severity);
  }

  function unannounce(id) {
    const line = announced.get(id);
    if (!line) return;
    line.remove();
    announced.delete(id);
    refreshBanner();
  }

  document.getElementById("alert-banner-dismiss").addEventListener("click", function () {
    announced.clear();
    bannerList.textContent = "";
    refreshBanner();
  });

  // Sound: generated with WebAudio (no audio files), off by default, the choice kept per browser.
  CM.sound = (function () {
    const KEY = "crowd-monitor.sound";
    const toggle = document.getElementById("sound-toggle");
    let enabled = false;
    let context = null;
    try {
      enabled = window.localStorage.getItem(KEY) === "on";
    } catch (err) {
      enabled = false;
    }

    function audio() {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      if (!context) context = new Ctx();
      if (context.state === "suspended") context.resume();
      return context;
    }

    function render() {
      toggle.setAttribute("aria-pressed", enabled ? "true" : "false");
      toggle.textContent = enabled ? "Sound on" : "Sound off";
    }

    function beep(ctx, at, frequency, length) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.3, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at);
      osc.stop(at + length + 0.05);
    }

    function play(severity) {
      if (!enabled) return;
      const ctx = audio();
      if (!ctx) return;
      const start = ctx.currentTime + 0.05;
      const tones = severity === "CRITICAL" ? [988, 740, 988, 740] : [880, 660];
      tones.forEach(function (frequency, i) {
        beep(ctx, start + i * 0.22, frequency, 0.18);
      });
    }

    toggle.addEventListener("click", function () {
      enabled = !enabled;
      try {
        window.localStorage.setItem(KEY, enabled ? "on" : "off");
      } catch (err) {
        /* private mode: the choice lasts for this page only */
      }
      render();
      if (enabled) play("INFO"); // a user gesture: unlocks audio, and lets the operator hear the level
    });
    // Browsers keep audio locked until the page is interacted with; any click or key unlocks it.
    ["click", "keydown"].forEach(function (type) {
      document.addEventListener(
        type,
        function () {
          if (enabled) audio();
        },
        { once: true }
      );
    });
    render();
    return { play: play };
  })();

  // --- Rendering one alert ---------------------------------------------------------------------------------------------

  // options.showLocation: name the location (feeds covering several); options.compact: fewer details.
  CM.renderAlert = function (alert, options) {
    const opts = options || {};
    const item = CM.el("li", {
      class: "alert-item",
      id: (opts.idPrefix || "alert-") + alert.id,
      dataset: { alertId: alert.id, status: alert.status, severity: alert.severity, kind: alert.kind },
    });
    const head = CM.el(
      "div",
      { class: "flex flex-wrap items-center gap-x-2 gap-y-1" },
      CM.el("span", { class: "sev", dataset: { severity: alert.severity }, text: alert.severity }),
      CM.el("strong", { class: "text-sm", text: CM.humanize(alert.kind) }),
      opts.showLocation === false
        ? null
        : CM.el("a", { class: "text-sm font-semibold", href: "/locations/" + alert.location_id + "/", text: alert.location_name }),
      CM.el("span", { class: "status ml-auto", dataset: { status: alert.status }, text: alert.status.toLowerCase() })
    );
    item.append(head);
    item.append(CM.el("p", { class: "alert-message mt-1 text-sm text-slate-200", text: alert.message }));

    const facts = CM.el("dl", { class: "mt-1 grid grid-cols-[auto_1fr] gap-x-2 text-xs text-slate-300" });
    function fact(term, value) {
      facts.append(CM.el("dt", { class: "text-slate-400", text: term }), CM.el("dd", { class: "min-w-0" }, value));
    }
    const triggered = CM.el("span", {},
      CM.relativeTime(CM.el("time"), alert.triggered_at),
      " (" + CM.dateTime(alert.triggered_at) + ")"
    );
    fact("Raised", triggered);
    if (!opts.compact && alert.count != null) {
      fact("Reading", alert.count + " people" + (alert.occupancy_percentage != null ? ", " + CM.percent(alert.occupancy_percentage) : ""));
    }
    if (alert.acknowledged_at) {
      fact("Acknowledged", CM.dateTime(alert.acknowledged_at) + " by " + (alert.acknowledged_by || "the system"));
    }
    if (alert.resolved_at) {
      fact("Resolved", CM.dateTime(alert.resolved_at) + " by " + (alert.resolved_by || "the system"));
    }
    if (alert.note) fact("Note", CM.el("span", { class: "alert-note whitespace-pre-line", text: alert.note }));
    item.append(facts);

    if (CM.canHandle && alert.status !== "RESOLVED") {
      const actions = CM.el("div", { class: "mt-2 flex flex-wrap gap-2" });
      if (alert.status === "ACTIVE") {
        actions.append(
          CM.el("button", {
            type: "button",
            class: "btn btn-sm",
            dataset: { action: "acknowledge" },
            text: "Acknowledge",
            "aria-label": "Acknowledge " + CM.humanize(alert.kind) + " alert at " + alert.location_name,
            on: { click: function () { CM.openAlertDialog(alert.id, "acknowledge"); } },
          })
        );
      }
      actions.append(
        CM.el("button", {
          type: "button",
          class: "btn btn-sm btn-primary",
          dataset: { action: "resolve" },
          text: "Resolve",
          "aria-label": "Resolve " + CM.humanize(alert.kind) + " alert at " + alert.location_name,
          on: { click: function () { CM.openAlertDialog(alert.id, "resolve"); } },
        })
      );
      item.append(actions);
    }
    return item;
  };

  // Keep a list of rendered alerts in step with the store: replace in place, insert new ones in time order.
  CM.placeAlert = function (list, node) {
    const existing = document.getElementById(node.id);
    if (existing && existing.parentNode === list) {
      existing.replaceWith(node);
      return;
    }
    if (existing) existing.remove();
    const id = Number(node.dataset.alertId);
    const time = Date.parse(CM.alerts.get(id) ? CM.alerts.get(id).triggered_at : 0);
    const after = Array.prototype.find.call(list.children, function (child) {
      const other = CM.alerts.get(Number(child.dataset.alertId));
      return other && Date.parse(other.triggered_at) < time;
    });
    list.insertBefore(node, after || null);
  };

  // --- Acknowledge / resolve dialog -----------------------------------------------------------------------------------

  const dialog = document.getElementById("alert-dialog");
  const dialogForm = document.getElementById("alert-dialog-form");
  const dialogTitle = document.getElementById("alert-dialog-title");
  const dialogSummary = document.getElementById("alert-dialog-summary");
  const dialogNote = document.getElementById("alert-dialog-note");
  const dialogError = document.getElementById("alert-dialog-error");
  const dialogConfirm = document.getElementById("alert-dialog-confirm");
  const dialogCancel = document.getElementById("alert-dialog-cancel");
  let pending = null; // {id, action}

  CM.openAlertDialog = function (id, action) {
    const alert = alerts.get(id);
    if (!alert) return;
    pending = { id: id, action: action };
    const verb = action === "resolve" ? "Resolve" : "Acknowledge";
    dialogTitle.textContent = verb + " alert";
    dialogSummary.textContent =
      alert.severity + " " + CM.humanize(alert.kind) + " at " + alert.location_name + ": " + alert.message;
    dialogNote.value = "";
    dialogError.hidden = true;
    dialogConfirm.hidden = false;
    dialogConfirm.disabled = false;
    dialogConfirm.textContent = verb;
    dialogCancel.textContent = "Cancel";
    dialog.showModal();
    dialogNote.focus();
  };

  function showDialogError(text) {
    dialogError.textContent = text;
    dialogError.hidden = false;
  }

  dialogCancel.addEventListener("click", function () {
    dialog.close();
  });
  dialogNote.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) dialogForm.requestSubmit();
  });
  dialogForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!pending) return;
    const target = pending;
    dialogConfirm.disabled = true;
    CM.api("/api/alerts/" + target.id + "/" + target.action + "/", { json: { note: dialogNote.value.trim() } })
      .then(function (res) {
        dialogConfirm.disabled = false;
        if (res.ok) {
          CM.putAlert(res.body);
          pending = null;
          dialog.close();
          return;
        }
        if (res.status === 409) {
          // Someone (or the system) changed it first: say so, and show what it is now.
          showDialogError(
            "Not changed: someone else changed this alert first. " + CM.errorText(res.body, "") +
              " The list now shows its current state."
          );
          dialogConfirm.hidden = true;
          dialogCancel.textContent = "Close";
          CM.api("/api/alerts/" + target.id + "/").then(function (fresh) {
            if (fresh.ok) CM.putAlert(fresh.body);
          });
        } else if (res.status === 403) {
          showDialogError("You are not allowed to change alerts.");
        } else {
          showDialogError(CM.errorText(res.body, "The server refused the change (HTTP " + res.status + ")."));
        }
      })
      .catch(function () {
        dialogConfirm.disabled = false;
        showDialogError("Could not reach the server. Check the connection and try again.");
      });
  });
  dialog.addEventListener("close", function () {
    pending = null;
  });

  // --- Charts ---------------------------------------------------------------------------------------------------------

  // Series colours for locations: distinct from the density colours, readable on the dark panel.
  CM.SERIES_COLORS = ["#38bdf8", "#e879f9", "#a3e635", "#fb923c", "#2dd4bf", "#f472b6", "#facc15", "#818cf8", "#f87171", "#4ade80"];

  if (window.Chart) {
    Chart.defaults.color = "#cbd5e1";
    Chart.defaults.borderColor = "rgba(148, 163, 184, 0.18)";
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false; // streaming data: no tweening, no work for the wall screen
  }

  // Where a time axis puts its ticks: on this browser's wall clock. The linear axis's own ticks fall on round numbers
  // of epoch milliseconds: the week chart's "Mon 30" stood at Monday 06:23 (the hours before it looked like
  // Sunday's) and skipped days; the day chart's at 02:50, 08:23. Candidates every 5 minutes (every zone's offset is
  // a whole number of them), kept where the wall clock shows a whole step (10 min, 4 h, ...) or, for days, where a
  // new day begins: a DST change day keeps its ticks on the hour, both 02:00s of the night the clocks go back.
  const TICK_CANDIDATE_MS = 5 * 60000;
  const TICK_STEPS_MIN = [5, 10, 15, 30, 60, 120, 180, 240, 360, 720];
  CM.localTicks = function (min, max, format) {
    const span = (max - min) / 60000;
    const step = TICK_STEPS_MIN.find((minutes) => span / minutes <= 6) || 1440;
    const ticks = [];
    for (let t = Math.ceil(min / TICK_CANDIDATE_MS) * TICK_CANDIDATE_MS; t <= max; t += TICK_CANDIDATE_MS) {
      const d = new Date(t);
      if (format === "day") {
        if (new Date(t - TICK_CANDIDATE_MS).toDateString() !== d.toDateString()) ticks.push({ value: t });
      } else if ((d.getHours() * 60 + d.getMinutes()) % step === 0) {
        ticks.push({ value: t });
      }
    }
    return ticks;
  };

  // A linear time axis in epoch ms (no date adapter needed).
  CM.timeAxis = function (format) {
    return {
      type: "linear",
      afterBuildTicks: function (scale) {
        if (isFinite(scale.min) && isFinite(scale.max) && scale.max > scale.min) {
          scale.ticks = CM.localTicks(scale.min, scale.max, format);
        }
      },
      ticks: {
        maxTicksLimit: 7,
        maxRotation: 0,
        callback: function (value) {
          const d = new Date(value);
          if (format === "day") return d.toLocaleDateString([], { weekday: "short", day: "numeric" });
          return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        },
      },
      grid: { color: "rgba(148, 163, 184, 0.12)" },
    };
  };

  // A dot where each line ends: its newest value, even with a single reading. Drawn here once per line rather than
  // with a scriptable pointRadius, which Chart.js resolves afresh for every point of every line on every redraw:
  // with 30 minutes of a surge on the overview (40 locations, 54,000 readings) one redraw took 0.6-0.8 s, and the
  // page, redrawn every second and on every reading, never caught up.
  // A redraw of a live chart, at most once per `everyMs` (on an animation frame). In a surge readings arrive many times
  // a second; redrawing half an hour of 40 locations' lines for each kept the overview busy most of the time, while a
  // 30-minute chart moves by a pixel every few seconds. Returns the function that asks for a redraw.
  CM.throttledRedraw = function (draw, everyMs) {
    let queued = false;
    let drawnAt = -Infinity;
    return function () {
      if (queued) return;
      queued = true;
      setTimeout(function () {
        requestAnimationFrame(function () {
          queued = false;
          drawnAt = performance.now();
          draw();
        });
      }, Math.max(0, drawnAt + everyMs - performance.now()));
    };
  };

  CM.newestPointDots = {
    id: "newestPointDots",
    afterDatasetsDraw: function (chart) {
      const area = chart.chartArea;
      if (!area) return;
      const ctx = chart.ctx;
      chart.data.datasets.forEach(function (dataset, index) {
        if (!chart.isDatasetVisible(index)) return;
        const points = chart.getDatasetMeta(index).data;
        const newest = points[points.length - 1];
        if (!newest || newest.skip || newest.x < area.left || newest.x > area.right) return;
        if (newest.y < area.top || newest.y > area.bottom) return;
        ctx.save();
        ctx.beginPath();
        ctx.arc(newest.x, newest.y, 4, 0, 2 * Math.PI);
        ctx.fillStyle = dataset.pointBackgroundColor || dataset.backgroundColor;
        ctx.fill();
        ctx.lineWidth = 1;
        ctx.strokeStyle = dataset.borderColor;
        ctx.stroke();
        ctx.restore();
      });
    },
  };

  // Dashed horizontal lines at given y values (alert threshold, capacity), labelled at the right.
  CM.thresholdLines = function (getLines) {
    return {
      id: "thresholdLines",
      afterDatasetsDraw: function (chart) {
        const y = chart.scales.y;
        const area = chart.chartArea;
        if (!y || !area) return;
        const ctx = chart.ctx;
        getLines().forEach(function (line) {
          const py = y.getPixelForValue(line.value);
          if (py < area.top || py > area.bottom) return;
          ctx.save();
          ctx.strokeStyle = line.color;
          ctx.setLineDash([6, 4]);
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.moveTo(area.left, py);
          ctx.lineTo(area.right, py);
          ctx.stroke();
          ctx.fillStyle = line.color;
          ctx.font = "11px " + Chart.defaults.font.family;
          ctx.textAlign = "right";
          ctx.fillText(line.label, area.right - 4, py - 4);
          ctx.restore();
        });
      },
    };
  };
})();
