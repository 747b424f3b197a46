// The appliance at a glance: CPU and memory, catalog, jobs queued/running/failed, slots and GPU
// sessions, storage used/free, live sources and channels with their state, the last errors;
// refreshed from the change feed (the machine's figures every few seconds).
import { h, clear, debounce, when, table, bytes, dur, progress } from "./dom.js";
import { get, qs, explain } from "./api.js";
import { subscribe } from "./events.js";
import { loadSlots } from "./jobs.js";

let unsubscribe = null;
let timer = null;
export function leave() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  clearInterval(timer);
  timer = null;
}

export async function render(main, ctx) {
  const ops = ["admin", "operator", "service"].includes(ctx.me.role);
  const cards = {
    system: h("section", { class: "card", id: "d-system" }),
    catalog: h("section", { class: "card", id: "d-catalog" }),
    jobs: h("section", { class: "card", id: "d-jobs" }),
    slots: h("section", { class: "card", id: "d-slots" }),
    storage: h("section", { class: "card", id: "d-storage" }),
    live: h("section", { class: "card", id: "d-live" }),
    channels: h("section", { class: "card", id: "d-channels" }),
    errors: h("section", { class: "card wide", id: "d-errors" }),
  };
  clear(main, h("h1", {}, "Dashboard"), h("div", { class: "dash" }, Object.values(cards)));
  const refresh = async () => {
    await Promise.all([
      catalogCard(cards.catalog),
      ops ? jobsCard(cards.jobs, cards.errors) : (cards.jobs.hidden = true, cards.errors.hidden = true),
      ops ? slotsCard(cards.slots) : (cards.slots.hidden = true),
      ops ? storageCard(cards.storage) : (cards.storage.hidden = true),
      ops ? liveCard(cards.live) : (cards.live.hidden = true),
      channelsCard(cards.channels),
    ]);
  };
  unsubscribe = subscribe(debounce(refresh, 500));
  timer = setInterval(() => systemCard(cards.system), 5000);
  await Promise.all([refresh(), systemCard(cards.system)]);
}

async function systemCard(box) {
  try {
    const s = await get("/v1/system");
    const mem = s.memory_total_bytes ? s.memory_used_bytes / s.memory_total_bytes : 0;
    clear(box, h("h2", {}, "This machine"),
      h("div", { class: "meter-line" }, h("span", {}, "CPU"), progress(s.cpu_percent / 100, "CPU in use"),
        h("span", { class: "fig", id: "d-cpu" }, `${s.cpu_percent.toFixed(0)} %`)),
      h("div", { class: "meter-line" }, h("span", {}, "Memory"), progress(mem, "memory in use"),
        h("span", { class: "fig", id: "d-mem" }, `${(mem * 100).toFixed(0)} %`)),
      h("p", { class: "small" }, `${s.cpus} CPUs · load ${s.load.map((x) => x.toFixed(2)).join(" ")} · memory ${bytes(s.memory_used_bytes)} of ${bytes(s.memory_total_bytes)}`,
        s.swap_used_bytes ? ` · swap ${bytes(s.swap_used_bytes)}` : ""),
      h("p", { class: "small muted" }, `Up ${dur(s.uptime_s)} · service up ${dur(s.service_uptime_s)}, ${bytes(s.service_rss_bytes)} resident`));
  } catch (e) { clear(box, h("h2", {}, "This machine"), h("p", { class: "error" }, explain(e, "read the machine's figures"))); }
}

async function slotsCard(box) {
  const s = await loadSlots(box, false);
  if (!s) return;
  const gpus = s.gpus || [];
  const used = gpus.reduce((n, g) => n + g.sessions_in_use, 0), total = gpus.reduce((n, g) => n + g.sessions, 0);
  box.insertBefore(h("p", { id: "d-gpu" }, gpus.length ? `GPU sessions: ${used} of ${total} in use on ${gpus.length} GPU${gpus.length > 1 ? "s" : ""}` : "GPU sessions: none (no GPU)"), box.children[1] || null);
}

