// Front end of course_lib.webcam.WebcamWidget (anywidget ES module).
//
// Captures frames from the camera, from a sequence of JPEG frames sent by the
// kernel, or from an uploaded image. Sends at most `max_fps` JPEG frames a
// second to the kernel, with at most one frame in flight, and draws the
// detections that come back on a canvas laid over the picture. The root element carries
// data-* attributes (state, frames, faces, labels) that tests read.

const IN_FLIGHT_TIMEOUT_MS = 5000;

const CAMERA_ERRORS = {
  NotAllowedError:
    "Camera access was denied (NotAllowedError). Allow the camera for this page in the browser's site settings and press Start again, or choose the 'sequence' or 'upload' source.",
  SecurityError:
    "Camera access was blocked by the browser's security settings (SecurityError). Choose the 'sequence' or 'upload' source.",
  NotFoundError:
    "No camera was found (NotFoundError). Connect a camera and press Start again, or choose the 'sequence' or 'upload' source.",
  OverconstrainedError:
    "No camera supports the requested settings (OverconstrainedError). Choose the 'sequence' or 'upload' source.",
  NotReadableError:
    "The camera could not be read (NotReadableError); another program may be using it. Close that program, or choose the 'sequence' or 'upload' source.",
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el }) {
  const root = element("div", "mfr-webcam");
  root.dataset.state = "idle";
  root.dataset.frames = "0";
  root.dataset.faces = "0";
  root.dataset.maxFaces = "0";
  root.dataset.labels = "[]";

  const toolbar = element("div", "mfr-webcam-toolbar");
  const startButton = element("button", "mfr-webcam-start", "Start");
  const stopButton = element("button", "mfr-webcam-stop", "Stop");
  const sourceSelect = element("select", "mfr-webcam-source");
  for (const [value, title] of [["camera", "Camera"], ["sequence", "Sequence"], ["upload", "Uploaded image"]]) {
    const option = element("option", "", title);
    option.value = value;
    sourceSelect.appendChild(option);
  }
  const uploadInput = element("input", "mfr-webcam-upload");
  uploadInput.type = "file";
  uploadInput.accept = "image/*";
  uploadInput.title = "Upload an image to process";
  toolbar.append(startButton, stopButton, sourceSelect, uploadInput);

  const stage = element("div", "mfr-webcam-stage");
  const video = element("video", "mfr-webcam-video");
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;
  const still = element("canvas", "mfr-webcam-still");
  const overlay = element("canvas", "mfr-webcam-overlay");
  stage.append(video, still, overlay);

  const info = element("div", "mfr-webcam-info");
  const fpsText = element("span", "mfr-webcam-fps", "FPS: -");
  const latencyText = element("span", "mfr-webcam-latency", "Latency: -");
  const facesText = element("span", "mfr-webcam-faces", "Faces: -");
  const droppedText = element("span", "mfr-webcam-dropped", "Dropped: 0");
  info.append(fpsText, latencyText, facesText, droppedText);
  const message = element("div", "mfr-webcam-message");

  root.append(toolbar, stage, info, message);
  el.appendChild(root);

  const capture = document.createElement("canvas");
  let stream = null;
  let timer = null;
  let active = false;
  let starting = false;
  let pendingId = null;
  let pendingSince = 0;
  let nextId = Math.floor(Math.random() * 1e6) * 1000;
  let dropped = 0;
  let results = 0;
  let maxFaces = 0;
  let resultTimes = [];
  let sequenceBitmaps = [];
  let sequenceIndex = 0;
  let uploadBitmap = null;

  function showMessage(text, kind) {
    message.textContent = text;
    message.className = "mfr-webcam-message" + (kind ? " mfr-webcam-" + kind : "");
    root.dataset.message = text;
  }

  function showSource(kind) {
    video.style.display = kind === "camera" ? "block" : "none";
    still.style.display = kind === "camera" ? "none" : "block";
  }

  async function loadSequence(frames) {
    const bitmaps = [];
    for (const frame of frames) {
      bitmaps.push(await createImageBitmap(new Blob([frame], { type: "image/jpeg" })));
    }
    sequenceBitmaps = bitmaps;
    sequenceIndex = 0;
    root.dataset.sequenceFrames = String(bitmaps.length);
  }

  async function openCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return "This page cannot use a camera: getUserMedia is available only on pages served over https or from localhost. Choose the 'sequence' or 'upload' source.";
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (error) {
      stream = null;
      return CAMERA_ERRORS[error.name] || `The camera could not start (${error.name}: ${error.message}).`;
    }
    video.srcObject = stream;
    await video.play().catch(() => undefined);
    for (let waited = 0; video.videoWidth === 0 && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (video.videoWidth === 0) return "The camera started but delivered no frames within 5 seconds.";
    return null;
  }

  function closeCamera() {
    if (stream) {
      for (const track of stream.getTracks()) track.stop();
    }
    stream = null;
    video.srcObject = null;
  }

  // The picture of the current source, and its size, or null when there is none yet.
  function currentPicture() {
    const kind = model.get("source");
    if (kind === "camera") {
      return video.videoWidth > 0 ? { image: video, width: video.videoWidth, height: video.videoHeight } : null;
    }
    if (kind === "sequence") {
      if (sequenceBitmaps.length === 0) return null;
      const bitmap = sequenceBitmaps[sequenceIndex % sequenceBitmaps.length];
      sequenceIndex += 1;
      return { image: bitmap, width: bitmap.width, height: bitmap.height };
    }
    return uploadBitmap ? { image: uploadBitmap, width: uploadBitmap.width, height: uploadBitmap.height } : null;
  }

  function tick() {
    if (!active) return;
    const picture = currentPicture();
    if (!picture) return;

    const width = Math.min(model.get("capture_width"), picture.width);
    const height = Math.round((picture.height * width) / picture.width);
    if (model.get("source") !== "camera") {
      still.width = width;
      still.height = height;
      still.getContext("2d").drawImage(picture.image, 0, 0, width, height);
    }

    const now = performance.now();
    if (pendingId !== null && now - pendingSince < IN_FLIGHT_TIMEOUT_MS) {
      // The kernel is still busy with the previous frame: drop this one.
      dropped += 1;
      droppedText.textContent = `Dropped: ${dropped}`;
      return;
    }

    capture.width = width;
    capture.height = height;
    capture.getContext("2d").drawImage(picture.image, 0, 0, width, height);
    const id = nextId++;
    pendingId = id;
    pendingSince = now;
    capture.toBlob(
      async (blob) => {
        if (!blob || !active) {
          pendingId = null;
          return;
        }
        const buffer = await blob.arrayBuffer();
        const content = { type: "frame", id, width, height, source: model.get("source"), sent_at: now };
        model.send(content, undefined, [buffer]);
      },
      "image/jpeg",
      model.get("quality"),
    );
  }

  function schedule() {
    clearInterval(timer);
    timer = setInterval(tick, 1000 / model.get("max_fps"));
  }

  async function start() {
    if (active || starting) return;
    const kind = model.get("source");
    showSource(kind);
    let problem = null;
    if (kind === "camera") {
      starting = true;
      problem = await openCamera();
      starting = false;
    } else if (kind === "sequence" && sequenceBitmaps.length === 0) {
      problem = "No sequence loaded yet: call widget.load_sequence(frames) in Python first.";
    } else if (kind === "upload" && !uploadBitmap) {
      problem = "No image uploaded yet: choose a file with the file button first.";
    }
    if (problem) {
      root.dataset.state = "error";
      showMessage(problem, "error");
      model.send({ type: "status", message: problem });
      if (model.get("running")) {
        model.set("running", false);
        model.save_changes();
      }
      return;
    }
    active = true;
    root.dataset.state = "running";
    showMessage("");
    if (!model.get("running")) {
      model.set("running", true);
      model.save_changes();
    }
    schedule();
  }

  function stop() {
    active = false;
    clearInterval(timer);
    timer = null;
    pendingId = null;
    closeCamera();
    if (root.dataset.state !== "error") root.dataset.state = "stopped";
    if (model.get("running")) {
      model.set("running", false);
      model.save_changes();
    }
  }

  function drawDetections(reply) {
    overlay.width = reply.width;
    overlay.height = reply.height;
    const context = overlay.getContext("2d");
    context.clearRect(0, 0, overlay.width, overlay.height);
    const line = Math.max(2, Math.round(reply.width / 320));
    context.lineWidth = line;
    context.font = `${Math.max(12, Math.round(reply.width / 40))}px sans-serif`;
    context.textBaseline = "bottom";
    for (const detection of reply.detections) {
      const [x0, y0, x1, y1] = detection.box;
      context.strokeStyle = detection.colour;
      context.strokeRect(x0, y0, x1 - x0, y1 - y0);
      const caption = `${detection.label} ${detection.score.toFixed(2)}`;
      const textWidth = context.measureText(caption).width + 2 * line;
      const textHeight = parseInt(context.font, 10) + line;
      const top = y0 - textHeight >= 0 ? y0 - textHeight : y1;
      // Keep the caption inside the frame when the box touches its right edge.
      const left = Math.max(0, Math.min(x0 - line / 2, overlay.width - textWidth));
      context.fillStyle = detection.colour;
      context.fillRect(left, top, textWidth, textHeight);
      context.fillStyle = "#ffffff";
      context.fillText(caption, left + line, top + textHeight);
    }
  }

  function onMessage(reply, buffers) {
    if (reply.type === "sequence") {
      loadSequence(buffers || []);
      return;
    }
    if (pendingId === null || reply.id !== pendingId) return;
    pendingId = null;
    const now = performance.now();
    latencyText.textContent = `Latency: ${Math.round(now - reply.sent_at)} ms`;
    if (reply.type === "error") {
      showMessage(reply.message, "error");
      root.dataset.message = reply.message;
      return;
    }
    if (reply.type !== "result") return;
    results += 1;
    resultTimes.push(now);
    resultTimes = resultTimes.filter((time) => now - time <= 2000);
    if (resultTimes.length > 1) {
      const fps = ((resultTimes.length - 1) * 1000) / (resultTimes[resultTimes.length - 1] - resultTimes[0]);
      fpsText.textContent = `FPS: ${fps.toFixed(1)}`;
    }
    maxFaces = Math.max(maxFaces, reply.detections.length);
    facesText.textContent = `Faces: ${reply.detections.length} (kernel ${reply.processing_ms.toFixed(0)} ms)`;
    root.dataset.frames = String(results);
    root.dataset.faces = String(reply.detections.length);
    root.dataset.maxFaces = String(maxFaces);
    root.dataset.labels = JSON.stringify(reply.detections.map((d) => d.label));
    if (active && message.classList.contains("mfr-webcam-error")) showMessage("");
    drawDetections(reply);
  }

  startButton.addEventListener("click", () => start());
  stopButton.addEventListener("click", () => stop());
  sourceSelect.value = model.get("source");
  sourceSelect.addEventListener("change", () => {
    stop();
    model.set("source", sourceSelect.value);
    model.save_changes();
    showSource(sourceSelect.value);
  });
  uploadInput.addEventListener("change", async () => {
    const file = uploadInput.files && uploadInput.files[0];
    if (!file) return;
    try {
      uploadBitmap = await createImageBitmap(file);
    } catch (error) {
      showMessage(`The file ${file.name} is not an image the browser can read (${error.name}).`, "error");
      return;
    }
    stop();
    model.set("source", "upload");
    model.save_changes();
    sourceSelect.value = "upload";
    showSource("upload");
    showMessage(`Loaded ${file.name} (${uploadBitmap.width}x${uploadBitmap.height}); press Start to process it.`);
  });

  const onRunning = () => (model.get("running") ? start() : stop());
  const onSource = () => {
    sourceSelect.value = model.get("source");
    showSource(model.get("source"));
  };
  const onStatus = () => {
    const text = model.get("status");
    if (text && text !== root.dataset.message) showMessage(text, "error");
  };
  const onRate = () => {
    if (active) schedule();
  };
  model.on("msg:custom", onMessage);
  model.on("change:running", onRunning);
  model.on("change:source", onSource);
  model.on("change:status", onStatus);
  model.on("change:max_fps", onRate);

  showSource(model.get("source"));
  model.send({ type: "sequence_request" });
  if (model.get("running")) start();

  return () => {
    stop();
    model.off("msg:custom", onMessage);
    model.off("change:running", onRunning);
    model.off("change:source", onSource);
    model.off("change:status", onStatus);
    model.off("change:max_fps", onRate);
  };
}

export default { render };
