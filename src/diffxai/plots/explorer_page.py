"""The explorer page's HTML, CSS and JavaScript (written into ``explorer/`` by
:func:`diffxai.plots.explorer.write_page`).

Kept as Python strings, not package data files, so that they are part of the rule's code trigger
(the AST hash of the script's import closure): editing the page's script reruns the page.

The script is plain JavaScript with no dependencies. It reads ``data/index.js`` (the manifest)
and loads ``data/class-NNN.js`` / ``data/concept-NNN.js`` with ``<script>`` tags when a class or
concept is shown (``fetch`` is refused on ``file://``). Every panel carries ``data-panel``,
``data-cursor-step`` (the slider's step), ``data-shown-step`` / ``data-shown-timestep`` (the step
whose image or map it shows) and ``data-state``; every readout ``data-readout``, ``data-step`` and
``data-value`` (the raw number), so a test can check them against the tables.
"""

INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="explorer.css">
</head>
<body>
<header id="top">
  <h1 id="title">{{title}}</h1>
  <p id="subtitle"></p>
</header>
<div id="controls">
  <label class="ctl" id="class-ctl">class / prompt <select id="class"></select></label>
  <label class="ctl" id="image-ctl">image <select id="image"></select></label>
  <label class="ctl" id="draw-ctl">noise draw <select id="draw"></select></label>
  <div class="ctl" id="step-ctl">
    <button id="prev" type="button" title="previous step (←)">◀</button>
    <input id="step" type="range" min="0" max="0" value="0" step="1" aria-label="step">
    <button id="next" type="button" title="next step (→)">▶</button>
    <button id="play" type="button" title="play / pause (space)">play</button>
    <span id="step-label"></span>
  </div>
  <label class="ctl">map opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.5"></label>
  <div class="ctl" id="colourbar-box"><span>map value</span>
    <div id="colourbar-ctl"><canvas id="colourbar" width="180" height="12"></canvas>
    <div class="cb-ticks"><span>0 none</span><span>0.5</span><span>1 = map's max</span></div></div></div>
</div>
<div id="error" hidden></div>
<main id="main">
  <div id="panels"></div>
  <aside id="side">
    <div id="chart"></div>
    <div id="readouts"></div>
  </aside>
</main>
<section id="schedules" hidden></section>
<section id="components" hidden></section>
<section id="help">
  <h2>How to read this page</h2>
  <ul>
    <li><b>Steps</b> run as generation does: step 0 is pure noise, the last step the cleanest image;
      <i>t</i> is the scheduler's timestep. ← / → (or the slider) move every panel to the same step;
      Home / End jump to the ends.</li>
    <li><b>Maps</b> are drawn over the image they explain on one colour scale (the bar above):
      0 = nothing, 1 = the map's strongest. Attribution maps show their positive part divided by the
      value at which the sorted positive mass reaches 95% (the top 5% clipped, as Captum's
      blended heat map); DF-RISE and DF-CAM maps are min–max normalised. Each map is scaled on its
      own: compare where maps point, not their magnitudes.</li>
    <li>A stage that computed maps at fewer steps shows the map at the step with the nearest
      timestep and says so under the panel (<span class="near">nearest</span>).</li>
    <li><b>Charts</b>: click a chart to jump to that step (or timestep).</li>
    <li><b>Faithfulness</b>: deletion AUC (lower = more faithful) and insertion AUC (higher = more
      faithful) of the map shown, with the random map's value in brackets.</li>
    <li><b>Band</b>: the class probability's mean over every image × noise draw ± 1.96 standard
      errors (clipped to [0, 1]); the shaded span is the critical interval, the window of steepest
      rise.</li>
  </ul>
