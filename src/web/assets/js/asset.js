// One asset: the proxy played with source timecode and frame stepping, QC problems on a
// timeline under it, the storyboard, metadata (edited with the version check), files with
// probe and verification, rights windows, sharing, collections, workflows and history.
import { h, clear, field, select, table, bytes, dur, when } from "./dom.js";
import { get, post, patch, put, del, explain, ApiError } from "./api.js";
import { subscribe } from "./events.js";
import { copies } from "./storage.js";

const FIELDS = ["title", "description", "subject", "creator", "contributor", "date", "language", "rights", "identifier", "series", "episode"];
let unsubscribe = null;
let keyHandler = null;

export function leave() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  if (keyHandler) document.removeEventListener("keydown", keyHandler);
  keyHandler = null;
}

export async function render(main, ctx) {
  const id = Number(ctx.route.args[0]);
  if (!Number.isInteger(id)) throw new ApiError(404, "not_found", "no asset in the address");
  let a;
  try {
    a = await get(`/v1/assets/${id}`);
  } catch (e) {
    clear(main, h("p", { class: "error" }, explain(e, `open asset ${id}`)), h("a", { href: "#/catalog" }, "Back to the catalog"));
    return;
  }
  const files = (await get(`/v1/assets/${id}/files`)).items;
  const me = ctx.me;
  const canWrite = a.access.includes("write");
  const owns = me.role === "admin" || a.owner_id === me.id;
  const status = h("span", { class: `status s-${a.status}`, id: "asset-status" }, a.status);
  const title = h("h1", { id: "asset-title" }, a.title || "(untitled)");

  const left = h("div", { class: "col" });
  const right = h("div", { class: "col" });
  clear(main,
    h("p", {}, h("a", { href: "#/catalog" }, "← Catalog")),
    h("div", { class: "asset-head" }, title, h("span", { class: "muted" }, `${a.house_id} · ${a.kind} · version `, h("span", { id: "asset-version" }, a.version)), status),
    h("div", { class: "two" }, left, right));

  player(left, a, files, canWrite);
  right.appendChild(metadata(a, canWrite, ctx, (fresh) => { a = fresh; title.textContent = fresh.title || "(untitled)"; document.getElementById("asset-version").textContent = fresh.version; status.textContent = fresh.status; status.className = `status s-${fresh.status}`; }));
  left.appendChild(filesSection(files));
  right.appendChild(rightsSection(a, canWrite));
  right.appendChild(collectionsSection(a, owns));
  if (owns) right.appendChild(aclSection(a));
  if (canWrite && ["admin", "operator", "service"].includes(me.role)) right.appendChild(workflowSection(a, ctx));
  left.appendChild(historySection(a, me));

  unsubscribe = subscribe(async (c) => {
    if (c.asset_id !== id && !(c.object === "asset" && c.id === id)) return;
    if (c.object === "asset" || c.object === "job") {
      try {
        const fresh = await get(`/v1/assets/${id}`);
        status.textContent = fresh.status;
        status.className = `status s-${fresh.status}`;
      } catch (_) { /* gone or no longer readable: the next action says so */ }
    }
  });
}

// ---- player ----

function rate(f) {
  const r = f && f.technical && f.technical.video && f.technical.video[0] && f.technical.video[0].frame_rate;
  if (!r) return 25;
  const [n, d] = String(r).split("/").map(Number);
  return d ? n / d : n || 25;
}

function startTc(files) {
  const src = files.find((f) => f.role === "source") || files[0];
  const t = src && src.technical;
  return (t && ((t.container && t.container.start_timecode) || (t.video && t.video[0] && t.video[0].timecode))) || "00:00:00:00";
}

