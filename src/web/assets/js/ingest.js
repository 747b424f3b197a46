// Ingest: drag-and-drop upload (tus: streamed in chunks, resumed from the server's offset after
// a dropped connection), then a workflow on the new asset, followed live; watch folders and
// what they have taken.
import { h, clear, select, progress, setBar, bytes, when, table } from "./dom.js";
import { api, get, post, qs, explain, ApiError } from "./api.js";
import { subscribe } from "./events.js";
import { UPLOAD_HEADER } from "./uploads.js";

const CHUNK = 8 << 20;
let unsubscribe = null;
export function leave() { if (unsubscribe) unsubscribe(); unsubscribe = null; }

export async function render(main, ctx) {
  const input = h("input", { type: "file", id: "upload-file", multiple: true, "aria-label": "files to upload" });
  const kind = select([["clip", "clip"], ["programme", "programme"], ["promo", "promo"], ["commercial", "commercial"]], "clip", { "aria-label": "kind of the new assets" });
  const flow = select([["", "no workflow"]], "", { "aria-label": "workflow to run after upload", id: "upload-workflow" });
  const list = h("ul", { class: "uploads", id: "uploads" });
  const drop = h("div", { class: "drop", id: "drop", tabindex: 0, role: "button", "aria-label": "drop files here or press Enter to choose" },
    h("p", {}, "Drop media files here, or press Enter to choose them."));
  const folders = h("section", { class: "card", id: "watch", "aria-label": "watch folders" });
  clear(main, h("h1", {}, "Ingest"),
    h("section", { class: "card" }, h("h2", {}, "Upload"), drop, h("div", { class: "inline" }, input, kind, flow), list),
    folders);

  const jobs = new Map(); // job id -> update function
  unsubscribe = subscribe(async (c) => {
    if (c.object === "job" && jobs.has(c.id)) {
      try { jobs.get(c.id)(await get(`/v1/jobs/${c.id}`)); } catch (_) { /* gone */ }
    }
    if (c.object === "job" && c.op === "created" && c.asset_id) {
      for (const [, f] of jobs) if (f.asset === c.asset_id) f.follow(c.id);
    }
  });

  const canRun = ["admin", "operator", "service"].includes(ctx.me.role);
  if (canRun) {
    get("/v1/workflows").then((w) => {
      for (const x of w.items) flow.appendChild(h("option", { value: x.name }, `then ${x.name}: ${x.steps.join(" → ")}`));
      if (w.items.length) flow.value = w.items[0].name;
      watchFolders(folders, w.items);
    }).catch((e) => folders.appendChild(h("p", { class: "error" }, explain(e, "list the workflows"))));
  } else {
    flow.hidden = true;
    folders.hidden = true;
  }

  const start = (files) => { for (const f of files) upload(f, kind.value, flow.value, list, jobs); };
  input.addEventListener("change", () => { start(input.files); input.value = ""; });
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); } });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); start(ev.dataTransfer.files); });
}

const b64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));

