// unetlab serve: the page. Plain JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  card: null,        // /api/card
  results: {},       // result id -> {summary, labels, probabilities{}, imageData}
  current: null,     // result id shown
  hidden: new Set(), // classes switched off in the overlay
  inspect: null,     // /api/inspect when done
  sort: { key: null, ascending: true },
  selected: null,    // inspected image index shown
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}
const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
const swatch = (c) => el("span", { class: "swatch", style: { background: rgb(c) } });
const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + "%");
const num = (v, digits = 3) => (v === null || v === undefined ? "–" : v.toFixed(digits));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), { hint: body.hint });
  return body;
}

async function getBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  return new Uint8Array(await response.arrayBuffer());
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("cannot load " + url));
    image.src = url;
  });
}

// viridis, as a 256-entry lookup table (polynomial fit of the matplotlib colour map)
const VIRIDIS = (() => {
  const c = [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055419466274],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
  ];
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    for (let ch = 0; ch < 3; ch++) {
      let v = c[6][ch];
      for (let k = 5; k >= 0; k--) v = v * t + c[k][ch];
      table[3 * i + ch] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
  }
  return table;
})();

function showError(message, hint) {
  const box = $("upload-error");
  box.replaceChildren(el("div", {}, message), hint ? el("div", { class: "hint" }, "What to do: " + hint) : null);
  box.hidden = false;
}

// ------------------------------------------------------------------ model card

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, label), el("dd", {}, String(value)));
}

function renderCard(card) {
  const options = Object.entries(card.options).map(([k, v]) => `${k}=${v}`).join(", ");
  $("model-chip").textContent = `${card.architecture} · ${card.classes.length} classes · ${card.format}`;
  const facts = $("card-facts");
  facts.replaceChildren();
  fact(facts, "Architecture", card.architecture + (options ? ` (${options})` : ""));
  fact(facts, "Parameters", card.parameters ? card.parameters.toLocaleString("en") : null);
  fact(facts, "Format", `${card.format}, ${card.precision}`);
  fact(facts, "Input", card.input_rule);
  fact(facts, "Output", card.output + (card.binary ? `, threshold ${card.threshold}` : ""));
  fact(facts, "File", card.file);
  $("card-classes").replaceChildren(
    ...card.classes.map((c) => el("li", {}, swatch(c.color), el("span", {}, `${c.index} ${c.name}`)))
  );
  const training = $("card-training");
  training.replaceChildren();
  const t = card.training || {};
  fact(training, "Run", t.run);
  fact(training, "Data", t.data);
  fact(training, "Epochs", t.epochs);
  const names = { miou: "mIoU", pixel_acc: "pixel accuracy", val_loss: "loss" };
  const m = t.metrics || {};
  if (t.best_metric && t.best_value !== undefined && t.best_value !== null) {
    fact(training, `Val ${names[t.best_metric] || t.best_metric}`, num(t.best_value));
  }
  for (const key of ["miou", "pixel_acc", "val_loss"]) {
    if (m[key] !== undefined && key !== t.best_metric) fact(training, `Val ${names[key]}`, num(m[key]));
  }
  for (const e of card.evaluations || []) {
    fact(training, `Evaluated (${e.split})`, `mIoU ${num(e.miou)} on ${e.images} images`);
  }
  if (!training.children.length) fact(training, "Run", "no training record beside this file");
  $("drop-limits").textContent =
    `PNG, JPEG, TIFF, BMP, WebP · up to ${(card.max_upload_bytes / 1048576).toFixed(0)} MB and ` +
    `${card.max_megapixels} megapixels · large images are tiled`;
  const heat = $("heat-class");
  heat.replaceChildren(...card.classes.map((c) => el("option", { value: c.index }, c.name)));
  heat.value = card.classes.length > 1 ? 1 : 0;
  const focus = $("focus");
  focus.replaceChildren(
    el("option", { value: -1 }, "every class but " + card.classes[0].name),
    ...card.classes.map((c) => el("option", { value: c.index }, c.name))
  );
  focus.value = card.binary ? 1 : -1;
  // a threshold exists for binary models only (multi-class labels are the argmax: null)
  $("threshold-control").hidden = !card.binary;
  if (card.binary) {
    $("threshold").value = Math.round(card.threshold * 100);
    $("threshold-value").textContent = card.threshold.toFixed(2);
  }
  // the overlay leaves the background (class 0) clear, as unetlab predict's does; its toggle
  // in the legend colours it too
  state.hidden = new Set(card.classes.length > 1 ? [0] : []);
}