/** Source timecode at `s` seconds from the proxy's start (non-drop count). */
export function timecode(start, s, fps) {
  const fr = Math.round(fps);
  const [hh, mm, ss, ff] = start.split(/[:;.]/).map(Number);
  const base = (((hh || 0) * 60 + (mm || 0)) * 60 + (ss || 0)) * fr + (ff || 0);
  // The frame on screen at `s` is the last one that started by then.
  const total = base + Math.floor(s * fps + 1e-3);
  const p = (x) => String(x).padStart(2, "0");
  const f = total % fr, sec = Math.floor(total / fr);
  return `${p(Math.floor(sec / 3600) % 24)}:${p(Math.floor(sec / 60) % 60)}:${p(sec % 60)}:${p(f)}`;
}

function player(box, a, files, canWrite) {
  const proxy = files.find((f) => f.role === "proxy" && /mp4|mov/.test(f.container))
    || files.find((f) => f.role === "proxy")
    || files.find((f) => f.role === "platform" && /mp4/.test(f.container));
  const sec = h("section", { class: "card", "aria-label": "player" }, h("h2", {}, "Proxy"));
  box.appendChild(sec);
  if (!proxy) {
    sec.appendChild(h("p", { class: "muted", id: "no-proxy" }, "No proxy yet: run a workflow that makes the `proxy` profile on this asset."));
  } else {
    const fps = rate(proxy);
    const start = startTc(files);
    const video = h("video", { id: "player", src: `/v1/files/${proxy.id}/content`, controls: true, preload: "auto", playsinline: true, muted: true });
    const tc = h("output", { id: "timecode", class: "tc", "aria-label": "source timecode" }, timecode(start, 0, fps));
    const step = (n) => { video.pause(); video.currentTime = Math.max(0, video.currentTime + n / fps); };
    video.addEventListener("timeupdate", () => { tc.textContent = timecode(start, video.currentTime, fps); });
    video.addEventListener("seeked", () => { tc.textContent = timecode(start, video.currentTime, fps); });
    video.addEventListener("error", () => sec.appendChild(h("p", { class: "error" }, "This browser cannot play the proxy (its codec is not supported here). Download it from the files below.")));
    sec.append(video,
      h("div", { class: "transport" },
        h("button", { type: "button", title: "previous frame (,)", onclick: () => step(-1) }, "◀ frame"),
        h("button", { type: "button", id: "play", onclick: () => (video.paused ? video.play() : video.pause()) }, "Play / pause"),
        h("button", { type: "button", title: "next frame (.)", onclick: () => step(1) }, "frame ▶"),
        tc));
    keyHandler = (ev) => {
      if (ev.target.closest("input, textarea, select")) return;
      if (ev.key === ",") step(-1);
      else if (ev.key === ".") step(1);
      else if (ev.key === "k") video.paused ? video.play() : video.pause();
      else if (ev.key === "i" || ev.key === "o") { const b = document.getElementById(ev.key === "i" ? "mark-in" : "mark-out"); if (b) b.click(); }
    };
    document.addEventListener("keydown", keyHandler);
    qcTimeline(sec, a, video, proxy.duration_s);
    markers(sec, a, video, { start, fps, duration: proxy.duration_s, canWrite, now: () => timecode(start, video.currentTime, fps) });
  }
  const boards = files.filter((f) => f.profile === "thumbnails" && /storyboard/.test(f.path));
  if (boards.length) {
    sec.appendChild(h("h3", {}, "Storyboard"));
    sec.appendChild(h("div", { class: "storyboard" }, boards.map((f) => h("img", { src: `/v1/files/${f.id}/content`, alt: "storyboard sheet", loading: "lazy" }))));
  }
}

