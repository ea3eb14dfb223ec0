//! Plugins built against `pagewright:plugin@0.1.0`: the host side of 0.1.0's imports, each converting
//! its arguments to 0.2.0's and delegating to the one implementation (`page_resource.rs`, `log.rs`),
//! and the conversions of what 0.1.0's exports return. 0.2.0 only added to 0.1.0, so every 0.1.0
//! value has a 0.2.0 value that means the same; what 0.2.0 added (navigation warnings, tag names)
//! is left out of the answers.

use std::convert::identity;

use wasmtime::component::Resource;

use super::bindings::pagewright::plugin::{log as log_now, page as page_now, types as types_now};
use super::bindings::v0_1::pagewright::plugin::{log, page, types};
use super::page_resource::PageResource;
use super::state::PluginState;

type Op<T> = wasmtime::Result<Result<T, types::Error>>;

impl types::Host for PluginState {}
impl page::Host for PluginState {}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => log_now::Level::Trace,
            log::Level::Debug => log_now::Level::Debug,
            log::Level::Info => log_now::Level::Info,
            log::Level::Warn => log_now::Level::Warn,
            log::Level::Error => log_now::Level::Error,
        };
        log_now::Host::log(self, level, message).await
    }
}

/// An answer of the current implementation, as 0.1.0 spells it.
fn answer<T, U>(
    result: wasmtime::Result<Result<T, types_now::Error>>,
    convert: impl FnOnce(T) -> U,
) -> Op<U> {
    Ok(result?.map(convert).map_err(error))
}

impl page::HostPage for PluginState {
    async fn navigation(
        &mut self,
        page: Resource<PageResource>,
    ) -> wasmtime::Result<Option<page::Navigation>> {
        Ok(page_now::HostPage::navigation(self, page)
            .await?
            .map(navigation))
    }

    async fn goto(
        &mut self,
        page: Resource<PageResource>,
        url: String,
        options: page::GotoOptions,
    ) -> Op<page::Navigation> {
        let options = goto_options(options);
        answer(
            page_now::HostPage::goto(self, page, url, options).await,
            navigation,
        )
    }

    async fn set_content(
        &mut self,
        page: Resource<PageResource>,
        html: String,
        options: page::GotoOptions,
    ) -> Op<page::Navigation> {
        let options = goto_options(options);
        answer(
            page_now::HostPage::set_content(self, page, html, options).await,
            navigation,
        )
    }

    async fn wait_for_selector(
        &mut self,
        page: Resource<PageResource>,
        selector: String,
        visible: bool,
        timeout_ms: Option<u32>,
    ) -> Op<()> {
        let state = if visible {
            page_now::ElementState::Visible
        } else {
            page_now::ElementState::Attached
        };
        answer(
            page_now::HostPage::wait_for_selector(self, page, selector, state, timeout_ms).await,
            identity,
        )
    }

    async fn wait_for_timeout(&mut self, page: Resource<PageResource>, ms: u32) -> Op<()> {
        answer(
            page_now::HostPage::wait_for_timeout(self, page, ms).await,
            identity,
        )
    }

    async fn evaluate(&mut self, page: Resource<PageResource>, expression: String) -> Op<String> {
        answer(
            page_now::HostPage::evaluate(self, page, expression).await,
            identity,
        )
    }

    async fn content(&mut self, page: Resource<PageResource>) -> Op<String> {
        answer(page_now::HostPage::content(self, page).await, identity)
    }

    async fn query(
        &mut self,
        page: Resource<PageResource>,
        selector: String,
        attributes: Vec<String>,
    ) -> Op<Vec<page::Element>> {
        answer(
            page_now::HostPage::query(self, page, selector, attributes).await,
            |elements| {
                elements
                    .into_iter()
                    .map(|element| page::Element {
                        text: element.text,
                        attributes: element.attributes,
                    })
                    .collect()
            },
        )
    }

    async fn click(&mut self, page: Resource<PageResource>, selector: String) -> Op<()> {
        answer(
            page_now::HostPage::click(self, page, selector).await,
            identity,
        )
    }

    async fn type_text(
        &mut self,
        page: Resource<PageResource>,
        selector: String,
        text: String,
    ) -> Op<()> {
        answer(
            page_now::HostPage::type_text(self, page, selector, text).await,
            identity,
        )
    }

    async fn scroll(&mut self, page: Resource<PageResource>, target: page::ScrollTarget) -> Op<()> {
        let target = match target {
            page::ScrollTarget::By(by) => {
                page_now::ScrollTarget::By(page_now::ScrollBy { x: by.x, y: by.y })
            }
            page::ScrollTarget::Bottom => page_now::ScrollTarget::Bottom,
            page::ScrollTarget::Selector(selector) => page_now::ScrollTarget::Selector(selector),
        };
        answer(
            page_now::HostPage::scroll(self, page, target).await,
            identity,
        )
    }

