// Building the page from data: elements and text nodes only, never HTML strings.

/** h("div", {class: "x", onclick: f}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) add(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

export function bytes(n) {
  if (n == null) return "";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function dur(s) {
  if (s == null || !isFinite(s)) return "";
  s = Math.max(0, s);
  const hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = Math.floor(s % 60);
  const p = (x) => String(x).padStart(2, "0");
  return hh ? `${hh}:${p(mm)}:${p(ss)}` : `${mm}:${p(ss)}`;
}

export function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

export function debounce(f, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint && h("small", { class: "muted" }, hint));
}

export function select(options, value, attrs) {
  return h("select", attrs || {}, options.map(([v, l]) => h("option", { value: v, selected: String(v) === String(value ?? "") }, l)));
}

export function table(head, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    rows instanceof HTMLTableSectionElement ? rows : h("tbody", {}, rows));
}

export function bar(fraction, label) {
  const pct = Math.max(0, Math.min(100, (fraction || 0) * 100));
  return h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(pct), "aria-label": label || "progress" },
    h("div", { class: "fill", style: null, dataset: {} }));
}

/** Sets a progress bar's width without inline style attributes (CSP): a CSS variable via CSSOM. */
export function setBar(el, fraction) {
  const pct = Math.max(0, Math.min(100, (fraction || 0) * 100));
  el.setAttribute("aria-valuenow", Math.round(pct));
  el.firstChild.style.width = `${pct}%`;
}

export function progress(fraction, label) {
  const b = bar(fraction, label);
  setBar(b, fraction);
  return b;
}
