//! The command line: `pagewright render` (one page to files without a server), `pagewright plugin
//! check` and `pagewright plugin upload`.

use clap::Parser;
use pagewright::cli::{Cli, Command};

use crate::harness::{FixtureSite, png_size};

#[tokio::test]
async fn render_writes_screenshot_pdf_and_html() {
    let site = FixtureSite::start().await;
    let out = tempfile::tempdir().expect("temp dir");
    let png = out.path().join("page.png");
    let pdf = out.path().join("page.pdf");
    let html = out.path().join("page.html");
    let url = site.url("/");
    let argv = [
        "pagewright",
        "render",
        url.as_str(),
        "--screenshot",
        png.to_str().expect("path"),
        "--pdf",
        pdf.to_str().expect("path"),
        "--html",
        html.to_str().expect("path"),
        "--viewport",
        "800x600",
    ];
    let cli = Cli::try_parse_from(argv).expect("parses");
    assert!(matches!(cli.command, Command::Render(_)));
    pagewright::cli::run(cli).await.expect("renders");
    assert_eq!(png_size(&std::fs::read(&png).expect("png")), (800, 600));
    assert!(std::fs::read(&pdf).expect("pdf").starts_with(b"%PDF-"));
    let html = std::fs::read_to_string(&html).expect("html");
    assert!(html.contains("Hello pagewright"));
}

#[tokio::test]
async fn render_refuses_bad_urls_and_reports_failed_navigations() {
    let out = tempfile::tempdir().expect("temp dir");
    let png = out.path().join("page.png");
    for (url, expected) in [
        ("file:///etc/passwd", "not allowed"),
        ("http://127.0.0.1:1/", "ERR_UNSAFE_PORT"),
    ] {
        let argv = [
            "pagewright",
            "render",
            url,
            "--screenshot",
            png.to_str().expect("path"),
        ];
        let cli = Cli::try_parse_from(argv).expect("parses");
        assert!(matches!(cli.command, Command::Render(_)));
        let error = pagewright::cli::run(cli).await.expect_err(url).to_string();
        assert!(error.contains(expected), "{url}: {error}");
    }
    assert!(!png.exists(), "nothing written on failure");
    // A render needs at least one output.
    assert!(Cli::try_parse_from(["pagewright", "render", "http://a/"]).is_err());
}

#[test]
fn plugin_check_reports_a_plugin_or_why_it_is_not_one() {
    let pagewright = env!("CARGO_BIN_EXE_pagewright");
    let stamp = pagewright_test_guests::path("stamp");
    let output = std::process::Command::new(pagewright)
        .args(["plugin", "check"])
        .arg(&stamp)
        .output()
        .expect("pagewright runs");
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("roles:    page-script, scorer"), "{report}");
    assert!(report.contains("pagewright:plugin/page@0.2.0"), "{report}");

    let garbage = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(garbage.path(), b"\0asm\x01\0\0\0 truncated").expect("write");
    let output = std::process::Command::new(pagewright)
        .args(["plugin", "check"])
        .arg(garbage.path())
        .output()
        .expect("pagewright runs");
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("core WebAssembly module"), "{error}");
}