    async fn set_viewport(
        &mut self,
        page: Resource<PageResource>,
        viewport: page::Viewport,
    ) -> Op<()> {
        let viewport = page_now::Viewport {
            width: viewport.width,
            height: viewport.height,
            device_scale_factor: viewport.device_scale_factor,
            mobile: viewport.mobile,
        };
        answer(
            page_now::HostPage::set_viewport(self, page, viewport).await,
            identity,
        )
    }

    async fn set_extra_headers(
        &mut self,
        page: Resource<PageResource>,
        headers: Vec<(String, String)>,
    ) -> Op<()> {
        answer(
            page_now::HostPage::set_extra_headers(self, page, headers).await,
            identity,
        )
    }

    async fn set_user_agent(&mut self, page: Resource<PageResource>, user_agent: String) -> Op<()> {
        answer(
            page_now::HostPage::set_user_agent(self, page, user_agent).await,
            identity,
        )
    }

    async fn cookies(&mut self, page: Resource<PageResource>) -> Op<Vec<page::Cookie>> {
        answer(page_now::HostPage::cookies(self, page).await, |cookies| {
            cookies.into_iter().map(cookie_then).collect()
        })
    }

    async fn set_cookies(
        &mut self,
        page: Resource<PageResource>,
        cookies: Vec<page::Cookie>,
    ) -> Op<()> {
        let cookies = cookies.into_iter().map(cookie_now).collect();
        answer(
            page_now::HostPage::set_cookies(self, page, cookies).await,
            identity,
        )
    }

    async fn emulate_media(
        &mut self,
        page: Resource<PageResource>,
        media: Option<page::MediaType>,
        features: Vec<(String, String)>,
    ) -> Op<()> {
        let media = media.map(|media| match media {
            page::MediaType::Screen => page_now::MediaType::Screen,
            page::MediaType::Print => page_now::MediaType::Print,
        });
        answer(
            page_now::HostPage::emulate_media(self, page, media, features).await,
            identity,
        )
    }

    async fn screenshot(
        &mut self,
        page: Resource<PageResource>,
        options: page::ScreenshotOptions,
    ) -> Op<Vec<u8>> {
        let options = page_now::ScreenshotOptions {
            format: match options.format {
                page::ImageFormat::Png => page_now::ImageFormat::Png,
                page::ImageFormat::Jpeg => page_now::ImageFormat::Jpeg,
                page::ImageFormat::Webp => page_now::ImageFormat::Webp,
            },
            quality: options.quality,
            full_page: options.full_page,
            clip: options.clip.map(|clip| page_now::Clip {
                x: clip.x,
                y: clip.y,
                width: clip.width,
                height: clip.height,
            }),
            selector: options.selector,
            omit_background: options.omit_background,
            scale: None,
            capture_beyond_viewport: None,
            optimize_for_speed: false,
        };
        answer(
            page_now::HostPage::screenshot(self, page, options).await,
            identity,
        )
    }

    async fn pdf(
        &mut self,
        page: Resource<PageResource>,
        options: page::PdfOptions,
    ) -> Op<Vec<u8>> {
        let options = page_now::PdfOptions {
            paper: options.paper.map(paper_format),
            width: options.width,
            height: options.height,
            landscape: options.landscape,
            print_background: options.print_background,
            scale: options.scale,
            margin: page_now::Margins {
                top: options.margin.top,
                right: options.margin.right,
                bottom: options.margin.bottom,
                left: options.margin.left,
            },
            page_ranges: options.page_ranges,
            header_template: options.header_template,
            footer_template: options.footer_template,
            prefer_css_page_size: options.prefer_css_page_size,
            outline: false,
            tagged: false,
            omit_background: false,
            metadata: None,
        };
        answer(page_now::HostPage::pdf(self, page, options).await, |pdf| {
            pdf
        })
    }

    async fn drop(&mut self, page: Resource<PageResource>) -> wasmtime::Result<()> {
        page_now::HostPage::drop(self, page).await
    }
}

fn goto_options(options: page::GotoOptions) -> page_now::GotoOptions {
    page_now::GotoOptions {
        wait_until: match options.wait_until {
            page::WaitUntil::Load => page_now::WaitUntil::Load,
            page::WaitUntil::DomContentLoaded => page_now::WaitUntil::DomContentLoaded,
            page::WaitUntil::NetworkIdle => page_now::WaitUntil::NetworkIdle,
        },
        timeout_ms: options.timeout_ms,
        referrer: options.referrer,
        wait_for_selector: None,
        wait_for_function: None,
        wait_ms: None,
        best_attempt: false,
    }
}

fn navigation(navigation: page_now::Navigation) -> page::Navigation {
    page::Navigation {
        url: navigation.url,
        status: navigation.status,
    }
}

