//! Built-in `pdf`: the page printed to PDF. Params are the `options` of `POST /v1/pdf` (paper, width,
//! height, landscape, print_background, scale, margin, page_ranges, header/footer templates,
//! prefer_css_page_size).

use pagewright_sdk::{Error, Extractor, Output, Page, PdfOptions};

struct Pdf;

impl Extractor for Pdf {
    type Params = PdfOptions;

    fn extract(page: Page<'_>, options: PdfOptions) -> Result<Output, Error> {
        Ok(Output::bytes("application/pdf", page.pdf(&options)?))
    }
}

pagewright_sdk::plugin!(Pdf: extractor);
