// Live: sources with a preview refreshed every few seconds, bitrate and loss graphs, audio
// meters, start/stop and recording; outputs with their state, and for those with failover
// what is on air and the manual switch.
import { h, clear, bytes, dur } from "./dom.js";
import { get, post, del, explain } from "./api.js";
import { subscribe } from "./events.js";

let timer = null;
let unsubscribe = null;
export function leave() {
  clearInterval(timer); timer = null;
  if (unsubscribe) unsubscribe(); unsubscribe = null;
}

const HISTORY = 60;

export async function render(main, ctx) {
  const canAct = ["admin", "operator"].includes(ctx.me.role);
  const srcBox = h("div", { class: "sources", id: "sources" });
  const outBox = h("div", { id: "outputs" });
  const msg = h("p", { role: "status", id: "live-message" });
  clear(main, h("h1", {}, "Live"), msg, h("h2", {}, "Sources"), srcBox, h("h2", {}, "Outputs"), outBox);
  const history = new Map();
  // The outputs with failover on air: their state is read again with the sources' figures.
  const watched = new Map();
  const act = async (what, path, method = "POST") => {
    try { method === "DELETE" ? await del(path) : await post(path); msg.className = "ok"; msg.textContent = `${what}: done.`; load(); }
    catch (e) { msg.className = "error"; msg.textContent = explain(e, what); }
  };
  async function load() {
    let sources, outputs;
    try { [sources, outputs] = await Promise.all([get("/v1/live/sources"), get("/v1/live/outputs")]); }
    catch (e) { clear(srcBox, h("p", { class: e.code === "not_found" ? "muted" : "error" }, explain(e, "list the live sources"))); return; }
    clear(srcBox, sources.items.length ? sources.items.map((s) => {
      const graph = h("canvas", { width: 240, height: 48, "aria-label": `${s.name} bitrate and loss, last ${HISTORY} readings` });
      const meters = h("div", { class: "meters", "aria-label": "audio levels" });
      const figures = h("p", { class: "small" });
      const card = h("section", { class: "card source", dataset: { source: s.id } },
        h("h3", {}, s.name, " ", h("span", { class: `state l-${s.state}` }, s.state), h("span", { class: "muted" }, ` ${s.kind}`)),
        h("img", { class: "preview", alt: `${s.name} preview`, src: `/v1/live/sources/${s.id}/preview.jpg?t=${Date.now()}` }),
        h("div", { class: "inline" }, graph, meters), figures,
        canAct ? h("div", { class: "actions" },
          s.running ? h("button", { type: "button", onclick: () => act(`stop ${s.name}`, `/v1/live/sources/${s.id}/stop`) }, "Stop")
                    : h("button", { type: "button", onclick: () => act(`start ${s.name}`, `/v1/live/sources/${s.id}/start`) }, "Start"),
          h("button", { type: "button", onclick: () => act(`record ${s.name}`, `/v1/live/sources/${s.id}/record`) }, "Record"),
          h("button", { type: "button", onclick: () => act(`stop recording ${s.name}`, `/v1/live/sources/${s.id}/record`, "DELETE") }, "Stop recording")) : null);
      stats(s, graph, meters, figures, history);
      return card;
    }) : h("p", { class: "muted" }, "No live sources. Declare them in antenne.toml or create them with POST /v1/live/sources."));
    const names = new Map(sources.items.map((s) => [s.id, s.name]));
    watched.clear();
    clear(outBox, outputs.items.length ? h("ul", { class: "outputs" }, outputs.items.map((o) => {
      const set = o.settings || {};
      const backup = set.backup_id != null ? names.get(set.backup_id) || `source ${set.backup_id}` : set.backup;
      const failover = set.profile && backup ? h("div", { class: "failover", dataset: { output: o.id } }, h("span", { class: "muted" }, "…")) : null;
      const li = h("li", { dataset: { output: o.id } },
        h("span", { class: `state l-${o.state}` }, o.state), ` ${o.name} (${o.kind}) from ${names.get(o.source_id) || `source ${o.source_id}`}`,
        backup ? h("span", { class: "muted" }, `, backup ${backup}`) : null, " ",
        canAct ? (o.running ? h("button", { type: "button", onclick: () => act(`stop ${o.name}`, `/v1/live/outputs/${o.id}/stop`) }, "Stop")
                            : h("button", { type: "button", onclick: () => act(`start ${o.name}`, `/v1/live/outputs/${o.id}/start`) }, "Start")) : null,
        failover);
      if (failover && o.running) {
        watched.set(o.id, [o, failover, names.get(o.source_id) || "primary", backup]);
        failoverState(o, failover, names.get(o.source_id) || "primary", backup);
      }
      else if (failover) clear(failover, h("span", { class: "muted" }, "Failover: the output is stopped."));
      return li;
    })) : h("p", { class: "muted" }, "No outputs."));
  }

  /** What an output with failover has on air, and the manual switch. */
  async function failoverState(o, box, primary, backup) {
    let st;
    try { st = await get(`/v1/live/outputs/${o.id}/stats`); } catch (e) { clear(box, h("span", { class: "error" }, explain(e, "read the output's figures"))); return; }
    const last = st.last_switch;
    // Redrawn only when it changed, so that a focused button stays focused.
    const key = JSON.stringify([last, st.switches]);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    const onAir = last ? last.to : "—";
    const sw = async (to) => {
      try {
        await post(`/v1/live/outputs/${o.id}/switch`, { to });
        msg.className = "ok"; msg.textContent = `${o.name}: switching to its ${to} (${to === "primary" ? primary : backup}).`;
      } catch (e) { msg.className = "error"; msg.textContent = explain(e, `switch ${o.name} to its ${to}`); }
    };
    clear(box,
      h("span", {}, "On air: ", h("strong", { class: `on-air ${last && !last.on_primary ? "v-warn" : "ok"}` }, onAir)),
      last ? h("span", { class: "muted small" }, ` since ${new Date(last.at).toLocaleTimeString()} (${last.reason}) · ${st.switches} switches`) : null,
      canAct ? h("span", { class: "switch", role: "group", "aria-label": `${o.name} failover switch` },
        h("button", { type: "button", class: "take-primary", disabled: last && last.to === primary, onclick: () => sw("primary") }, `Take primary (${primary})`),
        h("button", { type: "button", class: "take-backup danger", disabled: last && last.to === backup, onclick: () => sw("backup") }, `Take backup (${backup})`)) : null);
  }
  unsubscribe = subscribe((c) => { if (c.object === "live_source" || c.object === "live_output" || c.object === "*") load(); });
  timer = setInterval(() => {
    for (const img of srcBox.querySelectorAll("img.preview")) img.src = img.src.replace(/\?t=\d+/, `?t=${Date.now()}`);
    for (const [o, box, primary, backup] of watched.values()) if (box.isConnected) failoverState(o, box, primary, backup);
    for (const card of srcBox.querySelectorAll("[data-source]")) {
      const id = Number(card.dataset.source);
      stats({ id }, card.querySelector("canvas"), card.querySelector(".meters"), card.querySelector("p.small"), history);
    }
  }, 3000);
  await load();
}