async function qcTimeline(sec, a, video, duration) {
  const box = h("div", { class: "qc", id: "qc" }, h("h3", {}, "QC"));
  sec.appendChild(box);
  let qc;
  try {
    qc = await get(`/v1/assets/${a.id}/qc`);
  } catch (e) {
    box.appendChild(h("p", { class: "muted" }, e.code === "not_found" ? "No QC has run on this asset." : explain(e, "read the QC report")));
    return;
  }
  const rep = qc.report || {};
  box.appendChild(h("p", {}, `Verdict: `, h("strong", { class: `v-${rep.verdict}` }, rep.verdict || qc.state), qc.error ? ` — ${qc.error}` : ""));
  const len = duration || (video && video.duration) || 1;
  const line = h("div", { class: "timeline", role: "group", "aria-label": "QC problems on the timeline" });
  for (const c of rep.checks || []) {
    for (const [s, e] of c.ranges || []) {
      const mark = h("button", { type: "button", class: `mark m-${c.status}`, title: `${c.name} ${dur(s)}–${dur(e)}: ${c.measured}`, onclick: () => { video.currentTime = s; } });
      mark.style.left = `${(s / len) * 100}%`;
      mark.style.width = `${Math.max(0.5, ((e - s) / len) * 100)}%`;
      line.appendChild(mark);
    }
  }
  box.appendChild(line);
  const bad = (rep.checks || []).filter((c) => c.status !== "pass");
  box.appendChild(bad.length
    ? table(["Check", "Status", "Expected", "Measured"], bad.map((c) => h("tr", {}, h("td", {}, c.name), h("td", { class: `v-${c.status}` }, c.status), h("td", {}, c.expected), h("td", {}, c.measured))))
    : h("p", { class: "muted" }, `${(rep.checks || []).length} checks passed.`));
}

/** Seconds from the proxy's start of a source timecode (non-drop count, as `timecode`). */
export function seconds(start, tc, fps) {
  const fr = Math.round(fps);
  const f = (t) => { const [hh, mm, ss, ff] = t.split(/[:;.]/).map(Number); return (((hh || 0) * 60 + (mm || 0)) * 60 + (ss || 0)) * fr + (ff || 0); };
  return (f(tc) - f(start)) / fps;
}

const COLOURS = ["", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "white"];

/** Markers and sub-clips: listed, drawn on a timeline under the player (a click seeks), added
 * at the playhead and deleted by those who may write the asset. */
function markers(sec, a, video, t) {
  const box = h("div", { class: "markers", id: "markers" }, h("h3", {}, "Markers"));
  const line = h("div", { class: "timeline", id: "marker-line", role: "group", "aria-label": "markers on the timeline" });
  const list = h("ul", { class: "marker-list", id: "marker-list" });
  const msg = h("p", { role: "status", id: "marker-message" });
  box.append(line, list);
  sec.appendChild(box);
  const len = () => t.duration || video.duration || 1;
  const seek = (m) => { video.pause(); video.currentTime = Math.max(0, seconds(t.start, m.tc_in, t.fps)) + 0.5 / t.fps; };
  async function load() {
    let ms;
    try { ms = (await get(`/v1/assets/${a.id}/markers`)).items; }
    catch (e) { clear(list, h("li", { class: "muted" }, explain(e, "read the markers"))); return; }
    clear(line, ms.map((m) => {
      const s = seconds(t.start, m.tc_in, t.fps), e = m.tc_out ? seconds(t.start, m.tc_out, t.fps) : s;
      const b = h("button", { type: "button", class: `mark marker${m.tc_out ? " subclip" : ""}`, dataset: { marker: m.id }, title: `${m.label || "marker"} at ${m.tc_in}${m.tc_out ? `–${m.tc_out}` : ""}`, "aria-label": `seek to ${m.label || "marker"} at ${m.tc_in}`, onclick: () => seek(m) });
      b.style.left = `${Math.min(100, (s / len()) * 100)}%`;
      b.style.width = m.tc_out ? `${Math.max(0.5, ((e - s) / len()) * 100)}%` : "3px";
      if (/^#[0-9a-f]{6}$|^[a-z]+$/i.test(m.colour)) b.style.background = m.colour;
      return b;
    }));
    clear(list, ms.length ? ms.map((m) => h("li", { dataset: { marker: m.id } },
      h("button", { type: "button", class: "link seek", onclick: () => seek(m) }, m.tc_out ? `${m.tc_in}–${m.tc_out}` : m.tc_in),
      " ", h("span", { class: "marker-label" }, m.label || "(no label)"), m.comment ? h("span", { class: "muted small" }, ` — ${m.comment}`) : null,
      t.canWrite ? h("button", { type: "button", class: "link delete", "aria-label": `delete marker ${m.label || m.tc_in}`, onclick: async () => {
        try { await del(`/v1/assets/${a.id}/markers/${m.id}`); msg.className = "ok"; msg.textContent = "Marker deleted."; load(); }
        catch (e) { msg.className = "error"; msg.textContent = explain(e, "delete the marker"); }
      } }, "delete") : null))
      : h("li", { class: "muted" }, "No markers."));
  }
  if (t.canWrite) {
    const tcIn = h("input", { name: "tc_in", placeholder: "HH:MM:SS:FF", "aria-label": "marker in", class: "tcin", required: true });
    const tcOut = h("input", { name: "tc_out", placeholder: "out (optional)", "aria-label": "marker out", class: "tcin" });
    const label = h("input", { name: "label", placeholder: "label", "aria-label": "marker label", maxlength: 200 });
    const colour = select(COLOURS.map((c) => [c, c || "no colour"]), "", { "aria-label": "marker colour" });
    box.appendChild(h("form", { class: "inline", id: "marker-add", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { tc_in: tcIn.value.trim(), label: label.value };
      if (tcOut.value.trim()) body.tc_out = tcOut.value.trim();
      if (colour.value) body.colour = colour.value;
      try {
        await post(`/v1/assets/${a.id}/markers`, body);
        msg.className = "ok"; msg.textContent = `Marker added at ${body.tc_in}.`;
        label.value = ""; tcOut.value = "";
        load();
      } catch (e) { msg.className = "error"; msg.textContent = explain(e, "add the marker"); }
    } },
      h("button", { type: "button", id: "mark-in", title: "in at the playhead (i)", onclick: () => { tcIn.value = t.now(); } }, "In here"),
      tcIn,
      h("button", { type: "button", id: "mark-out", title: "out at the playhead (o)", onclick: () => { tcOut.value = t.now(); } }, "Out here"),
      tcOut, label, colour, h("button", { type: "submit", class: "primary" }, "Add marker")));
    tcIn.value = t.now();
  }
  box.appendChild(msg);
  load();
}

