// The change feed pushed by /v1/events (server-sent events): one stream for the page, shared
// by the screens that want live updates.
import { get } from "./api.js";

let source = null;
const listeners = new Set();

/** f(change) for each change ({object, id, op, asset_id}); returns the unsubscribe function. */
export function subscribe(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

export function start(onLost) {
  stop();
  source = new EventSource("/v1/events");
  source.addEventListener("change", (ev) => {
    let c;
    try { c = JSON.parse(ev.data); } catch (_) { return; }
    for (const f of [...listeners]) { try { f(c); } catch (e) { console.error(e); } }
  });
  source.addEventListener("resync", () => { for (const f of [...listeners]) f({ object: "*", op: "resync" }); });
  source.onerror = () => {
    // A closed stream (an answer other than 200, e.g. the session ended) is not retried by the
    // browser: ask whether the session still holds; a 401 there sends to the login screen.
    if (source && source.readyState === EventSource.CLOSED) {
      get("/v1/users/me").then(() => setTimeout(() => start(onLost), 2000)).catch(() => onLost && onLost());
    }
  };
}

export function stop() {
  if (source) { source.close(); source = null; }
}
