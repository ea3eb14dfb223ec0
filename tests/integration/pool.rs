//! The page pool against a real browser: reuse, isolation, idle eviction, reuse limits, crashes.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::page::CrashParams;
use pagewright::page::Page;
use pagewright::page::options::GotoOptions;
use tokio::time::Instant;

use crate::harness::{FixtureSite, TestServer};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// Waits until the background reset of returned pages has settled.
async fn settle(server: &TestServer) {
    for _ in 0..100 {
        let status = server.state.shards[0].pool.status();
        if status.leased_pages == 0 && status.returning_pages == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "pages never came back: {:?}",
        server.state.shards[0].pool.status()
    );
}

#[tokio::test]
async fn pages_are_reused_within_a_key_and_never_across_keys() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let pool = &server.state.shards[0].pool;

    let first = {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        let page = Page::new(&lease, deadline());
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        page.evaluate("document.cookie = 'who=a; path=/'")
            .await
            .expect("set cookie");
        lease.cdp().target_id().clone()
    };
    settle(&server).await;
    let second = {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        let page = Page::new(&lease, deadline());
        // Reused at once: the last document is still there (the job navigates anyway), and the lease
        // says so.
        assert!(!lease.is_pristine());
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        assert_eq!(
            page.evaluate("document.cookie").await.expect("cookie"),
            "who=a",
            "same key shares cookies"
        );
        lease.cdp().target_id().clone()
    };
    assert_eq!(first, second, "an idle page of the same key is reused");
    settle(&server).await;

    // Left idle, a used page is parked on about:blank.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    settle(&server).await;
    {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        assert_eq!(lease.cdp().target_id(), &first);
        assert!(lease.is_pristine(), "parked after idling");
        let page = Page::new(&lease, deadline());
        assert_eq!(
            page.evaluate("location.href").await.expect("href"),
            "about:blank"
        );
    }
    settle(&server).await;

    let lease = pool.lease("tenant-b", deadline()).await.expect("lease");
    assert_ne!(
        lease.cdp().target_id(),
        &first,
        "another key gets another page"
    );
    let page = Page::new(&lease, deadline());
    page.goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("goto");
    assert_eq!(
        page.evaluate("document.cookie").await.expect("cookie"),
        "",
        "keys do not share cookies"
    );
    drop(lease);
    settle(&server).await;
    let status = pool.status();
    assert_eq!((status.live_pages, status.contexts), (2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn idle_pages_expire_and_reuse_limits_recycle() {
    let server =
        TestServer::start(&["--page-idle-timeout-ms", "1000", "--page-reuse-limit", "2"]).await;
    let pool = &server.state.shards[0].pool;

    let mut targets = Vec::new();
    for _ in 0..3 {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        targets.push(lease.cdp().target_id().clone());
        drop(lease);
        settle(&server).await;
    }
    assert_eq!(targets[0], targets[1], "reused once");
    assert_ne!(targets[1], targets[2], "replaced after two jobs");

    assert_eq!(pool.status().idle_pages, 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = pool.status();
    assert_eq!(
        (status.live_pages, status.idle_pages),
        (0, 0),
        "idle page closed: {status:?}"
    );
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"reuse_limit\"} 1")
        .await;
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"idle\"} 1")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn crashed_pages_are_discarded() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let pool = &server.state.shards[0].pool;

    let crashed_target = {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        let page = Page::new(&lease, deadline());
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        // `Page.crash` never answers: the renderer is gone.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            lease.cdp().execute(CrashParams::default()),
        )
        .await;
        for _ in 0..100 {
            if lease.crashed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(lease.crashed(), "the crash event reached the pool");
        let short = Page::new(&lease, Instant::now() + Duration::from_millis(500));
        assert!(
            short.evaluate("1").await.is_err(),
            "a crashed page fails fast"
        );
        lease.cdp().target_id().clone()
    };
    settle(&server).await;
    let lease = pool.lease("k", deadline()).await.expect("lease");
    assert_ne!(
        lease.cdp().target_id(),
        &crashed_target,
        "the crashed page was not reused"
    );
    let page = Page::new(&lease, deadline());
    page.goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("a fresh page works");
    drop(lease);
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"crashed\"} 1")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn at_the_page_cap_the_coldest_idle_page_is_evicted() {
    let server = TestServer::start(&["--max-pages", "2", "--max-concurrent-renders", "1"]).await;
    let pool = &server.state.shards[0].pool;

    // Key "hot" is used twice, "cold" once; a third key needs a page: "cold" goes.
    for key in ["hot", "cold", "hot"] {
        drop(pool.lease(key, deadline()).await.expect("lease"));
        settle(&server).await;
    }
    drop(pool.lease("new", deadline()).await.expect("lease"));
    settle(&server).await;
    let hot_again = pool.lease("hot", deadline()).await.expect("lease");
    drop(hot_again);
    settle(&server).await;
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"lru\"} 1")
        .await;
    // Hot was kept: three pages were ever opened (hot, cold, new).
    server
        .assert_metric("pagewright_pool_pages_created_total 3")
        .await;
    assert_eq!(pool.status().live_pages, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn inline_html_on_a_used_page_starts_from_a_clean_window() {
    let server = TestServer::start(&["--max-pages", "1", "--max-concurrent-renders", "1"]).await;
    let pool = &server.state.shards[0].pool;
    {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        let page = Page::new(&lease, deadline());
        page.set_html(
            "<script>window.leak = 'secret'</script>",
            &GotoOptions::default(),
        )
        .await
        .expect("html");
        assert_eq!(page.evaluate("window.leak").await.expect("leak"), "secret");
    }
    settle(&server).await;
    let lease = pool.lease("k", deadline()).await.expect("lease");
    assert!(!lease.is_pristine(), "the same page, reused at once");
    let page = Page::new(&lease, deadline());
    page.set_html("<p>next job</p>", &GotoOptions::default())
        .await
        .expect("html");
    assert_eq!(
        page.evaluate("typeof window.leak").await.expect("typeof"),
        "undefined",
        "the previous job's globals are gone"
    );
    drop(lease);
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_leases_of_a_key_share_one_context() {
    let server = TestServer::start(&[]).await;
    let pool = &server.state.shards[0].pool;
    let leases = futures::future::join_all((0..6).map(|_| pool.lease("fresh", deadline()))).await;
    assert!(leases.iter().all(Result::is_ok));
    assert_eq!(pool.status().contexts, 1, "one context for one key");
    drop(leases);
    server.shutdown().await;
}

#[tokio::test]
async fn cancelled_leases_and_operations_leave_the_pool_consistent() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let pool = &server.state.shards[0].pool;

    // Leases dropped at every stage, opening a page included: no count may leak.
    for wait_ms in [0, 1, 2, 5, 10, 20, 40] {
        let _ =
            tokio::time::timeout(Duration::from_millis(wait_ms), pool.lease("c", deadline())).await;
    }
    settle(&server).await;
    let status = pool.status();
    assert_eq!(status.live_pages, status.idle_pages, "{status:?}");

    // A job dropped in the middle of an operation: its page is in an unknown state and is closed.
    {
        let lease = pool.lease("c", deadline()).await.expect("lease");
        let page = Page::new(&lease, deadline());
        let slow = site.url("/slow?ms=3000");
        let options = GotoOptions::default();
        let goto = page.goto(&slow, &options);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), goto)
                .await
                .is_err()
        );
    }
    settle(&server).await;
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"cancelled\"} 1")
        .await;
    let lease = pool
        .lease("c", deadline())
        .await
        .expect("the pool still leases");
    Page::new(&lease, deadline())
        .goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("and its pages work");
    drop(lease);
    server.shutdown().await;
}
