// The /v1 API as the panel uses it: the session cookie authenticates, errors come back as
// ApiError with words a person can act on.

export class ApiError extends Error {
  constructor(status, code, message, field, extra) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.extra = extra || {};
  }
}

let onExpired = () => {};
export function whenExpired(f) { onExpired = f; }

/** Calls the API; `body` is sent as JSON. Resolves to the parsed answer (null when empty). */
export async function api(method, path, body, opts = {}) {
  const headers = { accept: "application/json", ...(opts.headers || {}) };
  const init = { method, headers, credentials: "same-origin", signal: opts.signal };
  if (opts.raw) {
    if (body !== undefined && body !== null) init.body = body;
  } else if (method !== "GET" && method !== "HEAD") {
    // A change authenticated by the cookie must be JSON, even without a body.
    headers["content-type"] = "application/json";
    if (body !== undefined && body !== null) init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the appliance did not answer");
  }
  if (opts.response) {
    if (!r.ok) throw await errorOf(r, path);
    return r;
  }
  if (r.status === 204) return null;
  if (!r.ok) throw await errorOf(r, path);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

async function errorOf(r, path) {
  let code = "http_" + r.status, message = r.statusText || "", field;
  try {
    const j = await r.json();
    if (j && j.error) ({ code, message, field } = j.error);
  } catch (_) { /* not the envelope */ }
  const e = new ApiError(r.status, code, message, field, { retryAfter: r.headers.get("retry-after") });
  if (r.status === 401 && path !== "/v1/auth/login") onExpired(e);
  return e;
}

/** What went wrong and what to do, in words; never the raw answer. */
export function explain(e, doing) {
  if (!(e instanceof ApiError)) return `${doing ? doing + ": " : ""}something went wrong in the page (${e && e.message}). Reload the page; if it repeats, tell an administrator.`;
  const what = doing ? `Could not ${doing}: ` : "";
  const m = e.message ? e.message.replace(/\.$/, "") : "";
  switch (e.code) {
    case "network": return `${what}the appliance did not answer. Check the network or that the service runs, then try again.`;
    case "unauthorized": return `${what}your session has ended or the name or password is wrong. Log in again.`;
    case "forbidden":
    case "field_forbidden": return `${what}you are not allowed to (${m}). Ask an administrator for the right.`;
    case "not_found": return `${what}it was not found (${m}). It may have been removed, or you may not have access to it.`;
    case "conflict": return `${what}someone or something changed it meanwhile (${m}). Reload it and make your change again.`;
    case "duplicate": return `${what}this content is already in the catalog (${m}). Open the existing asset instead.`;
    case "payload_too_large": return `${what}the file is larger than this appliance accepts (${m}). Ask an administrator to raise ingest.max_upload, or use a watch folder.`;
    case "not_media": return `${what}the file is not media the appliance can read (${m}). Check the file, or export it again.`;
    case "rate_limited": return `${what}too many failed logins. Wait ${e.extra.retryAfter || "a minute"} s and try again.`;
    case "unavailable":
    case "timeout": return `${what}the appliance is busy, starting or stopping (${m}). Try again in a moment.`;
    case "range_not_satisfiable": return `${what}the file could not be read from that point. Reload the page.`;
    case "schedule_aired": return `${what}${m}. What has aired (and the item on air, except by skip or cue) cannot change; edit a later item.`;
    case "nothing_to_cue": return `${what}there is no live event to cue in the rundown (${m}). Insert a live event first.`;
    case "channel_engine_unavailable":
    case "channel_engine_failed": return `${what}the channel engine refused (${m}). Check the channel's outputs and the service log.`;
    case "storage_full": return `${what}a storage is full (${m}). Free space or add a storage, then try again.`;
    case "gone": return `${what}the file is recorded but can no longer be read from storage (${m}). Tell an administrator.`;
    default:
      if (e.status === 400 || e.status === 422) return `${what}${e.field ? `the value of “${e.field}” is not accepted` : "the request was not accepted"} (${m}). Correct it and try again.`;
      if (e.status >= 500) return `${what}the appliance had an internal problem. Try again; if it repeats, tell an administrator (code ${e.code}).`;
      return `${what}${m || "refused"} (code ${e.code}).`;
  }
}

export const get = (p, o) => api("GET", p, null, o);
export const post = (p, b, o) => api("POST", p, b === undefined ? {} : b, o);
export const patch = (p, b) => api("PATCH", p, b);
export const put = (p, b) => api("PUT", p, b === undefined ? {} : b);
export const del = (p) => api("DELETE", p);

/** `?a=1&b=2` of the non-empty values. */
export function qs(o) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}
