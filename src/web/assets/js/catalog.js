// Catalog search: as you type, with facets, a grid (poster frames) or a list, cursor paging.
import { h, clear, debounce, select, table, dur, when } from "./dom.js";
import { get, qs, explain } from "./api.js";

const KINDS = [["", "any kind"], ["programme", "programme"], ["clip", "clip"], ["promo", "promo"], ["live_recording", "live recording"], ["commercial", "commercial"]];
const STATUS = [["", "any status"], ["ingesting", "ingesting"], ["ready", "ready"], ["qc_failed", "QC failed"], ["rendition_failed", "rendition failed"], ["archived", "archived"], ["live_recording", "recording"]];
const SORTS = [["", "newest first"], ["title", "title A–Z"], ["-updated", "latest change"], ["date", "date"], ["-duration", "longest"]];
const HEIGHTS = [["", "any height"], ["576", "≥ 576"], ["720", "≥ 720"], ["1080", "≥ 1080"], ["2160", "≥ 2160"]];

let view = localStorage.getItem("antenne.view") || "grid";
let gen = 0;

export async function render(main, ctx) {
  const q0 = ctx.route.query;
  const f = {
    q: h("input", { type: "search", id: "search", placeholder: "Search titles, descriptions, tags…", value: q0.get("q") || "", "aria-label": "search", autocomplete: "off" }),
    kind: select(KINDS, q0.get("kind"), { "aria-label": "kind", id: "f-kind" }),
    status: select(STATUS, q0.get("status"), { "aria-label": "status", id: "f-status" }),
    tag: select([["", "any tag"]], "", { "aria-label": "tag", id: "f-tag" }),
    collection: select([["", "any collection"]], "", { "aria-label": "collection", id: "f-collection" }),
    created_from: h("input", { type: "date", "aria-label": "created from", value: q0.get("created_from") || "" }),
    created_to: h("input", { type: "date", "aria-label": "created before", value: q0.get("created_to") || "" }),
    codec: h("input", { size: 8, placeholder: "codec", "aria-label": "video codec", value: q0.get("codec") || "" }),
    min_height: select(HEIGHTS, q0.get("min_height"), { "aria-label": "minimum height" }),
    sort: select(SORTS, q0.get("sort"), { "aria-label": "order" }),
  };
  const count = h("span", { class: "muted", id: "count", role: "status" });
  const results = h("div", { id: "results" });
  const more = h("button", { type: "button", hidden: true, id: "more" }, "More results");
  const toggle = h("button", { type: "button", id: "view", onclick: () => { view = view === "grid" ? "list" : "grid"; localStorage.setItem("antenne.view", view); run(); } }, "Grid / list");
  clear(main,
    h("h1", {}, "Catalog"),
    h("div", { class: "searchbar" }, f.q, toggle),
    h("div", { class: "facets" }, f.kind, f.status, f.tag, f.collection, f.created_from, f.created_to, f.codec, f.min_height, f.sort),
    h("p", {}, count),
    results, more);
  f.q.focus();

  // Facet choices the caller may see.
  get("/v1/tags?limit=100").then((t) => {
    for (const x of t.items) f.tag.appendChild(h("option", { value: x.tag, selected: x.tag === q0.get("tag") }, `${x.tag} (${x.assets})`));
  }).catch(() => {});
  get("/v1/collections?limit=200").then((c) => {
    for (const x of c.items) f.collection.appendChild(h("option", { value: x.id, selected: String(x.id) === q0.get("collection") }, x.name));
  }).catch(() => {});

  const params = () => Object.fromEntries(Object.entries(f).map(([k, el]) => [k, el.value.trim()]));
  let next = null;
  async function run(after) {
    const my = ++gen;
    const p = params();
    history.replaceState(null, "", "#/catalog" + qs(p));
    try {
      const started = performance.now();
      const page = await get("/v1/search" + qs({ ...p, limit: 48, after }));
      if (my !== gen) return;
      next = page.next;
      more.hidden = !next;
      count.textContent = `${page.total.exact ? "" : "about "}${page.total.value} asset${page.total.value === 1 ? "" : "s"}`;
      count.dataset.ms = String(Math.round(performance.now() - started));
      if (!after) clear(results);
      show(results, page.items, ctx);
      // For the catalog bench: when the first results of this page load were on screen.
      if (!performance.getEntriesByName("antenne:first-results").length) performance.mark("antenne:first-results");
    } catch (e) {
      if (my !== gen) return;
      clear(results, h("p", { class: "error" }, explain(e, "search")));
    }
  }
  const later = debounce(() => run(), 180);
  f.q.addEventListener("input", later);
  for (const [k, el] of Object.entries(f)) if (k !== "q") el.addEventListener("change", () => run());
  more.addEventListener("click", () => run(next));
  await run();
}

function show(results, items, ctx) {
  if (!items.length && !results.childElementCount) {
    results.appendChild(h("p", { class: "muted" }, "Nothing matches. Try fewer words or other filters."));
    return;
  }
  if (view === "grid") {
    let grid = results.querySelector(".grid");
    if (!grid) results.appendChild(grid = h("ul", { class: "grid" }));
    for (const a of items) {
      const img = h("div", { class: "poster", "aria-hidden": "true" });
      grid.appendChild(h("li", { class: "tile" },
        h("a", { href: `#/asset/${a.id}`, class: "asset-link", dataset: { id: a.id } },
          img,
          h("span", { class: "title" }, a.title || "(untitled)"),
          h("span", { class: "muted" }, `${a.house_id} · ${a.kind}`),
          h("span", { class: `status s-${a.status}` }, a.status))));
      poster(a.id, img);
    }
  } else {
    let body = results.querySelector("tbody");
    if (!body) {
      const t = table(["Title", "House ID", "Kind", "Status", "Tags", "Updated"], []);
      results.appendChild(t);
      body = t.querySelector("tbody");
    }
    for (const a of items) {
      body.appendChild(h("tr", {},
        h("td", {}, h("a", { href: `#/asset/${a.id}`, class: "asset-link", dataset: { id: a.id } }, a.title || "(untitled)")),
        h("td", {}, a.house_id), h("td", {}, a.kind), h("td", {}, h("span", { class: `status s-${a.status}` }, a.status)),
        h("td", {}, a.tags.join(", ")), h("td", {}, when(a.updated))));
    }
  }
}

/** The poster frame (the `thumbnails` profile's JPEG), when the asset has one. */
async function poster(id, box) {
  try {
    const files = await get(`/v1/assets/${id}/files`);
    const f = files.items.find((x) => /poster/.test(x.path) && /\.jpe?g$/i.test(x.path))
      || files.items.find((x) => x.profile === "thumbnails");
    if (f) box.appendChild(h("img", { src: `/v1/files/${f.id}/content`, alt: "", loading: "lazy" }));
    else if (files.items[0]) box.appendChild(h("span", { class: "muted" }, dur(files.items[0].duration_s)));
  } catch (_) { /* no poster: the tile stays plain */ }
}
