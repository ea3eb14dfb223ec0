//! The store: SQLite in the data directory by default, PostgreSQL (a throwaway cluster of the
//! test's own) with `--database-url`, and a store that cannot be opened stopping the server with its
//! URL (never its password) and the step that failed.

use crate::harness::TestServer;
use crate::postgres::TestPostgres;

#[tokio::test]
async fn the_embedded_store_is_sqlite_in_the_data_directory() {
    let data = tempfile::tempdir().expect("a data directory");
    let data_dir = data.path().to_str().expect("UTF-8");
    let server = TestServer::start(&["--data-dir", data_dir]).await;
    assert_eq!(server.get("/health").await.status(), 200);
    server.shutdown().await;
    assert!(data.path().join("pagewright.db").exists());
}

#[tokio::test]
async fn a_server_keeps_its_store_in_postgresql_when_given_a_url() {
    let postgres = TestPostgres::start();
    let url = postgres.database("farm");
    let server = TestServer::start(&["--database-url", &url]).await;
    assert_eq!(server.get("/health").await.status(), 200);
    assert_eq!(postgres.query("farm", "SELECT count(*) FROM jobs"), "0");
    server.shutdown().await;
}

#[test]
fn a_store_that_cannot_be_opened_stops_the_server_naming_it_without_its_password() {
    // Nothing listens on port 9 of loopback.
    let data = tempfile::tempdir().expect("a data directory");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args([
            "--database-url",
            "postgres://farm:s3cret@127.0.0.1:9/pagewright",
        ])
        .output()
        .expect("pagewright runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("connecting to the store at postgres://farm:***@127.0.0.1:9/pagewright"),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}
