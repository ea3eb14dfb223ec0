//! Built-in `screenshot`: the page as an image. Params are the `options` of `POST /v1/screenshot`
//! (format, quality, full_page, clip, selector, omit_background).

use pagewright_sdk::{Error, Extractor, Output, Page, ScreenshotOptions};

struct Screenshot;

impl Extractor for Screenshot {
    type Params = ScreenshotOptions;

    fn extract(page: Page<'_>, options: ScreenshotOptions) -> Result<Output, Error> {
        let image = page.screenshot(&options)?;
        Ok(Output::bytes(options.format.content_type(), image))
    }
}

pagewright_sdk::plugin!(Screenshot: extractor);
