//! Reading and driving the document: JavaScript evaluation, HTML, queries, clicks, typing, scrolling.

use super::{
    Page, PageError, QueriedElement, ScrollTarget, exception_message, json_string, selector_error,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use serde_json::Value;
use tokio::time::Instant;

/// The most links [`Page::links`] reads from one page.
pub const MAX_LINKS: usize = 5000;

impl Page<'_> {
    /// Evaluates a JavaScript expression in the page; promises are awaited; the result comes back as
    /// JSON (`null` for `undefined` and values JSON cannot hold).
    pub async fn evaluate(&self, expression: &str) -> Result<Value, PageError> {
        self.evaluate_until(expression, self.deadline, "evaluate")
            .await
    }

    pub(super) async fn evaluate_until(
        &self,
        expression: &str,
        deadline: Instant,
        step: &'static str,
    ) -> Result<Value, PageError> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .return_by_value(true)
            .await_promise(true)
            .build()
            .map_err(PageError::InvalidInput)?;
        let returned = self
            .step(step, deadline, self.cdp().execute(params))
            .await?
            .result;
        if let Some(details) = returned.exception_details {
            return Err(PageError::Script(exception_message(&details)));
        }
        Ok(returned.result.value.unwrap_or(Value::Null))
    }

    /// The page's HTML as it is now (after scripts ran), with doctype.
    pub async fn content(&self) -> Result<String, PageError> {
        let script = "(document.doctype ? new XMLSerializer().serializeToString(document.doctype) : '') \
                      + document.documentElement.outerHTML";
        let html = self.evaluate(script).await?;
        Ok(html.as_str().unwrap_or_default().to_owned())
    }

    /// Text and the named attributes of every element matching `selector`, in document order.
    pub async fn query(
        &self,
        selector: &str,
        attributes: &[String],
    ) -> Result<Vec<QueriedElement>, PageError> {
        let script = format!(
            "Array.from(document.querySelectorAll({selector}), element => ({{ \
                tag: element.localName, \
                text: element.innerText ?? element.textContent ?? '', \
                attributes: Object.fromEntries({attributes}.map(name => [name, element.getAttribute(name)])) \
             }}))",
            selector = json_string(selector),
            attributes = serde_json::to_string(attributes).unwrap_or_else(|_| "[]".into()),
        );
        let value = self
            .evaluate(&script)
            .await
            .map_err(|error| selector_error(error, selector))?;
        serde_json::from_value(value).map_err(|error| PageError::Script(error.to_string()))
    }

    /// The document's links, absolute, in document order, each once (at most [`MAX_LINKS`]).
    pub async fn links(&self) -> Result<Vec<String>, PageError> {
        let script = format!(
            "[...new Set(Array.from(document.querySelectorAll('a[href], area[href]'), \
               link => link.href).filter(href => /^https?:/i.test(href)))].slice(0, {MAX_LINKS})"
        );
        let value = self.evaluate(&script).await?;
        serde_json::from_value(value).map_err(|error| PageError::Script(error.to_string()))
    }

    /// How many elements match `selector`.
    pub async fn count(&self, selector: &str) -> Result<u32, PageError> {
        let script = format!(
            "document.querySelectorAll({}).length",
            json_string(selector)
        );
        let value = self
            .evaluate(&script)
            .await
            .map_err(|error| selector_error(error, selector))?;
        Ok(value
            .as_u64()
            .map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX)))
    }

    /// Clicks the centre of the first element matching `selector`, scrolling it into view first.
    pub async fn click(&self, selector: &str) -> Result<(), PageError> {
        let element = self.find(selector).await?;
        self.step("click", self.deadline, element.click()).await?;
        Ok(())
    }

    /// Focuses the first element matching `selector` and types `text` into it, key by key.
    pub async fn type_text(&self, selector: &str, text: &str) -> Result<(), PageError> {
        let element = self.find(selector).await?;
        self.step("focus", self.deadline, element.focus()).await?;
        self.step("type", self.deadline, element.type_str(text))
            .await?;
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<chromiumoxide::Element, PageError> {
        // An invalid selector and a missing element both fail `find_element`; ask the page which.
        let count = self
            .evaluate(&format!(
                "document.querySelectorAll({}).length",
                json_string(selector)
            ))
            .await
            .map_err(|error| selector_error(error, selector))?;
        if count.as_u64() == Some(0) {
            return Err(PageError::NotFound(selector.to_owned()));
        }
        self.step(
            "find element",
            self.deadline,
            self.cdp().find_element(selector),
        )
        .await
    }

    pub async fn scroll(&self, target: &ScrollTarget) -> Result<(), PageError> {
        let script = match target {
            ScrollTarget::By { x, y } => format!("window.scrollBy({x}, {y})"),
            ScrollTarget::Bottom => {
                "window.scrollTo(0, document.scrollingElement.scrollHeight)".to_owned()
            }
            ScrollTarget::Selector(selector) => format!(
                "(() => {{ const element = document.querySelector({s}); \
                   if (!element) return false; element.scrollIntoView(); return true; }})()",
                s = json_string(selector)
            ),
        };
        let found = self.evaluate(&script).await?;
        if let ScrollTarget::Selector(selector) = target
            && found == Value::Bool(false)
        {
            return Err(PageError::NotFound(selector.clone()));
        }
        Ok(())
    }
}
