// pagewright extractor plugin in JavaScript (world pagewright:plugin/extractor-plugin@0.1.0).
// Returns {"title": ..., "heading": ...}; params: {"heading": "<selector>"} (default "h1").
import { log } from "pagewright:plugin/log@0.1.0";

const KNOWN = new Set(["heading"]);

function parseParams(text) {
  let params;
  try {
    params = JSON.parse(text || "{}");
  } catch (e) {
    throw { tag: "invalid-input", val: `params are not JSON: ${e}` };
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw { tag: "invalid-input", val: "params must be a JSON object" };
  }
  for (const key of Object.keys(params)) {
    if (!KNOWN.has(key)) throw { tag: "invalid-input", val: `unknown field \`${key}\` in params` };
  }
  if (params.heading !== undefined && typeof params.heading !== "string") {
    throw { tag: "invalid-input", val: "`heading` must be a string" };
  }
  return params;
}

export const extractor = {
  extract(page, paramsJson) {
    const params = parseParams(paramsJson);
    const selector = params.heading ?? "h1";
    log("info", `looking for ${selector}`);
    // evaluate returns the value as JSON text; page errors are thrown as {tag, val} and passed on.
    const title = JSON.parse(page.evaluate("document.title"));
    const elements = page.query(selector, []);
    const heading = elements.length > 0 ? elements[0].text : null;
    return { tag: "json", val: JSON.stringify({ title, heading }) };
  },
};
