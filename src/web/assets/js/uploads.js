// The header the panel's uploads carry: the API takes a non-JSON change by cookie only with it
// (a cross-site page cannot set it without a preflight the server never approves).
export const UPLOAD_HEADER = "antenne-panel";
