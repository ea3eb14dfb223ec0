//! Built-in `scrape`: named CSS selectors to JSON.
//!
//! Params: `{"fields": {"title": "h1", "links": {"selector": "a", "attributes": ["href"]}}}`.
//! A field given as a string is the text of the first match, or `null`. A field given as an object
//! is every match (`"all": false` for the first only, or `null`), each as its text, or as
//! `{"text", "attributes"}` when attributes are asked for.

use std::collections::BTreeMap;

use pagewright_sdk::{Element, Error, Extractor, Output, Page};
use serde::Deserialize;
use serde_json::{Map, Value};

struct Scrape;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    fields: BTreeMap<String, Field>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Field {
    Text(String),
    Detailed(Detailed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Detailed {
    selector: String,
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(default = "yes")]
    all: bool,
}

fn yes() -> bool {
    true
}

impl Extractor for Scrape {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        if params.fields.is_empty() {
            return Err(Error::invalid_input("`fields` names no selectors"));
        }
        let mut result = Map::new();
        for (name, field) in params.fields {
            let value = match field {
                Field::Text(selector) => first(page.query(&selector, &[])?)
                    .map_or(Value::Null, |element| Value::String(element.text)),
                Field::Detailed(field) => {
                    let attributes: Vec<&str> =
                        field.attributes.iter().map(String::as_str).collect();
                    let elements = page.query(&field.selector, &attributes)?;
                    let detailed = !attributes.is_empty();
                    if field.all {
                        Value::Array(
                            elements
                                .into_iter()
                                .map(|element| item(element, detailed))
                                .collect(),
                        )
                    } else {
                        first(elements).map_or(Value::Null, |element| item(element, detailed))
                    }
                }
            };
            result.insert(name, value);
        }
        Output::json(&result)
    }
}

fn first(elements: Vec<Element>) -> Option<Element> {
    elements.into_iter().next()
}

fn item(element: Element, detailed: bool) -> Value {
    if !detailed {
        return Value::String(element.text);
    }
    let attributes: Map<String, Value> = element
        .attributes
        .into_iter()
        .map(|(name, value)| (name, value.map_or(Value::Null, Value::String)))
        .collect();
    serde_json::json!({ "text": element.text, "attributes": attributes })
}

pagewright_sdk::plugin!(Scrape: extractor);
