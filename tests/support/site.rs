//! The fixture site the tests serve themselves on a loopback port: small pages for each behaviour a
//! render has to handle. Shared by the integration tests and the host's own tests (both include
//! this file, and each uses part of it: what one leaves unused is not dead).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;

/// The fixture site. Pages:
/// - `/`: a small page with a heading, links and a form;
/// - `/tall`: 3000 px tall;
/// - `/slow?ms=N`: answers after N ms (and counts its requests);
/// - `/echo`: shows the request headers (cookies, user agent, extras) as JSON in the page;
/// - `/late`: adds `#late` 300 ms after load;
/// - `/spin`: loops forever in JavaScript after load;
/// - `/image`: a page with an image, and `/pixel.png` counts its requests;
/// - `/nocontent`: 204 No Content; `/download`: a file sent as an attachment;
/// - `/redirect`: 307 to `/`; `/starts-download`: a page that sends itself to `/download`;
/// - `/status?code=N`: a page answered with status N; `/broken-image`: a page whose image answers
///   500; `/throws`: a page whose script throws; `/lazy`: marks `#bottom` seen only once it is
///   scrolled into view; `/holds-a-connection`: keeps one request open for 3 s after load;
/// - `/noisy`: logs to the console, loads an image, fetches a 404 and throws from a timer;
/// - `/article`: a news-like page ([`ARTICLE`]) with navigation, banners, ads and a footer around
///   its article;
/// - `/crawl/...` (`crawl_page`), `/robots.txt` (disallows `/crawl/private`, names the sitemap) and
///   `/sitemap.xml` (lists `/crawl/from-sitemap`): a site to crawl.
/// - `/tour`: what the `page-tour` guest drives: a form whose button marks `#out` done, a tall body.
/// - Hostile pages: `/dialogs` (alert, confirm and prompt before it renders), `/oom` (allocates until
///   its renderer runs out of memory), `/beacon` (fetches `/pixel.png` every 50 ms while it is
///   open, as a popup would).
pub struct FixtureSite {
    pub base: String,
    /// Every request the site received: its path and query, and its headers (names lowercase).
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    /// Requests for `/pixel.png` so far.
    pub pixel_requests: Arc<AtomicUsize>,
    /// Requests for `/slow` so far: a job is mid-navigation once its request is counted.
    pub slow_requests: Arc<AtomicUsize>,
}

/// A request [`FixtureSite::requests`] recorded.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct StatusQuery {
    code: u16,
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

#[derive(Deserialize)]
struct Target {
    /// `http://host:port`, no trailing slash.
    origin: String,
}

/// A page that reaches for `origin` by every path a page has: a subresource, a style sheet, a
/// frame, fetch, XHR, a beacon, a WebSocket, a worker's fetch and a popup. Each request's path
/// names its way in.
pub fn reaching_for(origin: &str) -> String {
    let ws = origin.replacen("http://", "ws://", 1);
    format!(
        r#"<!doctype html><p id="reaching">reaching for {origin}</p>
<img src="{origin}/image"><link rel="stylesheet" href="{origin}/style"><iframe src="{origin}/frame"></iframe>
<script>
fetch("{origin}/fetch").catch(() => {{}});
const xhr = new XMLHttpRequest(); xhr.open("GET", "{origin}/xhr"); xhr.send();
navigator.sendBeacon("{origin}/beacon");
try {{ new WebSocket("{ws}/websocket"); }} catch (error) {{}}
new Worker(URL.createObjectURL(new Blob(['fetch("{origin}/worker").catch(() => {{}})'])));
window.open("{origin}/popup");
</script>"#
    )
}

