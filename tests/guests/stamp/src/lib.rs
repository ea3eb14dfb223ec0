//! A page-script and scorer plugin. As a page script it injects `window.__stamp = params.stamp` before
//! the page's own scripts, and after load writes it into `document.body.dataset.stamp`. As a scorer it
//! scores a job by the length of its URL, so the tests can predict the order.

use pagewright_sdk::{Error, JobInfo, Page, PageScript, Scorer};
use serde::Deserialize;

struct Stamp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    stamp: String,
}

impl PageScript for Stamp {
    type Params = Params;

    fn init_scripts(params: &Params) -> Result<Vec<String>, Error> {
        let stamp = serde_json::to_string(&params.stamp).map_err(Error::failed)?;
        Ok(vec![format!("window.__stamp = {stamp};")])
    }

    fn after_load(page: Page<'_>, _params: &Params) -> Result<(), Error> {
        page.evaluate_json("document.body.dataset.stamp = window.__stamp ?? 'missing'")?;
        Ok(())
    }
}

impl Scorer for Stamp {
    fn score(job: JobInfo) -> f64 {
        job.url.len() as f64
    }
}

pagewright_sdk::plugin!(Stamp: page_script, scorer);