async function stats(s, graph, meters, figures, history) {
  let st;
  try { st = await get(`/v1/live/sources/${s.id}/stats`); } catch (e) { figures.textContent = explain(e, "read the figures"); return; }
  const hist = history.get(s.id) || [];
  hist.push({ bps: st.link.bitrate_bps, lost: st.link.packets_lost });
  while (hist.length > HISTORY) hist.shift();
  history.set(s.id, hist);
  draw(graph, hist);
  figures.textContent = `${(st.link.bitrate_bps / 1e6).toFixed(2)} Mb/s · ${bytes(st.link.bytes)} · lost ${st.link.packets_lost} packets` + (st.since_last_packet_ms == null ? " · no packet yet" : ` · last packet ${st.since_last_packet_ms} ms ago`) +
    (st.recording ? ` · recording ${st.recording.state || ""} ${dur(st.recording.duration_s)}` : "");
  const levels = (st.monitor && st.monitor.audio && st.monitor.audio.channels) || [];
  clear(meters, levels.map((c, i) => {
    const db = c.peak_dbfs == null ? -90 : c.peak_dbfs;
    const m = h("meter", { min: -60, max: 0, low: -18, high: -6, optimum: -20, value: Math.max(-60, db), title: `channel ${i + 1}: ${db.toFixed(1)} dBFS` });
    return m;
  }));
}

/** Bitrate (line) and packets lost between readings (red bars). */
function draw(c, hist) {
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...hist.map((x) => x.bps));
  const dx = c.width / HISTORY;
  g.fillStyle = "#e5484d";
  hist.forEach((x, i) => { const d = i ? x.lost - hist[i - 1].lost : 0; if (d > 0) g.fillRect(i * dx, 0, Math.max(2, dx - 1), c.height); });
  g.strokeStyle = "#4cc38a"; g.lineWidth = 2; g.beginPath();
  hist.forEach((x, i) => { const y = c.height - (x.bps / max) * (c.height - 4) - 2; i ? g.lineTo(i * dx, y) : g.moveTo(0, y); });
  g.stroke();
}