/// A news-like page: navigation, a cookie banner, an article, a sidebar of ads, a footer.
pub const ARTICLE: &str = r#"<!doctype html><html><head><title>Rivers of the North</title>
<style>.hidden { display: none }</style></head>
<body>
<header><a href="/">Home</a> <nav><a href="/world">World</a> <a href="/sport">Sport</a></nav></header>
<div class="cookie-banner">We use cookies. <button>Accept cookies</button></div>
<main>
<article>
<h1>Rivers of the North</h1>
<p>The northern rivers freeze in <strong>November</strong> and thaw in April, carrying the
winter's silt down to the sea. Fishermen wait for the ice to break before they set out.</p>
<p>Read <a href="/more">more about the thaw</a> or see the map below.</p>
<img src="/pixel.png" alt="A map of the rivers">
<h2>What the rivers carry</h2>
<ul><li>Silt and sand</li><li>Meltwater</li><li>Timber from the forests upstream</li></ul>
<pre><code>flow = area * velocity</code></pre>
<p class="hidden">secret hidden text</p>
<div class="share-buttons">Share on every network</div>
</article>
</main>
<aside class="sidebar"><div class="ad">Buy now: boats half price</div></aside>
<footer>Copyright the Northern Gazette</footer>
<script>document.title = document.title; window.analytics = 'loaded';</script>
</body></html>"#;

const INDEX: &str = r#"<!doctype html><html><head><title>Fixture</title></head>
<body style="background:#fff;margin:0">
<h1 id="title">Hello pagewright</h1>
<ul><li><a class="link" href="/one" data-n="1">One</a></li><li><a class="link" href="/two" data-n="2">Two</a></li></ul>
<input id="name" value=""><button id="go" onclick="document.getElementById('out').textContent = 'clicked ' + document.getElementById('name').value">Go</button>
<p id="out"></p>
<noscript><p id="noscript">scripts are off</p></noscript>
<div id="box" style="position:absolute;left:100px;top:200px;width:120px;height:80px;background:#c00"></div>
</body></html>"#;

const TOUR: &str = r#"<!doctype html><html><head><title>Tour</title></head>
<body><h1>Tour</h1><form onsubmit="return false"><input id="name"></form>
<button id="go" onclick="const out = document.getElementById('out'); out.textContent = 'hello ' + document.getElementById('name').value; out.className = 'done'">Go</button>
<p id="out" class="waiting"></p><div style="height:4000px"></div><p id="bottom">bottom</p></body></html>"#;

/// `/digest`: a page behind HTTP digest authentication (RFC 7616 with MD5 and `qop=auth`) for
/// `ann` / `s3cret`; the right answer to the challenge gets the page, anything else a 401 with the
/// challenge.
fn digest_protected(headers: &HeaderMap) -> axum::response::Response {
    const REALM: &str = "fixture";
    const NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
    let md5 = |text: String| {
        use md5::Digest;
        md5::Md5::digest(text.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    let answered = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Digest "))
        .map(|fields| {
            fields
                .split(',')
                .filter_map(|field| field.trim().split_once('='))
                .map(|(name, value)| (name.to_owned(), value.trim_matches('"').to_owned()))
                .collect::<std::collections::HashMap<String, String>>()
        })
        .is_some_and(|fields| {
            let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
            let ha1 = md5(format!("{}:{REALM}:s3cret", field("username")));
            let ha2 = md5(format!("GET:{}", field("uri")));
            let expected = md5(format!(
                "{ha1}:{}:{}:{}:{}:{ha2}",
                field("nonce"),
                field("nc"),
                field("cnonce"),
                field("qop")
            ));
            field("username") == "ann" && field("nonce") == NONCE && field("response") == expected
        });
    if answered {
        return Html("<!doctype html><p id='secret'>digest secret</p>").into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!("Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{NONCE}\", algorithm=MD5"),
        )],
        Html("<!doctype html><p>locked</p>"),
    )
        .into_response()
}

/// The `Host` a request was sent to.
fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned()
}

/// A small site to crawl, under `/crawl/`: `start` links to `a`, `b`, `private` (which robots.txt
/// disallows), `doc.pdf`, itself with a fragment and another origin; `a` and `b` each link one
/// level deeper, and those to `deeper`.
fn crawl_page(page: &str) -> String {
    let links: &[&str] = match page {
        "start" => &[
            "/crawl/a",
            "/crawl/b",
            "/crawl/private",
            "/crawl/doc.pdf",
            "/crawl/start#top",
            "http://elsewhere.invalid/crawl/start",
        ],
        "a" => &["/crawl/a/deep", "/crawl/start"],
        "b" => &["/crawl/b/deep"],
        "a/deep" | "b/deep" => &["/crawl/deeper"],
        _ => &[],
    };
    let links: String = links
        .iter()
        .map(|href| format!("<li><a href='{href}'>{href}</a></li>"))
        .collect();
    format!("<!doctype html><title>crawl {page}</title><h1>Page {page}</h1><ul>{links}</ul>")
}

