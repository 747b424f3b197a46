// The job queue: progress (percent, fps, × real time, ETA), filters, logs, cancel and retry,
// where each ran; the machine's slots, GPUs in or out of rotation and restoring one.
import { h, clear, select, table, progress, setBar, dur, when, debounce } from "./dom.js";
import { get, post, qs, explain } from "./api.js";
import { subscribe } from "./events.js";

const STATES = [["", "any state"], ["queued", "queued"], ["running", "running"], ["succeeded", "succeeded"], ["failed", "failed"], ["cancelled", "cancelled"]];
const KINDS = [["", "any kind"], ["ingest", "ingest"], ["qc", "QC"], ["transcode", "transcode"], ["verify", "fixity"], ["deliver", "delivery"], ["notify", "webhook"], ["purge", "purge"], ["noop", "noop"]];
let unsubscribe = null;

export function leave() { if (unsubscribe) unsubscribe(); unsubscribe = null; }

export async function render(main, ctx) {
  const q = ctx.route.query;
  const state = select(STATES, q.get("state"), { "aria-label": "state", id: "job-state" });
  const kind = select(KINDS, q.get("kind"), { "aria-label": "kind" });
  const asset = h("input", { type: "number", min: 1, placeholder: "asset id", "aria-label": "asset id", class: "narrow", value: q.get("asset_id") || "" });
  const body = h("tbody", { id: "jobs" });
  const slots = h("section", { class: "card", id: "slots", "aria-label": "slots" });
  const msg = h("p", { role: "status", id: "jobs-message" });
  const canAct = ["admin", "operator"].includes(ctx.me.role);
  clear(main, h("h1", {}, "Jobs"), slots,
    h("div", { class: "facets" }, state, kind, asset),
    msg,
    table(["Job", "Kind", "Asset", "State", "Progress", "Ran on", "Updated", ""], body, { class: "jobs" }));

  const rows = new Map();
  const row = (j) => {
    const bar = progress((j.progress || 0) / 100, `job ${j.id} progress`);
    const tr = h("tr", { dataset: { job: j.id, state: j.state } },
      h("td", {}, `${j.id}`, j.workflow ? h("span", { class: "muted" }, ` ${j.workflow}`) : ""),
      h("td", {}, j.kind),
      h("td", {}, j.asset_id ? h("a", { href: `#/asset/${j.asset_id}` }, j.asset_id) : ""),
      h("td", {}, h("span", { class: `state j-${j.state}` }, j.state), j.attempts > 1 ? ` (try ${j.attempts}/${j.max_attempts})` : "",
        j.error ? h("div", { class: "error small" }, j.error) : ""),
      h("td", {}, bar, h("small", {}, figures(j))),
      h("td", {}, j.placed || j.worker || ""),
      h("td", {}, when(j.updated)),
      h("td", { class: "acts" },
        canAct && (j.state === "queued" || j.state === "running") ? h("button", { type: "button", class: "cancel", onclick: () => act(j, "cancel") }, "Cancel") : "",
        canAct && (j.state === "failed" || j.state === "cancelled") ? h("button", { type: "button", class: "retry", onclick: () => act(j, "retry") }, "Retry") : "",
        h("button", { type: "button", class: "link", onclick: (ev) => logs(j, ev.target.closest("tr")) }, "Log")));
    return tr;
  };
  const put = (j) => {
    const tr = row(j);
    const old = rows.get(j.id);
    if (old) old.replaceWith(tr); else body.prepend(tr);
    rows.set(j.id, tr);
  };
  async function act(j, what) {
    try { put(await post(`/v1/jobs/${j.id}/${what}`)); msg.className = "ok"; msg.textContent = `Job ${j.id}: ${what === "cancel" ? "cancelled" : "queued again"}.`; }
    catch (e) { msg.className = "error"; msg.textContent = explain(e, `${what} job ${j.id}`); }
  }
  const filter = () => ({ state: state.value, kind: kind.value, asset_id: asset.value });
  const matches = (j) => { const f = filter(); return (!f.state || f.state === j.state) && (!f.kind || f.kind === j.kind) && (!f.asset_id || Number(f.asset_id) === j.asset_id); };
  async function load() {
    history.replaceState(null, "", "#/jobs" + qs(filter()));
    try {
      const p = await get("/v1/jobs" + qs({ ...filter(), limit: 100 }));
      rows.clear(); clear(body);
      for (const j of p.items.reverse()) put(j);
      if (!p.items.length) body.appendChild(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No jobs match.")));
    } catch (e) { msg.className = "error"; msg.textContent = explain(e, "list the jobs"); }
  }
  for (const el of [state, kind]) el.addEventListener("change", load);
  asset.addEventListener("input", debounce(load, 300));
  unsubscribe = subscribe(async (c) => {
    if (c.object === "*") return load();
    if (c.object !== "job") return;
    try {
      const j = await get(`/v1/jobs/${c.id}`);
      if (matches(j) || rows.has(j.id)) put(j);
    } catch (_) { /* removed */ }
    if (c.op !== "progress") loadSlots(slots, canAct);
  });
  await Promise.all([load(), loadSlots(slots, canAct)]);
}

function figures(j) {
  const parts = [`${Math.round(j.progress || 0)} %`];
  if (j.fps) parts.push(`${j.fps.toFixed(1)} fps`);
  if (j.speed) parts.push(`× ${j.speed.toFixed(2)}`);
  if (j.state === "running" && j.eta_s) parts.push(`ETA ${dur(j.eta_s)}`);
  return " " + parts.join(" · ");
}

async function logs(j, tr) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("log")) { next.remove(); return; }
  const pre = h("pre", { class: "log-text" }, "…");
  tr.after(h("tr", { class: "log" }, h("td", { colspan: 8 }, pre)));
  try {
    const p = await get(`/v1/jobs/${j.id}/logs?limit=500`);
    pre.textContent = p.items.map((l) => `${l.at} ${l.level.toUpperCase()} ${l.message}`).join("\n") || "(empty log)";
  } catch (e) { pre.textContent = explain(e, "read the log"); }
}

export async function loadSlots(box, canAct) {
  let s;
  try { s = await get("/v1/slots"); } catch (e) { clear(box, h("p", { class: "muted" }, e.code === "not_found" ? "No job runner on this appliance." : explain(e, "read the slots"))); return null; }
  clear(box, h("h2", {}, "Slots"),
    h("p", {}, `CPU: ${s.cpu_in_use} of ${s.cpu_slots} encode slots in use · light lane: ${s.light_in_use} of ${s.light_slots}`),
    (s.gpus || []).length ? table(["GPU", "Sessions", "Encodes", "Failures", "Rotation", ""], (s.gpus || []).map((g) => h("tr", {},
      h("td", {}, `${g.id} (${g.backend})`), h("td", {}, `${g.sessions_in_use} / ${g.sessions}`), h("td", {}, g.codecs.join(", ")),
      h("td", {}, `${g.failures} (${g.failures_in_a_row} in a row)`), h("td", {}, g.in_rotation ? "in" : `out since ${when(g.out_since)}: ${g.out_reason || ""}`),
      h("td", {}, canAct && g.in_rotation === false ? h("button", { type: "button", onclick: async () => { try { await post(`/v1/slots/gpus/${encodeURIComponent(g.id)}/restore`); loadSlots(box, canAct); } catch (e) { box.appendChild(h("p", { class: "error" }, explain(e, "restore the GPU"))); } } }, "Restore") : ""))))
      : h("p", { class: "muted" }, "No GPU: every job runs on the CPU."));
  return s;
}
