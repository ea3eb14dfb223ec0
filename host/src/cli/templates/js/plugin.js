// {{name}}: a pagewright extractor (world pagewright:plugin/extractor-plugin@0.2.0). Returns the
// page's title and how many elements match `params.selector` (default "h1"), with the first one's text.
//
// WIT in JavaScript: a `result<T, error>` function returns T, or throws an `error` as `{tag, val}`
// (`{tag: "failed", val: "why"}`); a page operation that fails throws an Error whose `payload` is
// that shape, and a `record` is an object with camelCase fields. `console.log` and `console.error` reach the server's log under the plugin's name.

/** The request's params, checked: unknown fields are refused with a 400 naming them. */
function parseParams(text) {
  let params;
  try {
    params = JSON.parse(text || "{}");
  } catch (e) {
    throw invalidInput(`params are not JSON: ${e.message}`);
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw invalidInput("params must be a JSON object");
  }
  for (const key of Object.keys(params)) {
    if (key !== "selector") throw invalidInput(`unknown field \`${key}\` in params`);
  }
  if (params.selector !== undefined && typeof params.selector !== "string") {
    throw invalidInput("`selector` must be a string");
  }
  return { selector: params.selector ?? "h1" };
}

function extract(page, paramsJson) {
  const { selector } = parseParams(paramsJson);
  console.log(`counting ${selector}`);
  // evaluate returns the value as JSON text.
  const title = JSON.parse(page.evaluate("document.title"));
  const count = page.count(selector);
  const elements = page.query(selector, []);
  const first = elements.length > 0 ? elements[0].text : null;
  return { tag: "json", val: JSON.stringify({ title, selector, count, first }) };
}

// ---- error guard: keep it ------------------------------------------------------------------
// A WIT error (thrown as `{tag, val}`, or a page operation's, which carries it as `payload`) passes
// on as it is, so a page's error keeps its HTTP status. Anything else thrown (a TypeError, a bug)
// becomes `failed` with its message and stack, instead of a trap.
function invalidInput(message) {
  return { tag: "invalid-input", val: message };
}

function isWitError(e) {
  return e !== null && typeof e === "object" && typeof e.tag === "string" && "val" in e;
}

function guarded(call) {
  return (...args) => {
    try {
      return call(...args);
    } catch (e) {
      if (isWitError(e) || isWitError(e?.payload)) throw e;
      const message = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e);
      throw { tag: "failed", val: message.trim() };
    }
  };
}

export const extractor = { extract: guarded(extract) };
