// The login screen.
import { h, clear, field } from "./dom.js";
import { post, get, explain } from "./api.js";

export function render(main, { message, done }) {
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("p", { class: message ? "notice" : "", id: "login-message", role: "status" }, message || "");
  const form = h("form", { class: "login card", id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    form.querySelector("button").disabled = true;
    try {
      await post("/v1/auth/login", { username: user.value, password: pass.value });
      const me = await get("/v1/users/me");
      done(me);
    } catch (e) {
      msg.className = "error";
      msg.textContent = e.code === "unauthorized" ? "Wrong user name or password. Check them and try again." : explain(e, "log in");
      form.querySelector("button").disabled = false;
      pass.select();
    }
  } },
    h("h1", {}, "antenne"),
    msg,
    field("User name", user),
    field("Password", pass),
    h("button", { type: "submit", class: "primary" }, "Log in"));
  clear(main, form);
  user.focus();
}