// ---- metadata ----

function metadata(a, canWrite, ctx, onSaved) {
  const sec = h("section", { class: "card", "aria-label": "metadata" }, h("h2", {}, "Metadata"));
  const inputs = {};
  let base = a;
  const form = h("form", { id: "metadata" });
  for (const k of FIELDS) {
    const el = k === "description"
      ? h("textarea", { name: k, rows: 3, readonly: !canWrite })
      : h("input", { name: k, readonly: !canWrite });
    el.value = a[k] || "";
    inputs[k] = el;
    form.appendChild(field(k[0].toUpperCase() + k.slice(1), el));
  }
  const tags = h("input", { name: "tags", readonly: !canWrite, value: a.tags.join(", ") });
  form.appendChild(field("Tags", tags, canWrite ? "separated by commas" : null));
  for (const [k, v] of Object.entries(a.custom || {})) form.appendChild(field(k, h("input", { value: String(v), readonly: true })));
  const msg = h("div", { id: "metadata-message", role: "status" });
  const fill = (x) => { for (const k of FIELDS) inputs[k].value = x[k] || ""; tags.value = x.tags.join(", "); };
  if (canWrite) {
    form.appendChild(h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", id: "save" }, "Save"),
      h("button", { type: "button", onclick: () => { fill(base); clear(msg); } }, "Undo changes")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { version: base.version };
      for (const k of FIELDS) if (inputs[k].value !== (base[k] || "")) body[k] = inputs[k].value;
      const t = tags.value.split(",").map((x) => x.trim()).filter(Boolean);
      if (t.join(",") !== base.tags.join(",")) body.tags = t;
      if (Object.keys(body).length === 1) { msg.className = "muted"; msg.textContent = "Nothing to save."; return; }
      try {
        base = await patch(`/v1/assets/${a.id}`, body);
        fill(base);
        onSaved(base);
        msg.className = "ok";
        msg.textContent = `Saved (version ${base.version}).`;
      } catch (e) {
        if (e.status === 409 && e.code === "conflict") return conflict(a.id, base, body, msg, ctx, (fresh) => { base = fresh; fill(fresh); onSaved(fresh); });
        msg.className = "error";
        msg.textContent = explain(e, "save the metadata");
      }
    });
  } else {
    form.appendChild(h("p", { class: "muted", id: "read-only" }, "You may read this asset but not change it."));
  }
  sec.append(form, msg);
  return sec;
}

