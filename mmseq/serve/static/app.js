// The page at `/` of `mmseq serve`: it calls the server's own OpenAI-style API (/v1/...).
"use strict";

const KEY_STORE = "mmseq-api-key";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// fetch() with the API key (if one was given); errors in OpenAI's envelope become ApiError
// with their message, and the field they name.
async function api(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (err) {
    throw new ApiError(0, `The server cannot be reached (${err.message}).`);
  }
  if (response.ok) return response;
  let message = response.statusText || "request failed";
  try {
    const error = (await response.json()).error;
    message = error.message + (error.param ? ` (field: ${error.param})` : "");
  } catch {
    // not OpenAI's envelope: keep the status text
  }
  throw new ApiError(response.status, `Error ${response.status}: ${message}`);
}

function show(section, { status = "", error = "" } = {}) {
  $(`${section}-status`).textContent = status;
  const box = $(`${section}-error`);
  box.textContent = error;
  box.hidden = !error;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- models: wait for /ready, then show the sections whose model is served ----

async function connect() {
  for (;;) {
    const ready = await fetch("/ready").catch(() => null);
    if (ready && ready.ok) break;
    const body = ready ? await ready.json().catch(() => ({})) : {};
    const message = body.error ? body.error.message : "the server cannot be reached";
    if (message.startsWith("loading the models failed")) {
      $("models").textContent = `The server cannot serve: ${message}`;
      return;
    }
    $("models").textContent = `Waiting for the server: ${message}…`;
    await sleep(2000);
  }
  let models;
  try {
    models = (await (await api("/v1/models")).json()).data;
  } catch (err) {
    if (err.status === 401) {
      $("models").textContent = "The server needs an API key.";
      $("key-form").hidden = false;
      $("key-error").textContent = sessionStorage.getItem(KEY_STORE) ? err.message : "";
      $("key-error").hidden = !$("key-error").textContent;
      $("api-key").focus();
    } else {
      $("models").textContent = err.message;
    }
    return;
  }
  $("key-form").hidden = true;
  const kinds = new Set(models.map((m) => m.kind));
  for (const kind of ["speech", "caption", "text"]) $(kind).hidden = !kinds.has(kind);
  const names = models.filter((m) => m.id !== "whisper-1").map((m) => `${m.id} (${m.kind})`);
  $("models").textContent = names.length ? `Serving ${names.join(", ")}.` : "No model is served.";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  $("api-key").value = "";
  connect();
});

// ---- speech: a file or a recording -> segments with times, SRT / VTT downloads ----

let upload = null; // { blob, name } of the last transcription, for the downloads

function clock(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = (seconds % 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${String(m).padStart(2, "0")}:${s}`;
}

function transcriptionForm(format) {
  const form = new FormData();
  form.append("file", upload.blob, upload.name);
  form.append("response_format", format);
  if (format === "verbose_json") form.append("timestamp_granularities[]", "segment");
  return form;
}

function setBusy(busy) {
  $("audio-file").disabled = busy;
  $("record").disabled = busy && !recorder;
}

async function transcribe(blob, name) {
  upload = { blob, name };
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  $("segments").replaceChildren();
  resetDownloads();
  show("speech", { status: `Transcribing ${name}…` });
  setBusy(true);
  try {
    const response = await api("/v1/audio/transcriptions", {
      method: "POST",
      body: transcriptionForm("verbose_json"),
    });
    const result = await response.json();
    renderSegments(result.segments);
    const count = result.segments.length;
    show("speech", {
      status: `${name}: ${result.duration.toFixed(1)} s of ${result.language}, ` +
        `${count} segment${count === 1 ? "" : "s"}.`,
    });
    $("downloads").hidden = count === 0;
  } catch (err) {
    show("speech", { error: err.message });
  } finally {
    setBusy(false);
  }
}

function renderSegments(segments) {
  const items = segments.map((segment) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.start = segment.start;
    button.dataset.end = segment.end;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${clock(segment.start)}–${clock(segment.end)}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = segment.text.trim();
    button.append(time, text);
    button.addEventListener("click", () => {
      const player = $("player");
      player.currentTime = segment.start;
      player.play().catch(() => {}); // a browser may refuse to play: the position is set
    });
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  $("segments").replaceChildren(...items);
}

$("player").addEventListener("timeupdate", () => {
  const now = $("player").currentTime;
  for (const button of $("segments").querySelectorAll("button")) {
    const playing = now >= Number(button.dataset.start) && now < Number(button.dataset.end);
    button.setAttribute("aria-current", String(playing));
  }
});

$("audio-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) transcribe(file, file.name);
});

// SRT and VTT are asked of the server (its subtitle writer) when first chosen.
function resetDownloads() {
  for (const link of $("downloads").querySelectorAll("a")) {
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = "#";
    link.removeAttribute("download");
  }
  $("downloads").hidden = true;
}

for (const link of document.querySelectorAll("#downloads a")) {
  link.addEventListener("click", async (event) => {
    if (link.hasAttribute("download")) return; // fetched already: the browser saves it
    event.preventDefault();
    const format = link.dataset.format;
    show("speech", { status: `Making the ${format.toUpperCase()} file…` });
    try {
      const response = await api("/v1/audio/transcriptions", {
        method: "POST",
        body: transcriptionForm(format),
      });
      const blob = new Blob([await response.text()], { type: "text/plain;charset=utf-8" });
      link.href = URL.createObjectURL(blob);
      link.download = `${upload.name.replace(/\.[^.]*$/, "")}.${format}`;
      show("speech", { status: `${link.download} is ready.` });
      link.click();
    } catch (err) {
      show("speech", { error: err.message });
    }
  });
}

// Recording: MediaRecorder's WebM or Ogg (Opus), uploaded as a file; the server decodes
// these with ffmpeg.
let recorder = null;

async function toggleRecording() {
  if (recorder) {
    recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    show("speech", { error: `The microphone is not available (${err.message}).` });
    return;
  }
  const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/ogg"];
  const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t));
  const chunks = [];
  recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
  recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    const blob = new Blob(chunks, { type: recorder.mimeType });
    recorder = null;
    $("record").textContent = "Record";
    $("record").setAttribute("aria-pressed", "false");
    transcribe(blob, blob.type.includes("ogg") ? "recording.ogg" : "recording.webm");
  });
  recorder.start();
  $("record").textContent = "Stop and transcribe";
  $("record").setAttribute("aria-pressed", "true");
  show("speech", { status: "Recording…" });
}

if (navigator.mediaDevices && window.MediaRecorder) {
  $("record").addEventListener("click", toggleRecording);
} else {
  $("record").disabled = true;
  $("record-hint").textContent =
    "Recording needs a browser with MediaRecorder, and https or localhost.";
}

// ---- captions: a dropped or chosen image ----

async function caption(file) {
  const preview = $("image-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("caption-text").textContent = "";
  show("caption", { status: `Captioning ${file.name}…` });
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const result = await (await api("/v1/images/captions", { method: "POST", body: form })).json();
    $("caption-text").textContent = result.text;
    show("caption");
  } catch (err) {
    show("caption", { error: err.message });
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) caption(file);
});
$("image-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) caption(file);
});

// ---- text to text ----

$("text-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("text-output").textContent = "";
  show("text", { status: "Generating…" });
  try {
    const response = await api("/v1/text/generations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ input: $("text-input").value }),
    });
    const result = (await response.json()).data[0];
    $("text-output").textContent = result.text;
    show("text", { status: result.truncated ? "Cut at the model's token limit." : "" });
  } catch (err) {
    show("text", { error: err.message });
  }
});

connect();
