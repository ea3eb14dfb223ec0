//! The page pool against a real browser: reuse, isolation, parking, idle eviction, reuse limits,
//! crashes, eviction at the cap, clean windows for inline HTML, shared contexts and cancelled leases.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::page::CrashParams;
use tokio::time::Instant;

use super::{PagePool, PoolSettings};
use crate::browser::BrowserSupervisor;
use crate::job::options::GotoOptions;
use crate::metrics::Metrics;
use crate::testing::{FixtureSite, eventually};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// A pool on a browser of its own, and the metrics it counts into.
struct TestPool {
    pool: PagePool,
    browser: BrowserSupervisor,
    metrics: Metrics,
}

impl TestPool {
    async fn start(settings: PoolSettings) -> Self {
        let (browser, _) = BrowserSupervisor::start_for_tests().await;
        let metrics = Metrics::new();
        let pool = PagePool::new(0, browser.clone(), settings, metrics.clone());
        Self {
            pool,
            browser,
            metrics,
        }
    }

    /// Waits until the background reset of returned pages has settled.
    async fn settle(&self) {
        eventually("pages come back", Duration::from_secs(5), || async {
            let status = self.pool.status();
            (status.leased_pages == 0 && status.returning_pages == 0).then_some(())
        })
        .await;
    }

    /// Asserts that the metrics have a line containing `expected` (a metric with its labels and
    /// value).
    fn assert_metric(&self, expected: &str) {
        let metrics = self.metrics.render();
        assert!(metrics.contains(expected), "no `{expected}` in:\n{metrics}");
    }

    async fn close(self) {
        self.pool.close().await;
        self.browser.shutdown().await;
    }
}

#[tokio::test]
async fn pages_are_reused_within_a_key_and_never_across_keys() {
    let site = FixtureSite::start().await;
    let test = TestPool::start(PoolSettings::default()).await;
    let pool = &test.pool;

    let first = {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        let page = lease.page(deadline());
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        page.evaluate("document.cookie = 'who=a; path=/'")
            .await
            .expect("set cookie");
        lease.handle().target_id().to_owned()
    };
    test.settle().await;
    let second = {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        let page = lease.page(deadline());
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
        lease.handle().target_id().to_owned()
    };
    assert_eq!(first, second, "an idle page of the same key is reused");
    test.settle().await;

    // Left idle, a used page is parked on about:blank.
    eventually(
        "the idle page is parked",
        Duration::from_secs(10),
        || async { pool.idle_page_is_pristine("tenant-a").then_some(()) },
    )
    .await;
    {
        let lease = pool.lease("tenant-a", deadline()).await.expect("lease");
        assert_eq!(lease.handle().target_id(), first);
        assert!(lease.is_pristine(), "parked after idling");
        let page = lease.page(deadline());
        assert_eq!(
            page.evaluate("location.href").await.expect("href"),
            "about:blank"
        );
    }
    test.settle().await;

    let lease = pool.lease("tenant-b", deadline()).await.expect("lease");
    assert_ne!(
        lease.handle().target_id(),
        first,
        "another key gets another page"
    );
    let page = lease.page(deadline());
    page.goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("goto");
    assert_eq!(
        page.evaluate("document.cookie").await.expect("cookie"),
        "",
        "keys do not share cookies"
    );
    drop(lease);
    test.settle().await;
    let status = pool.status();
    assert_eq!((status.live_pages, status.contexts), (2, 2));
    test.close().await;
}

#[tokio::test]
async fn idle_pages_expire_and_reuse_limits_recycle() {
    let test = TestPool::start(PoolSettings {
        idle_timeout: Duration::from_millis(1000),
        page_reuse_limit: 2,
        ..PoolSettings::default()
    })
    .await;
    let pool = &test.pool;

    let mut targets = Vec::new();
    for _ in 0..3 {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        targets.push(lease.handle().target_id().to_owned());
        drop(lease);
        test.settle().await;
    }
    assert_eq!(targets[0], targets[1], "reused once");
    assert_ne!(targets[1], targets[2], "replaced after two jobs");

    assert_eq!(pool.status().idle_pages, 1);
    eventually(
        "the idle page is closed",
        Duration::from_secs(10),
        || async {
            let status = pool.status();
            (status.live_pages == 0 && status.idle_pages == 0).then_some(())
        },
    )
    .await;
    test.assert_metric("pagewright_pool_evictions_total{reason=\"reuse_limit\"} 1");
    test.assert_metric("pagewright_pool_evictions_total{reason=\"idle\"} 1");
    test.close().await;
}