/** A stale version: who changed what since it was read, the user's edits kept in the form. */
async function conflict(id, base, mine, msg, ctx, reload) {
  clear(msg);
  msg.className = "conflict";
  let fresh;
  try { fresh = await get(`/v1/assets/${id}`); } catch (e) { msg.textContent = explain(e, "read the asset again"); return; }
  const changed = [...FIELDS, "tags", "status", "kind"].filter((k) => JSON.stringify(fresh[k]) !== JSON.stringify(base[k]));
  let who = "Someone";
  try {
    const entry = (await history(id)).filter((e) => e.action.startsWith("PATCH") && e.result === "ok").pop();
    if (entry) who = entry.actor;
  } catch (_) { /* the audit log is for admins */ }
  msg.append(
    h("p", {}, h("strong", {}, `${who} changed this asset while you were editing it`), ` (version ${base.version} → ${fresh.version}, ${when(fresh.updated)}). Your changes were not saved; they are still in the form.`),
    h("ul", {}, changed.map((k) => h("li", {}, `${k}: “${fmt(base[k])}” → “${fmt(fresh[k])}”`))),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "conflict-reload", onclick: () => { reload(fresh); clear(msg); msg.className = "muted"; msg.textContent = `Reloaded version ${fresh.version}. Make your change again.`; } }, "Reload their version"),
      h("button", { type: "button", id: "conflict-overwrite", onclick: async () => {
        try {
          const saved = await patch(`/v1/assets/${id}`, { ...mine, version: fresh.version });
          reload(saved);
          clear(msg); msg.className = "ok"; msg.textContent = `Saved over their change (version ${saved.version}).`;
        } catch (e) { msg.textContent = explain(e, "save the metadata"); }
      } }, "Keep mine (overwrite)")));
  msg.scrollIntoView({ block: "center" });
}

function fmt(v) { return Array.isArray(v) ? v.join(", ") : v == null ? "" : String(v); }

/** The audit entries about an asset (admins only: the log is theirs). */
async function history(id) {
  const mine = [];
  let after = "";
  for (let i = 0; i < 20; i++) {
    const p = await get(`/v1/audit?limit=500${after}`);
    for (const e of p.items) if (e.object === `/v1/assets/${id}` || e.object.startsWith(`/v1/assets/${id}/`)) mine.push(e);
    if (!p.next) break;
    after = `&after=${p.next}`;
  }
  return mine;
}

// ---- files ----

function filesSection(files) {
  const sec = h("section", { class: "card", "aria-label": "files" }, h("h2", {}, "Files"));
  if (!files.length) sec.appendChild(h("p", { class: "muted" }, "No files yet."));
  for (const f of files) {
    const name = f.path.split("/").pop();
    const held = h("div", { class: "file-copies", dataset: { file: f.id } }, h("p", { class: "muted" }, "…"));
    copies(held, f.id);
    sec.appendChild(h("details", { class: "file" },
      h("summary", {}, h("strong", {}, f.role), ` ${name} · ${f.container} ${f.video_codec} ${f.width ? `${f.width}×${f.height}` : ""} · ${dur(f.duration_s)} · ${bytes(f.size)}`,
        f.profile ? ` · ${f.profile}` : "", f.verification ? h("span", { class: `v-${f.verification.pass === false ? "fail" : "pass"}` }, f.verification.pass === false ? " · verification failed" : " · verified") : ""),
      h("p", {}, h("a", { href: `/v1/files/${f.id}/content`, download: name }, "Download"), ` · SHA-256 ${f.sha256.slice(0, 16)}…`),
      h("h4", {}, "Copies"), held,
      h("h4", {}, "Probe"), h("pre", {}, JSON.stringify(f.technical, null, 2)),
      f.verification ? [h("h4", {}, "Verification"), h("pre", {}, JSON.stringify(f.verification, null, 2))] : null));
  }
  return sec;
}

