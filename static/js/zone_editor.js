// Crowd Monitor admin: draw a camera's counting zone on its latest frame (locations/forms.py ZoneEditorWidget).
// The zone's textarea stays the single source of truth: every click writes it as JSON in 0-1 frame coordinates
// (x right, y down, 4 decimals), and typing in it redraws the polygon. The server validates it on save.
// No inline script or style: configuration comes from data- attributes, looks from css/zone_editor.css.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const MARKER_PX = 5; // vertex radius on screen, whatever the frame's resolution

  function round4(value) {
    return Math.round(Math.min(1, Math.max(0, value)) * 10000) / 10000;
  }

  // The points in the textarea, or null when it holds something the editor cannot draw (the server says why
  // on save). An empty field or [] is the whole frame: no points.
  function readPoints(text) {
    if (!text.trim()) return [];
    let value;
    try {
      value = JSON.parse(text);
    } catch (_) {
      return null;
    }
    if (value === null) return []; // JSON null: the whole frame, as on the server
    if (!Array.isArray(value)) return null;
    const isPoint = (p) =>
      Array.isArray(p) && p.length === 2 && p.every((v) => typeof v === "number" && v >= 0 && v <= 1);
    return value.every(isPoint) ? value.map((p) => [p[0], p[1]]) : null;
  }

  function setUp(root) {
    const input = document.getElementById(root.dataset.inputId);
    const note = root.parentElement.querySelector("[data-zone-editor-note]");
    const image = root.querySelector(".zone-editor__frame");
    const overlay = root.querySelector(".zone-editor__overlay");
    const status = root.querySelector(".zone-editor__status");
    let points = readPoints(input.value) || [];

    function describe() {
      if (readPoints(input.value) === null) {
        return "The JSON below is not a polygon the editor can draw: fix it, or click on the frame to start anew.";
      }
      if (points.length === 0) return "No zone: everyone in the frame counts.";
      if (points.length < 3) return points.length + " of at least 3 points: keep clicking.";
      return points.length + " points.";
    }

    function draw() {
      const width = image.naturalWidth;
      const height = image.naturalHeight;
      overlay.replaceChildren();
      if (points.length) {
        const shape = document.createElementNS(SVG, points.length < 3 ? "polyline" : "polygon");
        shape.setAttribute("points", points.map((p) => p[0] * width + "," + p[1] * height).join(" "));
        shape.setAttribute("class", "zone-editor__shape");
        overlay.appendChild(shape);
      }
      // The overlay is stretched over the image, so one screen pixel is width / shown width frame pixels.
      const radius = (MARKER_PX * width) / (image.getBoundingClientRect().width || width);
      for (const [x, y] of points) {
        const marker = document.createElementNS(SVG, "circle");
        marker.setAttribute("cx", x * width);
        marker.setAttribute("cy", y * height);
        marker.setAttribute("r", radius);
        marker.setAttribute("class", "zone-editor__vertex");
        overlay.appendChild(marker);
      }
      status.textContent = describe();
    }

    function store() {
      input.value = JSON.stringify(points);
      draw();
    }

    overlay.addEventListener("click", (event) => {
      const box = overlay.getBoundingClientRect();
      points.push([round4((event.clientX - box.left) / box.width), round4((event.clientY - box.top) / box.height)]);
      store();
    });
    root.querySelector("[data-zone-undo]").addEventListener("click", () => {
      points.pop();
      store();
    });
    root.querySelector("[data-zone-clear]").addEventListener("click", () => {
      points = [];
      store();
    });
    input.addEventListener("input", () => {
      points = readPoints(input.value) || [];
      draw();
    });
    window.addEventListener("resize", draw);

    image.addEventListener("load", () => {
      overlay.setAttribute("viewBox", "0 0 " + image.naturalWidth + " " + image.naturalHeight);
      note.hidden = true;
      root.hidden = false;
      draw();
    });
    image.addEventListener("error", () => {
      note.textContent =
        "The camera's latest frame could not be loaded, so the zone cannot be drawn on it: type it as JSON below, " +
        "e.g. [[0.1, 0.2], [0.9, 0.2], [0.5, 0.9]], or leave it empty for the whole frame.";
    });
    image.src = root.dataset.frameUrl;
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-zone-editor]").forEach(setUp);
  });
})();
