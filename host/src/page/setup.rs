//! Setting a page up before it navigates: viewport, user agent and language, locale, time zone,
//! geolocation, touch, media emulation, JavaScript, headers, request interception (`intercept.rs`),
//! cookies and injected scripts. Each setting records itself in the page's
//! changes (`changes.rs`), so the reset undoes exactly what a job changed.

use super::intercept::{Interception, Served};
use super::{Page, PageError};
use crate::job::options::{
    AuthScheme, Cookie, Geolocation, HeadersScope, MediaType, PageOptions, ResourceType, SameSite,
    ScriptTime, Viewport,
};
use chromiumoxide::cdp::browser_protocol::browser::{
    PermissionDescriptor, PermissionSetting, SetPermissionParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams,
    SetGeolocationOverrideParams, SetLocaleOverrideParams, SetScriptExecutionDisabledParams,
    SetTimezoneOverrideParams, SetTouchEmulationEnabledParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::network::{
    self, ClearBrowserCookiesParams, CookieParam, CookieSameSite, Headers, SetCookiesParams,
    SetExtraHttpHeadersParams, TimeSinceEpoch,
};
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::browser_protocol::security::SetIgnoreCertificateErrorsParams;
use chromiumoxide::cdp::browser_protocol::storage::ClearDataForOriginParams;
use chromiumoxide::error::CdpError;

impl Page<'_> {
    /// Applies everything in `options` that must be in place before navigating. `target_url` is where
    /// cookies without `url` or `domain` go, and whose origin gets the scoped headers; `served` is
    /// an `html` job's document and files, answered from memory at their URLs.
    pub async fn apply(
        &self,
        options: &PageOptions,
        target_url: Option<&str>,
        served: Option<Served>,
    ) -> Result<(), PageError> {
        let deadline = self.deadline;
        let target_origin = target_url
            .and_then(|url| url::Url::parse(url).ok())
            .map(|url| url.origin().ascii_serialization());
        self.set_viewport(&options.viewport()).await?;
        if options.user_agent().is_some() || options.locale.is_some() {
            self.set_user_agent_and_language(options.user_agent(), options.locale.as_deref())
                .await?;
        }
        if let Some(locale) = &options.locale {
            self.set_locale(locale).await?;
        }
        if let Some(timezone) = &options.timezone {
            self.set_timezone(timezone).await?;
        }
        if let Some(position) = &options.geolocation {
            self.set_geolocation(position, target_origin.as_deref())
                .await?;
        }
        if options.touch() {
            self.set_touch(true).await?;
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
        let mut scoped = options.headers.clone();
        if let Some(credentials) = options
            .authenticate
            .as_ref()
            .filter(|credentials| credentials.scheme == AuthScheme::Basic)
        {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", credentials.username, credentials.password));
            scoped.insert("Authorization".into(), format!("Basic {token}"));
        }
        let origins = match &options.headers_scope {
            _ if scoped.is_empty() => Vec::new(),
            HeadersScope::All => {
                self.set_extra_headers(&scoped).await?;
                scoped.clear();
                Vec::new()
            }
            HeadersScope::Target => target_origin.iter().cloned().collect(),
            HeadersScope::Origins(origins) => origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_owned())
                .collect(),
        };
        if !options.block.is_empty() || !origins.is_empty() || served.is_some() {
            self.intercept(Interception {
                block: options.block.clone(),
                headers: scoped,
                header_origins: origins,
                served,
            })
            .await?;
        }
        if options.fresh_session {
            self.step(
                "clear cookies",
                deadline,
                self.cdp().execute(ClearBrowserCookiesParams::default()),
            )
            .await?;
            if let Some(origin) = &target_origin {
                self.step(
                    "clear storage",
                    deadline,
                    self.cdp()
                        .execute(ClearDataForOriginParams::new(origin.clone(), "all")),
                )
                .await?;
            }
        }
        if !options.cookies.is_empty() {
            self.set_cookies(&options.cookies, target_url).await?;
        }
        for script in &options.add_scripts {
            if let (ScriptTime::Start, Some(content)) = (script.at, &script.content) {
                self.add_init_script(content).await?;
            }
        }
        Ok(())
    }

    /// The user agent and the `Accept-Language` (and `navigator.language`) of the page's requests,
    /// until the reset. Without a user agent, Chromium's own is kept.
    async fn set_user_agent_and_language(
        &self,
        user_agent: Option<&str>,
        language: Option<&str>,
    ) -> Result<(), PageError> {
        let user_agent = match user_agent {
            Some(user_agent) => user_agent.to_owned(),
            None => {
                self.step(
                    "read the browser's user agent",
                    self.deadline,
                    self.handle.session.cdp().user_agent(),
                )
                .await?
            }
        };
        let mut params = SetUserAgentOverrideParams::new(user_agent);
        params.accept_language = language.map(str::to_owned);
        self.handle.changes().user_agent = true;
        self.step("set user agent", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    /// `locale` for the page's `Intl`, `navigator.language` and `Accept-Language`, keeping the user
    /// agent it has now, until the reset.
    pub async fn emulate_locale(&self, locale: &str) -> Result<(), PageError> {
        let user_agent = self.evaluate("navigator.userAgent").await?;
        self.set_user_agent_and_language(user_agent.as_str(), Some(locale))
            .await?;
        self.set_locale(locale).await
    }

    /// The locale of the page's `Intl` and date formatting, until the reset.
    async fn set_locale(&self, locale: &str) -> Result<(), PageError> {
        self.handle.changes().locale = true;
        let params = SetLocaleOverrideParams::builder().locale(locale).build();
        self.step("set locale", self.deadline, self.cdp().execute(params))
            .await
            .map_err(|error| refused_value(error, "page.locale", locale))?;
        Ok(())
    }

    /// The time zone of the page's clock, until the reset.
    pub async fn set_timezone(&self, timezone: &str) -> Result<(), PageError> {
        self.handle.changes().timezone = true;
        self.step(
            "set time zone",
            self.deadline,
            self.cdp().execute(SetTimezoneOverrideParams::new(timezone)),
        )
        .await
        .map_err(|error| refused_value(error, "page.timezone", timezone))?;
        Ok(())
    }

    /// The position `navigator.geolocation` reports, and leave for `origin` (every origin for
    /// inline HTML) to ask for it, until the reset.
    pub async fn set_geolocation(
        &self,
        position: &Geolocation,
        origin: Option<&str>,
    ) -> Result<(), PageError> {
        self.handle.changes().geolocation = true;
        let mut permission = SetPermissionParams::new(
            PermissionDescriptor::new("geolocation"),
            PermissionSetting::Granted,
        );
        permission.origin = origin.map(str::to_owned);
        permission.browser_context_id = Some(self.handle.context.clone());
        self.step(
            "allow geolocation",
            self.deadline,
            self.handle.session.cdp().execute(permission),
        )
        .await?;
        let params = SetGeolocationOverrideParams::builder()
            .latitude(position.latitude)
            .longitude(position.longitude)
            .accuracy(position.accuracy.unwrap_or(10.0))
            .build();
        self.step("set geolocation", self.deadline, self.cdp().execute(params))
            .await?;
        Ok(())
    }

    /// Touch events and `pointer: coarse`, as on a phone, until the reset.
    pub async fn set_touch(&self, enabled: bool) -> Result<(), PageError> {
        self.handle.changes().touch |= enabled;
        let mut params = SetTouchEmulationEnabledParams::new(enabled);
        params.max_touch_points = enabled.then_some(5);
        self.step("emulate touch", self.deadline, self.cdp().execute(params))
            .await?;
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
        self.set_user_agent_and_language(Some(user_agent), None)
            .await
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

/// Chromium refusing a value the job gave (an unknown time zone or locale) is the caller's input
/// at fault: a 400 naming the field, not a browser error.
fn refused_value(error: PageError, field: &str, value: &str) -> PageError {
    match error {
        PageError::Cdp {
            source: CdpError::Chrome(refusal),
            ..
        } => PageError::InvalidInput(format!(
            "{field} `{}`: Chromium refused it ({})",
            value.escape_debug(),
            refusal.message
        )),
        other => other,
    }
}

pub(super) fn cdp_resource_type(kind: ResourceType) -> network::ResourceType {
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
