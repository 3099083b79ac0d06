// genlab studio page: plain JavaScript, no build step, nothing loaded from the network but this server.
"use strict";

const $ = (id) => document.getElementById(id);

// Interaction latencies (ms, input event -> new picture decoded), read by the browser tests and shown on the page.
const stats = { latentPoint: [], latentGrid: [], textFirstChar: [], chain: [], ganImage: [] };
window.studio = { stats, ready: false };

// ---------------------------------------------------------------------------------------------- HTTP helpers

class ApiError extends Error {}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(path, params, options = {}) {
  const response = await fetch(url(path, params), options);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (ignored) { /* not JSON: keep the status line */ }
    throw new ApiError(detail);
  }
  return response;
}

const getJSON = async (path, params, options) => (await request(path, params, options)).json();

async function getImageURL(path, params, options) {
  const blob = await (await request(path, params, options)).blob();
  return URL.createObjectURL(blob);
}

function isAbort(error) { return error && error.name === "AbortError"; }

// Latest-wins requests: at most one in flight per channel; while it runs, newer calls replace each other, and only
// the newest is sent next. A response that is no longer the newest (the run changed) is dropped, by sequence number.
// Dragging thus redraws as fast as the server answers, and never shows an older state after a newer one.
function latestOnly(work, onError) {
  let running = false;
  let pending = null;
  let issued = 0;
  let controller = null;
  async function pump() {
    running = true;
    while (pending) {
      const { args, seq } = pending;
      pending = null;
      controller = new AbortController();
      try {
        await work(args, { signal: controller.signal, isCurrent: () => seq === issued });
      } catch (error) {
        if (!isAbort(error) && seq === issued) onError(error);
      }
    }
    running = false;
  }
  return {
    call(args) {
      issued += 1;
      pending = { args, seq: issued };
      if (!running) pump();
    },
    cancel() {
      issued += 1;
      pending = null;
      if (controller) controller.abort();
    },
  };
}

function showError(id, error) {
  const box = $(id);
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = error instanceof Error ? error.message : String(error);
}

function setImage(img, src) {
  const old = img.dataset.blob;
  img.src = src;
  if (src.startsWith("blob:")) img.dataset.blob = src; else delete img.dataset.blob;
  if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);
  return img.decode().catch(() => undefined);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function bindOutput(inputId, format = (v) => v) {
  const input = $(inputId);
  const output = $(`${inputId}-out`);
  const update = () => { output.textContent = format(input.value); };
  input.addEventListener("input", update);
  update();
}

const fmt = (value) => (Math.abs(value) >= 1000 || (Math.abs(value) < 0.01 && value !== 0)
  ? value.toExponential(3) : value.toFixed(3));

// ---------------------------------------------------------------------------------------------- tabs and runs

let runs = [];
const panels = ["runs", "latent", "text", "chains", "hopfield", "gan"];

