"""{{name}}: a pagewright extractor (world pagewright:plugin/extractor-plugin@0.2.0).

Returns the page's title and how many elements match `params.selector` (default "h1"), with the
first one's text.

WIT in Python: a `result<T, error>` function returns T, or raises `Err(error)`
(`Err(types.Error_Failed("why"))`); page operations raise the same, and a `record` is a dataclass with
snake_case fields. `print` reaches the server's log under the plugin's name.
"""
import json
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import page, types


def parse_params(text: str) -> str:
    """The request's params, checked: unknown fields are refused with a 400 naming them."""
    try:
        params = json.loads(text or "{}")
    except ValueError as e:
        raise Err(types.Error_InvalidInput(f"params are not JSON: {e}"))
    if not isinstance(params, dict):
        raise Err(types.Error_InvalidInput("params must be a JSON object"))
    for key in params:
        if key != "selector":
            raise Err(types.Error_InvalidInput(f"unknown field `{key}` in params"))
    selector = params.get("selector", "h1")
    if not isinstance(selector, str):
        raise Err(types.Error_InvalidInput("`selector` must be a string"))
    return selector


def extract(page: page.Page, params: str) -> types.Output:
    selector = parse_params(params)
    print(f"counting {selector}")
    # evaluate returns the value as JSON text.
    title = json.loads(page.evaluate("document.title"))
    count = page.count(selector)
    elements = page.query(selector, [])
    first = elements[0].text if elements else None
    found = {"title": title, "selector": selector, "count": count, "first": first}
    return types.Output_Json(json.dumps(found))


# ---- error guard: keep it ----------------------------------------------------------------------
# An `Err` is a WIT error and passes on as it is (a page's error keeps its HTTP status). Any other
# exception (a bug) becomes `failed` with its traceback, instead of a trap.
class Extractor(exports.Extractor):
    def extract(self, page: page.Page, params: str) -> types.Output:
        try:
            return extract(page, params)
        except Err:
            raise
        except Exception:
            raise Err(types.Error_Failed(traceback.format_exc().strip()))
