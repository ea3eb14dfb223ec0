"""pagewright extractor plugin in Python (world pagewright:plugin/extractor-plugin@0.1.0).

Returns {"title": ..., "heading": ...}; params: {"heading": "<selector>"} (default "h1").
Unknown params fields -> error::invalid-input (HTTP 400).
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, page, types

KNOWN = {"heading"}


def invalid(message: str) -> Err:
    return Err(types.Error_InvalidInput(message))


class Extractor(exports.Extractor):
    def extract(self, page: page.Page, params: str) -> types.Output:
        try:
            parsed = json.loads(params or "{}")
        except ValueError as e:
            raise invalid(f"params are not JSON: {e}")
        if not isinstance(parsed, dict):
            raise invalid("params must be a JSON object")
        unknown = sorted(set(parsed) - KNOWN)
        if unknown:
            raise invalid(f"unknown field `{unknown[0]}` in params")
        selector = parsed.get("heading", "h1")
        if not isinstance(selector, str):
            raise invalid("`heading` must be a string")

        log.log(log.Level.INFO, f"looking for {selector}")
        # Page errors are raised as Err(types.Error_*); letting them propagate passes them on.
        title = json.loads(page.evaluate("document.title"))
        elements = page.query(selector, [])
        heading = elements[0].text if elements else None
        return types.Output_Json(json.dumps({"title": title, "heading": heading}))
