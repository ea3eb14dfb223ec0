//! What a job adds to a page once it has loaded, before the output is taken: its own scripts and
//! style sheets (`page.add_scripts`, `page.add_styles`), and a scroll through the page for what
//! loads lazily (`page.scroll`). All of it lives in the document, which the next job's navigation
//! replaces: the reset has nothing to undo.

use super::{Page, PageError, json_string};
use crate::job::options::{PageOptions, ScriptTime, Scroll};

impl Page<'_> {
    /// Adds the scripts and style sheets `options` asks for once the page has loaded, in order:
    /// scripts first (they may build what the styles style), each waited for.
    pub async fn add_to_loaded(&self, options: &PageOptions) -> Result<(), PageError> {
        for (index, script) in options.add_scripts.iter().enumerate() {
            if script.at != ScriptTime::Load {
                continue;
            }
            let field = format!("page.add_scripts[{index}]");
            let added = match (&script.content, &script.url) {
                // Run as the page's own script would be, in its global scope.
                (Some(content), _) => {
                    self.evaluate_until(content, self.deadline, "add script")
                        .await
                }
                (None, Some(url)) => {
                    self.evaluate_until(
                        &load_element("script", "src", url, &field),
                        self.deadline,
                        "add script",
                    )
                    .await
                }
                (None, None) => Ok(serde_json::Value::Null),
            };
            added.map_err(|error| named(error, &field))?;
        }
        for (index, style) in options.add_styles.iter().enumerate() {
            let field = format!("page.add_styles[{index}]");
            let script = match (&style.content, &style.url) {
                (Some(css), _) => format!(
                    "(() => {{ const style = document.createElement('style'); \
                       style.textContent = {css}; \
                       (document.head || document.documentElement).appendChild(style); \
                       return true; }})()",
                    css = json_string(css)
                ),
                (None, Some(url)) => load_element("link", "href", url, &field),
                (None, None) => continue,
            };
            self.evaluate_until(&script, self.deadline, "add style sheet")
                .await
                .map_err(|error| named(error, &field))?;
        }
        Ok(())
    }

    /// Scrolls to the bottom in steps, pausing after each for what it makes load, then back to the
    /// top. Returns how far down it went, in CSS pixels.
    pub async fn scroll_through(&self, scroll: &Scroll) -> Result<u64, PageError> {
        let script = format!(
            r#"(async () => {{
                const step = {step} || innerHeight || 720, delay = {delay}, max = {max};
                const height = () => Math.max(
                    document.documentElement ? document.documentElement.scrollHeight : 0,
                    document.body ? document.body.scrollHeight : 0);
                let y = 0;
                while (y + innerHeight < Math.min(height(), max)) {{
                    y = Math.min(y + step, max);
                    scrollTo(0, y);
                    await new Promise(resolve => setTimeout(resolve, delay));
                }}
                scrollTo(0, 0);
                await new Promise(resolve => requestAnimationFrame(() => resolve()));
                return y;
            }})()"#,
            step = scroll.step_px.unwrap_or(0),
            delay = scroll.delay_ms,
            max = scroll.max_px,
        );
        let reached = self
            .evaluate_until(&script, self.deadline, "page.scroll")
            .await?;
        Ok(reached.as_u64().unwrap_or(0))
    }
}

/// A script that adds a `<script src>` or `<link rel=stylesheet href>` to the page and resolves once
/// it has loaded, or rejects naming `field` if it could not.
fn load_element(tag: &str, attribute: &str, url: &str, field: &str) -> String {
    let stylesheet = if tag == "link" {
        "element.rel = 'stylesheet';"
    } else {
        ""
    };
    format!(
        "new Promise((resolve, reject) => {{ \
           const element = document.createElement('{tag}'); {stylesheet} \
           element.{attribute} = {url}; \
           element.onload = () => resolve(true); \
           element.onerror = () => reject(new Error({failed})); \
           (document.head || document.documentElement).appendChild(element); }})",
        url = json_string(url),
        failed = json_string(&format!("{field}: {url} did not load")),
    )
}

/// An added script's failure, naming the entry that failed.
fn named(error: PageError, field: &str) -> PageError {
    match error {
        PageError::Script(message) if !message.contains(field) => {
            PageError::Script(format!("{field}: {message}"))
        }
        other => other,
    }
}
