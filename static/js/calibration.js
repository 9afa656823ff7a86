// Crowd Monitor admin: label calibration frames by clicking heads (locations/calibration_admin.py).
// Each frame is an <svg> with the JPEG as its background; a click adds a mark at that point, a click on a mark
// removes it, and the frame's form gets the marks (hidden "heads", 0-1 coordinates) and their number ("count").
// A typed count is kept until the marks change: a dense crowd may be counted without marking every head.
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";

  function clamp01(value) {
    return Math.min(1, Math.max(0, value));
  }

  function setUp(svg) {
    const form = document.getElementById(svg.dataset.form);
    const width = Number(svg.dataset.width);
    const height = Number(svg.dataset.height);
    // Marks scale with the frame so they stay visible on a large frame and don't hide a small one.
    const radius = Math.max(width, height) * 0.012;
    const layer = svg.querySelector("g.heads");
    let heads = JSON.parse(svg.dataset.heads || "[]");

    function draw() {
      layer.replaceChildren(
        ...heads.map(([x, y], index) => {
          const mark = document.createElementNS(SVG_NS, "circle");
          mark.setAttribute("cx", String(x * width));
          mark.setAttribute("cy", String(y * height));
          mark.setAttribute("r", String(radius));
          mark.setAttribute("stroke-width", String(radius / 3));
          mark.classList.add("head");
          mark.dataset.index = String(index);
          return mark;
        }),
      );
    }

    function changed() {
      draw();
      form.elements.heads.value = JSON.stringify(heads);
      form.elements.count.value = String(heads.length);
    }

    svg.addEventListener("click", (event) => {
      const mark = event.target.closest("circle.head");
      if (mark) {
        heads.splice(Number(mark.dataset.index), 1);
      } else {
        // Screen -> frame pixels, whatever size the image is shown at.
        const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
        const x = Math.round(clamp01(point.x / width) * 10000) / 10000;
        const y = Math.round(clamp01(point.y / height) * 10000) / 10000;
        heads.push([x, y]);
      }
      changed();
    });

    form.querySelector("[data-action=clear-heads]").addEventListener("click", () => {
      heads = [];
      changed();
    });

    drawZone(svg, width, height);
    draw();
  }

  // The camera's counting zone, outlined: only people inside it are counted, so only they are labelled.
  function drawZone(svg, width, height) {
    const zone = JSON.parse(svg.dataset.zone || "[]");
    if (zone.length < 3) {
      return;
    }
    const outline = document.createElementNS(SVG_NS, "polygon");
    outline.setAttribute("points", zone.map(([x, y]) => `${x * width},${y * height}`).join(" "));
    outline.setAttribute("stroke-width", String(Math.max(width, height) * 0.004));
    outline.classList.add("zone-outline");
    svg.querySelector("g.zone").append(outline);
  }

  // A fit takes up to a few minutes with nothing to see meanwhile: a second click would send a second request, which
  // the server refuses (one fit per camera) and whose answer replaces the page, so the first fit's result is never
  // shown. One click sends one request.
  function guardFit(form) {
    const button = form.querySelector("[type=submit]");
    const label = button.value;
    const disabled = button.disabled; // too few labelled frames: it stays so
    form.addEventListener("submit", () => {
      button.disabled = true;
      button.value = "Fitting… (up to " + form.dataset.timeout + " s)";
    });
    // Back to this page through the browser's history, the page comes back as it was left, button disabled: undo that.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) {
        button.disabled = disabled;
        button.value = label;
      }
    });
  }

  document.querySelectorAll("svg.calibration-canvas").forEach(setUp);
  document.querySelectorAll("form[data-fit]").forEach(guardFit);
})();