</section>
<noscript>This page needs JavaScript.</noscript>
<script src="explorer.js" charset="utf-8"></script>
<script src="data/index.js" charset="utf-8"></script>
</body>
</html>
"""

CSS = """
:root { --fg: #1d2330; --muted: #5d6576; --line: #d8dce4; --bg: #f6f7f9; --card: #fff;
  --xt: #1f77b4; --x0: #d6541a; --accent: #3b5bdb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: 10px 18px 4px; }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 8px; }
h3 { font-size: 13px; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
#subtitle { margin: 2px 0 0; color: var(--muted); }
#controls { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: 8px 18px;
  align-items: center; padding: 8px 18px; background: #eef1f6; border-bottom: 1px solid var(--line); }
.ctl { display: flex; align-items: center; gap: 6px; color: var(--muted); }
.ctl select { font: inherit; padding: 2px 4px; max-width: 320px; }
#step { width: 260px; }
#step-label { font-variant-numeric: tabular-nums; color: var(--fg); font-weight: 600; min-width: 150px; }
button { font: inherit; padding: 1px 8px; border: 1px solid #b9c0cc; background: #fff; border-radius: 4px;
  cursor: pointer; }
#colourbar { border: 1px solid #999; display: block; }
#colourbar-ctl { display: flex; flex-direction: column; }
.cb-ticks { display: flex; justify-content: space-between; font-size: 10px; width: 180px; }
#error { margin: 10px 18px; padding: 8px; background: #fde2e1; border: 1px solid #e03131; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 460px; gap: 14px; padding: 12px 18px; align-items: start; }
#side { position: sticky; top: calc(var(--bar, 60px) + 8px); max-height: calc(100vh - var(--bar, 60px) - 16px);
  overflow-y: auto; background: var(--card);
  border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
.group { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px 10px;
  margin-bottom: 12px; }
.group .note { color: var(--muted); margin: 0 0 6px; }
.row { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 6px; }
figure.panel { margin: 0; width: 158px; }
figure.panel canvas { width: 156px; height: 156px; display: block; border: 1px solid #c7ccd6;
  background: #000; image-rendering: pixelated; }
figure.panel figcaption { font-size: 12px; margin-top: 3px; }
figure.panel .where { color: var(--muted); font-variant-numeric: tabular-nums; }
.near { color: #a05a00; }
figure.panel .num { font-size: 11px; color: var(--fg); font-variant-numeric: tabular-nums; min-height: 15px; }
figure.panel[data-state="nomap"] canvas, figure.panel[data-state="nonfinite"] canvas { opacity: 0.55; }
.missing { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.ro { margin-top: 8px; font-size: 12px; }
table.ro caption { text-align: left; font-weight: 700; padding: 2px 0; }
table.ro th, table.ro td { text-align: left; padding: 2px 4px; border-bottom: 1px solid #eceef2; vertical-align: top; }
table.ro th { font-weight: 500; color: var(--muted); }
table.ro tr:first-child th.c { color: var(--fg); }
table.ro .sub { font-size: 10px; color: var(--muted); }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .axis line, svg .axis path { stroke: #888; }
svg .grid line { stroke: #e7e9ee; }
section { margin: 0 18px 14px; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
.sched { display: grid; grid-template-columns: 200px repeat(var(--seeds), 72px); gap: 4px 6px; align-items: center; }
.sched canvas, .comp canvas { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #c7ccd6;
  background: #000; display: block; }
.sched .p { font-size: 11px; text-align: center; }
.ok { color: #2b8a3e; } .bad { color: #c92a2a; }
.comp td, .comp th { padding: 3px 6px; border-bottom: 1px solid #eceef2; text-align: left; vertical-align: middle; }
.comp .thumbs { display: flex; gap: 2px; }
.comp .thumbs canvas { width: 40px; height: 40px; }
.comp tr.target { background: #fff7d6; }
.tokens .bar { display: grid; grid-template-columns: 110px 1fr 50px; gap: 6px; align-items: center; font-size: 12px; }
.tokens .bar div.b { background: var(--accent); height: 10px; }
#help ul { margin: 0; padding-left: 18px; color: var(--muted); }
"""

JS = r"""/* diffxai timestep explorer: plain JavaScript, everything local (no network). */
(function () {
  "use strict";
  var X = (window.DIFFXAI_EXPLORER = window.DIFFXAI_EXPLORER || {});
  var store = { manifest: null, "class": {}, concept: {} };
  var waiting = {};
  var S = { cls: 0, image: 0, draw: 0, step: 0, sample: 0, opacity: 0.5, concept: null, playing: null };
  X.state = S;
  var M = null, D = null, LUT = [];
  var SIZE = 156;
  var COLOURS = { x_t: "#1f77b4", x0_pred: "#d6541a" };
  var SCHED_COLOURS = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#949494", "#56b4e9"];

  X.register = function (kind, key, data) {
    if (kind === "manifest") { store.manifest = data; start(); return; }
    store[kind][key] = data;
    var k = kind + ":" + key;
    (waiting[k] || []).forEach(function (f) { f(data); });
    delete waiting[k];
  };

  function load(kind, key, file) {
    if (store[kind][key]) return Promise.resolve(store[kind][key]);
    return new Promise(function (resolve, reject) {
      var k = kind + ":" + key;
      (waiting[k] = waiting[k] || []).push(resolve);
      if (document.querySelector('script[data-file="' + file + '"]')) return;
      var s = document.createElement("script");
      s.src = file;
      s.setAttribute("data-file", file);
      s.onerror = function () { reject(new Error("cannot load " + file)); };
      document.head.appendChild(s);
    });
  }

  function decode(sheet) {
    if (sheet._p) return sheet._p;
    sheet._p = new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () {
        var c = document.createElement("canvas");
        c.width = img.width; c.height = img.height;
        var ctx = c.getContext("2d", { willReadFrequently: true });
        ctx.drawImage(img, 0, 0);
        sheet._canvas = c; sheet._ctx = ctx;
        resolve(sheet);
      };
      img.onerror = function () { reject(new Error("cannot decode an image sheet")); };
      img.src = sheet.src;
    });
    return sheet._p;
  }
  function decodeAll(data) {
    return Promise.all(Object.keys(data.sheets).map(function (k) { return decode(data.sheets[k]); })).then(function () { return data; });
  }

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "html") e.innerHTML = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  var SVGNS = "http://www.w3.org/2000/svg";
  function sv(tag, attrs, parent) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(x, d) { return x === null || x === undefined || isNaN(x) ? "–" : Number(x).toFixed(d === undefined ? 3 : d); }
  function nearest(values, target) {
    var best = 0;
    for (var i = 1; i < values.length; i++) if (Math.abs(values[i] - target) < Math.abs(values[best] - target)) best = i;
    return best;
  }
  function cursorT() { return D && D.axis ? D.axis.timesteps[S.step] : null; }
  function viewName(v) { return (M.views && M.views[v]) || v; }

  function rect(sheet, i) {
    return [(i % sheet.cols) * sheet.w, Math.floor(i / sheet.cols) * sheet.h, sheet.w, sheet.h];
  }
  function drawImage(canvas, sheet, i) {
    var ctx = canvas.getContext("2d"), r = rect(sheet, i);
    ctx.imageSmoothingEnabled = r[2] * 2 > canvas.width;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(sheet._canvas, r[0], r[1], r[2], r[3], 0, 0, canvas.width, canvas.height);
  }
  var scratch = document.createElement("canvas");
  function drawMap(canvas, sheet, i, opacity, smooth) {
    var r = rect(sheet, i), src = sheet._ctx.getImageData(r[0], r[1], r[2], r[3]).data;
    scratch.width = r[2]; scratch.height = r[3];
    var sctx = scratch.getContext("2d"), out = sctx.createImageData(r[2], r[3]), a = Math.round(255 * opacity);
    for (var p = 0; p < r[2] * r[3]; p++) {
      var c = LUT[src[4 * p]];
      out.data[4 * p] = c[0]; out.data[4 * p + 1] = c[1]; out.data[4 * p + 2] = c[2]; out.data[4 * p + 3] = a;
    }
    sctx.putImageData(out, 0, 0);
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = !!smooth;
    ctx.drawImage(scratch, 0, 0, r[2], r[3], 0, 0, canvas.width, canvas.height);
  }
  function hatch(canvas, text) {
    var ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.fillStyle = "rgba(120,120,120,0.55)"; ctx.fillRect(0, 0, w, h);
    ctx.strokeStyle = "rgba(201,42,42,0.8)"; ctx.lineWidth = 2;
    for (var x = -h; x < w; x += 18) { ctx.beginPath(); ctx.moveTo(x, h); ctx.lineTo(x + h, 0); ctx.stroke(); }
    ctx.fillStyle = "#fff"; ctx.font = "bold " + Math.round(w / 10) + "px sans-serif"; ctx.textAlign = "center";
    ctx.fillText(text, w / 2, h / 2);
  }
  function note(canvas, text) {
    var ctx = canvas.getContext("2d"), w = canvas.width;
    ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(0, canvas.height - w / 6, w, w / 6);
    ctx.fillStyle = "#fff"; ctx.font = Math.round(w / 15) + "px sans-serif"; ctx.textAlign = "center";
    ctx.fillText(text, w / 2, canvas.height - w / 18);
  }

  // ---------------------------------------------------------------- panels
  var panels = [];
  function panel(parent, id, update) {
    var canvas = el("canvas", { width: SIZE * 2, height: SIZE * 2 });
    var cap = el("figcaption"), num = el("div", { "class": "num" });
    var fig = el("figure", { "class": "panel", "data-panel": id }, [canvas, cap, num]);
    parent.appendChild(fig);
    panels.push({ fig: fig, canvas: canvas, cap: cap, num: num, update: update });
  }
  function caption(p, title, step, t, near) {
    p.cap.innerHTML = "";
    p.cap.appendChild(el("b", { text: title }));
    p.cap.appendChild(el("br"));
    p.cap.appendChild(el("span", { "class": "where", text: "step " + step + " · t = " + t }));
    if (near) p.cap.appendChild(el("span", { "class": "near", text: " · nearest to t = " + cursorT() }));
    p.fig.setAttribute("data-cursor-step", S.step);
    p.fig.setAttribute("data-shown-step", step);
    p.fig.setAttribute("data-shown-timestep", t);
  }
  function group(title, noteText) {
    var g = el("div", { "class": "group" }, [el("h3", { text: title })]);
    if (noteText) g.appendChild(el("p", { "class": "note", text: noteText }));
    var row = el("div", { "class": "row" });
    g.appendChild(row);
    document.getElementById("panels").appendChild(g);
    return { g: g, row: row };
  }
  function missing(text) {
    var g = el("div", { "class": "group" }, [el("p", { "class": "missing", text: text })]);
    document.getElementById("panels").appendChild(g);
  }

  function buildPanels() {
    panels = [];
    var root = document.getElementById("panels");
    root.innerHTML = "";
    var tr = D.trajectory, at = D.attribution, sa = D.saliency, tk = D.tokens;
    if (tr) {
      var g = group("Classifier's view: the trajectory " + (tr.mode === "reverse" ? "(reverse DDIM sampling)" : "(forward noising)") +
        (at ? " and each attribution method's map of P(class)" : ""),
        "one row per view: the image the classifier sees at this step, then the Captum maps explaining its class output on it (positive part, over that image)");
      var aviews = at ? at.maps[at.methods[0]].views : [];
      tr.views.forEach(function (v, vi) {
        var row = el("div", { "class": "row" });
        g.g.appendChild(row);
        panel(row, "traj:" + v, function (p) {
          var i = (S.image * tr.n_draws + S.draw) * tr.steps.length + S.step;
          drawImage(p.canvas, D.sheets[tr.sheets[v]], i);
          caption(p, M.view_titles[v] || v, S.step, tr.timesteps[S.step], false);
          p.fig.setAttribute("data-state", "ok");
          var lk = D.likelihood && D.likelihood.views[v];
          var prob = lk && lk.prob[S.image * tr.n_draws + S.draw];
          p.num.textContent = prob ? "P(class) = " + fmt(prob[S.step]) : "";
        });
        if (aviews.indexOf(v) >= 0) at.methods.forEach(function (m) {
          panel(row, "attr:" + m + ":" + v, function (p) { drawAttribution(p, m, v); });
          panels[panels.length - 1].fig.title = (at.captum[m] || m) + " (Captum) on " + (M.view_titles[v] || v);
        });
        if (vi === 0 && tr.sheets.x0) {
          panel(row, "traj:x0", function (p) {
            drawImage(p.canvas, D.sheets[tr.sheets.x0], S.image);
            p.cap.innerHTML = "";
            p.cap.appendChild(el("b", { text: "clean image x₀" }));
            p.cap.appendChild(el("br"));
            p.cap.appendChild(el("span", { "class": "where", text: tr.image_ids[S.image] + " (every step)" }));
            p.fig.setAttribute("data-cursor-step", S.step);
            p.fig.setAttribute("data-shown-step", "all");
            p.fig.setAttribute("data-state", "ok");
          });
        }
      });
      g.g.removeChild(g.row);
      if (!at) g.g.appendChild(el("p", { "class": "missing", text: "Attribution maps: the attribution stage did not run." }));
    }
    if (sa) {
      var sm = sa.maps[sa.methods[0]];
      var g2 = group("Saliency of the denoiser (its own sampling trajectory" + (sm.prompt ? ", prompt “" + sm.prompt + "”" : "") + ")",
        "DF-RISE / DF-CAM over the step's x̂₀ prediction, on " + sm.n_samples + " sample(s) the denoiser generated for this class (not the trajectory's image)");
      if (sm.n_samples > 1) {
        var sel = el("select", { id: "sample" });
        for (var i = 0; i < sm.n_samples; i++) sel.appendChild(el("option", { value: i, text: "sample " + i }));
        sel.value = S.sample;
        sel.addEventListener("change", function () { sel.blur(); S.sample = +sel.value; render(); });
        g2.g.insertBefore(el("label", { "class": "ctl" }, [document.createTextNode("sample "), sel]), g2.row);
      }
      if (sm.x_t) panel(g2.row, "sal:x_t", function (p) { drawSaliencyImage(p, sa.methods[0], "x_t", "denoiser input xₜ"); });
      panel(g2.row, "sal:x0", function (p) { drawSaliencyImage(p, sa.methods[0], "display", "denoiser's x̂₀"); });
      sa.methods.forEach(function (m) { panel(g2.row, "sal:" + m, function (p) { drawSaliency(p, m); }); });
      if (sm.final) panel(g2.row, "sal:final", function (p) {
        drawImage(p.canvas, D.sheets[sm.final], S.sample);
        p.cap.innerHTML = "";
        p.cap.appendChild(el("b", { text: "generated image" }));
        p.cap.appendChild(el("br"));
        p.cap.appendChild(el("span", { "class": "where", text: "end of sampling" }));
        p.fig.setAttribute("data-cursor-step", S.step);
        p.fig.setAttribute("data-shown-step", "final");
        p.fig.setAttribute("data-state", "ok");
      });
    } else {
      var ran = M.classes.filter(function (c) { return c.has.indexOf("saliency") >= 0; }).map(function (c) { return c.name; });
      missing(ran.length ? "DF-RISE / DF-CAM: computed for " + ran.join(", ") + " only (saliency.classes)." :
        "DF-RISE / DF-CAM: the saliency stage did not run.");
    }
    if (tk) {
      var g3 = group("Token relevance", "each token's share of the step's total relevance (mean over samples)");
      var box = el("div", { "class": "tokens", "data-panel": "tokens" });
      g3.row.appendChild(box);
      panels.push({ fig: box, update: drawTokens, box: box });
    }
  }

  function drawAttribution(p, m, v) {
    var at = D.attribution.maps[m], tr = D.trajectory;
    var j = nearest(at.timesteps, cursorT()), vi = at.views.indexOf(v);
    var step = at.steps[j], t = at.timesteps[j];
    var base = tr && D.sheets[tr.sheets[v]];
    if (base) drawImage(p.canvas, base, (S.image * tr.n_draws + S.draw) * tr.steps.length + step);
    caption(p, D.attribution.labels[m] + " · " + viewName(v), step, t, t !== cursorT());
    var di = at.draws.indexOf(S.draw);
    if (S.image >= at.image_ids.length || di < 0) {
      p.fig.setAttribute("data-state", "nomap");
      note(p.canvas, "no map for this image / draw");
      p.num.textContent = "maps: images 1–" + at.image_ids.length + ", draws " + at.draws.join(", ");
      return;
    }
    var cell = ((S.image * at.draws.length + di) * at.steps.length + j) * at.views.length + vi;
    if (!at.finite[cell]) {
      p.fig.setAttribute("data-state", "nonfinite");
      hatch(p.canvas, "NaN/Inf");
      p.num.textContent = "non-finite map (excluded)";
      return;
    }
    drawMap(p.canvas, D.sheets[at.sheet], cell, S.opacity, false);
    p.fig.setAttribute("data-state", "ok");
    var f = at.faithfulness, txt = [];
    if (f) ["deletion_auc", "insertion_auc"].forEach(function (metric) {
      var c = f[metric] && f[metric][v] && f[metric][v].maps[S.image * at.draws.length + di][j];
      if (c) txt.push((metric === "deletion_auc" ? "del " : "ins ") + fmt(c[0], 2) + " (" + fmt(c[1], 2) + ")");
    });
    p.num.textContent = txt.join(" · ");
  }

  function salIndex(m) {
    var sm = D.saliency.maps[m];
    var j = nearest(sm.timesteps, cursorT());
    return { j: j, cell: S.sample * sm.steps.length + j, step: sm.steps[j], t: sm.timesteps[j] };
  }
  function drawSaliencyImage(p, m, key, title) {
    var sm = D.saliency.maps[m], k = salIndex(m);
    drawImage(p.canvas, D.sheets[sm[key]], k.cell);
    caption(p, title, k.step, k.t, k.t !== cursorT());
    p.fig.setAttribute("data-state", "ok");
    p.num.textContent = "";
  }
  function drawSaliency(p, m) {
    var sm = D.saliency.maps[m], k = salIndex(m);
    drawImage(p.canvas, D.sheets[sm.display], k.cell);
    drawMap(p.canvas, D.sheets[sm.sheet], k.cell, S.opacity, D.sheets[sm.sheet].w < D.sheets[sm.display].w);
    caption(p, D.saliency.labels[m] + " · over x̂₀", k.step, k.t, k.t !== cursorT());
    p.fig.setAttribute("data-state", "ok");
    var st = sm.stats, txt = [];
    if (st && st.deletion_auc) txt.push("del " + fmt(st.deletion_auc[S.sample][k.j], 2) + (st.random_deletion_auc ? " (" + fmt(st.random_deletion_auc[S.sample][k.j], 2) + ")" : ""));
    if (st && st.insertion_auc) txt.push("ins " + fmt(st.insertion_auc[S.sample][k.j], 2) + (st.random_insertion_auc ? " (" + fmt(st.random_insertion_auc[S.sample][k.j], 2) + ")" : ""));
    p.num.textContent = txt.join(" · ");
  }
  function tokenIndex() { return nearest(D.tokens.timesteps, cursorT()); }
  function drawTokens(p) {
    var tk = D.tokens, j = tokenIndex(), rel = tk.relevance[j], max = Math.max.apply(null, rel.map(function (x) { return x || 0; })) || 1;
    p.box.innerHTML = "";
    p.box.appendChild(el("div", { "class": "where", text: "step " + tk.steps[j] + " · t = " + tk.timesteps[j] + (tk.timesteps[j] !== cursorT() ? " · nearest to t = " + cursorT() : "") }));
    tk.tokens.forEach(function (tok, i) {
      p.box.appendChild(el("div", { "class": "bar" }, [el("span", { text: tok }),
        el("div", {}, [el("div", { "class": "b", style: "width:" + Math.round(100 * (rel[i] || 0) / max) + "%" })]),
        el("span", { text: fmt(rel[i]) })]));
    });
    p.fig.setAttribute("data-cursor-step", S.step);
    p.fig.setAttribute("data-shown-step", tk.steps[j]);
    p.fig.setAttribute("data-shown-timestep", tk.timesteps[j]);
    p.fig.setAttribute("data-state", "ok");
  }

  // ---------------------------------------------------------------- the probability chart
  function lineChart(box, o) {
    // o: {xs: [x per point], xmin, xmax, reverse, xlabel, ylabel, series: [{colour, mean, lo, hi, dash, label}],
    //     spans: [{from, to, colour}], cursor: x, onpick: f(x)}
    box.innerHTML = "";
    var W = 478, H = 250, L = 42, R = 16, T = 22, B = 40;
    var svg = sv("svg", { width: "100%", viewBox: "0 0 " + W + " " + H });
    var x = function (v) { var f = (v - o.xmin) / ((o.xmax - o.xmin) || 1); return L + (o.reverse ? 1 - f : f) * (W - L - R); };
    var y = function (v) { return T + (1 - v) * (H - T - B); };
    var grid = sv("g", { "class": "grid" }, svg);
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      sv("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }, grid);
      sv("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: v }, svg);
    });
    (o.spans || []).forEach(function (s) {
      sv("rect", { x: Math.min(x(s.from), x(s.to)), y: T, width: Math.abs(x(s.to) - x(s.from)), height: H - T - B,
        fill: s.colour, "fill-opacity": 0.1 }, svg);
      sv("rect", { x: Math.min(x(s.from), x(s.to)), y: s.bar, width: Math.abs(x(s.to) - x(s.from)), height: 4, fill: s.colour }, svg);
    });
    o.series.forEach(function (s) {
      var xs = s.xs || o.xs;
      if (s.lo && s.hi) {
        var pts = [];
        xs.forEach(function (v, i) { if (s.hi[i] !== null) pts.push(x(v) + "," + y(s.hi[i])); });
        for (var i = xs.length - 1; i >= 0; i--) if (s.lo[i] !== null) pts.push(x(xs[i]) + "," + y(s.lo[i]));
        sv("polygon", { points: pts.join(" "), fill: s.colour, "fill-opacity": 0.18, stroke: "none" }, svg);
      }
      var line = [];
      xs.forEach(function (v, i) { if (s.mean[i] !== null) line.push(x(v) + "," + y(s.mean[i])); });
      sv("polyline", { points: line.join(" "), fill: "none", stroke: s.colour, "stroke-width": s.dash ? 1.2 : 2,
        "stroke-dasharray": s.dash ? "4 3" : "none" }, svg);
      if (!s.dash) xs.forEach(function (v, i) { if (s.mean[i] !== null) sv("circle", { cx: x(v), cy: y(s.mean[i]), r: 2, fill: s.colour }, svg); });
    });
    var ax = sv("g", { "class": "axis" }, svg);
    sv("line", { x1: L, x2: W - R, y1: H - B, y2: H - B }, ax);
    sv("line", { x1: L, x2: L, y1: T, y2: H - B }, ax);
    (o.ticks || []).forEach(function (t) {
      sv("line", { x1: x(t.x), x2: x(t.x), y1: H - B, y2: H - B + 4 }, ax);
      sv("text", { x: x(t.x), y: H - B + 15, "text-anchor": "middle", text: t.label }, svg);
    });
    sv("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", text: o.xlabel }, svg);
    sv("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (T + H - B) / 2 + ")", text: o.ylabel }, svg);
    var leg = 0;
    (o.legend || []).forEach(function (l) {
      sv("rect", { x: L + 4 + leg, y: 5, width: 14, height: l.bar ? 4 : 3, fill: l.colour, "fill-opacity": l.opacity || 1 }, svg);
      sv("text", { x: L + 22 + leg, y: 11, text: l.label }, svg);
      leg += 26 + 6.2 * l.label.length;
    });
    if (o.cursor !== null && o.cursor !== undefined) {
      sv("line", { x1: x(o.cursor), x2: x(o.cursor), y1: T - 4, y2: H - B, stroke: "#111", "stroke-width": 1.5, "class": "cursor" }, svg);
      (o.marks || []).forEach(function (m) { if (m.y !== null) sv("circle", { cx: x(o.cursor), cy: y(m.y), r: 4.5, fill: "#fff", stroke: m.colour, "stroke-width": 2 }, svg); });
    }
    if (o.onpick) {
      svg.style.cursor = "crosshair";
      svg.addEventListener("click", function (ev) {
        var b = svg.getBoundingClientRect(), f = ((ev.clientX - b.left) * W / b.width - L) / (W - L - R);
        o.onpick(o.xmin + (o.reverse ? 1 - f : f) * (o.xmax - o.xmin));
      });
    }
    box.appendChild(svg);
  }

  function drawChart() {
    var box = document.getElementById("chart"), lk = D.likelihood;
    if (!lk) { box.innerHTML = ""; box.appendChild(el("p", { "class": "missing", text: "Class probability: the likelihood stage did not run." })); return; }
    var steps = lk.steps, series = [], spans = [], legend = [], marks = [], tr = D.trajectory;
    var views = Object.keys(lk.views), bar = 0;
    views.forEach(function (v) {
      var e = lk.views[v], c = COLOURS[v] || "#555";
      series.push({ colour: c, mean: e.mean, lo: e.lo, hi: e.hi });
      var own = tr && e.prob[S.image * tr.n_draws + S.draw];
      if (own) series.push({ colour: c, mean: own, dash: true });
      var iv = lk.intervals[v];
      if (iv) spans.push({ from: iv.start, to: iv.end, colour: c, bar: 250 - 40 - 8 - 6 * bar++ });
      legend.push({ colour: c, label: viewName(v) });
      marks.push({ y: e.mean[S.step], colour: c });
    });
    legend.push({ colour: "#777", label: "band: 95% CI", opacity: 0.3 });
    legend.push({ colour: "#777", label: "dashed: this image", opacity: 1 });
    var ticks = [], every = Math.max(1, Math.ceil(steps.length / 10));
    steps.forEach(function (s, i) { if (i % every === 0 || i === steps.length - 1) ticks.push({ x: s, label: String(s) }); });
    lineChart(box, { xs: steps, xmin: steps[0], xmax: steps[steps.length - 1], xlabel: "step (0 = pure noise → clean); shaded: critical interval",
      ylabel: "P(" + D.name + ")", series: series, spans: spans, legend: legend, ticks: ticks, cursor: S.step, marks: marks,
      onpick: function (v) { setStep(Math.round(v)); } });
  }

  // ---------------------------------------------------------------- readouts
  function table(parent, title, headers, rows) {
    // rows: [{label, cells: [{key, value, text, sub}]}]; every cell with a key is a readout
    var t = el("table", { "class": "ro" });
    if (title) t.appendChild(el("caption", { text: title }));
    if (headers) t.appendChild(el("tr", {}, headers.map(function (h, i) { return el("th", { "class": i ? "c" : "", text: h }); })));
    rows.forEach(function (r) {
      var tr = el("tr", {}, [el("th", { text: r.label })]);
      r.cells.forEach(function (c) {
        var td = el("td", { text: c.text !== undefined ? c.text : fmt(c.value) });
        if (c.sub) td.appendChild(el("div", { "class": "sub", text: c.sub }));
        if (c.key) {
          td.setAttribute("data-readout", c.key);
          td.setAttribute("data-step", S.step);
          if (c.value !== null && c.value !== undefined) td.setAttribute("data-value", c.value);
        }
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }
  function aucText(c) { return c ? fmt(c[0]) + " (" + fmt(c[1]) + ")" : "–"; }
  function drawReadouts() {
    var box = document.getElementById("readouts");
    box.innerHTML = "";
    if (!D.axis) return;
    var t = cursorT(), lk = D.likelihood, tr = D.trajectory;
    table(box, null, null, [{ label: D.label, cells: [{ key: "step", value: S.step,
      text: "step " + S.step + " of " + (D.axis.steps.length - 1) + " · t = " + t }] }]);
    if (lk) {
      var views = Object.keys(lk.views), k = tr ? S.image * tr.n_draws + S.draw : -1, rows = [];
      rows.push({ label: "mean over images × draws", cells: views.map(function (v) {
        var e = lk.views[v];
        return { key: "prob_mean:" + v, value: e.mean[S.step], sub: "95% CI " + fmt(e.lo[S.step]) + "–" + fmt(e.hi[S.step]) + " · n = " + e.n };
      }) });
      if (k >= 0) {
        rows.push({ label: "this image, draw " + S.draw, cells: views.map(function (v) {
          var own = lk.views[v].prob[k];
          return { key: "prob:" + v, value: own ? own[S.step] : null };
        }) });
        rows.push({ label: "classifier's top-1", cells: views.map(function (v) {
          var e = lk.views[v], top = e.top1[k] ? e.top1[k][S.step] : null;
          return { key: "top1:" + v, value: top, text: top === null ? "–" : "class " + top + (e.top1_prob[k] ? " (p " + fmt(e.top1_prob[k][S.step], 2) + ")" : "") };
        }) });
      }
      rows.push({ label: "critical interval", cells: views.map(function (v) {
        var iv = lk.intervals[v];
        if (!iv) return { text: "–" };
        var inside = S.step >= iv.start && S.step <= iv.end;
        return { key: "interval:" + v, value: iv.start, text: "steps " + iv.start + "–" + iv.end + (inside ? " ◀" : ""),
          sub: "rise " + fmt(iv.slope, 2) + "/step" + (iv.half >= 0 ? "; ≥ 0.5 from " + iv.half : "; never ≥ 0.5") };
      }) });
      table(box, "P(class) at the cursor", [""].concat(views.map(viewName)), rows);
    }
    var at = D.attribution;
    if (at && at.maps[at.methods[0]].faithfulness) {
      var arows = [];
      at.methods.forEach(function (m) {
        var a = at.maps[m], j = nearest(a.timesteps, t), di = a.draws.indexOf(S.draw), has = S.image < a.image_ids.length && di >= 0;
        a.views.forEach(function (v) {
          arows.push({ label: at.labels[m] + " · " + viewName(v), cells: ["deletion_auc", "insertion_auc"].map(function (metric) {
            var f = a.faithfulness && a.faithfulness[metric] && a.faithfulness[metric][v];
            if (!f) return { text: "–" };
            var c = has ? f.maps[S.image * a.draws.length + di][j] : null, mean = f.mean[j];
            return { key: "attr:" + m + ":" + v + ":" + metric, value: c ? c[0] : null, text: aucText(c), sub: mean ? "class mean " + fmt(mean[0]) : "" };
          }) });
        });
      });
      var a0 = at.maps[at.methods[0]], j0 = nearest(a0.timesteps, t);
      table(box, "Attribution faithfulness, map at step " + a0.steps[j0] + " (random map)", ["map", "deletion ↓", "insertion ↑"], arows);
    }
    var sa = D.saliency;
    if (sa && sa.maps[sa.methods[0]].stats) {
      var srows = sa.methods.map(function (m) {
        var sm = sa.maps[m], k2 = salIndex(m), st = sm.stats;
        return { label: sa.labels[m] + " (step " + k2.step + ", t = " + k2.t + ")", cells: ["deletion_auc", "insertion_auc"].map(function (metric) {
          if (!st[metric]) return { text: "–" };
          var rnd = st["random_" + metric];
          return { key: "sal:" + m + ":" + metric, value: st[metric][S.sample][k2.j], text: aucText([st[metric][S.sample][k2.j], rnd ? rnd[S.sample][k2.j] : null]) };
        }) };
      });
      table(box, "Saliency faithfulness, sample " + S.sample + " (random map)", ["map", "deletion ↓", "insertion ↑"], srows);
    }
    var tk = D.tokens;
    if (tk) {
      var jt = tokenIndex(), order = tk.tokens.map(function (_, i) { return i; });
      order.sort(function (a, b) { return (tk.relevance[jt][b] || 0) - (tk.relevance[jt][a] || 0); });
      table(box, "Token relevance at step " + tk.steps[jt] + " (t = " + tk.timesteps[jt] + ")", ["token", "share"],
        order.slice(0, 8).map(function (i) { return { label: tk.tokens[i], cells: [{ key: "token:" + tk.tokens[i], value: tk.relevance[jt][i] }] }; }));
    }
    var sc = D.schedules;
    if (sc && sc.items.some(function (it) { return it.curve; })) {
      var crows = sc.items.filter(function (it) { return it.curve; }).map(function (it) {
        var j = nearest(it.curve.timesteps, t);
        return { label: it.name, cells: [{ text: "step " + it.curve.steps[j] + " · t = " + it.curve.timesteps[j] }, { key: "sched:" + it.name, value: it.curve.mean[j] }] };
      });
      table(box, "Schedules: P(class) of x̂₀ at the nearest t", ["schedule", "nearest step", "mean P"], crows);
    }
  }

  // ---------------------------------------------------------------- schedules and components
  function drawSchedules() {
    var sec = document.getElementById("schedules"), sc = D.schedules;
    if (!sc) {
      var any = M.classes.some(function (c) { return c.has.indexOf("schedules") >= 0; });
      sec.hidden = !any;
      sec.innerHTML = any ? "<h2>Time-step schedules</h2><p class='missing'>no schedule samples for this class</p>" : "";
      return;
    }
    sec.hidden = false;
    sec.innerHTML = "";
    sec.appendChild(el("h2", { text: "Time-step schedules: " + D.label }));
    sec.appendChild(el("p", { "class": "note", text: "the same seeds generated under each schedule; under each image the classifier's P(class) (green: top-1 is the class). The chart: P(class) of the denoiser's x̂₀ along generation, mean ± 95% CI over seeds; the cursor is at the slider's timestep." }));
    var wrap = el("div", { style: "display:flex; gap:18px; flex-wrap:wrap; align-items:flex-start" });
    var grid = el("div", { "class": "sched", style: "--seeds:" + Math.max.apply(null, sc.items.map(function (it) { return it.seeds.length; })) });
    sc.items.forEach(function (it) {
      var label = it.name + (it.kind && it.kind !== it.name ? " (" + it.kind + ")" : "") + (it.gamma !== null ? " γ = " + it.gamma : "");
      grid.appendChild(el("div", {}, [el("b", { text: label }), el("div", { "class": "where", style: "font-size:11px", text: it.timesteps.length + " steps: t = " + it.timesteps.slice(0, 4).join(", ") + (it.timesteps.length > 4 ? ", …" : "") })]));
      it.seeds.forEach(function (s, i) {
        var c = el("canvas", { width: 128, height: 128, "data-sample": it.name + ":" + s });
        var p = it.prob ? it.prob[i] : null, ok = it.correct ? it.correct[i] : null;
        grid.appendChild(el("div", {}, [c, el("div", { "class": "p " + (ok === true ? "ok" : ok === false ? "bad" : ""), text: "seed " + s + ": " + fmt(p, 2) })]));
        drawImage(c, D.sheets[it.sheet], i);
      });
    });
    wrap.appendChild(grid);
    var chartBox = el("div", { id: "sched-chart" });
    wrap.appendChild(chartBox);
    sec.appendChild(wrap);
    drawScheduleChart();
  }
  function drawScheduleChart() {
    var box = document.getElementById("sched-chart"), sc = D.schedules;
    if (!box || !sc) return;
    var series = [], legend = [], marks = [], t = cursorT();
    sc.items.forEach(function (it, k) {
      if (!it.curve) return;
      var c = SCHED_COLOURS[k % SCHED_COLOURS.length];
      series.push({ xs: it.curve.timesteps, colour: c, mean: it.curve.mean, lo: it.curve.lo, hi: it.curve.hi });
      legend.push({ colour: c, label: it.name });
      if (t !== null) marks.push({ y: it.curve.mean[nearest(it.curve.timesteps, t)], colour: c });
    });
    if (!series.length) return;
    var all = [].concat.apply([], series.map(function (s) { return s.xs; }));
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    var ticks = [hi, Math.round((hi * 3 + lo) / 4), Math.round((hi + lo) / 2), Math.round((hi + lo * 3) / 4), lo].map(function (v) { return { x: v, label: String(v) }; });
    lineChart(box, { xmin: lo, xmax: hi, reverse: true, xlabel: "timestep t (noisy → clean)", ylabel: "P(class) of x̂₀",
      series: series, legend: legend, ticks: ticks, cursor: t, marks: t !== null ? marks : [],
      onpick: D.axis ? function (v) { setStep(nearest(D.axis.timesteps, v)); } : null });
  }

  function drawComponents() {
    var sec = document.getElementById("components");
    if (!M.concepts.length) { sec.hidden = true; return; }
    sec.hidden = false;
    var idx = S.concept;
    if (idx === null) {
      idx = 0;
      M.concepts.forEach(function (c, i) { if (D && c.name === D.name) idx = i; });
      S.concept = idx;
    }
    load("concept", idx, M.concepts[idx].file).then(decodeAll).then(function (C) {
      sec.innerHTML = "";
      var sel = el("select", { id: "concept" });
      M.concepts.forEach(function (c, i) { sel.appendChild(el("option", { value: i, text: c.name })); });
      sel.value = idx;
      sel.addEventListener("change", function () { S.concept = +sel.value; drawComponents(); });
      sec.appendChild(el("h2", {}, [document.createTextNode("Component edits (CAD): concept "), sel]));
      var edits = ["none", "erase", "amplify"].filter(function (e) { return C.edits[e]; });
      var desc = edits.map(function (e) {
        var s = C.edits[e].setting;
        if (e === "none" || !s) return null;
        return e + ": " + (s.rule || "") + (s.rule === "per_row" ? " ρ = " + s.rho : s.k !== undefined ? " K = " + s.k : "") + (s.n_edited !== undefined ? ", " + s.n_edited + " weights zeroed" : "");
      }).filter(Boolean).join("; ");
      sec.appendChild(el("p", { "class": "note", text: "samples of every class from the same seeds, before and after the selected edit of the sweep (" + desc + "); the number: share of samples the classifier assigns to their class. Erasing should lower the concept's row, amplifying raise it, other rows stay." }));
      var table = el("table", { "class": "comp" });
      var hr = el("tr", {}, [el("th", { text: "generated class" })]);
      edits.forEach(function (e) { hr.appendChild(el("th", { text: e === "none" ? "unedited" : e === "erase" ? "erased" : "amplified" })); });
      table.appendChild(hr);
      C.classes.forEach(function (cls, ci) {
        var row = el("tr", { "class": cls === C.concept ? "target" : "" }, [el("td", { text: cls + (cls === C.concept ? " (concept)" : "") })]);
        edits.forEach(function (e) {
          var E = C.edits[e], thumbs = el("div", { "class": "thumbs" });
          for (var j = 0; j < E.n; j++) {
            var c = el("canvas", { width: 80, height: 80 });
            thumbs.appendChild(c);
            drawImage(c, C.sheets[E.sheet], ci * E.n + j);
          }
          var acc = E.accuracy ? E.accuracy[ci] : null;
          row.appendChild(el("td", {}, [el("div", { style: "display:flex; gap:8px; align-items:center" }, [thumbs, el("span", { "data-readout": "edit:" + e + ":" + cls, text: fmt(acc, 2) })])]));
        });
        table.appendChild(row);
      });
      sec.appendChild(table);
    }).catch(fail);
  }

  // ---------------------------------------------------------------- state and controls
  function render() {
    if (!D) return;
    if (D.axis) {
      var s = document.getElementById("step");
      s.value = S.step;
      document.getElementById("step-label").textContent = "step " + S.step + " / " + (D.axis.steps.length - 1) + " · t = " + D.axis.timesteps[S.step];
    }
    panels.forEach(function (p) { p.update(p); });
    if (D.likelihood) drawChart();
    drawReadouts();
    drawScheduleChart();
    var h = "class=" + encodeURIComponent(D.name) + "&step=" + S.step + "&image=" + S.image + "&draw=" + S.draw;
    if (location.hash.slice(1) !== h) history.replaceState(null, "", "#" + h);
  }
  function setStep(s) {
    if (!D || !D.axis) return;
    S.step = Math.max(0, Math.min(D.axis.steps.length - 1, s));
    render();
  }
  X.setStep = setStep;

  function fillSelect(id, options, value) {
    var sel = document.getElementById(id);
    sel.innerHTML = "";
    options.forEach(function (o, i) { sel.appendChild(el("option", { value: i, text: o })); });
    sel.value = value;
  }

  function showClass(i) {
    S.cls = i;
    document.body.removeAttribute("data-ready");
    var c = M.classes[i];
    return load("class", i, c.file).then(decodeAll).then(function (data) {
      D = data;
      var tr = D.trajectory;
      S.image = tr ? Math.min(S.image, tr.n_images - 1) : 0;
      S.draw = tr ? Math.min(S.draw, tr.n_draws - 1) : 0;
      var ns = D.saliency ? D.saliency.maps[D.saliency.methods[0]].n_samples : 1;
      S.sample = Math.min(S.sample, ns - 1);
      document.getElementById("image-ctl").hidden = !tr;
      document.getElementById("draw-ctl").hidden = !tr || tr.n_draws < 2;
      if (tr) {
        var at = D.attribution, mapped = at ? at.maps[at.methods[0]].image_ids : [];
        fillSelect("image", tr.image_ids.map(function (id) { return id + (mapped.indexOf(id) >= 0 ? "  (maps)" : ""); }), S.image);
        var dr = at ? at.maps[at.methods[0]].draws : [];
        fillSelect("draw", Array.from({ length: tr.n_draws }, function (_, k) { return "draw " + k + (dr.indexOf(k) >= 0 ? "  (maps)" : ""); }), S.draw);
      }
      document.getElementById("step-ctl").hidden = !D.axis;
      document.getElementById("main").hidden = !D.axis;
      if (D.axis) {
        var s = document.getElementById("step");
        s.max = D.axis.steps.length - 1;
        S.step = Math.min(S.step, D.axis.steps.length - 1);
      }
      M.concepts.forEach(function (cc, k) { if (cc.name === D.name) S.concept = k; });
      buildPanels();
      drawSchedules();
      render();
      drawComponents();
      document.body.setAttribute("data-ready", "1");
      document.body.setAttribute("data-class", D.name);
    });
  }
  X.showClass = showClass;

  function fail(err) {
    var box = document.getElementById("error");
    box.hidden = false;
    box.textContent = "The explorer could not load: " + (err && err.message ? err.message : err);
    console.error(err);
  }

  function colourbar() {
    var c = document.getElementById("colourbar"), ctx = c.getContext("2d");
    for (var x = 0; x < c.width; x++) { var k = Math.round(255 * x / (c.width - 1)); ctx.fillStyle = M.colour.lut[k]; ctx.fillRect(x, 0, 1, c.height); }
    c.title = "map value v (0 = nothing, 1 = the map's strongest): attribution = positive part ÷ its 95%-mass value, clipped; DF-RISE / DF-CAM = min–max normalised";
  }

  function start() {
    M = store.manifest;
    LUT = M.colour.lut.map(function (h) { return [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)]; });
    S.opacity = M.colour.opacity;
    document.getElementById("opacity").value = S.opacity;
    M.classes.forEach(function (c, i) { c.index = i; });
    var ran = {};
    M.classes.forEach(function (c) { c.has.forEach(function (h) { ran[h] = 1; }); });
    if (M.concepts.length) ran.components = 1;
    var names = { trajectory: "trajectories", likelihood: "likelihood", attribution: "attribution", saliency: "DF-RISE / DF-CAM", schedules: "schedules", tokens: "tokens", components: "component edits" };
    document.getElementById("subtitle").textContent = M.classes.length + " classes / prompts · stages shown: " +
      Object.keys(names).filter(function (k) { return ran[k]; }).map(function (k) { return names[k]; }).join(", ");
    colourbar();
    barHeight();
    fillSelect("class", M.classes.map(function (c) { return c.label; }), 0);
    var params = {};
    location.hash.slice(1).split("&").forEach(function (kv) { var p = kv.split("="); if (p[0]) params[p[0]] = decodeURIComponent(p[1] || ""); });
    var first = 0;
    M.classes.forEach(function (c, i) { if (c.name === params["class"]) first = i; });
    if (params.step) S.step = +params.step || 0;
    if (params.image) S.image = +params.image || 0;
    if (params.draw) S.draw = +params.draw || 0;
    document.getElementById("class").value = first;
    document.getElementById("class").addEventListener("change", function (e) { e.target.blur(); showClass(+e.target.value).catch(fail); });
    document.getElementById("image").addEventListener("change", function (e) { e.target.blur(); S.image = +e.target.value; render(); });
    document.getElementById("draw").addEventListener("change", function (e) { e.target.blur(); S.draw = +e.target.value; render(); });
    document.getElementById("step").addEventListener("input", function (e) { setStep(+e.target.value); });
    document.getElementById("prev").addEventListener("click", function () { setStep(S.step - 1); });
    document.getElementById("next").addEventListener("click", function () { setStep(S.step + 1); });
    document.getElementById("play").addEventListener("click", togglePlay);
    document.getElementById("opacity").addEventListener("input", function (e) { S.opacity = +e.target.value; render(); });
    document.addEventListener("keydown", function (e) {
      var tag = e.target && e.target.tagName;
      if (tag === "SELECT" || (tag === "INPUT" && e.target.id !== "step")) return;
      if (e.target && e.target.id === "step" && (e.key === "ArrowLeft" || e.key === "ArrowRight")) return; // the slider moves itself
      if (e.key === "ArrowLeft" || e.key === "ArrowDown") { setStep(S.step - 1); e.preventDefault(); }
      else if (e.key === "ArrowRight" || e.key === "ArrowUp") { setStep(S.step + 1); e.preventDefault(); }
      else if (e.key === "Home") { setStep(0); e.preventDefault(); }
      else if (e.key === "End") { setStep(1e9); e.preventDefault(); }
      else if (e.key === " " && tag !== "BUTTON") { togglePlay(); e.preventDefault(); }
    });
    if (!M.classes.length) {
      ["class-ctl", "image-ctl", "draw-ctl", "step-ctl"].forEach(function (id) { document.getElementById(id).hidden = true; });
      document.getElementById("main").hidden = true;
      D = null;
      drawComponents();
      document.body.setAttribute("data-ready", "1");
      return;
    }
    showClass(first).catch(fail);
  }
  function togglePlay() {
    var b = document.getElementById("play");
    if (S.playing) { clearInterval(S.playing); S.playing = null; b.textContent = "play"; return; }
    if (D && D.axis && S.step >= D.axis.steps.length - 1) setStep(0);
    b.textContent = "pause";
    S.playing = setInterval(function () {
      if (!D || !D.axis || S.step >= D.axis.steps.length - 1) { togglePlay(); return; }
      setStep(S.step + 1);
    }, 600);
  }
  function barHeight() {
    document.documentElement.style.setProperty("--bar", document.getElementById("controls").offsetHeight + "px");
  }
  window.addEventListener("resize", barHeight);
  window.addEventListener("error", function (e) { fail(e.message); });
})();
"""