impl FixtureSite {
    pub async fn start() -> Self {
        Self::start_on([127, 0, 0, 1]).await
    }

    /// The site on another loopback address (all of 127.0.0.0/8 is this machine): a stand-in for a
    /// public site when the tests deny private networks but allow this one address.
    pub async fn start_on(address: [u8; 4]) -> Self {
        let pixel_requests = Arc::new(AtomicUsize::new(0));
        let slow_requests = Arc::new(AtomicUsize::new(0));
        let (pixels, slows) = (pixel_requests.clone(), slow_requests.clone());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = Router::new()
            .route("/article", get(|| async { Html(ARTICLE) }))
            .route("/digest", get(|headers: HeaderMap| async move { digest_protected(&headers) }))
            .route(
                "/crawl/{*page}",
                get(|Path(page): Path<String>| async move { Html(crawl_page(&page)) }),
            )
            .route(
                "/robots.txt",
                get(|headers: HeaderMap| async move {
                    format!(
                        "User-agent: *\nDisallow: /crawl/private\n\nSitemap: http://{}/sitemap.xml\n",
                        host_of(&headers)
                    )
                }),
            )
            .route(
                "/sitemap.xml",
                get(|headers: HeaderMap| async move {
                    (
                        [(header::CONTENT_TYPE, "application/xml")],
                        format!(
                            "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                             <url><loc>http://{}/crawl/from-sitemap?a=1&amp;b=2</loc></url></urlset>",
                            host_of(&headers)
                        ),
                    )
                }),
            )
            .route(
                "/noisy",
                get(|| async {
                    Html("<!doctype html><p id='noisy'>noisy</p><img src='/pixel.png'><script>console.log('hello', 42); console.warn('careful'); fetch('/status?code=404'); setTimeout(() => { throw new Error('late failure') }, 0)</script>")
                }),
            )
            .route(
                "/status",
                get(|Query(query): Query<StatusQuery>| async move {
                    let status = StatusCode::from_u16(query.code).unwrap_or(StatusCode::OK);
                    (status, Html(format!("<!doctype html><h1 id='status'>status {}</h1>", query.code)))
                }),
            )
            .route(
                "/broken-image",
                get(|| async { Html("<!doctype html><p>broken</p><img src='/status?code=500'>") }),
            )
            .route(
                "/throws",
                get(|| async {
                    Html("<!doctype html><p id='thrower'>throws</p><script>throw new TypeError('the page broke')</script>")
                }),
            )
            .route(
                "/lazy",
                get(|| async {
                    Html("<!doctype html><body style='margin:0'><div style='height:5000px'>tall</div><p id='bottom'>bottom</p><script>new IntersectionObserver(entries => { if (entries.some(entry => entry.isIntersecting)) document.body.dataset.seen = 'bottom'; }).observe(document.getElementById('bottom'))</script></body>")
                }),
            )
            .route(
                "/holds-a-connection",
                get(|| async {
                    Html("<!doctype html><p>holding</p><script>addEventListener('load', () => fetch('/slow?ms=3000'))</script>")
                }),
            )
            .route("/", get(|| async { Html(INDEX) }))
            .route("/tour", get(|| async { Html(TOUR) }))
            .route(
                "/tall",
                get(|| async {
                    Html("<!doctype html><body style='margin:0'><div style='height:3000px;background:linear-gradient(#fff,#00f)'>tall</div></body>")
                }),
            )
            .route(
                "/slow",
                get(move |Query(query): Query<SlowQuery>| {
                    slows.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(Duration::from_millis(query.ms)).await;
                        Html("<!doctype html><p id='slow'>finally</p>")
                    }
                }),
            )
            .route(
                "/echo",
                get(|headers: HeaderMap| async move {
                    let map: std::collections::BTreeMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    let json = serde_json::to_string(&map).unwrap_or_default();
                    Html(format!("<!doctype html><pre id='headers'>{}</pre>", html_escape(&json)))
                }),
            )
            .route(
                "/late",
                get(|| async {
                    Html("<!doctype html><body><script>setTimeout(() => { const p = document.createElement('p'); p.id = 'late'; p.textContent = 'here'; document.body.appendChild(p); }, 300)</script></body>")
                }),
            )
            .route(
                "/spin",
                get(|| async {
                    Html("<!doctype html><body><p>spinning</p><script>addEventListener('load', () => setTimeout(() => { while (true) {} }, 0))</script></body>")
                }),
            )
            .route(
                "/redirect",
                get(|| async { axum::response::Redirect::temporary("/") }),
            )
            .route(
                "/starts-download",
                get(|| async {
                    Html("<!doctype html><p id='landing'>Your download starts now</p><script>location.href = '/download'</script>")
                }),
            )
            .route(
                "/nocontent",
                get(|| async { StatusCode::NO_CONTENT }),
            )
            .route(
                "/download",
                get(|| async {
                    (
                        [
                            (header::CONTENT_TYPE, "application/octet-stream"),
                            (header::CONTENT_DISPOSITION, "attachment; filename=data.bin"),
                        ],
                        vec![0u8; 4096],
                    )
                }),
            )
            .route(
                "/dialogs",
                get(|| async {
                    Html("<!doctype html><script>alert('hello from alert'); confirm('sure?'); prompt('name?', 'x')</script><p id='after'>rendered after the dialogs</p>")
                }),
            )
            .route(
                "/oom",
                get(|| async {
                    Html("<!doctype html><p>eating memory</p><script>const kept = []; for (;;) { kept.push(new Array(1 << 20).fill(Math.random())); }</script>")
                }),
            )
            .route(
                "/reaches-for",
                get(|Query(target): Query<Target>| async move { Html(reaching_for(&target.origin)) }),
            )
            .route(
                "/redirect-to",
                get(|Query(target): Query<Target>| async move {
                    axum::response::Redirect::temporary(&format!("{}/redirected", target.origin))
                }),
            )
            .route(
                "/beacon",
                get(|| async {
                    Html("<!doctype html><p>beacon</p><script>setInterval(() => fetch('/pixel.png?beacon', { cache: 'no-store' }), 50)</script>")
                }),
            )
            .route(
                "/image",
                get(|| async { Html("<!doctype html><body><img id='pixel' src='/pixel.png'></body>") }),
            )
            .route(
                "/pixel.png",
                get(move || {
                    pixels.fetch_add(1, Ordering::SeqCst);
                    async {
                        // A 1x1 transparent PNG.
                        const PIXEL: &[u8] = &[
                            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
                            0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
                            0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
                            0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
                            0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
                        ];
                        ([(header::CONTENT_TYPE, "image/png")], PIXEL).into_response()
                    }
                }),
            )
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let seen = seen.clone();
                    async move {
                        let path = request
                            .uri()
                            .path_and_query()
                            .map_or_else(String::new, ToString::to_string);
                        let headers = request
                            .headers()
                            .iter()
                            .map(|(name, value)| {
                                (name.to_string(), value.to_str().unwrap_or_default().to_owned())
                            })
                            .collect();
                        seen.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(SeenRequest { path, headers });
                        next.run(request).await
                    }
                },
            ));
        let listener = TcpListener::bind(SocketAddr::from((address, 0)))
            .await
            .expect("bind fixture site");
        let address = listener.local_addr().expect("fixture address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{address}"),
            requests,
            pixel_requests,
            slow_requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests received so far whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<SeenRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|request| request.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl FixtureSite {
    /// An HTTPS front for the site on a port of its own, with a self-signed certificate for
    /// `127.0.0.1` that no browser trusts: its base URL, `https://127.0.0.1:PORT`. Each connection
    /// is decrypted and passed to the plain site.
    pub async fn https_front(&self) -> String {
        use tokio_rustls::rustls;
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        let key =
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .expect("a TLS configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the HTTPS front");
        let address = listener.local_addr().expect("HTTPS front address");
        let plain = self.base.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, plain) = (acceptor.clone(), plain.clone());
                tokio::spawn(async move {
                    // A browser that refuses the certificate ends the handshake: nothing to pass on.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut site) = tokio::net::TcpStream::connect(&plain).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut site).await;
                });
            }
        });
        format!("https://{address}")
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
