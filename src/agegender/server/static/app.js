// agegender web page: upload photos or stream the camera to POST /v1/predict and draw the faces.
// No dependencies; everything is served by the agegender server itself.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const api = {
  threshold: () => $("#threshold").value,
  maxFaces: () => $("#max-faces").value,
};

function predictUrl(annotate = false) {
  const q = new URLSearchParams({ threshold: api.threshold() });
  if (api.maxFaces()) q.set("max_faces", api.maxFaces());
  if (annotate) q.set("annotate", "true");
  return "/v1/predict?" + q.toString();
}

// POST one image: a File goes as multipart (its name is reported back), a Blob as a raw image body.
// annotate: also ask for the server's drawing of the result (a JPEG), for files this browser cannot show.
async function predict(blob, filename, annotate = false) {
  let init;
  if (filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    init = { method: "POST", body: form };
  } else {
    init = { method: "POST", body: blob, headers: { "Content-Type": blob.type || "image/jpeg" } };
  }
  const response = await fetch(predictUrl(annotate), init);
  let body;
  try { body = await response.json(); } catch { body = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  const timing = /dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
  body._serverMs = timing ? parseFloat(timing[1]) : null;
  return body;
}

// The label drawn next to a box, as `agegender predict --save-dir` draws it: "34, F".
function faceLabel(face) {
  return `${Math.round(face.age)}, ${face.gender === "female" ? "F" : "M"}`;
}

// A face's age range in whole years ("28-47"), or "" for a model without one.
function rangeText(face) {
  return face.age_range ? face.age_range.map((v) => Math.round(v)).join("-") : "";
}

// Boxes as percentages of the image, so they follow the displayed size on any screen.
function drawFaces(overlay, result) {
  overlay.replaceChildren();
  result.faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const box = document.createElement("div");
    box.className = `face-box ${face.gender}` + (y1 / result.height < 0.06 ? " label-below" : "");
    box.style.left = `${(100 * x1) / result.width}%`;
    box.style.top = `${(100 * y1) / result.height}%`;
    box.style.width = `${(100 * (x2 - x1)) / result.width}%`;
    box.style.height = `${(100 * (y2 - y1)) / result.height}%`;
    const range = face.age_range ? ` (range ${rangeText(face)})` : "";
    box.title = `#${i + 1}: age ${face.age}${range}, ${face.gender} (p=${face.gender_probability}), score ${face.score}`;
    const label = document.createElement("span");
    label.className = "face-label";
    label.textContent = faceLabel(face);
    box.append(label);
    overlay.append(box);
  });
}

// The result as JSON with one line per face (valid JSON, easier to read than fully indented).
function compactJson(result) {
  const head = Object.entries(result).filter(([k]) => k !== "faces")
    .map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  const value = (v) => (Array.isArray(v) ? `[${v.map((x) => JSON.stringify(x)).join(", ")}]` : JSON.stringify(v));
  const faces = result.faces.map((f) =>
    `    {${Object.entries(f).map(([k, v]) => `${JSON.stringify(k)}: ${value(v)}`).join(", ")}}`);
  const list = faces.length ? `[\n${faces.join(",\n")}\n  ]` : "[]";
  return `{\n${[...head, `  "faces": ${list}`].join(",\n")}\n}`;
}

function fillTable(tbody, result) {
  tbody.replaceChildren();
  result.faces.forEach((face, i) => {
    const tr = document.createElement("tr");
    const cells = [i + 1, face.age.toFixed(1), rangeText(face) || "-", face.gender, face.gender_probability.toFixed(2),
      face.score.toFixed(2), face.box.map((v) => Math.round(v)).join(", ")];
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = String(value);
      tr.append(td);
    }
    tbody.append(tr);
  });
}

