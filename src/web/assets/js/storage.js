// Storage: each storage with its role, used and free space, growth and days to full, alerts;
// the storage event log; the fixity audit, the copy policies and retention (dry run, then a
// purge confirmed on the screen) for administrators.
import { h, clear, table, bytes, when, progress } from "./dom.js";
import { get, post, explain } from "./api.js";

const ms = (t) => (t ? when(new Date(t).toISOString()) : "");
const assets = (n) => `${n} asset${n === 1 ? "" : "s"}`;

/** The copies of a file (storage, size, state, verified at), for the asset page. */
export async function copies(box, fileId) {
  try {
    const cs = await get(`/v1/files/${fileId}/copies`);
    clear(box, cs.length
      ? table(["Storage", "Size", "State", "Verified"], cs.map((c) => h("tr", { dataset: { storage: c.storage } },
        h("td", {}, c.storage), h("td", {}, bytes(c.size)),
        h("td", { class: c.state === "ok" ? "ok" : "error" }, c.state),
        h("td", {}, c.verified_ms ? ms(c.verified_ms) : h("span", { class: "muted" }, "never")))), { class: "copies" })
      : h("p", { class: "muted" }, "No copy recorded on any storage."));
  } catch (e) { clear(box, h("p", { class: "muted" }, explain(e, "list the copies"))); }
}

function days(d) {
  if (d == null) return "—";
  if (d > 3650) return "more than 10 years";
  return d < 1 ? `${(d * 24).toFixed(1)} hours` : `${d.toFixed(d < 10 ? 1 : 0)} days`;
}

