// The web page of the uncertainty service: pick a model of GET /models, send it a row, a table
// or images through POST /predict/{name}, and draw what comes back. Plain browser JavaScript,
// no build step; Chart.js (vendored, see /static/vendor/README.md) draws the charts. Every
// number shown is the API's own, kept unrounded in a data-value attribute beside its text.
"use strict";

(() => {
  // Grid points of the predictive density the page asks the service for (?density=G).
  const DENSITY_POINTS = 200;
  // How many classes an image's chart shows, most probable first.
  const TOP_CLASSES = 5;
  const COLORS = {
    density: "#1f5fae",
    interval: "rgba(31, 95, 174, 0.22)",
    mean: "#1c2430",
    epistemic: "#d9822b",
    aleatoric: "#4c78a8",
    intervalBar: "#1c2430",
  };

  const $ = (id) => document.getElementById(id);
  const state = { models: [], model: null, examples: { tables: [], images: [] }, images: [] };
  const charts = new Map(); // canvas id → Chart, destroyed before a canvas is drawn again

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // Four significant digits; the exact number stays in data-value.
  function format(value) {
    if (value === null || value === undefined) return "—";
    if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
    return Number(value).toPrecision(4);
  }

  // A prefilled value as a person would type it: six significant digits, not float32 noise.
  function typed(value) {
    return typeof value === "number" ? String(Number(value.toPrecision(6))) : "";
  }

  function number(value, field, attributes = {}) {
    return el("span", {
      ...attributes,
      class: "value",
      dataset: { field, value: value === null ? "null" : String(value) },
      text: format(value),
    });
  }

  // A level as people write it (0.95 → 95%), and a share of something to one decimal.
  function percent(value) {
    return `${Number((100 * value).toPrecision(4))}%`;
  }

  function share(value) {
    return `${(100 * value).toFixed(1)}%`;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function drawChart(canvasId, config) {
    charts.get(canvasId)?.destroy();
    const canvas = typeof canvasId === "string" ? $(canvasId) : canvasId;
    const chart = new window.Chart(canvas, config);
    charts.set(canvasId, chart);
    return chart;
  }

  const baseOptions = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { labels: { boxWidth: 14 } } },
  };

  // ---------------------------------------------------------------------------------------
  // Talking to the API: every failure becomes an ApiError carrying what the API said.

  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(typeof detail === "string" ? detail : `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter;
    }
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { Accept: "application/json", ...options.headers } });
    } catch (error) {
      throw new ApiError(0, `The service could not be reached (${error.message}).`, null);
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && "detail" in body ? body.detail : text || response.statusText;
      throw new ApiError(response.status, detail, response.headers.get("Retry-After"));
    }
    return body;
  }

  // What the page itself refuses before asking the API: not an HTTP status, so none is shown.
  const NOT_SENT = "not-sent";

  const STATUS_TITLES = {
    [NOT_SENT]: "Nothing sent yet",
    0: "No answer",
    404: "Not found (404)",
    413: "Too large (413)",
    415: "Not an accepted input (415)",
    422: "Invalid input (422)",
    503: "Not available right now (503)",
    504: "Took too long (504)",
  };

  // Where a 422 entry points, as the page's own input: a feature, samples or level.
  function inputFor(loc, form) {
    if (!Array.isArray(loc)) return null;
    if (loc[0] === "query" && (loc[1] === "samples" || loc[1] === "level")) {
      return form.querySelector(`[name="${loc[1]}"]`);
    }
    if (form.id === "row-form" && loc[0] === "body") {
      const name = loc.find((part, index) => index > 0 && typeof part === "string" && part !== "instances");
      if (name !== undefined) {
        return [...form.querySelectorAll("[data-feature]")].find((input) => input.dataset.feature === name) || null;
      }
    }
    if (form.id === "table-form" && loc[0] === "body") return $("table-text");
    return null;
  }

  function clearErrors() {
    const box = $("error");
    box.hidden = true;
    box.replaceChildren();
    for (const input of document.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    for (const message of document.querySelectorAll(".field-error")) message.remove();
  }

  function showError(error, form) {
    clearErrors();
    const box = $("error");
    const title = STATUS_TITLES[error.status] || `Error ${error.status}`;
    box.dataset.status = String(error.status);
    box.append(el("h2", { text: title }));
    if (Array.isArray(error.detail)) {
      const list = el("ul");
      for (const entry of error.detail) {
        const where = Array.isArray(entry.loc) ? entry.loc.join(".") : "";
        const item = el("li", { class: "api-error", dataset: { loc: where } },
          where ? el("code", { text: where }) : null, where ? ": " : "", entry.msg ?? JSON.stringify(entry));
        list.append(item);
        const input = form ? inputFor(entry.loc, form) : null;
        if (input) {
          input.setAttribute("aria-invalid", "true");
          const id = `${input.id}-error`;
          if (!$(id)) {
            input.insertAdjacentElement("afterend", el("p", { id, class: "field-error", text: entry.msg }));
            input.setAttribute("aria-describedby", id);
          }
        }
      }
      box.append(list);
    } else {
      box.append(el("p", { class: "api-error", text: String(error.detail) }));
    }
    if (error.status === 503 || error.retryAfter) {
      const seconds = error.retryAfter || "a few";
      box.append(el("p", { class: "retry", text: `The service asks to try again in ${seconds} s: nothing was processed. Press the button again then.` }));
    }
    box.hidden = false;
    box.focus();
    setStatus("");
  }

  async function busy(button, work) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await work();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  // The query string of a predict request: samples and level as typed (empty: the default).
  function query(samplesInput, levelInput, extra = {}) {
    const params = new URLSearchParams();
    if (samplesInput.value.trim() !== "") params.set("samples", samplesInput.value.trim());
    if (levelInput.value.trim() !== "") params.set("level", levelInput.value.trim());
    for (const [key, value] of Object.entries(extra)) params.set(key, String(value));
    const text = params.toString();
    return text ? `?${text}` : "";
  }

  function predictPath(model) {
    return `/predict/${encodeURIComponent(model.name)}`;
  }

  // A value as typed: a number if it is one, else the text itself, for the API to refuse.
  function cell(text) {
    const trimmed = text.trim();
    if (trimmed === "") return null;
    const value = Number(trimmed);
    return Number.isFinite(value) ? value : trimmed;
  }

  // ---------------------------------------------------------------------------------------
  // The model list

  async function loadModels() {
    setStatus("Loading the models…");
    try {
      const [models, examples] = await Promise.all([
        api("/models"),
        api("/static/examples/index.json").catch(() => ({ tables: [], images: [] })),
      ]);
      state.models = models.models;
      state.examples = examples;
    } catch (error) {
      showError(error, null);
      return;
    }
    const select = $("model");
    select.replaceChildren(
      ...state.models.map((model) => el("option", { value: model.name, text: `${model.name} (${model.task})` })),
    );
    select.disabled = false;
    const wanted = new URLSearchParams(location.search).get("model");
    if (wanted && state.models.some((model) => model.name === wanted)) select.value = wanted;
    setStatus(state.models.length ? "" : "The repository holds no models.");
    if (state.models.length) chooseModel(select.value);
  }

  function chooseModel(name) {
    clearErrors();
    const model = state.models.find((candidate) => candidate.name === name);
    state.model = model;
    const summary = $("model-summary");
    const metrics = Object.entries(model.test_metrics || {})
      .filter(([, value]) => value !== null)
      .map(([key, value]) => `${key} ${typeof value === "number" ? format(value) : value}`)
      .join(", ");
    const facts = [
      ["task", model.task],
      ["network", model.kind + (model.members > 1 ? ` × ${model.members}` : "")],
      ["version", model.version],
      ["device", model.device],
      ["samples", `${model.default_samples} by default, at most ${model.max_samples}`],
      ["test set", metrics || "no metrics recorded"],
    ];
    if (!model.ready) facts.push(["state", "warming up: requests are refused until it is ready"]);
    summary.replaceChildren(
      el("dl", {}, ...facts.map(([key, value]) => el("div", {}, el("dt", { text: key }), el("dd", { text: value })))),
    );
    $("tabular").hidden = model.task !== "tabular-regression";
    $("image").hidden = model.task !== "image-classification";
    if (model.task === "tabular-regression") setUpTabular(model);
    else if (model.task === "image-classification") setUpImages(model);
    else setStatus(`This page cannot draw a ${model.task} model; its API still answers.`);
  }

  // ---------------------------------------------------------------------------------------
  // Tabular regression: one row with its density, or a table of rows

  function setUpTabular(model) {
    const features = model.input.features;
    const example = model.input.example || {};
    const box = $("features");
    box.replaceChildren(
      ...features.map((feature, index) => {
        const id = `feature-${index}`;
        return el("div", { class: "field" },
          el("label", { for: id, text: feature }),
          el("input", {
            id, type: "text", inputmode: "decimal", autocomplete: "off", spellcheck: "false",
            name: `feature-${index}`, dataset: { feature }, value: typed(example[feature]),
          }));
      }),
    );
    $("row-samples").value = model.default_samples;
    $("row-samples").max = model.max_samples;
    $("row-samples-help").textContent = `1 to ${model.max_samples}; default ${model.default_samples}`;
    $("tabular-heading").textContent = `One row: predict ${model.input.target}`;
    const examples = $("row-examples");
    examples.replaceChildren(
      el("button", { type: "button", dataset: { example: "typical" }, text: "Typical row (training means)" }),
    );
    const tables = (state.examples.tables || []).filter(
      (table) => table.features.length === features.length && table.features.every((name, i) => name === features[i]),
    );
    for (const table of tables) {
      for (const row of table.rows) {
        examples.append(el("button", {
          type: "button", title: `${table.title}: ${table.source}`, text: row.name,
          dataset: { example: row.name },
        }));
      }
    }
    examples.onclick = (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const row = button.dataset.example === "typical"
        ? example
        : tables.flatMap((table) => table.rows).find((candidate) => candidate.name === button.dataset.example).values;
      for (const input of box.querySelectorAll("[data-feature]")) input.value = typed(row[input.dataset.feature]);
      $("row-form").requestSubmit();
    };
    const sample = tables[0]?.rows.slice(0, 2) || [];
    $("table-text").placeholder = [features.join(","), ...sample.map((row) => features.map((f) => row.values[f]).join(","))].join("\n");
    $("row-result").hidden = true;
    $("table-result").hidden = true;
  }

  async function predictRow(event) {
    event.preventDefault();
    const model = state.model;
    clearErrors();
    const instance = {};
    for (const input of $("features").querySelectorAll("[data-feature]")) {
      instance[input.dataset.feature] = cell(input.value);
    }
    const path = predictPath(model) + query($("row-samples"), $("row-level"), { density: DENSITY_POINTS });
    await busy($("row-submit"), async () => {
      setStatus("Predicting…");
      try {
        const answer = await api(path, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ instances: [instance] }),
        });
        showRow(model, answer);
        setStatus(`Answered by ${answer.model.name} (version ${answer.model.version}) with S = ${answer.samples}.`);
      } catch (error) {
        showError(error, $("row-form"));
      }
    });
  }

  function showRow(model, answer) {
    const prediction = answer.predictions[0];
    const level = answer.level;
    const target = model.input.target;
    $("row-result-heading").textContent = `Predicted ${target}`;
    const items = [
      ["mean", "Mean", prediction.mean],
      ["std", "Standard deviation", prediction.std],
      ["lower", `Interval ${percent(level)}: lower`, prediction.interval.lower],
      ["upper", `Interval ${percent(level)}: upper`, prediction.interval.upper],
      ["epistemic_std", "Epistemic std", prediction.epistemic_std],
      ["aleatoric_std", "Aleatoric std", prediction.aleatoric_std],
    ];
    $("row-numbers").replaceChildren(
      ...items.map(([field, label, value]) => el("div", {}, el("dt", { text: label }), el("dd", {}, number(value, field)))),
    );
    $("row-numbers").dataset.samples = String(answer.samples);
    $("row-numbers").dataset.level = String(level);
    $("row-result").hidden = false;
    drawDensity(prediction, level, target, answer.samples);
    drawSplit(prediction);
  }

  function drawDensity(prediction, level, target, samples) {
    const curve = prediction.density;
    const points = curve.x.map((x, i) => ({ x, y: curve.pdf[i] }));
    const { lower, upper } = prediction.interval;
    const shaded = points.filter((point) => point.x >= lower && point.x <= upper);
    const atMean = points.find((point) => point.x === prediction.mean) || { y: Math.max(...curve.pdf) };
    drawChart("density-chart", {
      type: "scatter",
      data: {
        datasets: [
          {
            label: `Central ${percent(level)} interval`, data: shaded, showLine: true, fill: "origin",
            backgroundColor: COLORS.interval, borderWidth: 0, pointRadius: 0, order: 3,
          },
          {
            label: "Predictive density", data: points, showLine: true, borderColor: COLORS.density,
            borderWidth: 2, pointRadius: 0, order: 1,
          },
          {
            label: `Mean ${format(prediction.mean)}`, data: [{ x: prediction.mean, y: 0 }, { x: prediction.mean, y: atMean.y }],
            showLine: true, borderColor: COLORS.mean, borderDash: [6, 4], borderWidth: 2, pointRadius: 0, order: 2,
          },
        ],
      },
      options: {
        ...baseOptions,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: target } },
          y: { beginAtZero: true, title: { display: true, text: "density" } },
        },
      },
    });
    const caption = `The predictive distribution: the mixture of the S = ${samples} Gaussians the posterior's networks give, `
      + `its density computed by the service on ${curve.x.length} points. Shaded: the central ${percent(level)} interval, `
      + `${format(lower)} to ${format(upper)}; dashed: the mean, ${format(prediction.mean)}.`;
    $("density-caption").textContent = caption;
    $("density-chart").setAttribute("aria-label", caption);
  }

  function drawSplit(prediction) {
    const epistemic = prediction.epistemic_std;
    const aleatoric = prediction.aleatoric_std;
    const total = prediction.std ** 2;
    const datasets = [];
    if (epistemic !== null) {
      datasets.push({ label: `Epistemic (std ${format(epistemic)})`, data: [epistemic ** 2 / total], backgroundColor: COLORS.epistemic });
    }
    datasets.push({ label: `Aleatoric (std ${format(aleatoric)})`, data: [aleatoric ** 2 / total], backgroundColor: COLORS.aleatoric });
    drawChart("split-chart", {
      type: "bar",
      data: { labels: ["variance"], datasets },
      options: {
        ...baseOptions,
        indexAxis: "y",
        scales: {
          x: { stacked: true, min: 0, max: 1, ticks: { callback: (value) => `${Math.round(100 * value)}%` } },
          y: { stacked: true, display: false },
        },
        plugins: {
          ...baseOptions.plugins,
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${share(item.raw)} of the variance` } },
        },
      },
    });
    const caption = epistemic === null
      ? "This model is one deterministic network: it has no distribution over networks, so its epistemic part is not modelled (null), and all of the variance shown is aleatoric."
      : `Of the predictive variance (std² = epistemic² + aleatoric²), ${share(epistemic ** 2 / total)} is epistemic (the networks disagree; more data would shrink it) and ${share(aleatoric ** 2 / total)} aleatoric (noise the model expects in the data).`;
    $("split-caption").textContent = caption;
    $("split-chart").setAttribute("aria-label", caption);
  }

  // CSV or numbers, one row a line → instances for the API (objects with a header, else arrays).
  function parseTable(text, model) {
    const lines = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
    if (!lines.length) return { instances: [], header: null };
    const delimiter = [";", "\t", ","].find((candidate) => lines[0].includes(candidate)) || ",";
    const split = (line) => line.split(delimiter).map((part) => part.trim().replace(/^"(.*)"$/, "$1"));
    const first = split(lines[0]);
    const isHeader = first.some((part) => part !== "" && !Number.isFinite(Number(part)));
    if (!isHeader) return { instances: lines.map((line) => split(line).map(cell)), header: null };
    // Header names as the model spells them: exact, else the same letters ("fixed acidity").
    const normal = (name) => name.toLowerCase().replace(/[^0-9a-z]+/g, "_").replace(/^_|_$/g, "");
    const byNormal = new Map(model.input.features.map((feature) => [normal(feature), feature]));
    const names = first.map((name) => (model.input.features.includes(name) ? name : byNormal.get(normal(name)) || name));
    const keep = names.map((name) => name !== model.input.target && normal(name) !== normal(model.input.target));
    const instances = lines.slice(1).map((line) => {
      const values = split(line);
      const row = {};
      names.forEach((name, i) => {
        if (keep[i]) row[name] = cell(values[i] ?? "");
      });
      return row;
    });
    return { instances, header: names.filter((_, i) => keep[i]) };
  }

  async function predictTable(event) {
    event.preventDefault();
    const model = state.model;
    clearErrors();
    const { instances } = parseTable($("table-text").value, model);
    if (!instances.length) {
      showError(new ApiError(NOT_SENT, [{ loc: ["body"], msg: "Paste at least one row (or read a CSV file) first" }]), $("table-form"));
      return;
    }
    const path = predictPath(model) + query($("row-samples"), $("row-level"));
    await busy($("table-submit"), async () => {
      setStatus(`Predicting ${instances.length} rows…`);
      try {
        const answer = await api(path, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ instances }),
        });
        showTable(model, answer);
        setStatus(`Answered ${answer.predictions.length} rows with S = ${answer.samples}.`);
      } catch (error) {
        showError(error, $("table-form"));
      }
    });
  }

  function showTable(model, answer) {
    const columns = [
      ["mean", "mean", (p) => p.mean],
      ["std", "std", (p) => p.std],
      ["lower", "lower", (p) => p.interval.lower],
      ["upper", "upper", (p) => p.interval.upper],
      ["epistemic_std", "epistemic std", (p) => p.epistemic_std],
      ["aleatoric_std", "aleatoric std", (p) => p.aleatoric_std],
    ];
    $("table-caption").textContent = `${model.input.target}: ${answer.predictions.length} rows, S = ${answer.samples}, `
      + `central ${percent(answer.level)} intervals`;
    $("table-head").replaceChildren(
      el("tr", {}, el("th", { scope: "col", text: "row" }), ...columns.map(([, title]) => el("th", { scope: "col", text: title }))),
    );
    $("table-body").replaceChildren(
      ...answer.predictions.map((prediction, index) => el("tr", { dataset: { row: String(index) } },
        el("th", { scope: "row", text: String(index + 1) }),
        ...columns.map(([field, , get]) => el("td", {}, number(get(prediction), field))))),
    );
    $("table-result").hidden = false;
  }

  // ---------------------------------------------------------------------------------------
  // Image classification

  function setUpImages(model) {
    $("image-samples").value = model.default_samples;
    $("image-samples").max = model.max_samples;
    $("image-samples-help").textContent = `1 to ${model.max_samples}; default ${model.default_samples}`;
    $("image-help").textContent = `${model.input.formats.join(", ")}; any size (resized to `
      + `${model.input.size.join("×")}); up to ${model.max_instances} at once.`;
    const examples = $("image-examples");
    examples.replaceChildren(
      ...(state.examples.images || []).map((image) => el("button", {
        type: "button", class: "example-image", title: `Classify ${image.title}`,
        dataset: { example: image.file },
      }, el("img", { src: `/static/examples/${image.file}`, alt: "" }), image.title.split(" ")[0])),
    );
    examples.onclick = async (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      try {
        const response = await fetch(`/static/examples/${button.dataset.example}`);
        const blob = await response.blob();
        setImages([new File([blob], button.dataset.example, { type: blob.type })]);
        $("image-form").requestSubmit();
      } catch (error) {
        showError(new ApiError(0, `Could not read the example (${error.message}).`), null);
      }
    };
    setImages([]);
    $("image-results").replaceChildren();
  }

  function setImages(files) {
    for (const image of state.images) URL.revokeObjectURL(image.url);
    state.images = files.map((file) => ({ file, url: URL.createObjectURL(file) }));
    $("previews").replaceChildren(
      ...state.images.map((image) => el("li", {}, el("img", { src: image.url, alt: image.file.name }), image.file.name)),
    );
  }

  async function classify(event) {
    event.preventDefault();
    const model = state.model;
    clearErrors();
    if (!state.images.length) {
      showError(new ApiError(NOT_SENT, [{ loc: ["body", "files"], msg: "Choose or drop at least one image first" }]), null);
      return;
    }
    const body = new FormData();
    for (const image of state.images) body.append("files", image.file, image.file.name);
    const path = predictPath(model) + query($("image-samples"), $("image-level"));
    const images = state.images.slice();
    await busy($("image-submit"), async () => {
      setStatus(`Classifying ${images.length} image${images.length > 1 ? "s" : ""}…`);
      try {
        const answer = await api(path, { method: "POST", body });
        showImages(model, answer, images);
        setStatus(`Answered by ${answer.model.name} (version ${answer.model.version}) with S = ${answer.samples}.`);
      } catch (error) {
        showError(error, $("image-form"));
      }
    });
  }

  function showImages(model, answer, images) {
    for (const [id, chart] of charts) {
      if (typeof id !== "string") {
        chart.destroy();
        charts.delete(id);
      }
    }
    const threshold = model.epistemic_threshold;
    $("image-results").replaceChildren(
      ...answer.predictions.map((prediction, index) => imageCard(prediction, index, images[index], answer, threshold)),
    );
  }

  function imageCard(prediction, index, image, answer, threshold) {
    const ranked = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]).slice(0, TOP_CLASSES);
    const level = percent(answer.level);
    const u = prediction.uncertainty;
    const high = threshold ? u.epistemic > threshold.epistemic_nats : false;
    const classesCanvas = el("canvas", { role: "img" });
    const entropyCanvas = el("canvas", { role: "img" });
    const top = prediction.intervals[prediction.label];
    const card = el("article", { class: "card image-result", dataset: { index: String(index) }, "aria-labelledby": `image-result-${index}` },
      el("div", { class: "head" },
        el("img", { src: image.url, alt: prediction.filename || image.file.name }),
        el("div", {},
          el("p", { id: `image-result-${index}`, class: "label" }, el("span", { dataset: { field: "label" }, text: prediction.label }), " ",
            number(prediction.confidence, "confidence")),
          el("p", { class: "top-interval" }, `${level} interval `, number(top.lower, "lower"), " to ", number(top.upper, "upper")),
          el("p", { class: "filename", text: prediction.filename || image.file.name }))),
      flag(u, threshold, high, answer.samples),
      el("h3", { text: `Top classes, with their ${level} credible intervals` }),
      el("div", { class: "chart chart-classes" }, classesCanvas),
      classTable(ranked, prediction, level),
      el("h3", { text: "Uncertainty, in nats" }),
      el("div", { class: "chart chart-entropy" }, entropyCanvas),
      el("p", { class: "calm" }, "total ", number(u.total, "total"), " = aleatoric ", number(u.aleatoric, "aleatoric"),
        " + epistemic ", number(u.epistemic, "epistemic"), " (the networks' disagreement: mutual information)"));
    requestAnimationFrame(() => {
      classesCanvas.setAttribute("aria-label", `Probabilities of the top classes: ${ranked.map(([name, p]) => `${name} ${format(p)}`).join(", ")}`);
      drawChart(classesCanvas, {
        type: "bar",
        data: {
          labels: ranked.map(([name]) => name),
          datasets: [
            {
              label: `${level} interval`, data: ranked.map(([name]) => [prediction.intervals[name].lower, prediction.intervals[name].upper]),
              backgroundColor: COLORS.intervalBar, barPercentage: 0.18, grouped: false, order: 1,
            },
            {
              label: "mean probability", data: ranked.map(([, p]) => p), backgroundColor: COLORS.aleatoric,
              barPercentage: 0.8, grouped: false, order: 2,
            },
          ],
        },
        options: { ...baseOptions, indexAxis: "y", scales: { x: { min: 0, max: 1 } } },
      });
      entropyCanvas.setAttribute("aria-label", `Entropy: aleatoric ${format(u.aleatoric)}, epistemic ${format(u.epistemic)} nats`);
      drawChart(entropyCanvas, {
        type: "bar",
        data: {
          labels: ["entropy"],
          datasets: [
            { label: "aleatoric", data: [u.aleatoric], backgroundColor: COLORS.aleatoric },
            { label: "epistemic", data: [u.epistemic], backgroundColor: COLORS.epistemic },
          ],
        },
        options: {
          ...baseOptions,
          indexAxis: "y",
          scales: { x: { stacked: true, min: 0, suggestedMax: Math.log(Object.keys(prediction.probabilities).length) }, y: { stacked: true, display: false } },
        },
      });
    });
    return card;
  }

  function flag(u, threshold, high, samples) {
    if (!threshold) {
      return el("p", { class: "calm", dataset: { flag: "none" }, text: "This model records no epistemic threshold, so nothing is flagged." });
    }
    const where = `the ${Math.round(100 * threshold.quantile)}th percentile of this model's own ${threshold.images} test images `
      + `(${format(threshold.epistemic_nats)} nats at S = ${threshold.samples})`;
    const fewer = samples < threshold.samples ? ` Fewer samples (S = ${samples} here) see less disagreement, so fewer answers cross it.` : "";
    if (!high) {
      return el("p", { class: "calm", dataset: { flag: "ok" }, text: `Epistemic uncertainty is within ${where}.${fewer}` });
    }
    return el("div", { class: "flag", role: "note", dataset: { flag: "high-epistemic" } },
      el("strong", { text: "I am not sure about this one." }),
      `Its epistemic uncertainty, ${format(u.epistemic)} nats, is above ${where}: the networks of the posterior disagree `
      + `more than on nearly all test images. It may be unlike what the model was trained on.${fewer}`);
  }

  function classTable(ranked, prediction, level) {
    return el("div", { class: "table-scroll" }, el("table", { class: "classes" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "class" }), el("th", { scope: "col", text: "probability" }),
        el("th", { scope: "col", text: "lower" }), el("th", { scope: "col", text: "upper" }))),
      el("tbody", {}, ...ranked.map(([name, p]) => el("tr", { dataset: { class: name } },
        el("th", { scope: "row", text: name }), el("td", {}, number(p, "probability")),
        el("td", {}, number(prediction.intervals[name].lower, "lower")),
        el("td", {}, number(prediction.intervals[name].upper, "upper")))))));
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function wire() {
    $("model").addEventListener("change", (event) => chooseModel(event.target.value));
    $("row-form").addEventListener("submit", predictRow);
    $("table-form").addEventListener("submit", predictTable);
    $("image-form").addEventListener("submit", classify);
    $("image-files").addEventListener("change", (event) => setImages([...event.target.files]));
    $("image-clear").addEventListener("click", () => {
      $("image-files").value = "";
      setImages([]);
      $("image-results").replaceChildren();
      clearErrors();
    });
    $("table-file").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) $("table-text").value = await file.text();
    });
    const zone = $("drop-zone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const files = [...event.dataTransfer.files].filter((file) => file.type.startsWith("image/") || file.type === "");
      if (files.length) setImages(files);
    });
  }

  wire();
  loadModels();
})();
