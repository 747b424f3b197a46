// Users, groups and API tokens (admins); one's own account and password (everyone).
import { h, clear, field, select, table, when } from "./dom.js";
import { get, post, patch, put, del, explain } from "./api.js";

const ROLES = [["viewer", "viewer"], ["editor", "editor"], ["operator", "operator"], ["service", "service"], ["admin", "admin"]];

export async function render(main) {
  const msg = h("p", { role: "status", id: "admin-message" });
  const users = h("section", { class: "card", id: "users" });
  const groups = h("section", { class: "card", id: "groups" });
  const tokens = h("section", { class: "card", id: "tokens" });
  clear(main, h("h1", {}, "Users, groups and tokens"), msg, users, groups, tokens);
  const say = (text, kind = "ok") => { msg.className = kind; msg.textContent = text; };
  const fail = (e, doing) => say(explain(e, doing), "error");

  async function loadUsers() {
    const list = (await get("/v1/users?limit=500")).items;
    const name = h("input", { "aria-label": "new user name", placeholder: "user name", required: true });
    const display = h("input", { "aria-label": "display name", placeholder: "display name" });
    const role = select(ROLES, "viewer", { "aria-label": "role" });
    const pw = h("input", { type: "password", "aria-label": "password", placeholder: "password", autocomplete: "new-password", required: true });
    clear(users, h("h2", {}, "Users"),
      table(["Id", "User", "Name", "Role", "State", "Created", ""], list.map((u) => {
        const r = select(ROLES, u.role, { "aria-label": `role of ${u.username}` });
        r.addEventListener("change", async () => { try { await patch(`/v1/users/${u.id}`, { role: r.value }); say(`${u.username} is now ${r.value}.`); } catch (e) { fail(e, "change the role"); } });
        return h("tr", {}, h("td", {}, u.id), h("td", {}, u.username), h("td", {}, u.display_name), h("td", {}, r),
          h("td", {}, u.disabled ? "disabled" : "active"), h("td", {}, when(u.created)),
          h("td", {}, h("button", { type: "button", onclick: async () => { try { await patch(`/v1/users/${u.id}`, { disabled: !u.disabled }); say(`${u.username} ${u.disabled ? "enabled" : "disabled"}.`); loadUsers(); } catch (e) { fail(e, "change the user"); } } }, u.disabled ? "Enable" : "Disable")));
      })),
      h("form", { class: "inline", id: "new-user", onsubmit: async (ev) => {
        ev.preventDefault();
        try { await post("/v1/users", { username: name.value, display_name: display.value, role: role.value, password: pw.value }); say(`User ${name.value} created.`); loadUsers(); }
        catch (e) { fail(e, "create the user"); }
      } }, name, display, role, pw, h("button", { type: "submit" }, "Create user")));
  }

  async function loadGroups() {
    const list = (await get("/v1/groups?limit=500")).items;
    const name = h("input", { "aria-label": "new group name", placeholder: "group name", required: true });
    clear(groups, h("h2", {}, "Groups"),
      table(["Id", "Group", "Members", ""], list.map((g) => {
        const who = h("input", { type: "number", min: 1, class: "narrow", "aria-label": `user id to add to ${g.name}` });
        return h("tr", {}, h("td", {}, g.id), h("td", {}, g.name, h("div", { class: "muted small" }, g.description)), h("td", {}, g.members.join(", ")),
          h("td", {}, who, h("button", { type: "button", onclick: async () => { try { await put(`/v1/groups/${g.id}/members/${who.value}`); loadGroups(); } catch (e) { fail(e, "add the member"); } } }, "Add member"),
            h("button", { type: "button", onclick: async () => { try { await del(`/v1/groups/${g.id}/members/${who.value}`); loadGroups(); } catch (e) { fail(e, "remove the member"); } } }, "Remove member"),
            h("button", { type: "button", class: "danger", onclick: async () => { if (!confirm(`Delete group ${g.name}?`)) return; try { await del(`/v1/groups/${g.id}`); loadGroups(); } catch (e) { fail(e, "delete the group"); } } }, "Delete")));
      })),
      h("form", { class: "inline", onsubmit: async (ev) => { ev.preventDefault(); try { await post("/v1/groups", { name: name.value }); loadGroups(); } catch (e) { fail(e, "create the group"); } } }, name, h("button", { type: "submit" }, "Create group")));
  }

  async function loadTokens() {
    const list = (await get("/v1/tokens?limit=500")).items.filter((t) => t.kind === "api");
    const name = h("input", { "aria-label": "token name", placeholder: "name (what uses it)", required: true });
    const days = h("input", { type: "number", min: 1, value: 90, class: "narrow", "aria-label": "valid for days" });
    const secret = h("p", { id: "token-secret" });
    clear(tokens, h("h2", {}, "API tokens"),
      table(["Id", "User", "Name", "Created", "Expires", ""], list.map((t) => h("tr", {}, h("td", {}, t.id), h("td", {}, t.user_id), h("td", {}, t.name), h("td", {}, when(t.created)), h("td", {}, t.revoked ? "revoked" : when(t.expires)),
        h("td", {}, t.revoked ? "" : h("button", { type: "button", class: "danger", onclick: async () => { try { await del(`/v1/tokens/${t.id}`); say(`Token ${t.name} revoked.`); loadTokens(); } catch (e) { fail(e, "revoke the token"); } } }, "Revoke"))))),
      h("form", { class: "inline", onsubmit: async (ev) => {
        ev.preventDefault();
        try { const t = await post("/v1/tokens", { name: name.value, days: Number(days.value) }); await loadTokens(); tokens.appendChild(h("p", { class: "ok" }, "Copy this token now; it is not shown again: ", h("code", {}, t.token))); }
        catch (e) { fail(e, "create the token"); }
      } }, name, days, h("button", { type: "submit" }, "Create token")), secret);
  }
  await Promise.all([loadUsers(), loadGroups(), loadTokens()].map((p) => p.catch((e) => fail(e, "load this page"))));
}

/** One's own account: display name and password. */
export const account = {
  async render(main, ctx) {
    const me = ctx.me;
    const msg = h("p", { role: "status", id: "account-message" });
    const display = h("input", { value: me.display_name, autocomplete: "name" });
    const cur = h("input", { type: "password", autocomplete: "current-password", required: true });
    const nw = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    const again = h("input", { type: "password", autocomplete: "new-password", required: true });
    const say = (t, k) => { msg.className = k; msg.textContent = t; };
    clear(main, h("h1", {}, `Account: ${me.username}`), h("p", { class: "muted" }, `Role ${me.role}.`), msg,
      h("form", { class: "card", onsubmit: async (ev) => { ev.preventDefault(); try { ctx.me = await patch(`/v1/users/${me.id}`, { display_name: display.value }); say("Name saved.", "ok"); } catch (e) { say(explain(e, "save the name"), "error"); } } },
        h("h2", {}, "Display name"), field("Name", display), h("button", { type: "submit" }, "Save")),
      h("form", { class: "card", id: "password", onsubmit: async (ev) => {
        ev.preventDefault();
        if (nw.value !== again.value) return say("The two new passwords differ. Type the same one twice.", "error");
        try { await post("/v1/users/me/password", { current: cur.value, new: nw.value }); say("Password changed. Your other sessions have ended.", "ok"); cur.value = nw.value = again.value = ""; }
        catch (e) { say(e.code === "forbidden" ? "The current password is wrong. Type it again." : explain(e, "change the password"), "error"); }
      } }, h("h2", {}, "Password"), field("Current password", cur), field("New password", nw), field("New password again", again), h("button", { type: "submit" }, "Change password")));
  },
};