// ---- photos -----------------------------------------------------------------------------------------
function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function handleFiles(files) {
  const status = $("#photos-status");
  const list = [...files];
  if (!list.length) return;
  let done = 0, failed = 0;
  setStatus(status, `analysing ${list.length} photo(s)…`);
  for (const file of list) {
    const card = $("#result-template").content.firstElementChild.cloneNode(true);
    card.dataset.name = file.name;
    $(".result-title", card).textContent = file.name;
    $("#results").prepend(card);
    try {
      // the photo itself where this browser can show it (one decode); Chromium and Firefox cannot show TIFF
      // or HEIC, which the server reads: those are shown as the server draws them
      const img = $("img", card);
      img.alt = file.name;
      const url = URL.createObjectURL(file);
      img.src = url;
      const shown = await img.decode().then(() => true, () => false);
      const result = await predict(file, file.name, !shown);
      if (shown) {
        drawFaces($(".overlay", card), result);
      } else {  // the boxes are in the server's drawing
        URL.revokeObjectURL(url);
        img.src = `data:image/jpeg;base64,${result.annotated_jpeg}`;
        await img.decode().catch(() => {});
      }
      card.classList.toggle("server-drawn", !shown);
      fillTable($("tbody", card), result);
      $(".result-summary", card).textContent =
        `${result.width}×${result.height} px, ${result.faces.length} face(s)` +
        (result._serverMs != null ? `, ${Math.round(result._serverMs)} ms on the server` : "") +
        (shown ? "" : " (this browser cannot show this format: the server's drawing)");
      const { _serverMs, annotated_jpeg, ...json } = result;
      $(".json", card).textContent = compactJson(json);
      card.classList.add("done");
      done++;
    } catch (err) {
      card.classList.add("failed");
      $(".stage", card).remove();
      $(".table-wrap", card).remove();
      $(".result-summary", card).textContent = `error: ${err.message}`;
      failed++;
    }
  }
  setStatus(status, `${done} photo(s) analysed` + (failed ? `, ${failed} failed` : ""), failed > 0);
}

function setupPhotos() {
  const zone = $("#drop-zone");
  $("#file-input").addEventListener("change", (e) => { handleFiles(e.target.files); e.target.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    handleFiles(e.dataTransfer.files);
  });
}

// ---- camera -----------------------------------------------------------------------------------------
const camera = { stream: null, running: false, times: [] };
const MAX_SIDE = 640;  // frames are sent downscaled: faster, and plenty for faces near a camera

function grabFrame(video, canvas) {
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
}

async function cameraLoop() {
  const video = $("#video"), overlay = $("#camera-stage .overlay"), canvas = document.createElement("canvas");
  const status = $("#camera-status");
  while (camera.running) {
    if (video.readyState < 2 || !video.videoWidth) { await new Promise((r) => setTimeout(r, 50)); continue; }
    try {
      const frame = await grabFrame(video, canvas);
      const result = await predict(frame);
      if (!camera.running) break;
      drawFaces(overlay, result);
      const now = performance.now();
      camera.times.push(now);
      while (camera.times.length && now - camera.times[0] > 2000) camera.times.shift();
      const span = (now - camera.times[0]) / 1000;
      const fps = camera.times.length > 1 && span > 0 ? (camera.times.length - 1) / span : 0;
      $("#fps").textContent = `${fps.toFixed(1)} fps · ${result.faces.length} face(s)` +
        (result._serverMs != null ? ` · ${Math.round(result._serverMs)} ms/frame on the server` : "");
      $("#fps").dataset.fps = fps.toFixed(2);
      setStatus(status, "");
    } catch (err) {
      setStatus(status, `error: ${err.message}`, true);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function startCamera() {
  const status = $("#camera-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus(status, "this browser gives no camera here (camera access needs https or localhost)", true);
    return;
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    setStatus(status, `no camera: ${err.message}`, true);
    return;
  }
  const video = $("#video");
  video.srcObject = camera.stream;
  await video.play().catch(() => {});
  camera.running = true;
  camera.times = [];
  $("#camera-start").disabled = true;
  $("#camera-stop").disabled = false;
  $("#fps").textContent = "starting…";
  cameraLoop();
}

function stopCamera() {
  camera.running = false;
  if (camera.stream) camera.stream.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  $("#video").srcObject = null;
  $("#camera-stage .overlay").replaceChildren();
  $("#camera-start").disabled = false;
  $("#camera-stop").disabled = true;
  $("#fps").textContent = "stopped";
}

// ---- page -------------------------------------------------------------------------------------------
function showPanel(name) {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    const on = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(on));
    $("#" + tab.dataset.panel).hidden = !on;
  }
  if (name !== "camera" && camera.running) stopCamera();
}

async function loadSettings() {
  try {
    const info = await (await fetch("/v1/models")).json();
    const slider = $("#threshold");
    slider.min = info.detector.min_threshold;
    slider.value = info.detector.default_threshold;
    $("#threshold-value").textContent = Number(slider.value).toFixed(2);
    document.title = `agegender (${info.model.name} model)`;
  } catch { /* the defaults in the page still work */ }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.addEventListener("click", () => showPanel(tab.dataset.panel));
  }
  $("#threshold").addEventListener("input", (e) => {
    $("#threshold-value").textContent = Number(e.target.value).toFixed(2);
  });
  $("#camera-start").addEventListener("click", startCamera);
  $("#camera-stop").addEventListener("click", stopCamera);
  setupPhotos();
  loadSettings();
});