async function storageCard(box) {
  try {
    const hs = await get("/v1/storages");
    clear(box, h("h2", {}, h("a", { href: "#/storage" }, "Storage")), hs.map((s) => h("div", { class: "storage-line", dataset: { storage: s.id } },
      h("div", { class: "meter-line" }, h("span", {}, s.id), progress((s.used_percent || 0) / 100, `${s.id} used`),
        h("span", { class: `fig${s.alert !== "ok" ? " bad" : ""}` }, s.used_percent == null ? "?" : `${s.used_percent.toFixed(0)} %`)),
      h("p", { class: "small muted" }, `${s.role} · ${s.free_bytes == null ? "free space unknown" : `${bytes(s.free_bytes)} free`}`,
        s.days_to_full != null && s.days_to_full < 365 ? ` · full in ${s.days_to_full.toFixed(0)} days` : "",
        s.reachable ? "" : h("span", { class: "error" }, " · not reachable")))));
  } catch (e) { clear(box, h("h2", {}, "Storage"), h("p", { class: "muted" }, explain(e, "read the storages"))); }
}

async function channelsCard(box) {
  try {
    const cs = (await get("/v1/channels")).items;
    clear(box, h("h2", {}, h("a", { href: "#/playout" }, "Channels")), cs.length
      ? h("ul", {}, cs.map((c) => h("li", {}, h("span", { class: `state ${c.on_air ? "l-live" : c.running ? "l-connecting" : "l-stopped"}` }, c.on_air ? "on air" : c.running ? "starting" : "stopped"),
        " ", h("a", { href: `#/playout/${c.id}` }, c.name), h("span", { class: "muted small" }, ` ${c.format}`))))
      : h("p", { class: "muted" }, "No playout channels."));
  } catch (e) { clear(box, h("h2", {}, "Channels"), h("p", { class: "muted" }, explain(e, "list the channels"))); }
}

async function catalogCard(box) {
  try {
    const [all, ready, failed] = await Promise.all([
      get("/v1/search?limit=1"), get("/v1/search?limit=1&status=ready"), get("/v1/search?limit=1&status=qc_failed"),
    ]);
    const n = (t) => `${t.total.exact ? "" : "~"}${t.total.value}`;
    clear(box, h("h2", {}, "Catalog"), h("p", { class: "big" }, n(all)), h("p", {}, `${n(ready)} ready · `, h("a", { href: "#/catalog?status=qc_failed" }, `${n(failed)} QC failed`)));
  } catch (e) { clear(box, h("h2", {}, "Catalog"), h("p", { class: "error" }, explain(e, "count the assets"))); }
}

async function jobsCard(box, errors) {
  try {
    const count = async (state) => { const p = await get("/v1/jobs" + qs({ state, limit: 500 })); return { n: p.items.length + (p.next ? "+" : ""), items: p.items }; };
    const [q, r, f] = await Promise.all([count("queued"), count("running"), count("failed")]);
    clear(box, h("h2", {}, "Jobs"), h("ul", { class: "figures" },
      h("li", {}, h("a", { href: "#/jobs?state=queued" }, h("span", { class: "big" }, q.n), " queued")),
      h("li", {}, h("a", { href: "#/jobs?state=running" }, h("span", { class: "big" }, r.n), " running")),
      h("li", {}, h("a", { href: "#/jobs?state=failed" }, h("span", { class: "big bad" }, f.n), " failed"))));
    clear(errors, h("h2", {}, "Last errors"), f.items.length
      ? table(["When", "Job", "Error"], f.items.slice(0, 8).map((j) => h("tr", {}, h("td", {}, when(j.finished || j.updated)), h("td", {}, h("a", { href: `#/jobs?state=failed` }, `${j.id} ${j.kind}`)), h("td", { class: "error" }, j.error))))
      : h("p", { class: "muted" }, "No failed jobs."));
  } catch (e) { clear(box, h("h2", {}, "Jobs"), h("p", { class: "error" }, explain(e, "read the jobs"))); }
}

async function liveCard(box) {
  try {
    const s = await get("/v1/live/sources");
    const items = s.items || s;
    clear(box, h("h2", {}, "Live sources"), items.length
      ? h("ul", {}, items.map((x) => h("li", {}, h("span", { class: `state l-${x.state}` }, x.state), ` ${x.name} (${x.kind})`)))
      : h("p", { class: "muted" }, "No live sources."));
  } catch (e) { clear(box, h("h2", {}, "Live sources"), h("p", { class: "muted" }, explain(e, "list the live sources"))); }
}