// ------------------------------------------------------------------ predict

async function upload(file) {
  const chip = el("div", { class: "chip" }, el("span", { class: "name", title: file.name }, file.name));
  const bar = el("progress", { max: 1, value: 0 });
  chip.append(bar);
  $("queue").append(chip);
  const fail = (message, hint) => {
    chip.classList.add("error");
    bar.remove();
    chip.title = message;
    showError(message, hint);
  };
  if (file.size > state.card.max_upload_bytes) {
    fail(`${file.name}: larger than the limit of ${(state.card.max_upload_bytes / 1048576).toFixed(0)} MB`,
      "start the server with a larger --max-upload-mb, or downscale the image");
    return;
  }
  let job;
  try {
    const response = await fetch(`/api/predict?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
    job = await response.json();
    if (!response.ok) return fail(job.error || response.statusText, job.hint);
  } catch (error) {
    return fail(`${file.name}: upload failed (${error.message})`);
  }
  try {
    while (job.state === "queued" || job.state === "running") {
      bar.max = job.total;
      bar.value = job.done;
      await sleep(job.total > 1 ? 300 : 120);
      job = await getJSON(`/api/jobs/${job.id}`);
    }
    if (job.state === "error") return fail(`${file.name}: ${job.message}`, job.hint);
    bar.remove();
    const summary = job.result;
    chip.append(el("span", { class: "muted small" }, `${summary.width}×${summary.height}`));
    chip.dataset.result = summary.id;
    chip.addEventListener("click", () => show(summary.id).catch(shown));
    state.results[summary.id] = { summary, probabilities: {} };
    await show(summary.id);
  } catch (error) {
    fail(`${file.name}: ${error.message}`, error.hint);
  }
}

// a failed redraw (e.g. a prediction the server no longer keeps) is told above the viewer
const shown = (error) => showError(error.message, error.hint);
const redraw = () => render().catch(shown);

async function show(id) {
  const entry = state.results[id];
  const s = entry.summary;
  if (!entry.labels) {
    const [image, labels] = await Promise.all([
      loadImage(`/api/results/${id}/image.png`),
      getBytes(`/api/results/${id}/labels`),
    ]);
    const canvas = document.createElement("canvas");
    canvas.width = s.display_width;
    canvas.height = s.display_height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    entry.image = image;
    entry.imageData = context.getImageData(0, 0, s.display_width, s.display_height);
    entry.labels = labels;
  }
  state.current = id;
  for (const chip of document.querySelectorAll(".chip")) chip.classList.toggle("selected", chip.dataset.result === id);
  $("upload-error").hidden = true;
  $("viewer").hidden = false;
  $("view-name").textContent = s.name;
  const tiles = s.tiles > 1 ? ` · ${s.tiles} tiles` : "";
  const scaled = s.display_width !== s.width ? ` · shown at ${s.display_width}×${s.display_height}` : "";
  $("view-meta").textContent = `${s.width}×${s.height} px${tiles} · ${s.seconds.toFixed(2)} s${scaled}` +
    (s.notes.length ? " · " + s.notes.join("; ") : "");
  $("mode").querySelector("[value=heat]").disabled = !s.probabilities;
  if (!s.probabilities) $("mode").value = "classes";
  const imageCanvas = $("image-canvas");
  imageCanvas.width = s.display_width;
  imageCanvas.height = s.display_height;
  imageCanvas.getContext("2d").putImageData(entry.imageData, 0, 0);
  await render();
}

function threshold() {
  return Number($("threshold").value) / 100;
}

// the labels on screen: the server's, or re-cut at the slider's threshold for binary models
async function currentLabels(entry) {
  const card = state.card;
  if (!card.binary || Math.abs(threshold() - card.threshold) < 1e-9 || !entry.summary.probabilities) {
    return { labels: entry.labels, exact: true };
  }
  const p = await probability(entry, 1);
  const cut = threshold() * 255;
  const labels = new Uint8Array(p.length);
  for (let i = 0; i < p.length; i++) labels[i] = p[i] > cut ? 1 : 0;
  return { labels, exact: false };
}

async function probability(entry, index) {
  if (!entry.probabilities[index]) {
    entry.probabilities[index] = await getBytes(`/api/results/${state.current}/probability/${index}`);
  }
  return entry.probabilities[index];
}

async function render() {
  const id = state.current;
  const entry = state.results[id];
  if (!entry) return;
  const s = entry.summary;
  const card = state.card;
  const alpha = Number($("opacity").value) / 100;
  const heat = $("mode").value === "heat";
  const canvas = $("overlay-canvas");
  canvas.width = s.display_width;
  canvas.height = s.display_height;
  const context = canvas.getContext("2d");
  const source = entry.imageData.data;
  const out = context.createImageData(s.display_width, s.display_height);
  const pixels = out.data;
  const { labels, exact } = await currentLabels(entry);
  if (heat) {
    const k = Number($("heat-class").value);
    const p = await probability(entry, k);
    for (let i = 0, j = 0; i < p.length; i++, j += 4) {
      const v = 3 * p[i];
      for (let ch = 0; ch < 3; ch++) pixels[j + ch] = (1 - alpha) * source[j + ch] + alpha * VIRIDIS[v + ch];
      pixels[j + 3] = 255;
    }
    $("overlay-caption").textContent = `Probability of ${card.classes[k].name}`;
  } else {
    const colors = card.classes.map((c) => c.color);
    for (let i = 0, j = 0; i < labels.length; i++, j += 4) {
      const k = labels[i];
      const color = colors[k];
      const a = color && !state.hidden.has(k) ? alpha : 0;
      for (let ch = 0; ch < 3; ch++) pixels[j + ch] = (1 - a) * source[j + ch] + a * (color ? color[ch] : 0);
      pixels[j + 3] = 255;
    }
    $("overlay-caption").textContent = "Prediction";
  }
  context.putImageData(out, 0, 0);
  $("heat-scale").hidden = !heat;
  $("heat-class").hidden = !heat;
  renderLegend(exact ? s.fractions : shares(labels, card.classes.length), exact);
  const hidden = [...state.hidden].join(",");
  const cut = card.binary ? `&threshold=${threshold()}` : "";
  $("download-mask").href = `/api/results/${id}/mask.png?${cut.slice(1)}`;
  $("download-overlay").href = `/api/results/${id}/overlay.png?alpha=${alpha}&hidden=${hidden}${cut}`;
  canvas.dataset.ready = id;
}

function shares(labels, classes) {
  const counts = new Array(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  return counts.map((c) => c / Math.max(labels.length, 1));
}

function renderLegend(fractions, exact) {
  const rows = state.card.classes.map((c) => {
    const on = !state.hidden.has(c.index);
    const box = el("input", { type: "checkbox", "aria-label": "show " + c.name });
    box.checked = on;
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(c.index);
      else state.hidden.add(c.index);
      redraw();
    });
    const share = fractions[c.index] || 0;
    return el("tr", { class: "legend-row" + (on ? "" : " off"), "data-class": c.index },
      el("td", {}, box),
      el("td", {}, el("span", { class: "cls" }, swatch(c.color), el("span", { class: "legend-name" }, c.name))),
      el("td", {}, el("div", { class: "share" },
        el("div", { class: "bar" }, el("div", { style: { width: `${100 * share}%`, background: rgb(c.color) } })),
        el("span", { class: "pct legend-share" }, pct(share)))));
  });
  $("legend").querySelector("tbody").replaceChildren(...rows);
  $("legend").querySelector(".share-col").textContent = exact ? "Share of pixels" : "Share of pixels (at this threshold, on the shown copy)";
}

function setupPredict() {
  const input = $("file-input");
  input.addEventListener("change", async () => {
    const files = [...input.files];
    input.value = "";
    for (const file of files) await upload(file);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const file of [...event.dataTransfer.files]) await upload(file);
  });
  $("opacity").addEventListener("input", () => {
    $("opacity-value").textContent = `${$("opacity").value}%`;
    redraw();
  });
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = threshold().toFixed(2);
    redraw();
  });
  $("mode").addEventListener("change", redraw);
  $("heat-class").addEventListener("change", redraw);
  const bar = $("heat-bar").getContext("2d");
  for (let i = 0; i < 256; i++) {
    bar.fillStyle = `rgb(${VIRIDIS[3 * i]}, ${VIRIDIS[3 * i + 1]}, ${VIRIDIS[3 * i + 2]})`;
    bar.fillRect(i, 0, 1, 12);
  }
}

// ------------------------------------------------------------------ inspect

function columns() {
  const cols = [
    { key: "id", label: "Image" },
    { key: "miou", label: "IoU", score: true, bar: true },
    { key: "mean_dice", label: "Dice", score: true },
    { key: "pixel_accuracy", label: "Acc.", score: true },
  ];
  if (state.inspect && state.inspect.boundary_class !== null) {
    cols.push({ key: "pixel_error", label: "Pixel err.", error: true });
    cols.push({ key: "adapted_rand_error", label: "Rand err.", error: true });
  }
  return cols;
}

function scoreColor(v) {
  // red (bad) -> amber -> green (good)
  const hue = Math.max(0, Math.min(1, v)) * 120;
  return `hsl(${hue}, 62%, 45%)`;
}

function renderTable() {
  const data = state.inspect;
  const cols = columns();
  $("rank-head").replaceChildren(...cols.map((c) => {
    const th = el("th", { "data-key": c.key }, c.label);
    if (state.sort.key === c.key) th.classList.add("sorted");
    th.title = "sort by " + c.label;
    th.addEventListener("click", () => {
      state.sort = { key: c.key, ascending: state.sort.key === c.key ? !state.sort.ascending : true };
      renderTable();
    });
    return th;
  }));
  let rows = data.rows; // worst first, as the server ranks them
  if (state.sort.key) {
    const { key, ascending } = state.sort;
    rows = [...rows].sort((a, b) => {
      const x = a[key], y = b[key];
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
  }
  $("rank-table").querySelector("tbody").replaceChildren(...rows.map((row) => {
    const cells = cols.map((c) => {
      const v = row[c.key];
      if (c.bar) {
        return el("td", {}, el("div", { class: "score" },
          el("div", { class: "mini" }, el("div", { style: { width: `${100 * (v || 0)}%`, background: scoreColor(v || 0) } })),
          el("span", {}, pct(v))));
      }
      if (c.score) return el("td", {}, pct(v));
      if (c.error) return el("td", {}, num(v));
      return el("td", c.key === "id" ? { class: "id", title: v } : {}, String(v));
    });
    const tr = el("tr", { "data-index": row.index, class: row.index === state.selected ? "selected" : "" }, ...cells);
    tr.addEventListener("click", () => openImage(row.index));
    return tr;
  }));
}

function renderSummary() {
  const s = state.inspect.scores;
  const data = state.inspect;
  const stat = (label, value) => el("div", { class: "stat" }, el("div", { class: "value" }, value), el("div", { class: "label" }, label));
  const stats = [
    stat(`split '${data.split}'`, `${data.rows.length} images`),
    stat("mIoU", pct(s.miou)),
    stat("mean Dice", pct(s.mean_dice)),
    stat("pixel accuracy", pct(s.pixel_accuracy)),
  ];
  if (data.boundary_class !== null) {
    const mean = (key) => {
      const values = data.rows.map((r) => r[key]).filter((v) => v !== null);
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    };
    stats.push(stat("pixel error (mean)", num(mean("pixel_error"))));
    stats.push(stat("Rand error (mean)", num(mean("adapted_rand_error"))));
  }
  $("inspect-summary").replaceChildren(...stats);

  const classes = state.card.classes;
  const head = el("tr", {}, ...["class", "IoU", "Dice", "recall", "precision", "pixels"].map((h) => el("th", {}, h)));
  $("class-scores").replaceChildren(el("thead", {}, head), el("tbody", {}, ...classes.map((c) =>
    el("tr", {},
      el("td", {}, el("span", { class: "cls" }, swatch(c.color), c.name)),
      el("td", {}, pct(s.iou[c.index])), el("td", {}, pct(s.dice[c.index])),
      el("td", {}, pct(s.recall[c.index])), el("td", {}, pct(s.precision[c.index])),
      el("td", {}, s.support[c.index].toLocaleString("en"))))));

  const matrix = data.confusion;
  const top = el("tr", {}, el("th", {}), ...classes.map((c) => el("th", { title: c.name }, c.name)));
  const body = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return el("tr", {}, el("th", { class: "rowhead" }, classes[i].name), ...row.map((count, j) => {
      const share = total ? count / total : 0;
      const tint = i === j ? "67, 56, 202" : "213, 94, 0";
      return el("td", {
        title: `truth ${classes[i].name}, predicted ${classes[j].name}: ${count.toLocaleString("en")} pixels`,
        style: { background: `rgba(${tint}, ${0.08 + 0.85 * share})`, color: share > 0.5 ? "#fff" : "inherit" },
      }, total ? pct(share, 0) : "–");
    }));
  });
  $("confusion").replaceChildren(el("thead", {}, top), el("tbody", {}, ...body));
}

async function openImage(index) {
  state.selected = index;
  for (const tr of document.querySelectorAll("#rank-table tbody tr")) {
    tr.classList.toggle("selected", Number(tr.dataset.index) === index);
  }
  const row = state.inspect.rows.find((r) => r.index === index);
  $("detail-empty").hidden = true;
  $("detail").hidden = false;
  $("detail-name").textContent = row.id;
  const extra = state.inspect.boundary_class !== null
    ? ` · pixel error ${num(row.pixel_error)} · Rand error ${num(row.adapted_rand_error)}` : "";
  $("detail-scores").textContent =
    `${row.width}×${row.height} · IoU ${pct(row.miou)} · Dice ${pct(row.mean_dice)} · accuracy ${pct(row.pixel_accuracy)}${extra}`;
  const focus = $("focus").value;
  const loads = ["image", "truth", "prediction", "errors"].map((kind) => {
    const img = $(`panel-${kind}`);
    img.dataset.index = "";
    const url = `/api/inspect/${index}/${kind}.png` + (kind === "errors" ? `?focus=${focus}` : "");
    return new Promise((resolve) => {
      img.onload = () => { img.dataset.index = index; resolve(); };
      img.onerror = resolve;
      img.src = url;
    });
  });
  const counts = await getJSON(`/api/inspect/${index}/errors?focus=${focus}`);
  const scored = row.width * row.height - counts.ignored;
  const item = (color, label, count) => el("span", {}, swatch(color), `${label}: ${count.toLocaleString("en")} px (${pct(count / Math.max(scored, 1))})`);
  const items = [
    item([213, 94, 0], "false positives", counts.false_positive),
    item([0, 114, 178], "false negatives", counts.false_negative),
    item([240, 228, 66], "other errors", counts.other),
  ];
  if (counts.ignored) items.push(item([150, 150, 150], "ignored", counts.ignored));
  $("error-legend").replaceChildren(...items);
  await Promise.all(loads);
  $("detail").dataset.ready = index;
}

async function pollInspection() {
  const status = $("inspect-status");
  for (;;) {
    let data;
    try {
      data = await getJSON("/api/inspect");
    } catch (error) {
      status.textContent = "The server does not answer: " + error.message;
      await sleep(2000);
      continue;
    }
    if (data.state === "off") {
      status.replaceChildren(el("div", {}, "No dataset to inspect."),
        el("div", { class: "muted small" }, "Start the server with --data DATASET [--split val] to rank the split's images worst first."));
      $("inspect-badge").textContent = "";
      return;
    }
    if (data.state === "error") {
      status.replaceChildren(el("div", { class: "alert" }, data.message, data.hint ? el("div", { class: "hint" }, "What to do: " + data.hint) : null));
      $("inspect-badge").textContent = "!";
      return;
    }
    if (data.state === "running") {
      status.replaceChildren(`Scoring the split image by image: ${data.done} / ${data.total || "?"}`,
        el("progress", { max: data.total || 1, value: data.done }));
      $("inspect-badge").textContent = `${data.done}/${data.total || "?"}`;
      await sleep(500);
      continue;
    }
    status.replaceChildren();
    $("inspect-badge").textContent = `${data.rows.length}`;
    state.inspect = data;
    $("inspect-grid").hidden = false;
    renderSummary();
    renderTable();
    $("rank-table").dataset.ready = "1";
    return;
  }
}

function setupTabs() {
  for (const button of document.querySelectorAll(".tab")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === button);
      for (const page of document.querySelectorAll(".tab-page")) page.hidden = page.id !== `tab-${button.dataset.tab}`;
    });
  }
  $("focus").addEventListener("change", () => { if (state.selected !== null) openImage(state.selected); });
}

// an error in the page shows in the page (and in body[data-error], which the browser test
// reads so that it fails at once with the message instead of waiting for what never comes)
function reportPageError(message) {
  document.body.dataset.error = message;
  const box = $("page-error");
  box.textContent = "The page failed: " + message + " (reload the page; if it persists, report it with the server's log)";
  box.hidden = false;
}
window.addEventListener("error", (event) => reportPageError(event.message || String(event.error)));
window.addEventListener("unhandledrejection", (event) => {
  const reason = event.reason;
  reportPageError(reason && reason.message ? reason.message : String(reason));
});

async function main() {
  setupTabs();
  setupPredict();
  try {
    state.card = await getJSON("/api/card");
  } catch (error) {
    $("model-chip").textContent = "cannot read the model card: " + error.message;
    return;
  }
  renderCard(state.card);
  document.body.dataset.ready = "1";
  pollInspection();
}

main();
