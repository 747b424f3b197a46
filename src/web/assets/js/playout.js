// Playout: the channels with their state; per channel the rundown with now/next and a live
// countdown to the next event, on-air edits (insert, move, replace, skip, cue) with the
// validation warnings on their items, start/stop/slate, and the as-run log.
import { h, clear, select, table } from "./dom.js";
import { get, post, del, explain } from "./api.js";
import { subscribe } from "./events.js";

let timers = [];
let unsubscribe = null;

export function leave() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}

/** Frames per second of a channel's `rate` (`25`, `30000/1001`, `29.97`). */
export function fps(rate) {
  const [n, d] = String(rate || "25").split("/").map(Number);
  return d ? n / d : n || 25;
}

/** The time of day of an RFC 3339 time, with the date when it is not today. */
function at(t) {
  const d = new Date(t);
  if (isNaN(d)) return t || "";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** `H:MM:SS.t` of a number of seconds (the countdown's tenths). */
export function countdown(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.max(0, s);
  const t = Math.floor(s * 10) / 10;
  const hh = Math.floor(t / 3600), mm = Math.floor(t / 60) % 60, ss = Math.floor(t % 60), ds = Math.floor((t * 10) % 10);
  const p = (x) => String(x).padStart(2, "0");
  return `${hh}:${p(mm)}:${p(ss)}.${ds}`;
}

function state(c) {
  if (c.on_air) return ["on air", "l-live"];
  if (c.running) return ["starting", "l-connecting"];
  return ["stopped", "l-stopped"];
}

function length(frames, rate) {
  const s = frames / fps(rate);
  const hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = Math.floor(s % 60), ff = Math.round(frames % Math.round(fps(rate)));
  const p = (x) => String(x).padStart(2, "0");
  return `${p(hh)}:${p(mm)}:${p(ss)}:${p(ff)}`;
}

export async function render(main, ctx) {
  const role = ctx.me.role;
  const canEdit = ["admin", "operator", "editor"].includes(role);
  const canControl = ["admin", "operator"].includes(role);
  const list = h("tbody", { id: "channels" });
  const detail = h("div", { id: "channel" });
  const msg = h("p", { role: "status", id: "playout-message" });
  clear(main, h("h1", {}, "Playout"), msg,
    h("section", { class: "card", "aria-label": "channels" }, h("h2", {}, "Channels"),
      table(["Channel", "State", "Format", "Outputs", "Rundown"], list)),
    detail);
  const say = (text, kind = "ok") => { msg.className = kind; msg.textContent = text; };

  let channels;
  try { channels = (await get("/v1/channels")).items; }
  catch (e) { clear(list, h("tr", {}, h("td", { colspan: 5, class: "error" }, explain(e, "list the channels")))); return; }
  const wanted = Number(ctx.route.args[0]);
  const chosen = channels.find((c) => c.id === wanted) || channels[0];
  const drawList = () => clear(list, channels.length ? channels.map((c) => {
    const [label, cls] = state(c);
    return h("tr", { dataset: { channel: c.id }, class: chosen && c.id === chosen.id ? "chosen" : null },
      h("td", {}, h("a", { href: `#/playout/${c.id}`, "aria-current": chosen && c.id === chosen.id ? "true" : null }, c.name)),
      h("td", {}, h("span", { class: `state ${cls}` }, label)),
      h("td", {}, `${c.format} · ${c.rate} fps`),
      h("td", { class: "small" }, c.outputs.join(", ") || h("span", { class: "muted" }, "none")),
      h("td", {}, `version ${c.schedule_version}`));
  }) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No channels. Declare them in antenne.toml ([[playout.channels]]) or create them with POST /v1/channels.")));
  drawList();
  if (!chosen) return;

  let ch = chosen;
  let sched = null;
  let nn = null;
  let nnAt = 0;
  const head = h("div", { class: "channel-head" });
  const nowBox = h("section", { class: "card nownext", id: "now-next", "aria-label": "now and next" });
  const cd = h("output", { id: "countdown", class: "tc", "aria-label": "time to the next event" }, "—");
  const rundown = h("tbody", { id: "rundown" });
  const edits = h("div", { id: "edits" });
  const asrun = h("tbody", { id: "asrun" });
  clear(detail,
    head, nowBox,
    h("section", { class: "card", "aria-label": "rundown" }, h("h2", {}, "Rundown"),
      table(["Start", "Timecode", "Item", "Type", "Length", "Warnings", canEdit ? "Edit" : null].filter((x) => x !== null), rundown, { class: "rundown" }),
      edits),
    h("section", { class: "card", "aria-label": "as-run log" }, h("h2", {}, "As-run log"),
      table(["Aired", "Item", "Type", "Scheduled", "Actual", "Length", "Substitution"], asrun)));

  async function control(what, path, method = "POST") {
    try {
      ch = method === "DELETE" ? await del(path) : await post(path);
      if (ch && ch.id) { channels = channels.map((c) => (c.id === ch.id ? ch : c)); drawList(); drawHead(); }
      say(`${what}: done.`);
    } catch (e) { say(explain(e, what), "error"); }
  }

  function drawHead() {
    const [label, cls] = state(ch);
    clear(head, h("h2", { class: "inline" }, ch.name, " ", h("span", { class: `state ${cls}`, id: "channel-state" }, label)),
      canControl ? h("div", { class: "actions", id: "channel-controls" },
        ch.running
          ? h("button", { type: "button", id: "channel-stop", onclick: () => control(`stop ${ch.name}`, `/v1/channels/${ch.id}/stop`) }, "Stop")
          : h("button", { type: "button", id: "channel-start", class: "primary", onclick: () => control(`start ${ch.name}`, `/v1/channels/${ch.id}/start`) }, "Start"),
        h("button", { type: "button", class: "danger", id: "slate-on", onclick: () => control("emergency slate", `/v1/channels/${ch.id}/slate`) }, "Slate on"),
        h("button", { type: "button", id: "slate-off", onclick: () => control("back from the slate", `/v1/channels/${ch.id}/slate`, "DELETE") }, "Slate off"),
        canEdit ? h("button", { type: "button", id: "cue", title: "cue the next live event now", onclick: () => edit({ op: "cue" }, "cue the next live event") }, "Cue live now") : null)
        : null);
  }

  function drawNow() {
    const entry = (label, e) => h("div", { class: "nn" }, h("span", { class: "muted" }, label),
      e ? [h("strong", { class: "nn-title" }, e.title), h("span", { class: "small muted" }, ` ${e.kind} · ${at(e.start)} · ${length(e.frames, ch.rate)}`)]
        : h("span", { class: "muted" }, "nothing scheduled"));
    clear(nowBox, h("h2", {}, "Now and next"),
      h("div", { class: "nn-row" },
        h("div", { id: "now" }, entry("Now", nn && nn.now)),
        h("div", { id: "next" }, entry("Next", nn && nn.next)),
        h("div", { class: "nn" }, h("span", { class: "muted" }, "Next in"), cd),
        h("div", { class: "nn" }, h("span", { class: "muted" }, "Channel timecode"), h("span", { class: "tc small", id: "channel-tc" }, nn ? nn.timecode : "—"))));
    tick();
  }

  function tick() {
    if (!nn || nn.next_in_s == null) { cd.textContent = "—"; return; }
    const left = nn.next_in_s - (performance.now() - nnAt) / 1000;
    cd.textContent = countdown(left);
    if (left <= 0 && performance.now() - nnAt > 1000) loadNow();
  }

  async function loadNow() {
    try { nn = await get(`/v1/channels/${ch.id}/now`); nnAt = performance.now(); drawNow(); markRows(); }
    catch (e) { clear(nowBox, h("h2", {}, "Now and next"), h("p", { class: "error" }, explain(e, "read now and next"))); }
  }

  function markRows() {
    for (const tr of rundown.querySelectorAll("tr[data-item]")) {
      tr.classList.toggle("now", !!(nn && nn.now && nn.now.item === tr.dataset.item));
      tr.classList.toggle("next", !!(nn && nn.next && nn.next.item === tr.dataset.item));
    }
  }

  async function edit(body, what) {
    try {
      sched = await post(`/v1/channels/${ch.id}/schedule/edits`, body);
      ch = { ...ch, schedule_version: sched.version };
      channels = channels.map((c) => (c.id === ch.id ? ch : c));
      drawList();
      drawRundown();
      say(`${what[0].toUpperCase()}${what.slice(1)}: done (rundown version ${sched.version}).`);
      loadNow();
    } catch (e) { say(explain(e, what), "error"); }
  }

  /** The stored item without what the API adds to it. */
  const bare = (it) => { const { slot, warnings, ...rest } = it; return rest; };

  function drawRundown() {
    const items = sched.items;
    const byItem = new Map();
    for (const w of sched.warnings) if (!items.some((i) => i.id === w.item)) byItem.set(w.item, w);
    clear(rundown, items.length ? items.map((it, i) => {
      const name = it.title || it.house_id || (it.type === "live" ? `live: ${it.source}` : it.type === "break" ? "break" : it.asset_id ? `asset ${it.asset_id}` : it.id);
      const acts = canEdit ? h("td", { class: "acts" },
        h("button", { type: "button", class: "up", "aria-label": `move ${it.id} up`, disabled: i === 0, onclick: () => edit({ op: "move", item: it.id, after: i >= 2 ? items[i - 2].id : null }, `move ${it.id} up`) }, "↑"),
        h("button", { type: "button", class: "down", "aria-label": `move ${it.id} down`, disabled: i === items.length - 1, onclick: () => edit({ op: "move", item: it.id, after: items[i + 1].id }, `move ${it.id} down`) }, "↓"),
        it.skip ? null : h("button", { type: "button", class: "skip-item", onclick: () => edit({ op: "skip", item: it.id }, `skip ${it.id}`) }, "Skip"),
        h("button", { type: "button", class: "replace", onclick: () => replaceForm(it) }, "Replace")) : null;
      return h("tr", { dataset: { item: it.id }, class: [it.skip ? "skipped" : "", it.warnings.length ? "warned" : ""].join(" ").trim() || null },
        h("td", {}, it.slot ? at(it.slot.start) : h("span", { class: "muted" }, it.skip ? "skipped" : "does not air")),
        h("td", { class: "tcs" }, it.slot ? it.slot.timecode : ""),
        h("td", {}, h("span", { class: "item-title" }, name), h("span", { class: "muted small" }, ` ${it.id}`), it.start ? h("span", { class: "small hard", title: "a hard start" }, " hard") : null),
        h("td", {}, it.type || "asset"),
        h("td", {}, it.slot ? length(it.slot.frames, ch.rate) : ""),
        h("td", {}, it.warnings.length ? h("ul", { class: "warnings" }, it.warnings.map((w) => h("li", { class: "v-warn", dataset: { code: w.code } }, h("strong", {}, w.code.replace(/_/g, " ")), `: ${w.reason}`))) : ""),
        acts);
    }) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "The rundown is empty. Insert an item below, or load one with PUT /v1/channels/{id}/schedule (JSON, CSV or BXF).")));
    if (byItem.size) rundown.appendChild(h("tr", {}, h("td", { colspan: 7 }, h("ul", { class: "warnings" }, [...byItem.values()].map((w) => h("li", { class: "v-warn" }, `${w.code}: ${w.reason}`))))));
    markRows();
    if (canEdit) drawInsert();
  }

  function replaceForm(it) {
    const who = h("input", { placeholder: "house id or asset id", "aria-label": `replacement for ${it.id}`, required: true });
    const form = h("form", { class: "inline replace-form", onsubmit: (ev) => {
      ev.preventDefault();
      const v = who.value.trim();
      // The new material keeps the old item's place: its id, hard start, breaks and logo.
      const b = bare(it);
      const with_ = { id: b.id, type: "asset", start: b.start, frame: b.frame, breaks: b.breaks, secondary: b.secondary };
      if (/^\d+$/.test(v)) with_.asset_id = Number(v); else with_.house_id = v;
      edit({ op: "replace", item: it.id, with: JSON.parse(JSON.stringify(with_)) }, `replace ${it.id}`);
    } }, h("span", {}, `Replace ${it.id} with `), who, h("button", { type: "submit", class: "primary" }, "Replace"),
      h("button", { type: "button", onclick: () => form.remove() }, "Cancel"));
    const old = edits.querySelector(".replace-form");
    if (old) old.remove();
    edits.prepend(form);
    who.focus();
  }

  function drawInsert() {
    const kind = select([["asset", "asset"], ["live", "live event"], ["break", "break"]], "asset", { "aria-label": "item type", id: "insert-type" });
    const what = h("input", { placeholder: "house id, asset id or live source", "aria-label": "asset or source", id: "insert-what" });
    const secs = h("input", { type: "number", min: 0, step: "any", placeholder: "seconds", "aria-label": "length in seconds", class: "narrow", id: "insert-length" });
    const after = select([["", "at the top"], ...sched.items.map((i) => [i.id, `after ${i.id}`])], sched.items.length ? sched.items[sched.items.length - 1].id : "", { "aria-label": "insert where", id: "insert-after" });
    const form = h("form", { class: "inline", id: "insert", onsubmit: (ev) => {
      ev.preventDefault();
      const item = { type: kind.value };
      const v = what.value.trim();
      if (kind.value === "asset") { if (/^\d+$/.test(v)) item.asset_id = Number(v); else item.house_id = v; }
      if (kind.value === "live") item.source = v;
      if (secs.value !== "") item[kind.value === "asset" ? "out" : "duration"] = Number(secs.value);
      edit({ op: "insert", item, after: after.value || null }, "insert the item");
    } }, h("strong", {}, "Insert "), kind, what, secs, after, h("button", { type: "submit", class: "primary" }, "Insert"));
    const old = edits.querySelector("#insert");
    if (old) old.replaceWith(form); else edits.appendChild(form);
  }

  async function loadSchedule() {
    try {
      const fresh = await get(`/v1/channels/${ch.id}/schedule`);
      // The feed also tells of this page's own edits, already drawn: keep the rows (and focus).
      if (sched && fresh.version === sched.version && rundown.querySelector("tr")) return;
      sched = fresh;
      drawRundown();
    }
    catch (e) { clear(rundown, h("tr", {}, h("td", { colspan: 7, class: "error" }, explain(e, "read the rundown")))); }
  }

  async function loadAsRun() {
    try {
      const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
      const rows = (await get(`/v1/channels/${ch.id}/asrun?from=${encodeURIComponent(from)}`)).items.slice(-50).reverse();
      clear(asrun, rows.length ? rows.map((r) => h("tr", { class: r.substitution ? "warned" : null },
        h("td", {}, at(r.actual_start)), h("td", {}, r.title || r.item), h("td", {}, r.kind),
        h("td", { class: "small" }, `${r.scheduled_start_frame} +${r.scheduled_frames}`),
        h("td", { class: "small" }, `${r.actual_start_frame} +${r.actual_frames}`),
        h("td", {}, length(r.actual_frames, ch.rate)),
        h("td", { class: r.substitution ? "v-warn" : "muted" }, r.substitution || "as scheduled")))
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "Nothing aired in the last 24 hours.")));
    } catch (e) { clear(asrun, h("tr", {}, h("td", { colspan: 7, class: "error" }, explain(e, "read the as-run log")))); }
  }

  async function reloadChannel() {
    try { ch = await get(`/v1/channels/${ch.id}`); channels = channels.map((c) => (c.id === ch.id ? ch : c)); drawList(); drawHead(); }
    catch (_) { /* the next action says why */ }
  }

  unsubscribe = subscribe((c) => {
    if (c.object === "*") { reloadChannel(); loadSchedule(); loadNow(); return; }
    if (c.id !== ch.id) return;
    if (c.object === "schedule" && c.op === "updated") { loadSchedule(); loadNow(); }
    if (c.object === "channel") reloadChannel();
  });
  timers.push(setInterval(tick, 100));
  timers.push(setInterval(() => { loadNow(); if (ch.on_air) loadAsRun(); }, 10000));
  drawHead();
  drawNow();
  await Promise.all([loadSchedule(), loadNow(), loadAsRun()]);
}
