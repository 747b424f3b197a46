// The shell: who is logged in, the navigation, the router (#/page/arg?query), the notice line.
import { h, clear } from "./dom.js";
import { get, post, whenExpired, explain } from "./api.js";
import * as events from "./events.js";
import * as login from "./login.js";
import * as dashboard from "./dashboard.js";
import * as catalog from "./catalog.js";
import * as asset from "./asset.js";
import * as ingest from "./ingest.js";
import * as jobs from "./jobs.js";
import * as live from "./live.js";
import * as playout from "./playout.js";
import * as storage from "./storage.js";
import * as admin from "./admin.js";

// The screens, in the order of the navigation. `roles`: who sees the entry (all when absent).
// A module exporting `render(main, ctx)` (and optionally `leave()`) is all a screen needs.
const SCREENS = [
  { id: "dashboard", label: "Dashboard", page: dashboard },
  { id: "catalog", label: "Catalog", page: catalog },
  { id: "asset", page: asset },
  { id: "ingest", label: "Ingest", page: ingest, roles: ["admin", "operator", "editor", "service"] },
  { id: "jobs", label: "Jobs", page: jobs, roles: ["admin", "operator", "service"] },
  { id: "live", label: "Live", page: live, roles: ["admin", "operator", "service"] },
  { id: "playout", label: "Playout", page: playout },
  { id: "storage", label: "Storage", page: storage, roles: ["admin", "operator", "service"] },
  { id: "admin", label: "Users", page: admin, roles: ["admin"] },
  { id: "account", page: admin.account },
];

const ctx = { me: null, notify, navigate, route: null };
let current = null;

export function notify(text, kind = "error") {
  const n = document.getElementById("notice");
  if (!text) { clear(n); n.className = ""; return; }
  n.className = kind;
  clear(n, h("span", {}, text), h("button", { class: "link", type: "button", "aria-label": "dismiss", onclick: () => notify("") }, "✕"));
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parse() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const [id, ...args] = path.split("/").filter(Boolean);
  return { id: id || "dashboard", args, query: new URLSearchParams(query || "") };
}

function header() {
  const top = document.getElementById("top");
  const r = parse();
  const me = ctx.me;
  top.hidden = false;
  clear(top,
    h("a", { class: "brand", href: "#/dashboard" }, "antenne"),
    h("nav", { "aria-label": "main" },
      SCREENS.filter((s) => s.label && (!s.roles || s.roles.includes(me.role)))
        .map((s) => h("a", { href: `#/${s.id}`, "aria-current": (r.id === s.id || (r.id === "asset" && s.id === "catalog")) ? "page" : null }, s.label))),
    h("div", { class: "who" },
      h("a", { href: "#/account", title: "your account" }, `${me.display_name || me.username} (${me.role})`),
      h("button", { type: "button", id: "logout", onclick: logout }, "Log out")));
}

async function logout() {
  try { await post("/v1/auth/logout"); } catch (_) { /* gone already */ }
  ctx.me = null;
  events.stop();
  notify("");
  showLogin("You are logged out.");
}

function showLogin(message) {
  if (current && current.leave) current.leave();
  current = null;
  const top = document.getElementById("top");
  top.hidden = true;
  clear(top);
  const main = document.getElementById("main");
  login.render(main, { message, done: async (me) => { ctx.me = me; startSession(); } });
}

function expired() {
  if (!ctx.me) return;
  ctx.me = null;
  events.stop();
  notify("");
  showLogin("Your session has ended. Log in again to go on.");
}

function startSession() {
  events.start(expired);
  if (!location.hash || location.hash === "#/login") location.hash = "#/dashboard";
  render();
}

async function render() {
  if (!ctx.me) return;
  const r = parse();
  const screen = SCREENS.find((s) => s.id === r.id && (!s.roles || s.roles.includes(ctx.me.role))) || SCREENS[0];
  if (current && current.leave) current.leave();
  current = screen.page;
  ctx.route = r;
  header();
  notify("");
  const main = document.getElementById("main");
  clear(main);
  try {
    await screen.page.render(main, ctx);
  } catch (e) {
    if (e && e.status === 401) return;
    clear(main, h("p", { class: "error" }, explain(e, "show this page")));
  }
  document.title = `antenne · ${screen.label || r.id}`;
}

async function boot() {
  whenExpired(expired);
  window.addEventListener("hashchange", render);
  // A page kept in the back-forward cache would hold its event stream open, and with it one of
  // the browser's six connections to the appliance.
  window.addEventListener("pagehide", () => events.stop());
  window.addEventListener("pageshow", (ev) => { if (ev.persisted && ctx.me) events.start(expired); });
  try {
    ctx.me = await get("/v1/users/me");
    startSession();
  } catch (e) {
    showLogin(e.status === 401 ? "" : explain(e, "reach the appliance"));
  }
}

boot();
