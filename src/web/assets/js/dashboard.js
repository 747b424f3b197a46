// The appliance at a glance: catalog, jobs queued/running/failed, slots and GPU sessions, live
// sources and their state, the last errors; refreshed from the change feed.
import { h, clear, debounce, when, table } from "./dom.js";
import { get, qs, explain } from "./api.js";
import { subscribe } from "./events.js";
import { loadSlots } from "./jobs.js";

let unsubscribe = null;
export function leave() { if (unsubscribe) unsubscribe(); unsubscribe = null; }

export async function render(main, ctx) {
  const ops = ["admin", "operator", "service"].includes(ctx.me.role);
  const cards = {
    catalog: h("section", { class: "card", id: "d-catalog" }),
    jobs: h("section", { class: "card", id: "d-jobs" }),
    slots: h("section", { class: "card", id: "d-slots" }),
    live: h("section", { class: "card", id: "d-live" }),
    storage: h("section", { class: "card", id: "d-storage" }, h("h2", {}, "Storage"),
      h("p", { class: "muted" }, "Storage tiers (used and free per storage) appear here once the appliance's storage API is available.")),
    errors: h("section", { class: "card wide", id: "d-errors" }),
  };
  clear(main, h("h1", {}, "Dashboard"), h("div", { class: "dash" }, Object.values(cards)));
  const refresh = async () => {
    await Promise.all([
      catalogCard(cards.catalog),
      ops ? jobsCard(cards.jobs, cards.errors) : (cards.jobs.hidden = true, cards.errors.hidden = true),
      ops ? loadSlots(cards.slots, false) : (cards.slots.hidden = true),
      ops ? liveCard(cards.live) : (cards.live.hidden = true),
    ]);
  };
  unsubscribe = subscribe(debounce(refresh, 500));
  await refresh();
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
