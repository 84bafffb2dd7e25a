// Head view: queries (left) -> keys (right), one colour per head, opacity = weight.
// Plain JS, no libraries, no network. Reads its data from <script id="hv-data">; every
// user-supplied string goes to textContent or canvas fillText, never to innerHTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("hv-data").textContent);
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a"];
  var ROW = 18, PAD = 12, COL_W = 200, GAP = 260, MAX_LABEL = 28, BINS = 16;
  var T = data.queries.length, S = data.keys.length, H = data.nHeads;
  var canvas = document.getElementById("canvas"), ctx = canvas.getContext("2d");
  var scroller = document.getElementById("scroller"), spacer = document.getElementById("spacer");
  // Windowing: the canvas is the visible window only (sticky in a scroller as tall as all the
  // tokens) and redraws on scroll, so 512 tokens rasterise ~one screen of lines, not 9000 px.
  var width = 2 * COL_W + GAP, full = 2 * PAD + ROW * Math.max(T, S), view = full;
  var dpr = Math.max(1, window.devicePixelRatio || 1);
  var decoded = {}, queued = false;
  var state = { layer: data.layer, heads: {}, hover: null, pinned: null };

  function bytes(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // A layer's lines: row r = head * T + query; its lines are starts[r] .. starts[r + 1].
  function layerData(l) {
    if (decoded[l]) return decoded[l];
    var d = data.layers[l], counts = bytes(d.counts), kb = bytes(d.keys), levels = bytes(d.levels);
    var keys = new Uint16Array(kb.length / 2);
    for (var i = 0; i < keys.length; i++) keys[i] = kb[2 * i] | (kb[2 * i + 1] << 8); // little-endian
    var starts = new Uint32Array(counts.length + 1);
    for (var r = 0; r < counts.length; r++) starts[r + 1] = starts[r] + counts[r];
    decoded[l] = { keys: keys, levels: levels, starts: starts };
    return decoded[l];
  }

  function label(text) {
    return text.length > MAX_LABEL ? text.slice(0, MAX_LABEL - 1) + "\u2026" : text;
  }

  function rowY(i) { return PAD + ROW * i + ROW / 2; }

  function focus() { return state.pinned || state.hover; }

  function fit() {
    var bar = document.getElementById("bar").offsetHeight;
    view = Math.max(120, Math.min(full, window.innerHeight - bar - 8));
    scroller.style.height = view + "px";
    spacer.style.height = (full - view) + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(view * dpr);
    canvas.style.width = width + "px";
    canvas.style.height = view + "px";
  }

  // Draw rows [top, top + h) of the view into context c (the window, or a full-size PNG).
  function render(c, top, h) {
    c.fillStyle = "#ffffff";
    c.fillRect(0, top, width, h);
    var f = focus(), d = layerData(state.layer), x0 = COL_W + 6, x1 = COL_W + GAP - 6, drawn = 0, bottom = top + h;
    c.lineWidth = 1.2;
    // One path per (head, opacity bin): ~200 strokes a frame, not one per line; lines that miss the window are skipped.
    for (var hd = 0; hd < H; hd++) {
      if (!state.heads[hd]) continue;
      var paths = [];
      for (var b = 0; b < BINS; b++) paths.push(new Path2D());
      for (var i = 0; i < T; i++) {
        if (f && f.side === "q" && f.index !== i) continue;
        var r = hd * T + i, y0 = rowY(i);
        for (var p = d.starts[r]; p < d.starts[r + 1]; p++) {
          var j = d.keys[p], y1 = rowY(j);
          if (f && f.side === "k" && f.index !== j) continue;
          if ((y0 < top && y1 < top) || (y0 > bottom && y1 > bottom)) continue;
          var path = paths[Math.min(BINS - 1, (d.levels[p] * BINS) >> 8)];
          path.moveTo(x0, y0);
          path.lineTo(x1, y1);
          drawn++;
        }
      }
      c.strokeStyle = COLORS[hd % COLORS.length];
      for (b = 0; b < BINS; b++) {
        c.globalAlpha = (b + 0.5) / BINS;
        c.stroke(paths[b]);
      }
    }
    c.globalAlpha = 1;
    c.font = "12px system-ui, sans-serif";
    c.textBaseline = "middle";
    column(c, data.queries, COL_W, "right", f && f.side === "q" ? f.index : -1, top, bottom);
    column(c, data.keys, COL_W + GAP, "left", f && f.side === "k" ? f.index : -1, top, bottom);
    return drawn;
  }

  function draw() {
    queued = false;
    var top = scroller.scrollTop;
    ctx.setTransform(dpr, 0, 0, dpr, 0, -top * dpr);
    canvas.dataset.lines = String(render(ctx, top, view));
    window.headViewReady = true;
  }

  function redraw() {
    if (!queued) { queued = true; window.requestAnimationFrame(draw); }
  }

  // The whole view (every token), for the PNG: drawn once into a canvas of its own.
  window.headViewPNG = function () {
    var big = document.createElement("canvas"), scale = Math.max(1, Math.min(2, 6e6 / (width * full)));  // PNG encoding is the slow part
    big.width = Math.round(width * scale);
    big.height = Math.round(full * scale);
    var c = big.getContext("2d");
    c.setTransform(scale, 0, 0, scale, 0, 0);
    render(c, 0, full);
    return big.toDataURL("image/png");
  };

  function column(c, tokens, x, align, active, top, bottom) {
    c.textAlign = align;
    var first = Math.max(0, Math.floor((top - PAD) / ROW)), last = Math.min(tokens.length, Math.ceil((bottom - PAD) / ROW));
    for (var i = first; i < last; i++) {
      if (i === active) {
        c.fillStyle = "#fde9a9";
        c.fillRect(align === "right" ? x - COL_W + 4 : x, PAD + ROW * i, COL_W - 4, ROW);
      }
      c.fillStyle = i === active ? "#000000" : "#333333";
      c.fillText(label(tokens[i]), x, rowY(i));
    }
  }

  function at(event) {
    var box = canvas.getBoundingClientRect();
    var x = event.clientX - box.left, y = event.clientY - box.top + scroller.scrollTop;
    var i = Math.floor((y - PAD) / ROW), side = x < width / 2 ? "q" : "k";
    var n = side === "q" ? T : S;
    return i >= 0 && i < n ? { side: side, index: i } : null;
  }

  function same(a, b) {
    return a === b || (a && b && a.side === b.side && a.index === b.index);
  }

  canvas.addEventListener("mousemove", function (e) {
    var hit = at(e);
    if (!same(hit, state.hover)) { state.hover = hit; if (!state.pinned) redraw(); }
  });
  canvas.addEventListener("mouseleave", function () {
    state.hover = null;
    if (!state.pinned) redraw();
  });
  canvas.addEventListener("click", function (e) {
    var hit = at(e);
    state.pinned = same(hit, state.pinned) ? null : hit;
    redraw();
  });

  // Controls: layer dropdown, one checkbox per head in its colour, all / none, PNG download.
  document.getElementById("title").textContent = data.title;
  document.getElementById("caption").textContent = data.caption;
  var select = document.getElementById("layer");
  for (var l = 0; l < data.layers.length; l++) {
    var opt = document.createElement("option");
    opt.value = String(l);
    opt.textContent = String(l);
    select.appendChild(opt);
  }
  select.value = String(state.layer);
  select.addEventListener("change", function () { state.layer = Number(select.value); draw(); });

  var boxes = [], heads = document.getElementById("heads");
  data.heads.forEach(function (h) { state.heads[h] = true; });
  for (var h = 0; h < H; h++) {
    var lab = document.createElement("label"), box = document.createElement("input"), sw = document.createElement("span");
    box.type = "checkbox";
    box.checked = !!state.heads[h];
    box.dataset.head = String(h);
    box.addEventListener("change", function (e) {
      state.heads[Number(e.target.dataset.head)] = e.target.checked;
      draw();
    });
    sw.className = "sw";
    sw.style.background = COLORS[h % COLORS.length];
    lab.appendChild(box);
    lab.appendChild(sw);
    lab.appendChild(document.createTextNode("H" + h));
    heads.appendChild(lab);
    boxes.push(box);
  }
  function setAll(on) {
    boxes.forEach(function (b, i) { b.checked = on; state.heads[i] = on; });
    draw();
  }
  document.getElementById("all").addEventListener("click", function () { setAll(true); });
  document.getElementById("none").addEventListener("click", function () { setAll(false); });
  document.getElementById("png").addEventListener("click", function () {
    var a = document.createElement("a");
    a.href = window.headViewPNG();
    a.download = "head_view_layer" + state.layer + ".png";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });

  scroller.addEventListener("scroll", redraw);
  window.addEventListener("resize", function () { fit(); draw(); });
  fit();
  draw();
})();