#[tokio::test]
async fn crashed_pages_are_discarded() {
    let site = FixtureSite::start().await;
    let test = TestPool::start(PoolSettings::default()).await;
    let pool = &test.pool;

    let crashed_target = {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        let page = lease.page(deadline());
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        // `Page.crash` never answers: the renderer is gone.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            lease.handle().cdp().execute(CrashParams::default()),
        )
        .await;
        eventually(
            "the crash event reaches the pool",
            Duration::from_secs(5),
            || async { lease.handle().crashed().then_some(()) },
        )
        .await;
        let short = lease.page(Instant::now() + Duration::from_millis(500));
        assert!(
            short.evaluate("1").await.is_err(),
            "a crashed page fails fast"
        );
        lease.handle().target_id().to_owned()
    };
    test.settle().await;
    let lease = pool.lease("k", deadline()).await.expect("lease");
    assert_ne!(
        lease.handle().target_id(),
        crashed_target,
        "the crashed page was not reused"
    );
    lease
        .page(deadline())
        .goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("a fresh page works");
    drop(lease);
    test.assert_metric("pagewright_pool_evictions_total{reason=\"crashed\"} 1");
    test.close().await;
}

#[tokio::test]
async fn at_the_page_cap_the_coldest_idle_page_is_evicted() {
    let test = TestPool::start(PoolSettings {
        max_pages: 2,
        ..PoolSettings::default()
    })
    .await;
    let pool = &test.pool;

    // Key "hot" is used twice, "cold" once; a third key needs a page: "cold" goes.
    for key in ["hot", "cold", "hot"] {
        drop(pool.lease(key, deadline()).await.expect("lease"));
        test.settle().await;
    }
    drop(pool.lease("new", deadline()).await.expect("lease"));
    test.settle().await;
    let hot_again = pool.lease("hot", deadline()).await.expect("lease");
    drop(hot_again);
    test.settle().await;
    test.assert_metric("pagewright_pool_evictions_total{reason=\"lru\"} 1");
    // Hot was kept: three pages were ever opened (hot, cold, new).
    test.assert_metric("pagewright_pool_pages_created_total 3");
    assert_eq!(pool.status().live_pages, 2);
    test.close().await;
}

#[tokio::test]
async fn inline_html_on_a_used_page_starts_from_a_clean_window() {
    let test = TestPool::start(PoolSettings {
        max_pages: 1,
        ..PoolSettings::default()
    })
    .await;
    let pool = &test.pool;
    {
        let lease = pool.lease("k", deadline()).await.expect("lease");
        let page = lease.page(deadline());
        page.set_html(
            "<script>window.leak = 'secret'</script>",
            &GotoOptions::default(),
        )
        .await
        .expect("html");
        assert_eq!(page.evaluate("window.leak").await.expect("leak"), "secret");
    }
    test.settle().await;
    let lease = pool.lease("k", deadline()).await.expect("lease");
    assert!(!lease.is_pristine(), "the same page, reused at once");
    let page = lease.page(deadline());
    page.set_html("<p>next job</p>", &GotoOptions::default())
        .await
        .expect("html");
    assert_eq!(
        page.evaluate("typeof window.leak").await.expect("typeof"),
        "undefined",
        "the previous job's globals are gone"
    );
    drop(lease);
    test.close().await;
}

#[tokio::test]
async fn concurrent_first_leases_of_a_key_share_one_context() {
    let test = TestPool::start(PoolSettings::default()).await;
    let pool = &test.pool;
    let leases = futures::future::join_all((0..6).map(|_| pool.lease("fresh", deadline()))).await;
    assert!(leases.iter().all(Result::is_ok));
    assert_eq!(pool.status().contexts, 1, "one context for one key");
    drop(leases);
    test.close().await;
}

#[tokio::test]
async fn cancelled_leases_and_operations_leave_the_pool_consistent() {
    let site = FixtureSite::start().await;
    let test = TestPool::start(PoolSettings::default()).await;
    let pool = &test.pool;

    // Leases dropped at every stage, opening a page included: no count may leak.
    for wait_ms in [0, 1, 2, 5, 10, 20, 40] {
        let _ =
            tokio::time::timeout(Duration::from_millis(wait_ms), pool.lease("c", deadline())).await;
    }
    test.settle().await;
    let status = pool.status();
    assert_eq!(status.live_pages, status.idle_pages, "{status:?}");

    // A job dropped in the middle of an operation: its page is in an unknown state and is closed.
    {
        let lease = pool.lease("c", deadline()).await.expect("lease");
        let page = lease.page(deadline());
        let slow = site.url("/slow?ms=3000");
        let options = GotoOptions::default();
        let navigating = eventually("the page asks for it", Duration::from_secs(5), || async {
            (site.slow_requests.load(Ordering::SeqCst) == 1).then_some(())
        });
        tokio::select! {
            navigated = page.goto(&slow, &options) => panic!("a 3 s page answered: {navigated:?}"),
            () = navigating => {}
        }
    }
    test.settle().await;
    test.assert_metric("pagewright_pool_evictions_total{reason=\"cancelled\"} 1");
    let lease = pool
        .lease("c", deadline())
        .await
        .expect("the pool still leases");
    lease
        .page(deadline())
        .goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("and its pages work");
    drop(lease);
    test.close().await;
}