// ---- rights, collections, sharing, workflows, history ----

function rightsSection(a, canWrite) {
  const sec = h("section", { class: "card", "aria-label": "rights" }, h("h2", {}, "Rights windows"));
  const list = h("ul", {});
  const msg = h("p", { role: "status" });
  const show = (ws) => clear(list, ws.length ? ws.map((w) => h("li", {},
    `${w.licensed_from || "open"} → ${w.licensed_until || "open"}`, w.territories.length ? ` · ${w.territories.join(", ")}` : "", w.platforms.length ? ` · ${w.platforms.join(", ")}` : "", w.note ? ` · ${w.note}` : "",
    h("span", { class: w.active ? "ok" : "muted" }, w.active ? " (active)" : " (inactive)"),
    canWrite ? h("button", { type: "button", class: "link", onclick: async () => { try { await del(`/v1/assets/${a.id}/rights/${w.id}`); load(); } catch (e) { msg.className = "error"; msg.textContent = explain(e, "remove the window"); } } }, "remove") : null))
    : h("li", { class: "muted" }, "None recorded."));
  const load = async () => show((await get(`/v1/assets/${a.id}/rights`)).items);
  show(a.rights_windows);
  sec.append(list);
  if (canWrite) {
    const from = h("input", { type: "date", "aria-label": "licensed from" });
    const until = h("input", { type: "date", "aria-label": "licensed until" });
    const terr = h("input", { placeholder: "territories (FR, BE)", "aria-label": "territories" });
    sec.appendChild(h("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await post(`/v1/assets/${a.id}/rights`, { licensed_from: from.value || null, licensed_until: until.value || null, territories: terr.value.split(",").map((x) => x.trim()).filter(Boolean) });
        msg.className = "ok"; msg.textContent = "Window added.";
        load();
      } catch (e) { msg.className = "error"; msg.textContent = explain(e, "add the window"); }
    } }, from, until, terr, h("button", { type: "submit" }, "Add window")));
  }
  sec.appendChild(msg);
  return sec;
}

function collectionsSection(a, owns) {
  const sec = h("section", { class: "card", "aria-label": "collections" }, h("h2", {}, "Collections"));
  const list = h("ul", {});
  const msg = h("p", { role: "status" });
  sec.append(list);
  get("/v1/collections?limit=500").then((cs) => {
    const mine = cs.items.filter((c) => a.collections.includes(c.id));
    clear(list, mine.length ? mine.map((c) => h("li", {}, h("a", { href: `#/catalog?collection=${c.id}` }, c.name),
      owns ? h("button", { type: "button", class: "link", onclick: async () => { try { await del(`/v1/collections/${c.id}/assets/${a.id}`); a.collections = a.collections.filter((x) => x !== c.id); msg.textContent = `Removed from ${c.name}.`; } catch (e) { msg.textContent = explain(e, "remove it from the collection"); } } }, " remove") : null))
      : h("li", { class: "muted" }, "In no collection."));
    if (owns) {
      const pick = select([["", "add to collection…"], ...cs.items.filter((c) => !a.collections.includes(c.id)).map((c) => [c.id, c.name])], "", { "aria-label": "add to collection" });
      pick.addEventListener("change", async () => {
        if (!pick.value) return;
        try { await put(`/v1/collections/${pick.value}/assets/${a.id}`); msg.className = "ok"; msg.textContent = "Added."; a.collections.push(Number(pick.value)); }
        catch (e) { msg.className = "error"; msg.textContent = explain(e, "add it to the collection"); }
      });
      sec.insertBefore(pick, msg);
    }
  }).catch((e) => { list.textContent = explain(e, "list the collections"); });
  sec.appendChild(msg);
  return sec;
}