async function upload(file, kind, workflow, list, jobs) {
  const bar = progress(0, `upload of ${file.name}`);
  const state = h("span", { class: "state" }, "starting");
  const info = h("div", { class: "small" });
  const li = h("li", { class: "upload", dataset: { name: file.name } }, h("strong", {}, file.name), ` ${bytes(file.size)} `, state, bar, info);
  list.prepend(li);
  const tus = { "tus-resumable": "1.0.0", [UPLOAD_HEADER]: "1" };
  try {
    const meta = [["filename", file.name], ["title", file.name.replace(/\.[^.]*$/, "")], ["kind", kind]].map(([k, v]) => `${k} ${b64(v)}`).join(",");
    const created = await api("POST", "/v1/ingest/tus", "", { raw: true, response: true, headers: { ...tus, "upload-length": String(file.size), "upload-metadata": meta } });
    const url = created.headers.get("location");
    let offset = 0, last = null, tries = 0;
    const t0 = performance.now();
    while (offset < file.size || file.size === 0) {
      state.textContent = "uploading";
      try {
        last = await api("PATCH", url, file.slice(offset, offset + CHUNK), { raw: true, response: true, headers: { ...tus, "upload-offset": String(offset), "content-type": "application/offset+octet-stream" } });
        offset = Number(last.headers.get("upload-offset"));
        tries = 0;
      } catch (e) {
        // A dropped connection or a stale offset: ask the server where it stands and go on.
        if (!(e instanceof ApiError) || e.status === 401 || e.status === 413 || e.status === 422 || e.code === "duplicate" || ++tries > 5) throw e;
        await new Promise((r) => setTimeout(r, 1000 * tries));
        const head = await api("HEAD", url, null, { response: true, headers: tus });
        offset = Number(head.headers.get("upload-offset"));
      }
      setBar(bar, file.size ? offset / file.size : 1);
      const s = (performance.now() - t0) / 1000;
      info.textContent = `${bytes(offset)} of ${bytes(file.size)} · ${bytes(offset / Math.max(s, 0.001))}/s`;
      if (file.size === 0) break;
    }
    const assetId = Number(last.headers.get("antenne-asset-id"));
    state.textContent = "uploaded";
    clear(info, "Asset ", h("a", { href: `#/asset/${assetId}`, class: "asset-link" }, String(assetId)), " created. ");
    if (workflow) {
      const j = await post(`/v1/workflows/${encodeURIComponent(workflow)}/run`, { asset_id: assetId });
      follow(j, info, jobs, assetId);
    }
  } catch (e) {
    state.textContent = "failed";
    state.className = "state error";
    info.textContent = explain(e, `upload ${file.name}`);
  }
}

/** A job line that follows the workflow's jobs on the asset (each step is its own job) live. */
function follow(first, info, jobs, assetId) {
  const line = h("div", { class: "job-line" });
  const asset = h("span", { class: "asset-state" });
  info.append(line, asset);
  const show = async (j) => {
    clear(line, `Job ${j.id} (${j.kind}): `, h("span", { class: `state j-${j.state}` }, j.state), ` ${Math.round(j.progress || 0)} %`, j.error ? ` — ${j.error}` : "");
    try { const a = await get(`/v1/assets/${assetId}`); asset.textContent = ` · asset ${a.status}`; asset.dataset.status = a.status; } catch (_) { /* not readable */ }
    if (j.state === "succeeded") {
      // The workflow's next step, if any, comes as a new job on the same asset.
      const p = await get("/v1/jobs" + qs({ asset_id: assetId, limit: 5 }));
      const newer = p.items.find((x) => x.id > j.id);
      if (newer) register(newer.id);
      else line.dataset.done = "1";
    }
  };
  const register = (id) => { jobs.set(id, show); get(`/v1/jobs/${id}`).then(show).catch(() => {}); };
  show.asset = assetId;
  show.follow = register;
  jobs.set(first.id, show);
  show(first);
}

async function watchFolders(box, workflows) {
  const watched = workflows.filter((w) => w.watch);
  clear(box, h("h2", {}, "Watch folders"));
  if (!watched.length) { box.appendChild(h("p", { class: "muted" }, "No workflow watches a folder.")); return; }
  for (const w of watched) {
    const body = h("tbody", {});
    box.append(h("h3", {}, `${w.watch} → ${w.name}`), h("p", { class: "muted" }, w.description), table(["Job", "File", "State", "When"], body));
    get("/v1/jobs" + qs({ workflow: w.name, kind: "ingest", limit: 10 })).then((p) => {
      clear(body, p.items.length ? p.items.map((j) => h("tr", {}, h("td", {}, j.id), h("td", {}, String((j.params && j.params.path) || "").split("/").pop()),
        h("td", {}, h("span", { class: `state j-${j.state}` }, j.state), j.asset_id ? [" ", h("a", { href: `#/asset/${j.asset_id}` }, "asset")] : ""), h("td", {}, when(j.updated))))
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing taken yet.")));
    }).catch((e) => body.appendChild(h("tr", {}, h("td", { colspan: 4 }, explain(e, "list what it took")))));
  }
}
