//! `markdown`: the `markdown` output on a long page (a few hundred sections of headings,
//! paragraphs, lists and links around navigation and ads): its size against the HTML's, and its
//! time against `/v1/content` (the page's HTML as JSON, no conversion) on the same page, same
//! server, same run. Medians over the rounds.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::plugins::median;
use crate::scenarios::PagewrightServer;

pub async fn markdown_bench(sections: usize, rounds: usize) -> anyhow::Result<()> {
    let page = long_page(sections);
    let html_bytes = page.len();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/long",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let server = PagewrightServer::start(&[]).await?;
    let client = reqwest::Client::new();
    let url = format!("http://{address}/long");
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut sizes = [0usize; 3];
    let requests = [
        ("/v1/content", serde_json::json!({ "url": url })),
        ("/v1/markdown", serde_json::json!({ "url": url })),
        (
            "/v1/markdown",
            serde_json::json!({ "url": url, "options": { "main_content": true } }),
        ),
    ];
    for round in 0..=rounds {
        for (index, (path, body)) in requests.iter().enumerate() {
            let began = Instant::now();
            let response = client
                .post(format!("{}{path}", server.base()))
                .json(body)
                .timeout(Duration::from_secs(60))
                .send()
                .await?
                .error_for_status()?;
            sizes[index] = response.bytes().await?.len();
            // The first round warms the page pool and the plugin instances up.
            if round > 0 {
                times[index].push(began.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    server.stop().await;
    let [content, whole, main] = &mut times;
    let (content, whole, main) = (median(content), median(whole), median(main));
    println!(
        "| measure ({sections} sections, {html_bytes} bytes of HTML, median of {rounds}) | time | size | size / HTML |"
    );
    println!("|---|---|---|---|");
    println!(
        "| /v1/content (HTML as JSON, the baseline) | {content:.0} ms | {} bytes | {:.2} |",
        sizes[0],
        sizes[0] as f64 / html_bytes as f64
    );
    println!(
        "| /v1/markdown, whole page | {whole:.0} ms ({:.2}x content) | {} bytes | {:.2} |",
        whole / content,
        sizes[1],
        sizes[1] as f64 / html_bytes as f64
    );
    println!(
        "| /v1/markdown, main content | {main:.0} ms ({:.2}x content) | {} bytes | {:.2} |",
        main / content,
        sizes[2],
        sizes[2] as f64 / html_bytes as f64
    );
    Ok(())
}

/// A long article page with the clutter real ones have around it.
fn long_page(sections: usize) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><title>A long read</title><style>.ad{color:red}</style></head>\
         <body><header><nav><a href='/'>Home</a> <a href='/a'>Section A</a> <a href='/b'>Section B</a></nav></header>\
         <div class='cookie-banner'>We use cookies <button>OK</button></div><main><article><h1>A long read</h1>",
    );
    for section in 0..sections {
        page.push_str(&format!(
            "<h2>Part {section}</h2><p>This is paragraph one of part {section}, with <strong>bold</strong> and \
             <em>italic</em> words and <a href='/ref/{section}'>a reference</a> to follow.</p>\
             <p>A second paragraph carries the argument on, at the length a real article would, with \
             enough words in it to look like prose rather than a fixture of a benchmark.</p>\
             <ul><li>First point of {section}</li><li>Second point</li><li>Third point</li></ul>\
             <div class='ad'>Advertisement {section}</div>"
        ));
    }
    page.push_str(
        "</article></main><aside class='sidebar'>Related stories</aside>\
         <footer>Copyright the bench</footer><script>window.tracking = true</script></body></html>",
    );
    page
}