function aclSection(a) {
  const sec = h("section", { class: "card", "aria-label": "sharing" }, h("h2", {}, "Sharing"));
  const rows = h("tbody", {});
  const msg = h("p", { role: "status" });
  let grants = [];
  const draw = () => clear(rows, grants.map((g, i) => h("tr", {},
    h("td", {}, `${g.principal} ${g.id}`), h("td", {}, g.perms.join(", ")),
    h("td", {}, h("button", { type: "button", class: "link", onclick: () => { grants.splice(i, 1); draw(); } }, "remove")))));
  get(`/v1/assets/${a.id}/acl`).then((x) => { grants = x.grants; draw(); }).catch((e) => { msg.textContent = explain(e, "read the sharing"); });
  const kind = select([["user", "user"], ["group", "group"]], "user", { "aria-label": "user or group" });
  const who = h("input", { type: "number", min: 1, placeholder: "id", "aria-label": "user or group id", class: "narrow" });
  const perms = ["read", "write", "download", "delete"].map((p) => h("label", {}, h("input", { type: "checkbox", value: p, checked: p === "read" }), p));
  sec.append(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Who"), h("th", {}, "May"), h("th", {}))), rows),
    h("div", { class: "inline" }, kind, who, perms,
      h("button", { type: "button", onclick: () => {
        const p = perms.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
        if (!who.value || !p.length) { msg.textContent = "Give a user or group id and at least one right."; return; }
        grants.push({ principal: kind.value, id: Number(who.value), perms: p }); draw();
      } }, "Add"),
      h("button", { type: "button", class: "primary", onclick: async () => {
        try { grants = (await put(`/v1/assets/${a.id}/acl`, { grants })).grants; draw(); msg.className = "ok"; msg.textContent = "Sharing saved."; }
        catch (e) { msg.className = "error"; msg.textContent = explain(e, "save the sharing"); }
      } }, "Save sharing")),
    msg);
  return sec;
}

function workflowSection(a, ctx) {
  const sec = h("section", { class: "card", "aria-label": "workflows" }, h("h2", {}, "Run a workflow"));
  const msg = h("p", { role: "status" });
  get("/v1/workflows").then((w) => {
    if (!w.items.length) { sec.appendChild(h("p", { class: "muted" }, "No workflows on this appliance.")); return; }
    const pick = select(w.items.map((x) => [x.name, `${x.name}: ${x.steps.join(" → ")}`]), w.items[0].name, { "aria-label": "workflow" });
    sec.insertBefore(h("div", { class: "inline" }, pick, h("button", { type: "button", onclick: async () => {
      try { const j = await post(`/v1/workflows/${encodeURIComponent(pick.value)}/run`, { asset_id: a.id }); msg.className = "ok"; clear(msg, `Job ${j.id} queued. `, h("a", { href: `#/jobs?asset_id=${a.id}` }, "Follow it in Jobs")); }
      catch (e) { msg.className = "error"; msg.textContent = explain(e, "run the workflow"); }
    } }, "Run")), msg);
  }).catch((e) => { msg.textContent = explain(e, "list the workflows"); });
  sec.appendChild(msg);
  return sec;
}

function historySection(a, me) {
  const sec = h("section", { class: "card", "aria-label": "history" }, h("h2", {}, "History"));
  if (me.role !== "admin") {
    sec.appendChild(h("p", { class: "muted" }, `Created ${when(a.created)}, last changed ${when(a.updated)} (version ${a.version}). The full history is in the audit log, which administrators read.`));
    return sec;
  }
  const body = h("tbody", {});
  sec.appendChild(table(["When", "Who", "What", "Result"], body));
  history(a.id).then((es) => clear(body, es.reverse().map((e) => h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action), h("td", {}, e.result)))))
    .catch((e) => body.appendChild(h("tr", {}, h("td", { colspan: 4 }, explain(e, "read the history")))));
  return sec;
}