#[tokio::test]
async fn plugin_upload_sends_a_component_and_reports_the_servers_answer() {
    const ADMIN: &str = "cli-admin-token-0123456789";
    let server = crate::harness::TestServer::start(&["--admin-token", ADMIN]).await;
    let title = pagewright_test_guests::path("title");
    let upload = |token: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
            .args(["plugin", "upload"])
            .arg(&title)
            .args([
                "--name",
                "title",
                "--version",
                "1.2.0",
                "--server",
                &server.base,
            ])
            .args(["--token", token])
            .output()
    };
    let output = upload(ADMIN).await.expect("pagewright runs");
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("uploaded title@1.2.0"), "{report}");
    assert!(report.contains("roles:  extractor"), "{report}");
    assert_eq!(
        server.get_json("/v1/plugins/title").await["latest"],
        "1.2.0"
    );

    let output = upload("not-the-admin-token")
        .await
        .expect("pagewright runs");
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("401") && error.contains("unauthorized"),
        "{error}"
    );

    // No token, or a manifest with a typo: said before anything is sent, naming the fix or file.
    let no_token = tokio::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
        .args(["plugin", "upload"])
        .arg(&title)
        .args(["--name", "title", "--server", &server.base])
        .env_remove("PAGEWRIGHT_ADMIN_TOKEN")
        .output()
        .await
        .expect("pagewright runs");
    let error = String::from_utf8_lossy(&no_token.stderr);
    assert!(error.contains("PAGEWRIGHT_ADMIN_TOKEN"), "{error}");
    let manifest = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(manifest.path(), r#"{"verison": "1.3.0"}"#).expect("write");
    let typo = tokio::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
        .args(["plugin", "upload"])
        .arg(&title)
        .args([
            "--name",
            "title",
            "--server",
            &server.base,
            "--token",
            ADMIN,
        ])
        .arg("--manifest")
        .arg(manifest.path())
        .output()
        .await
        .expect("pagewright runs");
    let error = String::from_utf8_lossy(&typo.stderr);
    assert!(
        error.contains(&manifest.path().display().to_string()) && error.contains("verison"),
        "{error}"
    );
    assert!(!error.contains("header"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_on_stderr() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let log = data.path().join("server.log");
    let server = crate::harness::ServerProcess::start(
        &[
            "--data-dir",
            data.path().join("data").to_str().expect("UTF-8"),
            "--log-format",
            "json",
        ],
        &log,
    )
    .await;
    let lines = std::fs::read_to_string(&log).expect("the log");
    let records: Vec<serde_json::Value> = lines
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        records.iter().any(
            |record| record["fields"]["message"] == "pagewright is listening"
                && record["level"] == "INFO"
        ),
        "{lines}"
    );
    drop(server);
}

/// `pagewright render --urls`: a list through the executor with the API's output names and
/// options, files named after their lines, a failure retried and summed up, and a non-zero exit.
#[tokio::test]
async fn render_urls_renders_a_list_retries_failures_and_exits_non_zero() {
    let site = FixtureSite::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("urls.txt");
    std::fs::write(
        &list,
        format!(
            "# the fixture site\n{}\n{}\n\nhttp://127.0.0.1:1/\n",
            site.url("/"),
            site.url("/article")
        ),
    )
    .expect("writing the list");
    let out = dir.path().join("shots");
    let render = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pagewright"));
        command
            .args(["render", "--urls"])
            .arg(&list)
            .arg("--out")
            .arg(&out)
            .args(extra);
        command.output()
    };
    let output = render(&[
        "--request",
        r#"{"options": {"format": "jpeg"}, "page": {"viewport": {"width": 640, "height": 480}}}"#,
        "--concurrency",
        "2",
    ])
    .await
    .expect("pagewright runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("2 of 3 pages rendered"), "{summary}");
    assert!(
        summary.contains("line 5: http://127.0.0.1:1/ (502 navigation_failed, after 2 attempts)"),
        "{summary}"
    );
    assert!(summary.contains("1 of 3 pages failed"), "{summary}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("the out folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let port = site
        .url("/")
        .split(':')
        .nth(2)
        .expect("port")
        .trim_matches('/')
        .to_owned();
    assert_eq!(
        files,
        [
            format!("0002-127.0.0.1-{port}.jpg"),
            format!("0003-127.0.0.1-{port}-article.jpg")
        ]
    );
    let jpeg = std::fs::read(out.join(&files[0])).expect("the screenshot");
    assert!(jpeg.starts_with(&[0xff, 0xd8, 0xff]), "a JPEG");

    // Options the API refuses are said once, before anything renders.
    std::fs::remove_dir_all(&out).expect("clearing the out folder");
    let output = render(&["--request", r#"{"options": {"fromat": "jpeg"}}"#])
        .await
        .expect("pagewright runs");
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("--request") && error.contains("fromat"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&out).expect("out").count(), 0);

    // From standard input, another output: all rendered, exit 0.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
        .args(["render", "--urls", "-", "--output", "markdown", "--out"])
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pagewright runs");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(
        &mut stdin,
        format!("{}\n", site.url("/article")).as_bytes(),
    )
    .await
    .expect("writing the list");
    drop(stdin);
    let output = child.wait_with_output().await.expect("pagewright exits");
    assert!(output.status.success(), "{output:?}");
    let markdown = std::fs::read_to_string(out.join(format!("0001-127.0.0.1-{port}-article.md")))
        .expect("the Markdown file");
    assert!(markdown.contains("# "), "{markdown}");
}

/// `pagewright plugin run`: an extractor on one page, here, without a server.
#[test]
fn plugin_run_runs_an_extractor_on_a_page() {
    let title = pagewright_test_guests::path("title");
    let run = |params: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
            .args(["plugin", "run"])
            .arg(&title)
            .args(["--html", "<title>T</title><h2>Sub</h2>", "--params", params])
            .output()
            .expect("pagewright runs")
    };
    let output = run(r#"{"heading": "h2"}"#);
    assert!(output.status.success(), "{output:?}");
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the output is JSON");
    assert_eq!(
        printed,
        serde_json::json!({ "title": "T", "heading": "Sub" })
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("looking for h2") && log.contains("fuel"),
        "{log}"
    );

    let output = run(r#"{"nope": 1}"#);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("400 invalid_input") && error.contains("nope"),
        "{error}"
    );
}
