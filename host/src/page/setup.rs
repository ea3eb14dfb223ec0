//! Setting a page up before it navigates: viewport, headers, user agent, cookies, media emulation,
//! JavaScript, request blocking and injected scripts. Each setting records itself in the page's
//! changes (`changes.rs`), so the reset undoes exactly what a job changed.

use super::{Page, PageError};
use crate::job::options::{
    BlockOptions, Cookie, MediaType, PageOptions, ResourceType, SameSite, Viewport,
};
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams,
    SetScriptExecutionDisabledParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FailRequestParams, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::network::{
    self, ClearBrowserCookiesParams, CookieParam, CookieSameSite, ErrorReason, Headers,
    SetCookiesParams, SetExtraHttpHeadersParams, TimeSinceEpoch,
};
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::browser_protocol::security::SetIgnoreCertificateErrorsParams;
use chromiumoxide::cdp::browser_protocol::storage::ClearDataForOriginParams;
use futures::StreamExt;

impl Page<'_> {
    /// Applies everything in `options` that must be in place before navigating. `target_url` is where
    /// cookies without `url` or `domain` go.
    pub async fn apply(
        &self,
        options: &PageOptions,
        target_url: Option<&str>,
    ) -> Result<(), PageError> {
        let deadline = self.deadline;
        self.set_viewport(&options.viewport).await?;
        if !options.headers.is_empty() {
            self.set_extra_headers(&options.headers).await?;
        }
        if let Some(user_agent) = &options.user_agent {
            self.set_user_agent(user_agent).await?;
        }
        if options.media.is_some() || !options.media_features.is_empty() {
            self.emulate_media(options.media, &options.media_features)
                .await?;
        }
        if !options.javascript {
            self.set_javascript_enabled(false).await?;
        }
        if options.ignore_https_errors {
            self.ignore_certificate_errors().await?;
        }
        if !options.block.is_empty() {
            self.block_requests(&options.block).await?;
        }
        if options.fresh_session {
            self.step(
                "clear cookies",
                deadline,
                self.cdp().execute(ClearBrowserCookiesParams::default()),
            )
            .await?;
            if let Some(origin) = target_url.and_then(|url| url::Url::parse(url).ok()) {
                let origin = origin.origin().ascii_serialization();
                self.step(
                    "clear storage",
                    deadline,
                    self.cdp()
                        .execute(ClearDataForOriginParams::new(origin, "all")),
                )
                .await?;
            }
        }
        if !options.cookies.is_empty() {
            self.set_cookies(&options.cookies, target_url).await?;
        }
        Ok(())
    }

    /// Lets this page load documents and resources whose certificate does not verify, until the
    /// reset.
    pub async fn ignore_certificate_errors(&self) -> Result<(), PageError> {
        self.handle.changes().certificate_errors_ignored = true;
        self.step(
            "ignore certificate errors",
            self.deadline,
            self.cdp()
                .execute(SetIgnoreCertificateErrorsParams::new(true)),
        )
        .await?;
        Ok(())
    }

    pub async fn set_viewport(&self, viewport: &Viewport) -> Result<(), PageError> {
        if self.handle.changes().viewport == Some(*viewport) {
            // Already in force (the last job used the same one): an override relayouts the page.
            return Ok(());
        }
        let params = SetDeviceMetricsOverrideParams::new(
            i64::from(viewport.width),
            i64::from(viewport.height),
            viewport.device_scale_factor,
            viewport.mobile,
        );
        self.step("set viewport", self.deadline, self.cdp().execute(params))
            .await?;
        self.handle.changes().viewport = Some(*viewport);
        Ok(())
    }

    pub async fn set_extra_headers(
        &self,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PageError> {
        let params = SetExtraHttpHeadersParams::new(Headers::new(serde_json::json!(headers)));
        self.handle.changes().headers = true;
        self.step("set headers", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    pub async fn set_user_agent(&self, user_agent: &str) -> Result<(), PageError> {
        if user_agent.is_empty() {
            return Err(PageError::InvalidInput("user_agent cannot be empty".into()));
        }
        let params = SetUserAgentOverrideParams::new(user_agent);
        self.handle.changes().user_agent = true;
        self.step("set user agent", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    /// Sets cookies in the page's browser context. Cookies without `url` or `domain` go to
    /// `default_url`.
    pub async fn set_cookies(
        &self,
        cookies: &[Cookie],
        default_url: Option<&str>,
    ) -> Result<(), PageError> {
        let cookies = cookies
            .iter()
            .map(|cookie| {
                let url = cookie.url.clone().or_else(|| {
                    cookie.domain.is_none().then(|| default_url.map(str::to_owned)).flatten()
                });
                if url.is_none() && cookie.domain.is_none() {
                    return Err(PageError::InvalidInput(format!(
                        "cookie `{}` needs a url or a domain (inline HTML has no URL to default to)",
                        cookie.name
                    )));
                }
                Ok(CookieParam {
                    name: cookie.name.clone(),
                    value: cookie.value.clone(),
                    url,
                    domain: cookie.domain.clone(),
                    path: cookie.path.clone(),
                    secure: Some(cookie.secure),
                    http_only: Some(cookie.http_only),
                    same_site: cookie.same_site.map(|same_site| match same_site {
                        SameSite::Strict => CookieSameSite::Strict,
                        SameSite::Lax => CookieSameSite::Lax,
                        SameSite::None => CookieSameSite::None,
                    }),
                    expires: cookie.expires.map(TimeSinceEpoch::new),
                    ..CookieParam::new(cookie.name.clone(), cookie.value.clone())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.step(
            "set cookies",
            self.deadline,
            self.cdp().execute(SetCookiesParams::new(cookies)),
        )
        .await?;
        Ok(())
    }

    /// The cookies the page's current URL would send.
    pub async fn cookies(&self) -> Result<Vec<Cookie>, PageError> {
        let cookies = self
            .step("get cookies", self.deadline, self.cdp().get_cookies())
            .await?;
        Ok(cookies
            .into_iter()
            .map(|cookie| Cookie {
                name: cookie.name,
                value: cookie.value,
                url: None,
                domain: Some(cookie.domain),
                path: Some(cookie.path),
                secure: cookie.secure,
                http_only: cookie.http_only,
                same_site: cookie.same_site.map(|same_site| match same_site {
                    CookieSameSite::Strict => SameSite::Strict,
                    CookieSameSite::Lax => SameSite::Lax,
                    CookieSameSite::None => SameSite::None,
                }),
                expires: (cookie.expires > 0.0).then_some(cookie.expires),
            })
            .collect())
    }

    pub async fn emulate_media(
        &self,
        media: Option<MediaType>,
        features: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PageError> {
        let params = SetEmulatedMediaParams::builder()
            .media(match media {
                Some(MediaType::Screen) => "screen",
                Some(MediaType::Print) => "print",
                None => "",
            })
            .features(
                features
                    .iter()
                    .map(|(name, value)| MediaFeature::new(name.clone(), value.clone()))
                    .collect::<Vec<_>>(),
            )
            .build();
        self.handle.changes().media = true;
        self.step("emulate media", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    pub async fn set_javascript_enabled(&self, enabled: bool) -> Result<(), PageError> {
        let params = SetScriptExecutionDisabledParams::new(!enabled);
        self.handle.changes().javascript_disabled |= !enabled;
        self.step(
            "toggle JavaScript",
            self.deadline,
            self.cdp().execute(params),
        )
        .await?;
        Ok(())
    }

    /// Fails matching requests before they leave the browser, until the page is reset.
    pub async fn block_requests(&self, block: &BlockOptions) -> Result<(), PageError> {
        let mut patterns: Vec<RequestPattern> = block
            .resource_types
            .iter()
            .map(|&kind| RequestPattern {
                url_pattern: Some("*".into()),
                resource_type: Some(cdp_resource_type(kind)),
                request_stage: Some(RequestStage::Request),
            })
            .collect();
        patterns.extend(block.url_patterns.iter().map(|pattern| RequestPattern {
            url_pattern: Some(pattern.clone()),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        }));
        // Listen before enabling, so no paused request is missed.
        let mut paused = self
            .step(
                "listen for requests",
                self.deadline,
                self.cdp().event_listener::<EventRequestPaused>(),
            )
            .await?;
        let cdp = self.cdp().clone();
        let blocker = tokio::spawn(async move {
            while let Some(event) = paused.next().await {
                let fail =
                    FailRequestParams::new(event.request_id.clone(), ErrorReason::BlockedByClient);
                let _ = cdp.execute(fail).await;
            }
        });
        let previous = self
            .handle
            .changes()
            .request_blocker
            .replace(blocker.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        let enable = fetch::EnableParams::builder().patterns(patterns).build();
        self.step(
            "enable request blocking",
            self.deadline,
            self.cdp().execute(enable),
        )
        .await?;
        Ok(())
    }

    /// Runs `source` in every document of this page before the document's own scripts, until reset.
    pub async fn add_init_script(&self, source: &str) -> Result<(), PageError> {
        let params = AddScriptToEvaluateOnNewDocumentParams::new(source);
        let identifier = self
            .step("inject script", self.deadline, self.cdp().execute(params))
            .await?
            .result
            .identifier;
        self.handle
            .changes()
            .init_scripts
            .push(identifier.inner().clone());
        Ok(())
    }
}

fn cdp_resource_type(kind: ResourceType) -> network::ResourceType {
    use network::ResourceType as Cdp;
    match kind {
        ResourceType::Document => Cdp::Document,
        ResourceType::Stylesheet => Cdp::Stylesheet,
        ResourceType::Image => Cdp::Image,
        ResourceType::Media => Cdp::Media,
        ResourceType::Font => Cdp::Font,
        ResourceType::Script => Cdp::Script,
        ResourceType::Xhr => Cdp::Xhr,
        ResourceType::Fetch => Cdp::Fetch,
        ResourceType::Websocket => Cdp::WebSocket,
        ResourceType::Manifest => Cdp::Manifest,
        ResourceType::Other => Cdp::Other,
    }
}
