//! `/openapi.json` and `/docs`: the document is served (open, as the pages are), the reference page
//! and its assets come from the binary, and schemathesis checks the running server's answers
//! against the document (`tests/contract.sh`).

use std::path::Path;

use crate::harness::TestServer;

#[tokio::test]
async fn the_document_and_the_reference_page_are_served_without_a_token() {
    let server = TestServer::start(&["--render-token", "openapi-render-token-0123456789"]).await;
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v1/screenshot"]["post"].is_object());

    // Swagger UI, its script and the initializer pointing at the document: all from the binary.
    let page = server.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("HTML")
            .contains("swagger-ui-bundle.js")
    );
    let script = server.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.expect("the bundle").len() > 100_000);
    let initializer = server.get("/docs/swagger-initializer.js").await;
    assert!(
        initializer
            .text()
            .await
            .expect("JS")
            .contains("\"/openapi.json\"")
    );
    // The API itself still wants the token.
    let response = server
        .post("/v1/content", serde_json::json!({ "html": "<p>x</p>" }))
        .await;
    assert_eq!(response.status(), 401);
    server.shutdown().await;
}

#[tokio::test]
async fn schemathesis_finds_the_server_keeping_to_its_document() {
    // Generated requests name any host: the server may reach only loopback.
    let server = TestServer::start(&[
        "--egress-allow-host",
        "127.0.0.1,localhost",
        "--admin-token",
        "openapi-admin-token-0123456789",
    ])
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/contract.sh");
    let output = tokio::process::Command::new(&script)
        .arg(&server.base)
        .output()
        .await
        .expect("tests/contract.sh runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers that do not match /openapi.json:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    server.shutdown().await;
}
