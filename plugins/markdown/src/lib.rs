//! Built-in `markdown`: the page as Markdown (`text/markdown`), for reading and for language
//! models. The page picks and cleans what is converted, since only it knows what is shown: scripts,
//! styles, hidden elements and frames go, links and images become absolute. With `main_content`,
//! only the page's main content is kept: its `<main>` or `<article>` (or the block that holds most
//! of its paragraphs), without navigation, headers, footers, sidebars, forms, ads, cookie banners
//! and sharing widgets. The cleaned HTML is converted here (htmd), and the page's title leads the
//! document when its content has no heading of its own.

use pagewright_sdk::{Error, Extractor, Output, Page};
use serde::Deserialize;

struct Markdown;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    /// Only the main content: no navigation, headers, footers, sidebars, ads.
    main_content: bool,
}

/// What the page hands over: its title, and the cleaned HTML of what is converted.
#[derive(Deserialize)]
struct Cleaned {
    title: String,
    html: String,
}

/// Picks the root (the body, or the main content), marks what to drop in the live page (only it
/// knows what is hidden), clones the root without it, and makes links and images absolute.
const CLEAN: &str = r#"(() => {
  const mainOnly = MAIN_ONLY;
  const textOf = element => (element.innerText || '').trim().length;
  let root = document.body || document.documentElement;
  if (mainOnly) {
    const marked = [...document.querySelectorAll('main, article, [role=main]')]
      .filter(element => textOf(element) > 200);
    if (marked.length) {
      root = marked.reduce((best, element) => textOf(element) > textOf(best) ? element : best);
    } else {
      // The block whose own paragraphs hold the most text.
      let best = null, bestText = 0;
      for (const paragraph of document.querySelectorAll('p')) {
        const parent = paragraph.parentElement;
        if (!parent || parent.__pagewrightScored) continue;
        parent.__pagewrightScored = true;
        const text = [...parent.children].filter(child => child.tagName === 'P')
          .reduce((sum, child) => sum + textOf(child), 0);
        if (text > bestText) { best = parent; bestText = text; }
      }
      if (best && bestText > 200) root = best;
    }
  }
  const always = 'script, style, noscript, template, iframe, object, embed, canvas, link, meta';
  const clutter = 'nav, header, footer, aside, form, dialog, [role=navigation], [role=banner], ' +
    '[role=contentinfo], [role=complementary], [role=search], [aria-hidden=true]';
  const clutterName = /(^|[-_\s])(ads?|advert\w*|banner|cookies?|consent|promo\w*|sponsor\w*|social|share|sharing|related|newsletter|subscribe|sidebar|comments?|breadcrumbs?|popup|modal)([-_\s]|$)/i;
  const drop = new Set(root.querySelectorAll(always));
  for (const element of root.querySelectorAll('*')) {
    const style = getComputedStyle(element);
    if (style.display === 'none' || style.visibility === 'hidden') drop.add(element);
    if (mainOnly && element !== root) {
      const name = (element.id || '') + ' ' + (typeof element.className === 'string' ? element.className : '');
      if (element.matches(clutter) || clutterName.test(name)) drop.add(element);
    }
  }
  for (const element of drop) element.setAttribute('data-pagewright-drop', '');
  const clone = root.cloneNode(true);
  for (const element of drop) element.removeAttribute('data-pagewright-drop');
  clone.querySelectorAll('[data-pagewright-drop]').forEach(element => element.remove());
  clone.querySelectorAll('a[href]').forEach(link => { link.setAttribute('href', link.href); });
  clone.querySelectorAll('img[src]').forEach(image => { image.setAttribute('src', image.src); });
  return { title: document.title || '', html: clone.outerHTML };
})()"#;

impl Extractor for Markdown {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        let script = CLEAN.replace(
            "MAIN_ONLY",
            if params.main_content { "true" } else { "false" },
        );
        let cleaned: Cleaned = page.evaluate(&script)?;
        let converter = htmd::HtmlToMarkdown::builder()
            .skip_tags(vec!["head", "script", "style"])
            .build();
        let body = converter
            .convert(&cleaned.html)
            .map_err(|error| Error::failed(format!("converting the page to Markdown: {error}")))?;
        let body = tidy(&body);
        let title = cleaned.title.trim();
        let markdown = if title.is_empty() || body.trim_start().starts_with('#') {
            body
        } else {
            format!("# {title}\n\n{body}")
        };
        Ok(Output::bytes(
            "text/markdown; charset=utf-8",
            markdown.into_bytes(),
        ))
    }
}

/// Trailing spaces off every line, no more than one blank line in a row, one newline at the end.
fn tidy(markdown: &str) -> String {
    let mut tidied = String::with_capacity(markdown.len());
    let mut blank_lines = 0;
    for line in markdown.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_lines += 1;
            if blank_lines > 1 || tidied.is_empty() {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        tidied.push_str(line);
        tidied.push('\n');
    }
    while tidied.ends_with("\n\n") {
        tidied.pop();
    }
    tidied
}

pagewright_sdk::plugin!(Markdown: extractor);