export async function render(main, ctx) {
  const isAdmin = ctx.me.role === "admin";
  const grid = h("div", { class: "storages", id: "storages" });
  const msg = h("p", { role: "status", id: "storage-message" });
  const report = h("section", { class: "card", id: "storage-report", "aria-label": "report", hidden: true });
  const events = h("tbody", { id: "storage-events" });
  const say = (text, kind = "ok") => { msg.className = kind; msg.textContent = text; };
  clear(main, h("h1", {}, "Storage"), msg, grid,
    isAdmin ? h("section", { class: "card", "aria-label": "storage work" }, h("h2", {}, "Storage work"),
      h("div", { class: "actions" },
        h("button", { type: "button", id: "run-audit", onclick: audit }, "Run fixity audit"),
        h("button", { type: "button", id: "run-policies", onclick: policies }, "Run copy policies"),
        h("button", { type: "button", id: "retention-dry-run", onclick: dryRun }, "Retention dry run")),
      h("p", { class: "muted small" }, "The audit re-hashes every copy and repairs bad ones from a good copy. A dry run lists what the retention rules would purge; a purge removes only what a dry run proposed at least a grace period ago.")) : null,
    report,
    h("section", { class: "card", "aria-label": "storage events" }, h("h2", {}, "Recent storage events"),
      table(["When", "Event", "Storage", "Asset", "Detail"], events)));

  async function load() {
    let hs;
    try { hs = await get("/v1/storages"); }
    catch (e) { clear(grid, h("p", { class: "error" }, explain(e, "read the storages"))); return; }
    clear(grid, hs.map((s) => h("section", { class: `card storage a-${s.alert}`, dataset: { storage: s.id } },
      h("h2", {}, s.id, " ", h("span", { class: "state" }, s.role), " ",
        h("span", { class: `state alert-${s.alert}` }, s.alert === "ok" ? "ok" : s.alert === "warn" ? "filling up" : "full")),
      h("p", { class: "small muted" }, `${s.kind}${s.writable ? "" : " · read-only"} · ${s.copies} copies`),
      s.reachable ? null : h("p", { class: "error" }, `Not reachable: ${s.error || "no answer"}. Check the storage and its settings in antenne.toml.`),
      progress((s.used_percent || 0) / 100, `${s.id} used`),
      h("p", { class: "used" }, s.capacity_bytes != null
        ? `${bytes(s.capacity_bytes - (s.free_bytes || 0))} used of ${bytes(s.capacity_bytes)} · ${bytes(s.free_bytes)} free (${(s.used_percent || 0).toFixed(1)} %)`
        : `${bytes(s.used_bytes)} of copies · capacity unknown`),
      h("p", { class: "small" }, `Copies: ${bytes(s.used_bytes)} · growth ${s.growth_bytes_per_day == null ? "not known yet" : `${bytes(Math.max(0, s.growth_bytes_per_day))}/day`} · full in ${days(s.days_to_full)}`,
        s.read_errors ? h("span", { class: "error" }, ` · ${s.read_errors} read errors`) : null))));
  }

  async function loadEvents() {
    try {
      let all = [], after = 0;
      for (let i = 0; i < 20; i++) {
        const page = await get(`/v1/storages/events?after=${after}&limit=1000`);
        all = all.concat(page);
        if (page.length < 1000) break;
        after = page[page.length - 1].id;
        all = all.slice(-100);
      }
      const last = all.slice(-30).reverse();
      clear(events, last.length ? last.map((e) => h("tr", { class: ["bad", "missing", "read_error", "unrepairable", "repair_failed", "alert"].includes(e.kind) ? "warned" : null },
        h("td", {}, ms(e.ts_ms)), h("td", {}, e.kind.replace(/_/g, " ")), h("td", {}, e.storage),
        h("td", {}, e.asset_id ? h("a", { href: `#/asset/${e.asset_id}` }, e.asset_id) : ""), h("td", { class: "small" }, e.detail)))
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No storage events yet.")));
    } catch (e) { clear(events, h("tr", {}, h("td", { colspan: 5, class: "error" }, explain(e, "read the storage events")))); }
  }

  const show = (...children) => { report.hidden = false; clear(report, ...children); report.scrollIntoView({ block: "nearest" }); };
  async function busy(button, f) {
    const b = document.getElementById(button);
    if (b) b.disabled = true;
    try { await f(); } finally { if (b) b.disabled = false; }
  }

  async function audit() {
    await busy("run-audit", async () => {
      say("Fixity audit running…", "muted");
      try {
        const r = await post("/v1/storages/audit");
        say("Fixity audit done.");
        show(h("h2", {}, "Fixity audit"), h("ul", { class: "figures", id: "audit-report" },
          [["checked", r.checked], ["good", r.ok], ["bad", r.bad], ["missing", r.missing], ["read errors", r.read_errors], ["repaired", r.repaired], ["repair failed", r.repair_failed]]
            .map(([k, v]) => h("li", {}, h("span", { class: `big${v && k !== "checked" && k !== "good" && k !== "repaired" ? " bad" : ""}` }, v), ` ${k}`))),
        h("p", {}, `${bytes(r.bytes)} read in ${r.seconds.toFixed(1)} s.`),
        r.unrepairable.length ? h("p", { class: "error" }, `Files with no good copy left (not touched): ${r.unrepairable.join(", ")}. Restore them from a backup.`) : null);
        load(); loadEvents();
      } catch (e) { say(explain(e, "run the fixity audit"), "error"); }
    });
  }

  async function policies() {
    await busy("run-policies", async () => {
      say("Copy policies running…", "muted");
      try {
        const r = await post("/v1/storages/policies/run");
        say(`Copy policies done: ${r.copied} copies made, ${r.dropped} dropped (${bytes(r.bytes)}).`);
        if (r.failures.length) show(h("h2", {}, "Copies that could not be made"), h("ul", {}, r.failures.map((f) => h("li", { class: "error" }, f))));
        load(); loadEvents();
      } catch (e) { say(explain(e, "run the copy policies"), "error"); }
    });
  }

  function retentionTable(items, id) {
    return items.length
      ? table(["Asset", "Title", "Size", "Rule", "Proposed", "Purge after"], items.map((i) => h("tr", { dataset: { asset: i.asset_id } },
        h("td", {}, h("a", { href: `#/asset/${i.asset_id}` }, i.house_id || i.asset_id)), h("td", {}, i.title), h("td", {}, bytes(i.bytes)),
        h("td", {}, i.rule), h("td", {}, ms(i.proposed_ms)), h("td", {}, ms(i.purge_after_ms)))), { id })
      : h("p", { class: "muted", id }, "None.");
  }

  function kept(r) {
    return r.kept.length ? [h("h3", {}, "Kept although a rule selects them"),
      h("ul", { id: "retention-kept" }, r.kept.map((k) => h("li", {}, h("a", { href: `#/asset/${k.asset_id}` }, `asset ${k.asset_id}`), ` (${k.rule}): `,
        { legal_hold: "on legal hold", rights_window: "a rights window is still open", scheduled: "scheduled on a playout channel" }[k.why] || k.why)))] : null;
  }

  async function dryRun() {
    await busy("retention-dry-run", async () => {
      try {
        const r = await post("/v1/retention/dry-run");
        say(`Retention dry run: ${assets(r.items.length)} (${bytes(r.bytes)}) would be purged.`);
        const confirmBox = h("div", { class: "actions", id: "purge-confirm" });
        const ask = () => clear(confirmBox,
          h("p", { class: "notice" }, `Purge what is past its grace period? The files are deleted from every storage and only a tombstone is left. This cannot be undone.`),
          h("button", { type: "button", class: "danger", id: "purge-yes", onclick: purge }, "Yes, purge"),
          h("button", { type: "button", id: "purge-no", onclick: () => { clear(confirmBox, purgeButton()); document.getElementById("purge").focus(); } }, "Cancel"));
        const purgeButton = () => h("button", { type: "button", class: "danger", id: "purge", disabled: !r.items.length, onclick: () => { ask(); document.getElementById("purge-no").focus(); } }, "Purge…");
        confirmBox.appendChild(purgeButton());
        show(h("h2", {}, "Retention dry run"), h("p", {}, `${assets(r.items.length)}, ${bytes(r.bytes)}, would be purged once their grace period has passed.`),
          retentionTable(r.items, "retention-items"), kept(r), confirmBox);
      } catch (e) { say(explain(e, "run the retention dry run"), "error"); }
    });
  }

  async function purge() {
    try {
      const r = await post("/v1/retention/purge");
      say(`Purge done: ${assets(r.items.length)} purged (${bytes(r.bytes)}); ${r.waiting.length} still in their grace period.`);
      show(h("h2", {}, "Retention purge"), h("h3", {}, "Purged"), retentionTable(r.items, "purged-items"),
        h("h3", {}, "Waiting for their grace period"), retentionTable(r.waiting, "waiting-items"), kept(r));
      load(); loadEvents();
    } catch (e) { say(explain(e, "purge"), "error"); }
  }

  await Promise.all([load(), loadEvents()]);
}