function showPanel(name) {
  for (const panel of panels) {
    $(`panel-${panel}`).hidden = panel !== name;
    document.querySelector(`nav [data-panel="${panel}"]`).setAttribute("aria-selected", String(panel === name));
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  const select = document.querySelector(`#panel-${name} .run-select`);
  if (select && select.value && select.dataset.loaded !== select.value) select.dispatchEvent(new Event("change"));
}

function capabilityHint(capability) {
  return {
    latent: "no run here has a VAE (encode/decode); train one, e.g. genlab train vae",
    text: "no run here has a text model with stream(); train one on a text file or tinyshakespeare",
    chain: "no run here has sample_chain() (RBM, DBN, EBM)",
    hopfield: "no run here is a Hopfield network (recall/energy)",
    gan: "no run here is a GAN (generate/sample_z); train one, e.g. genlab train dcgan",
  }[capability];
}

function fillRunSelects(preferred) {
  for (const select of document.querySelectorAll(".run-select")) {
    const capability = select.dataset.capability;
    const usable = runs.filter((run) => run.capabilities.includes(capability) && run.checkpoint);
    const previous = preferred && usable.some((run) => run.name === preferred) ? preferred : select.value;
    select.replaceChildren(...usable.map((run) => new Option(`${run.name} (${run.model})`, run.name)));
    if (usable.some((run) => run.name === previous)) select.value = previous;
    const panel = select.closest(".panel").id.replace("panel-", "");
    const errorId = {
      latent: "latent-error", text: "text-error", chains: "chain-error", hopfield: "hop-error", gan: "gan-error",
    }[panel];
    showError(errorId, usable.length ? null : capabilityHint(capability));
  }
}

function metricsText(run) {
  const source = Object.keys(run.eval || {}).length ? run.eval : (Object.keys(run.val || {}).length ? run.val : run.train);
  const keys = Object.keys(source || {}).slice(0, 3);
  return keys.map((key) => `${key} ${fmt(source[key])}`).join("\n");
}

const capabilityPanel = { latent: "latent", text: "text", chain: "chains", hopfield: "hopfield", gan: "gan" };

function renderRuns() {
  const body = document.querySelector("#runs-table tbody");
  body.replaceChildren();
  for (const run of runs) {
    const row = document.createElement("tr");
    row.dataset.run = run.name;
    const cells = [run.name, run.model || "?", run.dataset || "?", run.step ?? "–"];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const metrics = document.createElement("td");
    metrics.className = "metrics";
    metrics.style.whiteSpace = "pre";
    metrics.textContent = metricsText(run) || (run.error ? "" : "–");
    row.append(metrics);
    const open = document.createElement("td");
    for (const capability of run.capabilities) {
      if (!capabilityPanel[capability] || !run.checkpoint) continue;
      const button = document.createElement("button");
      button.className = "open";
      button.textContent = capabilityPanel[capability];
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        fillRunSelects(run.name);
        const select = document.querySelector(`#panel-${capabilityPanel[capability]} .run-select`);
        select.value = run.name;
        select.dataset.loaded = "";
        showPanel(capabilityPanel[capability]);
      });
      open.append(button);
    }
    if (run.error) {
      const note = document.createElement("div");
      note.className = "muted";
      note.textContent = run.error;
      open.append(note);
    }
    row.append(open);
    row.addEventListener("click", () => showRunDetail(run.name));
    body.append(row);
  }
  $("runs-count").textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}`;
}

async function loadRuns() {
  try {
    const data = await getJSON("/api/runs");
    runs = data.runs;
    $("root").textContent = data.root;
    showError("runs-error", runs.length ? null : `no runs in ${data.root} yet: train one with genlab train ...`);
    renderRuns();
    fillRunSelects();
  } catch (error) {
    showError("runs-error", error);
  }
}

async function showRunDetail(name) {
  for (const row of document.querySelectorAll("#runs-table tbody tr")) {
    row.classList.toggle("selected", row.dataset.run === name);
  }
  const detail = $("run-detail");
  try {
    const run = await getJSON("/api/run", { run: name });
    detail.hidden = false;
    detail.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = run.name;
    detail.append(title);
    const facts = document.createElement("p");
    facts.className = "muted";
    facts.textContent = `${run.model} on ${run.dataset}; checkpoint ${run.checkpoint || "none"}` +
      (run.description ? ` — ${run.description}` : "");
    detail.append(facts);
    const metricTable = document.createElement("table");
    for (const [split, values] of [["eval", run.eval], ["val", run.val], ["train", run.train]]) {
      for (const [key, value] of Object.entries(values || {})) {
        const row = metricTable.insertRow();
        row.insertCell().textContent = split;
        row.insertCell().textContent = key;
        row.insertCell().textContent = fmt(value);
      }
    }
    if (metricTable.rows.length) detail.append(metricTable);
    const pictures = document.createElement("div");
    pictures.className = "pictures";
    if (run.has_metrics) pictures.append(figure(url("/api/run/curves.png", { run: name }), "training curves"));
    for (const sample of run.samples) {
      const caption = sample.step === null ? sample.file : `${sample.name} (step ${sample.step})`;
      pictures.append(figure(url("/api/run/file", { run: name, file: sample.file }), caption));
    }
    detail.append(pictures);
    if (run.capabilities.includes("sample") && run.checkpoint) {
      const button = document.createElement("button");
      button.textContent = "Draw 16 new samples";
      const target = document.createElement("div");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const seed = Math.floor(Math.random() * 1e6);
          const src = await getImageURL("/api/sample.png", { run: name, n: 16, seed });
          target.replaceChildren(figure(src, `model.sample(16), seed ${seed}`));
        } catch (error) {
          target.textContent = error.message;
        } finally {
          button.disabled = false;
        }
      });
      detail.append(button, target);
    }
    if (run.text_samples) {
      const pre = document.createElement("pre");
      pre.textContent = run.text_samples;
      detail.append(pre);
    }
    const config = document.createElement("details");
    config.innerHTML = "<summary>config</summary>";
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(run.config, null, 2);
    config.append(pre);
    detail.append(config);
  } catch (error) {
    showError("runs-error", error);
  }
}

function figure(src, caption) {
  const element = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  element.append(img, text);
  return element;
}

// ---------------------------------------------------------------------------------------------- latent explorer

const latent = { run: null, info: null, point: { x: 0, y: 0 }, marks: [], bounds: [-4, 4, -4, 4] };

function latentBounds() {
  return ["latent-xmin", "latent-xmax", "latent-ymin", "latent-ymax"].map((id) => Number($(id).value));
}

function latentDims() {
  return { dx: Number($("latent-dx").value || 0), dy: Number($("latent-dy").value || 1) };
}

const latentGrid = latestOnly(async ({ started }, { signal, isCurrent }) => {
  const [xmin, xmax, ymin, ymax] = latentBounds();
  if (!(xmin < xmax && ymin < ymax)) throw new ApiError("bounds must satisfy min < max on both axes");
  const src = await getImageURL("/api/latent/grid.png",
    { run: latent.run, size: $("latent-size").value, xmin, xmax, ymin, ymax, ...latentDims() }, { signal });
  if (!isCurrent()) return;
  await setImage($("latent-grid"), src);
  latent.bounds = [xmin, xmax, ymin, ymax];
  drawLatentOverlay();
  showError("latent-error", null);
  stats.latentGrid.push(performance.now() - started);
}, (error) => showError("latent-error", error));

const latentPoint = latestOnly(async ({ started }, { signal, isCurrent }) => {
  const { x, y } = latent.point;
  const src = await getImageURL("/api/latent/point.png", { run: latent.run, x, y, ...latentDims() }, { signal });
  if (!isCurrent()) return;
  await setImage($("latent-point"), src);
  const elapsed = performance.now() - started;
  stats.latentPoint.push(elapsed);
  $("latent-ms").textContent = `${elapsed.toFixed(0)} ms`;
}, (error) => showError("latent-error", error));

const latentInterp = latestOnly(async (_, { signal, isCurrent }) => {
  const data = await getJSON("/api/latent/interpolate",
    { run: latent.run, a: $("interp-a").value, b: $("interp-b").value, steps: $("interp-steps").value }, { signal });
  if (!isCurrent()) return;
  await setImage($("interp-strip"), data.image);
  latent.marks = [data.mu_a, data.mu_b];
  drawLatentOverlay();
}, (error) => showError("latent-error", error));

function drawLatentOverlay() {
  const canvas = $("latent-overlay");
  const rect = canvas.getBoundingClientRect();
  canvas.width = rect.width;
  canvas.height = rect.height;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const [xmin, xmax, ymin, ymax] = latent.bounds;
  const { dx, dy } = latentDims();
  const toPixel = (x, y) => [(x - xmin) / (xmax - xmin) * canvas.width, (ymax - y) / (ymax - ymin) * canvas.height];
  if (latent.marks.length === 2) {
    const [a, b] = latent.marks.map((mu) => toPixel(mu[dx] ?? 0, mu[dy] ?? 0));
    context.strokeStyle = "rgba(255, 200, 40, 0.9)";
    context.lineWidth = 2;
    context.setLineDash([5, 4]);
    context.beginPath();
    context.moveTo(...a);
    context.lineTo(...b);
    context.stroke();
    context.setLineDash([]);
    context.fillStyle = "rgba(255, 200, 40, 0.95)";
    for (const [label, [px, py]] of [["a", a], ["b", b]]) {
      context.beginPath();
      context.arc(px, py, 5, 0, 2 * Math.PI);
      context.fill();
      context.font = "bold 13px sans-serif";
      context.fillText(label, px + 7, py - 7);
    }
  }
  const [px, py] = toPixel(latent.point.x, latent.point.y);
  context.fillStyle = "rgba(230, 40, 60, 0.95)";
  context.strokeStyle = "white";
  context.lineWidth = 2;
  context.beginPath();
  context.arc(px, py, 7, 0, 2 * Math.PI);
  context.fill();
  context.stroke();
}

function moveLatentPoint(x, y, started = performance.now()) {
  const [xmin, xmax, ymin, ymax] = latent.bounds;
  latent.point = { x: Math.min(xmax, Math.max(xmin, x)), y: Math.min(ymax, Math.max(ymin, y)) };
  $("latent-coords").textContent = `z = (${latent.point.x.toFixed(2)}, ${latent.point.y.toFixed(2)})`;
  drawLatentOverlay();
  latentPoint.call({ started });
}

function pointerToLatent(event) {
  const rect = $("latent-overlay").getBoundingClientRect();
  const [xmin, xmax, ymin, ymax] = latent.bounds;
  const x = xmin + (event.clientX - rect.left) / rect.width * (xmax - xmin);
  const y = ymax - (event.clientY - rect.top) / rect.height * (ymax - ymin);
  return [x, y];
}

async function selectLatentRun() {
  const select = $("latent-run");
  latent.run = select.value;
  select.dataset.loaded = select.value;
  if (!latent.run) return;
  try {
    latent.info = await getJSON("/api/model", { run: latent.run });
    const dims = latent.info.latent_dim;
    for (const [id, initial] of [["latent-dx", 0], ["latent-dy", Math.min(1, dims - 1)]]) {
      const options = Array.from({ length: dims }, (_, i) => new Option(`z${i}`, i));
      $(id).replaceChildren(...options);
      $(id).value = initial;
    }
    showError("latent-error", null);
    latent.marks = [];
    latentGrid.call({ started: performance.now() });
    moveLatentPoint(latent.point.x, latent.point.y);
    latentInterp.call({});
  } catch (error) {
    showError("latent-error", error);
  }
}

function setupLatent() {
  bindOutput("latent-size");
  bindOutput("interp-steps");
  $("latent-run").addEventListener("change", selectLatentRun);
  const redraw = () => latentGrid.call({ started: performance.now() });
  $("latent-size").addEventListener("input", redraw);
  for (const id of ["latent-xmin", "latent-xmax", "latent-ymin", "latent-ymax", "latent-dx", "latent-dy"]) {
    $(id).addEventListener("input", () => { redraw(); moveLatentPoint(latent.point.x, latent.point.y); });
  }
  for (const id of ["interp-a", "interp-b", "interp-steps"]) {
    $(id).addEventListener("input", () => latentInterp.call({}));
  }
  const overlay = $("latent-overlay");
  let dragging = false;
  overlay.addEventListener("pointerdown", (event) => {
    dragging = true;
    overlay.setPointerCapture(event.pointerId);
    moveLatentPoint(...pointerToLatent(event));
  });
  overlay.addEventListener("pointermove", (event) => {
    if (dragging) moveLatentPoint(...pointerToLatent(event));
  });
  const stop = () => { dragging = false; };
  overlay.addEventListener("pointerup", stop);
  overlay.addEventListener("pointercancel", stop);
  overlay.addEventListener("keydown", (event) => {
    const [xmin, xmax, ymin, ymax] = latent.bounds;
    const step = { x: (xmax - xmin) / 50, y: (ymax - ymin) / 50 };
    const moves = { ArrowLeft: [-step.x, 0], ArrowRight: [step.x, 0], ArrowUp: [0, step.y], ArrowDown: [0, -step.y] };
    if (!moves[event.key]) return;
    event.preventDefault();
    moveLatentPoint(latent.point.x + moves[event.key][0], latent.point.y + moves[event.key][1]);
  });
  window.addEventListener("resize", drawLatentOverlay);
}

// ---------------------------------------------------------------------------------------------- text

const text = { controller: null, seq: 0 };

async function generateText() {
  const run = $("text-run").value;
  if (!run) return;
  if (text.controller) text.controller.abort();
  const controller = new AbortController();
  text.controller = controller;
  const seq = ++text.seq;
  const output = $("text-output");
  const started = performance.now();
  let count = 0;
  let firstAt = null;
  showError("text-error", null);
  output.textContent = "";
  delete output.dataset.done;
  $("text-stats").textContent = "generating…";
  try {
    const topk = Number($("text-topk").value);
    const response = await request("/api/text/stream", {
      run, prompt: $("text-prompt").value, temperature: $("text-temperature").value,
      top_k: topk > 0 ? topk : null, length: $("text-length").value, seed: $("text-seed").value,
    }, { signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (seq !== text.seq) { reader.cancel().catch(() => undefined); return; }
      if (done) break;
      const chunk = decoder.decode(value, { stream: true });
      if (chunk && firstAt === null) {
        firstAt = performance.now() - started;
        stats.textFirstChar.push(firstAt);
      }
      count += chunk.length;
      output.append(chunk);
      output.scrollTop = output.scrollHeight;
      const seconds = (performance.now() - started) / 1000;
      $("text-stats").textContent = `${count} characters, ${(count / seconds).toFixed(0)} chars/s`;
    }
    const seconds = (performance.now() - started) / 1000;
    $("text-stats").textContent = `${count} characters in ${seconds.toFixed(2)} s ` +
      `(${(count / seconds).toFixed(0)} chars/s; first after ${(firstAt ?? 0).toFixed(0)} ms)`;
    output.dataset.done = String(seq);
  } catch (error) {
    if (isAbort(error)) return;
    if (seq === text.seq) {
      showError("text-error", error);
      $("text-stats").textContent = "";
    }
  }
}

function stopText() {
  text.seq += 1;
  if (text.controller) text.controller.abort();
  $("text-stats").textContent = "stopped";
}

async function selectTextRun() {
  const select = $("text-run");
  select.dataset.loaded = select.value;
  if (!select.value) return;
  try {
    const info = await getJSON("/api/model", { run: select.value });
    $("text-topk").max = String(Math.max(1, info.vocab_size || 100));
    generateText();
  } catch (error) {
    showError("text-error", error);
  }
}

function setupText() {
  bindOutput("text-temperature", (v) => Number(v).toFixed(2));
  bindOutput("text-topk", (v) => (Number(v) > 0 ? v : "off"));
  bindOutput("text-length");
  $("text-run").addEventListener("change", selectTextRun);
  $("text-generate").addEventListener("click", generateText);
  $("text-stop").addEventListener("click", stopText);
  const regenerate = debounce(generateText, 150);
  for (const id of ["text-temperature", "text-topk", "text-length", "text-seed"]) {
    $(id).addEventListener("input", regenerate);
  }
  $("text-prompt").addEventListener("keydown", (event) => { if (event.key === "Enter") generateText(); });
}

// ---------------------------------------------------------------------------------------------- chains

const chains = { frames: [], steps: [], timer: null, info: null };

const chainRunner = latestOnly(async ({ started }, { signal, isCurrent }) => {
  const run = $("chain-run").value;
  const params = {
    run, n: $("chain-n").value, steps: $("chain-steps").value, every: $("chain-every").value,
    start: $("chain-start").value, index: $("chain-index").value, seed: $("chain-seed").value,
  };
  if (chains.info && chains.info.chain_label && $("chain-label").value !== "") params.label = $("chain-label").value;
  $("chain-stats").textContent = "running…";
  const data = await getJSON("/api/chain", params, { signal });
  if (!isCurrent()) return;
  chains.frames = data.frames;
  chains.steps = data.steps;
  const slider = $("chain-frame-slider");
  slider.max = String(data.frames.length - 1);
  slider.value = slider.max;
  await showChainFrame(data.frames.length - 1);
  const elapsed = performance.now() - started;
  stats.chain.push(elapsed);
  showError("chain-error", null);
  $("chain-stats").textContent = `${data.frames.length} frames; sampler ${data.seconds.toFixed(2)} s, ` +
    `round trip ${(elapsed / 1000).toFixed(2)} s`;
}, (error) => { showError("chain-error", error); $("chain-stats").textContent = ""; });

function showChainFrame(index) {
  if (!chains.frames.length) return Promise.resolve();
  $("chain-frame-out").textContent = `step ${chains.steps[index]} / ${chains.steps[chains.steps.length - 1]}`;
  return setImage($("chain-frame"), chains.frames[index]);
}

function toggleChainPlay() {
  if (chains.timer) {
    clearInterval(chains.timer);
    chains.timer = null;
    $("chain-play").textContent = "Play";
    return;
  }
  const slider = $("chain-frame-slider");
  if (Number(slider.value) >= chains.frames.length - 1) slider.value = "0";
  $("chain-play").textContent = "Pause";
  chains.timer = setInterval(() => {
    const next = Number(slider.value) + 1;
    if (next >= chains.frames.length) { toggleChainPlay(); return; }
    slider.value = String(next);
    showChainFrame(next);
  }, 100);
}

async function selectChainRun() {
  const select = $("chain-run");
  select.dataset.loaded = select.value;
  if (!select.value) return;
  try {
    chains.info = await getJSON("/api/model", { run: select.value });
    $("chain-label-wrap").hidden = !chains.info.chain_label;
    if (chains.info.chain_label) {
      const options = [new Option("none", "")];
      for (let i = 0; i < chains.info.num_labels; i += 1) options.push(new Option(String(i), String(i)));
      $("chain-label").replaceChildren(...options);
    }
    chainRunner.call({ started: performance.now() });
  } catch (error) {
    showError("chain-error", error);
  }
}

function setupChains() {
  for (const id of ["chain-steps", "chain-every", "chain-n"]) bindOutput(id);
  $("chain-run").addEventListener("change", selectChainRun);
  const rerun = debounce(() => chainRunner.call({ started: performance.now() }), 200);
  $("chain-run-button").addEventListener("click", () => chainRunner.call({ started: performance.now() }));
  for (const id of ["chain-steps", "chain-every", "chain-n", "chain-start", "chain-index", "chain-label", "chain-seed"]) {
    $(id).addEventListener("input", rerun);
  }
  $("chain-steps").addEventListener("input", () => {
    // Keep the frame count within the server's limit (201 frames) by raising "every" with the steps.
    const minimum = Math.max(1, Math.ceil(Number($("chain-steps").value) / 200));
    if (Number($("chain-every").value) < minimum) {
      $("chain-every").value = String(minimum);
      $("chain-every-out").textContent = String(minimum);
    }
  });
  $("chain-frame-slider").addEventListener("input", (event) => showChainFrame(Number(event.target.value)));
  $("chain-play").addEventListener("click", toggleChainPlay);
}

// ---------------------------------------------------------------------------------------------- Hopfield

const hop = { shape: [28, 28], state: [], original: null, frames: [], energies: [], info: null };

function drawUnits(canvas, units, shape) {
  const context = canvas.getContext("2d");
  const [rows, cols] = shape;
  const cell = Math.max(1, Math.floor(Math.min(canvas.width / cols, canvas.height / rows)));
  context.fillStyle = "#888";
  context.fillRect(0, 0, canvas.width, canvas.height);
  for (let r = 0; r < rows; r += 1) {
    for (let c = 0; c < cols; c += 1) {
      context.fillStyle = units[r * cols + c] > 0 ? "#ffffff" : "#101010";
      context.fillRect(c * cell, r * cell, cell, cell);
    }
  }
}

function overlap(units) {
  if (!hop.original) return null;
  let sum = 0;
  for (let i = 0; i < units.length; i += 1) sum += units[i] * hop.original[i];
  return sum / units.length;
}

const parseSigns = (text) => Array.from(text, (char) => (char === "+" ? 1 : -1));
const formatSigns = (units) => units.map((u) => (u > 0 ? "+" : "-")).join("");

function drawEnergy(current) {
  const canvas = $("hop-energy");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const values = hop.energies;
  if (!values.length) return;
  const pad = { left: 60, right: 10, top: 10, bottom: 28 };
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const xOf = (i) => pad.left + (values.length === 1 ? 0 : i / (values.length - 1)) * (canvas.width - pad.left - pad.right);
  const yOf = (v) => pad.top + (high - v) / span * (canvas.height - pad.top - pad.bottom);
  context.strokeStyle = "#d9dee7";
  context.strokeRect(pad.left, pad.top, canvas.width - pad.left - pad.right, canvas.height - pad.top - pad.bottom);
  context.fillStyle = "#667085";
  context.font = "11px sans-serif";
  context.fillText(fmt(high), 4, pad.top + 8);
  context.fillText(fmt(low), 4, canvas.height - pad.bottom);
  context.fillText("step", canvas.width / 2, canvas.height - 8);
  context.strokeStyle = "#2f6fde";
  context.lineWidth = 2;
  context.beginPath();
  values.forEach((v, i) => (i ? context.lineTo(xOf(i), yOf(v)) : context.moveTo(xOf(i), yOf(v))));
  context.stroke();
  context.fillStyle = "#e6283c";
  context.beginPath();
  context.arc(xOf(current), yOf(values[current]), 4, 0, 2 * Math.PI);
  context.fill();
}

function showHopFrame(index) {
  if (!hop.frames.length) return;
  const units = hop.frames[index];
  drawUnits($("hop-frame"), units, hop.shape);
  drawEnergy(index);
  const m = overlap(units);
  $("hop-frame-out").textContent = `step ${index}: energy ${fmt(hop.energies[index])}` +
    (m === null ? "" : `, overlap with the pattern ${m.toFixed(3)}`);
}

const hopRecall = latestOnly(async (_, { signal, isCurrent }) => {
  const run = $("hop-run").value;
  const response = await request("/api/hopfield/recall", {}, {
    method: "POST", signal, headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      run, state: formatSigns(hop.state), steps: Number($("hop-steps").value), mode: $("hop-mode").value,
      seed: Number($("hop-seed").value),
    }),
  });
  const data = await response.json();
  if (!isCurrent()) return;
  hop.frames = data.frames.map(parseSigns);
  hop.energies = data.energies;
  const slider = $("hop-frame-slider");
  slider.max = String(hop.frames.length - 1);
  slider.value = slider.max;
  showHopFrame(hop.frames.length - 1);
  showError("hop-error", null);
  const first = hop.energies[0];
  const last = hop.energies[hop.energies.length - 1];
  const m = overlap(hop.frames[hop.frames.length - 1]);
  $("hop-stats").textContent = `energy ${fmt(first)} → ${fmt(last)}` + (m === null ? "" : `; final overlap ${m.toFixed(3)}`);
}, (error) => showError("hop-error", error));

const hopLoad = latestOnly(async (_, { signal, isCurrent }) => {
  const data = await getJSON("/api/hopfield/pattern", {
    run: $("hop-run").value, index: $("hop-index").value, split: $("hop-split").value,
    noise: $("hop-noise").value, seed: $("hop-seed").value,
  }, { signal });
  if (!isCurrent()) return;
  hop.shape = data.shape;
  hop.original = parseSigns(data.pattern);
  hop.state = parseSigns(data.state);
  drawUnits($("hop-editor"), hop.state, hop.shape);
  showError("hop-error", null);
  hopRecall.call({});
}, (error) => showError("hop-error", error));

function setupHopfieldEditor() {
  const canvas = $("hop-editor");
  let paint = 0;
  const cellAt = (event) => {
    const rect = canvas.getBoundingClientRect();
    const [rows, cols] = hop.shape;
    const cell = Math.max(1, Math.floor(Math.min(canvas.width / cols, canvas.height / rows)));
    const c = Math.floor((event.clientX - rect.left) * (canvas.width / rect.width) / cell);
    const r = Math.floor((event.clientY - rect.top) * (canvas.height / rect.height) / cell);
    return r >= 0 && r < rows && c >= 0 && c < cols ? r * cols + c : -1;
  };
  const apply = (event) => {
    const index = cellAt(event);
    if (index < 0 || hop.state[index] === paint) return;
    hop.state[index] = paint;
    drawUnits(canvas, hop.state, hop.shape);
  };
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("pointerdown", (event) => {
    if (!hop.state.length) return;
    paint = event.button === 2 || event.shiftKey ? -1 : 1;
    canvas.setPointerCapture(event.pointerId);
    apply(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (paint) apply(event); });
  const finish = () => { if (paint) { paint = 0; hopRecall.call({}); } };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
}

async function selectHopRun() {
  const select = $("hop-run");
  select.dataset.loaded = select.value;
  if (!select.value) return;
  try {
    hop.info = await getJSON("/api/model", { run: select.value });
    hop.shape = hop.info.shape;
    hop.state = new Array(hop.info.units).fill(-1);
    hop.original = null;
    hopLoad.call({});
  } catch (error) {
    showError("hop-error", error);
  }
}

function setupHopfield() {
  bindOutput("hop-noise", (v) => Number(v).toFixed(2));
  bindOutput("hop-steps");
  $("hop-run").addEventListener("change", selectHopRun);
  $("hop-load").addEventListener("click", () => hopLoad.call({}));
  $("hop-recall").addEventListener("click", () => hopRecall.call({}));
  $("hop-clear").addEventListener("click", () => {
    hop.state = hop.state.map(() => -1);
    drawUnits($("hop-editor"), hop.state, hop.shape);
  });
  $("hop-invert").addEventListener("click", () => {
    hop.state = hop.state.map((u) => -u);
    drawUnits($("hop-editor"), hop.state, hop.shape);
    hopRecall.call({});
  });
  const reload = debounce(() => hopLoad.call({}), 150);
  for (const id of ["hop-noise", "hop-index", "hop-split"]) $(id).addEventListener("input", reload);
  const rerecall = debounce(() => hopRecall.call({}), 150);
  for (const id of ["hop-steps", "hop-mode", "hop-seed"]) $(id).addEventListener("input", rerecall);
  $("hop-frame-slider").addEventListener("input", (event) => showHopFrame(Number(event.target.value)));
  setupHopfieldEditor();
}

// ---------------------------------------------------------------------------------------------- GAN

// Sliders shown; the other dimensions of z keep the values drawn from the prior (Randomise redraws them all).
const GAN_SLIDERS = 16;
// run, info and z change together, once the run's info has arrived; "chosen" is the run asked for last.
const gan = { run: null, info: null, z: [], chosen: null };

function ganLabel() {
  return gan.info && gan.info.conditional ? Number($("gan-label").value) : null;
}

// Which run and class a picture shows (for the browser tests, and for anyone inspecting the page).
function markGanImage(img, run, label) {
  img.dataset.run = run;
  img.dataset.label = label === null ? "" : String(label);
}

const ganImage = latestOnly(async ({ started }, { signal, isCurrent }) => {
  const { run } = gan;
  if (!run) return;
  const label = ganLabel();
  const response = await request("/api/gan/generate", {}, {
    method: "POST", signal, headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ run, z: gan.z, label }),
  });
  const blob = await response.blob();
  if (!isCurrent()) return;
  await setImage($("gan-image"), URL.createObjectURL(blob));
  markGanImage($("gan-image"), run, label);
  const elapsed = performance.now() - started;
  stats.ganImage.push(elapsed);
  $("gan-ms").textContent = `${elapsed.toFixed(0)} ms`;
  showError("gan-error", null);
}, (error) => showError("gan-error", error));

const ganInterp = latestOnly(async (_, { signal, isCurrent }) => {
  const { run } = gan;
  if (!run) return;
  const label = ganLabel();
  const data = await getJSON("/api/gan/interpolate", {
    run, seed: $("gan-interp-seed").value, steps: $("gan-interp-steps").value, label,
  }, { signal });
  if (!isCurrent()) return;
  await setImage($("gan-interp"), data.image);
  markGanImage($("gan-interp"), run, label);
}, (error) => showError("gan-error", error));

// A new z from the prior, drawn by the server with the seed (the same seed gives the same z).
const ganDraw = latestOnly(async ({ started }, { signal, isCurrent }) => {
  if (!gan.run) return;
  const data = await getJSON("/api/gan/info", { run: gan.run, seed: $("gan-seed").value }, { signal });
  if (!isCurrent()) return;
  gan.z = data.z;
  showGanZ();
  ganImage.call({ started });
}, (error) => showError("gan-error", error));

function ganSlider(dim, [low, high]) {
  const input = document.createElement("input");
  input.type = "range";
  input.min = String(low);
  input.max = String(high);
  input.step = String((high - low) / 100);
  input.dataset.dim = String(dim);
  input.setAttribute("aria-label", `z${dim}`);
  const name = document.createElement("span");
  name.textContent = `z${dim}`;
  const label = document.createElement("label");
  label.append(name, input, document.createElement("output"));
  return label;
}

function buildGanControls() {
  const { z_dim: size, range, prior, conditional, num_classes: classes } = gan.info;
  const shown = Math.min(GAN_SLIDERS, size);
  $("gan-sliders").replaceChildren(...Array.from({ length: shown }, (_, dim) => ganSlider(dim, range)));
  $("gan-prior").textContent = prior === "uniform"
    ? `(${size} dimensions, z ~ U(${range[0]}, ${range[1]}))`
    : `(${size} dimensions, z ~ N(0, I); sliders span ${range[0]} to ${range[1]})`;
  $("gan-more").hidden = shown === size;
  $("gan-more").textContent = `Sliders for z0 to z${shown - 1} of ${size}; the other ${size - shown} keep the ` +
    "values drawn from the prior (Randomise redraws all of them).";
  $("gan-label-wrap").hidden = !conditional;
  const options = Array.from({ length: conditional ? classes : 0 }, (_, i) => new Option(String(i), String(i)));
  $("gan-label").replaceChildren(...options);
}

function showGanZ() {
  for (const input of $("gan-sliders").querySelectorAll("input")) {
    const value = gan.z[Number(input.dataset.dim)];
    input.value = String(value);
    input.nextElementSibling.textContent = value.toFixed(2);
  }
}

async function selectGanRun() {
  const select = $("gan-run");
  const run = select.value;
  select.dataset.loaded = run;
  if (!run || run === gan.chosen) return;  // already shown, or on its way
  gan.chosen = run;
  for (const channel of [ganDraw, ganImage, ganInterp]) channel.cancel();
  try {
    const info = await getJSON("/api/gan/info", { run, seed: $("gan-seed").value });
    if (gan.chosen !== run) return;  // another run was chosen meanwhile
    Object.assign(gan, { run, info, z: info.z });
    buildGanControls();
    showGanZ();
    showError("gan-error", null);
    ganImage.call({ started: performance.now() });
    ganInterp.call({});
  } catch (error) {
    if (gan.chosen === run) gan.chosen = null;  // choosing it again retries
    showError("gan-error", error);
  }
}

function setupGan() {
  bindOutput("gan-interp-steps");
  $("gan-run").addEventListener("change", selectGanRun);
  $("gan-sliders").addEventListener("input", (event) => {
    const dim = Number(event.target.dataset.dim);
    gan.z[dim] = Number(event.target.value);
    event.target.nextElementSibling.textContent = gan.z[dim].toFixed(2);
    ganImage.call({ started: performance.now() });
  });
  $("gan-label").addEventListener("input", () => {
    ganImage.call({ started: performance.now() });
    ganInterp.call({});
  });
  $("gan-randomise").addEventListener("click", () => {
    $("gan-seed").value = String((Number($("gan-seed").value) || 0) + 1);
    ganDraw.call({ started: performance.now() });
  });
  $("gan-seed").addEventListener("input", debounce(() => ganDraw.call({ started: performance.now() }), 150));
  for (const id of ["gan-interp-seed", "gan-interp-steps"]) $(id).addEventListener("input", () => ganInterp.call({}));
}

// ---------------------------------------------------------------------------------------------- start

async function main() {
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showPanel(button.dataset.panel));
  }
  $("runs-refresh").addEventListener("click", loadRuns);
  setupLatent();
  setupText();
  setupChains();
  setupHopfield();
  setupGan();
  await loadRuns();
  const start = location.hash.slice(1);
  showPanel(panels.includes(start) ? start : "runs");
  window.studio.ready = true;
}

main();