fn paper_format(paper: page::PaperFormat) -> page_now::PaperFormat {
    match paper {
        page::PaperFormat::Letter => page_now::PaperFormat::Letter,
        page::PaperFormat::Legal => page_now::PaperFormat::Legal,
        page::PaperFormat::Tabloid => page_now::PaperFormat::Tabloid,
        page::PaperFormat::Ledger => page_now::PaperFormat::Ledger,
        page::PaperFormat::A0 => page_now::PaperFormat::A0,
        page::PaperFormat::A1 => page_now::PaperFormat::A1,
        page::PaperFormat::A2 => page_now::PaperFormat::A2,
        page::PaperFormat::A3 => page_now::PaperFormat::A3,
        page::PaperFormat::A4 => page_now::PaperFormat::A4,
        page::PaperFormat::A5 => page_now::PaperFormat::A5,
        page::PaperFormat::A6 => page_now::PaperFormat::A6,
    }
}

fn cookie_now(cookie: page::Cookie) -> page_now::Cookie {
    page_now::Cookie {
        name: cookie.name,
        value: cookie.value,
        url: cookie.url,
        domain: cookie.domain,
        path: cookie.path,
        secure: cookie.secure,
        http_only: cookie.http_only,
        same_site: cookie.same_site.map(|same_site| match same_site {
            page::SameSite::Strict => page_now::SameSite::Strict,
            page::SameSite::Lax => page_now::SameSite::Lax,
            page::SameSite::None => page_now::SameSite::None,
        }),
        expires: cookie.expires,
    }
}

fn cookie_then(cookie: page_now::Cookie) -> page::Cookie {
    page::Cookie {
        name: cookie.name,
        value: cookie.value,
        url: cookie.url,
        domain: cookie.domain,
        path: cookie.path,
        secure: cookie.secure,
        http_only: cookie.http_only,
        same_site: cookie.same_site.map(|same_site| match same_site {
            page_now::SameSite::Strict => page::SameSite::Strict,
            page_now::SameSite::Lax => page::SameSite::Lax,
            page_now::SameSite::None => page::SameSite::None,
        }),
        expires: cookie.expires,
    }
}

/// A current error as 0.1.0 spells it (the cases are the same).
fn error(error: types_now::Error) -> types::Error {
    match error {
        types_now::Error::InvalidInput(message) => types::Error::InvalidInput(message),
        types_now::Error::Timeout(message) => types::Error::Timeout(message),
        types_now::Error::Navigation(message) => types::Error::Navigation(message),
        types_now::Error::NotFound(message) => types::Error::NotFound(message),
        types_now::Error::Script(message) => types::Error::Script(message),
        types_now::Error::TooLarge(message) => types::Error::TooLarge(message),
        types_now::Error::Crashed(message) => types::Error::Crashed(message),
        types_now::Error::Failed(message) => types::Error::Failed(message),
    }
}

/// What a 0.1.0 export returned, as the current types: its error and its output.
pub(super) fn error_now(error: types::Error) -> types_now::Error {
    match error {
        types::Error::InvalidInput(message) => types_now::Error::InvalidInput(message),
        types::Error::Timeout(message) => types_now::Error::Timeout(message),
        types::Error::Navigation(message) => types_now::Error::Navigation(message),
        types::Error::NotFound(message) => types_now::Error::NotFound(message),
        types::Error::Script(message) => types_now::Error::Script(message),
        types::Error::TooLarge(message) => types_now::Error::TooLarge(message),
        types::Error::Crashed(message) => types_now::Error::Crashed(message),
        types::Error::Failed(message) => types_now::Error::Failed(message),
    }
}

pub(super) fn output_now(output: types::Output) -> types_now::Output {
    match output {
        types::Output::Json(json) => types_now::Output::Json(json),
        types::Output::Text(text) => types_now::Output::Text(text),
        types::Output::Bytes(binary) => types_now::Output::Bytes(types_now::Binary {
            content_type: binary.content_type,
            data: binary.data,
        }),
    }
}

/// A scorer's view of a job, as 0.1.0 spells it.
pub(super) fn job_info(job: &types_now::JobInfo) -> types::JobInfo {
    types::JobInfo {
        url: job.url.clone(),
        origin: job.origin.clone(),
        plugin: job.plugin.clone(),
        tenant: job.tenant.clone(),
        class: match job.class {
            types_now::PriorityClass::Urgent => types::PriorityClass::Urgent,
            types_now::PriorityClass::Hot => types::PriorityClass::Hot,
            types_now::PriorityClass::Cold => types::PriorityClass::Cold,
        },
        priority: job.priority,
        age_ms: job.age_ms,
        attempt: job.attempt,
        origin_stats: job.origin_stats.map(|stats| types::OriginStats {
            jobs: stats.jobs,
            mean_render_ms: stats.mean_render_ms,
            failure_rate: stats.failure_rate,
        }),
    }
}
