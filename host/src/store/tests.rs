//! The store's SQL on both backends: SQLite in a temporary folder and a throwaway PostgreSQL
//! cluster (one for all these tests, a database each).

use std::future::Future;
use std::sync::OnceLock;

use super::*;
use crate::testing::TestPostgres;

/// The cluster these tests share, started by the first that needs it.
fn cluster() -> &'static TestPostgres {
    static CLUSTER: OnceLock<TestPostgres> = OnceLock::new();
    CLUSTER.get_or_init(TestPostgres::start)
}

/// Runs `test` against a fresh SQLite store and a fresh PostgreSQL database.
async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sqlite = Store::open(&StoreSettings::sqlite_in(dir.path()))
        .await
        .expect("SQLite opens");
    test(sqlite).await;
    let url = cluster().database(name);
    let postgres = Store::open(&StoreSettings {
        url,
        max_connections: 4,
    })
    .await
    .expect("PostgreSQL opens");
    test(postgres).await;
}

fn job(id: &str, tenant: &str, band: i64, score: f64, submitted_at: i64) -> NewJob {
    NewJob {
        id: id.into(),
        spec: "{}".into(),
        plugin: "screenshot".into(),
        tenant: tenant.into(),
        class: "hot".into(),
        number: 0,
        url: Some("http://127.0.0.1/".into()),
        webhook: None,
        band,
        score,
        cost: 100.0,
        submitted_at,
        queue_deadline: submitted_at + 60_000,
        batch: None,
    }
}

#[tokio::test]
async fn jobs_are_stored_and_read_back() {
    on_both("stored", |store| async move {
        // Several in one statement, as the intake writes them.
        store
            .submit_jobs(&[job("a", "t", 1, 100.0, 1), job("b", "t", 1, 100.0, 2)])
            .await
            .expect("store");
        let row = store.job("a").await.expect("read").expect("there");
        assert_eq!(
            (row.state.as_str(), row.tenant.as_str(), row.attempts),
            ("queued", "t", 0)
        );
        assert_eq!(row.url.as_deref(), Some("http://127.0.0.1/"));
        assert!(store.job("c").await.expect("read").is_none());
        assert_eq!(store.queued_by_band().await.expect("counts"), [0, 2, 0]);
        let counts = store.job_counts().await.expect("counts");
        assert_eq!((counts.queued, counts.running, counts.finished), (2, 0, 0));
    })
    .await;
}

#[tokio::test]
async fn claims_go_by_band_then_fair_share_then_score_then_age() {
    on_both("order", |store| async move {
        let jobs = [
            job("cold-old", "a", 2, 0.0, 1),
            job("hot-a1", "a", 1, 100.0, 2),
            job("hot-a2", "a", 1, 150.0, 3),
            job("hot-b1", "b", 1, 100.0, 4),
            job("urgent", "b", 0, 200.0, 5),
        ];
        for job in &jobs {
            store.submit_job(job).await.expect("store");
        }
        let claim = |n| store.claim_jobs("host", n, 10, 1_000);
        let ids = |claimed: Vec<ClaimedJob>| -> Vec<String> {
            claimed.into_iter().map(|job| job.row.id).collect()
        };
        assert_eq!(ids(claim(1).await.expect("claim")), ["urgent"]);
        // Tenant b was charged for its urgent job: a goes first, its best score first.
        assert_eq!(ids(claim(1).await.expect("claim")), ["hot-a2"]);
        // Both tenants are one job's cost ahead now: the older job goes first.
        assert_eq!(ids(claim(1).await.expect("claim")), ["hot-a1"]);
        assert_eq!(ids(claim(2).await.expect("claim")), ["hot-b1", "cold-old"]);
        assert!(claim(1).await.expect("claim").is_empty());
        let row = store.job("urgent").await.expect("read").expect("there");
        assert_eq!((row.state.as_str(), row.attempts), ("running", 1));
    })
    .await;
}

#[tokio::test]
async fn a_cold_job_past_the_aging_step_claims_as_hot() {
    on_both("aging", |store| async move {
        store
            .submit_job(&job("cold", "a", 2, 0.0, 1))
            .await
            .expect("store");
        store
            .submit_job(&job("hot", "b", 1, 100.0, 5))
            .await
            .expect("store");
        // Cold jobs submitted at or before 1 move to the hot band, ahead of hot jobs: the cold one
        // goes first.
        assert_eq!(store.age_cold_jobs(1).await.expect("age"), 1);
        assert_eq!(store.queued_by_band().await.expect("counts"), [0, 2, 0]);
        let claimed = store.claim_jobs("host", 1, 10, 1_000).await.expect("claim");
        assert_eq!(claimed[0].row.id, "cold");
    })
    .await;
}

#[tokio::test]
async fn a_finish_stores_the_result_and_webhook_once_and_only_for_the_lease_holder() {
    on_both("finish", |store| async move {
        let mut with_hook = job("j", "t", 1, 100.0, 1);
        with_hook.webhook = Some("http://127.0.0.1:9/hook".into());
        store.submit_job(&with_hook).await.expect("store");
        let claimed = store
            .claim_jobs("host-a", 1, 10, 1_000)
            .await
            .expect("claim");
        let attempt = claimed[0].row.attempts;
        let meta = ResultMeta {
            content_type: "image/png".into(),
            bytes: 3,
            kept: true,
            page_status: 200,
            page_url: "http://127.0.0.1/".into(),
            page_dialogs: "[]".into(),
            page_warnings: r#"["a wait ran out of time"]"#.into(),
            plugin_fuel: Some(7),
            plugin_ms: Some(1.5),
        };
        let finish = Finish::Succeeded {
            meta: meta.clone(),
            body: vec![1, 2, 3],
        };
        let delivery = Delivery {
            job_id: "j".into(),
            url: "http://127.0.0.1:9/hook".into(),
            body: b"{}".to_vec(),
            attempts: 0,
            traceparent: None,
        };
        // Another host's run, or this host's earlier attempt, finishes nothing.
        assert!(
            !store
                .finish_job("j", Some(("host-b", attempt)), 20, &finish, None)
                .await
                .expect("finish")
        );
        assert!(
            !store
                .finish_job("j", Some(("host-a", attempt + 1)), 20, &finish, None)
                .await
                .expect("finish")
        );
        assert!(
            store
                .finish_job("j", Some(("host-a", attempt)), 20, &finish, Some(&delivery))
                .await
                .expect("finish")
        );
        assert!(
            !store
                .finish_job("j", Some(("host-a", attempt)), 20, &finish, None)
                .await
                .expect("finish"),
            "once"
        );
        let row = store.job("j").await.expect("read").expect("there");
        assert_eq!(
            (row.state.as_str(), row.finished_at),
            ("succeeded", Some(20))
        );
        assert_eq!(row.result, Some(meta));
        assert_eq!(row.webhook_state.as_deref(), Some("pending"));
        assert_eq!(
            store.result_body("j").await.expect("body"),
            Some(vec![1, 2, 3])
        );

        // The delivery: claimed once, retried, then delivered and gone.
        let due = store
            .claim_deliveries("host-a", 10, 20, 100)
            .await
            .expect("claim");
        assert_eq!(due.len(), 1);
        assert!(
            store
                .claim_deliveries("host-b", 10, 21, 100)
                .await
                .expect("claim")
                .is_empty(),
            "claimed"
        );
        store
            .delivery_attempted("j", Some("refused"), Some(50))
            .await
            .expect("attempt");
        assert!(
            store
                .claim_deliveries("host-a", 10, 30, 100)
                .await
                .expect("claim")
                .is_empty(),
            "not due"
        );
        let due = store
            .claim_deliveries("host-a", 10, 50, 100)
            .await
            .expect("claim");
        assert_eq!(due[0].attempts, 1);
        store
            .delivery_attempted("j", None, None)
            .await
            .expect("attempt");
        let row = store.job("j").await.expect("read").expect("there");
        assert_eq!(
            (row.webhook_state.as_deref(), row.webhook_attempts),
            (Some("delivered"), 2)
        );
        assert!(
            store
                .claim_deliveries("host-a", 10, 100, 200)
                .await
                .expect("claim")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn leases_expire_into_the_queue_and_jobs_run_again() {
    on_both("leases", |store| async move {
        store
            .submit_job(&job("j", "t", 1, 100.0, 1))
            .await
            .expect("store");
        store.claim_jobs("host-a", 1, 10, 100).await.expect("claim");
        assert_eq!(
            store
                .renew_leases("host-a", &["j".into(), "other".into()], 200)
                .await
                .expect("renew"),
            ["j"],
            "the lease is host-a's"
        );
        assert_eq!(
            store.requeue_expired(150).await.expect("reap"),
            0,
            "renewed"
        );
        assert_eq!(store.requeue_expired(250).await.expect("reap"), 1);
        let again = store
            .claim_jobs("host-b", 1, 260, 400)
            .await
            .expect("claim");
        assert_eq!((again[0].row.id.as_str(), again[0].row.attempts), ("j", 2));
        assert!(
            store
                .renew_leases("host-a", &["j".into()], 300)
                .await
                .expect("renew")
                .is_empty(),
            "host-a lost it"
        );
        assert_eq!(
            store
                .requeue_running(Some("host-b"))
                .await
                .expect("requeue"),
            1
        );
        assert_eq!(
            store.job("j").await.expect("read").expect("there").state,
            "queued"
        );
    })
    .await;
}

#[tokio::test]
async fn cancelling_stops_a_job_or_forgets_a_finished_one() {
    on_both("cancel", |store| async move {
        store
            .submit_job(&job("run", "t", 1, 100.0, 1))
            .await
            .expect("store");
        store
            .submit_job(&job("done", "t", 1, 100.0, 2))
            .await
            .expect("store");
        store.claim_jobs("host-a", 1, 10, 100).await.expect("claim");
        match store.cancel_job("run", 20).await.expect("cancel") {
            Cancelled::Stopped { host } => assert_eq!(host.as_deref(), Some("host-a")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.job("run").await.expect("read").expect("there").state,
            "cancelled"
        );
        // A finish after the cancellation changes nothing.
        let failed = Finish::Failed(ErrorRow {
            status: 502,
            code: "x".into(),
            message: "y".into(),
        });
        assert!(
            !store
                .finish_job("run", Some(("host-a", 1)), 30, &failed, None)
                .await
                .expect("finish")
        );
        assert!(
            store
                .finish_job("done", None, 30, &failed, None)
                .await
                .expect("finish"),
            "never started"
        );
        assert!(matches!(
            store.cancel_job("done", 40).await.expect("cancel"),
            Cancelled::Forgotten(_)
        ));
        assert!(store.job("done").await.expect("read").is_none());
        assert!(matches!(
            store.cancel_job("nope", 40).await.expect("cancel"),
            Cancelled::NotFound
        ));
    })
    .await;
}

#[tokio::test]
async fn old_results_are_evicted_oldest_first_and_old_jobs_forgotten() {
    on_both("keep", |store| async move {
        for (index, id) in ["a", "b", "c"].into_iter().enumerate() {
            store
                .submit_job(&job(id, "t", 1, 100.0, 1))
                .await
                .expect("store");
            let finish = Finish::Succeeded {
                meta: ResultMeta {
                    content_type: "text/plain".into(),
                    bytes: 10,
                    kept: true,
                    page_status: 200,
                    page_url: String::new(),
                    page_dialogs: "[]".into(),
                    page_warnings: "[]".into(),
                    plugin_fuel: None,
                    plugin_ms: None,
                },
                body: vec![0; 10],
            };
            let at = 100 + index as i64;
            assert!(
                store
                    .finish_job(id, None, at, &finish, None)
                    .await
                    .expect("finish")
            );
        }
        assert_eq!(store.evict_results(25).await.expect("evict"), 1);
        assert_eq!(store.result_body("a").await.expect("body"), None);
        assert!(
            !store
                .job("a")
                .await
                .expect("read")
                .expect("there")
                .result
                .expect("meta")
                .kept
        );
        assert_eq!(store.job_counts().await.expect("counts").result_bytes, 20);
        assert_eq!(store.forget_finished_before(102).await.expect("forget"), 2);
        assert!(store.job("b").await.expect("read").is_none());
        assert!(store.job("c").await.expect("read").is_some());
    })
    .await;
}

#[test]
fn passwords_never_show() {
    assert_eq!(
        redact("postgres://farm:s3cret@db.internal:5432/pagewright"),
        "postgres://farm:***@db.internal:5432/pagewright"
    );
    assert_eq!(
        redact("postgres://db.internal/pagewright"),
        "postgres://db.internal/pagewright"
    );
    assert_eq!(redact("sqlite:///var/lib/pw.db"), "sqlite:///var/lib/pw.db");
}

#[tokio::test]
async fn sqlite_opens_migrated_in_wal_mode_and_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = StoreSettings::sqlite_in(dir.path());
    let store = Store::open(&settings).await.expect("opens");
    assert_eq!(store.backend(), Backend::Sqlite);
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
        .fetch_one(store.pool())
        .await
        .expect("the jobs table");
    assert_eq!(jobs, 0);
    store.close().await;
    // Migrations already applied are not applied again.
    let store = Store::open(&settings).await.expect("opens again");
    store.close().await;
    assert!(dir.path().join("pagewright.db").exists());
}

#[tokio::test]
async fn a_bad_url_names_itself_and_the_step() {
    let error = Store::open(&StoreSettings {
        url: "mysql://user:pw@localhost/db".into(),
        max_connections: 1,
    })
    .await
    .expect_err("not a backend");
    assert!(
        error.to_string().contains("mysql://user:***@localhost/db"),
        "{error}"
    );

    // Nothing listens on port 9 of loopback.
    let error = Store::open(&StoreSettings {
        url: "postgres://farm:s3cret@127.0.0.1:9/pagewright".into(),
        max_connections: 1,
    })
    .await
    .expect_err("nothing listens there");
    let message = error.to_string();
    assert!(
        message.contains("connecting to the store at postgres://farm:***@127.0.0.1:9/pagewright"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn hosts_claiming_at_once_take_each_job_once() {
    on_both("racing", |store| async move {
        const JOBS: usize = 300;
        for n in 0..JOBS {
            let id = format!("job-{n:03}");
            let tenant = if n % 3 == 0 { "a" } else { "b" };
            store
                .submit_job(&job(&id, tenant, 1, 100.0, n as i64))
                .await
                .expect("store");
        }
        // Four hosts claim five at a time, as fast as they can, on connections of their own.
        let claimers = (0..4).map(|host| {
            let store = store.clone();
            tokio::spawn(async move {
                let host = format!("host-{host}");
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_jobs(&host, 5, 10, 100_000)
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|job| job.row.id));
                }
            })
        });
        let mut claimed = Vec::new();
        for claimer in claimers {
            claimed.extend(claimer.await.expect("joined"));
        }
        claimed.sort();
        let before = claimed.len();
        claimed.dedup();
        assert_eq!(before, claimed.len(), "a job was claimed twice");
        assert_eq!(claimed.len(), JOBS, "a job was never claimed");
        let counts = store.job_counts().await.expect("counts");
        assert_eq!((counts.queued, counts.running), (0, JOBS as i64));
    })
    .await;
}

#[tokio::test]
async fn plugin_versions_are_added_once_and_removed_with_their_unused_components() {
    on_both("plugins", |store| async move {
        let version = |version: &str, sha256: &str| StoredVersion {
            name: "title".into(),
            version: version.into(),
            sha256: sha256.into(),
            metadata: format!("{{\"version\":\"{version}\"}}"),
        };
        assert_eq!(store.registry_revision().await.expect("revision"), 0);
        let first = version("1.0.0", "aa");
        assert_eq!(
            store.add_plugin_version(&first, b"one").await.expect("add"),
            Added::Added
        );
        let taken = store
            .add_plugin_version(&version("1.0.0", "bb"), b"two")
            .await
            .expect("add");
        assert_eq!(taken, Added::Taken(first.clone()), "versions are immutable");
        store
            .add_plugin_version(&version("1.0.1", "aa"), b"one")
            .await
            .expect("add");
        assert_eq!(store.registry_revision().await.expect("revision"), 2);
        assert_eq!(
            store
                .plugin_versions(Some("title"))
                .await
                .expect("read")
                .len(),
            2
        );

        let removed = store
            .remove_plugin_versions("title", Some("1.0.0"))
            .await
            .expect("remove");
        assert_eq!(removed, ["1.0.0"]);
        assert!(
            store.plugin_component("aa").await.expect("read").is_some(),
            "1.0.1 still uses it"
        );
        assert_eq!(
            store
                .remove_plugin_versions("title", None)
                .await
                .expect("remove"),
            ["1.0.1"]
        );
        assert!(store.plugin_component("aa").await.expect("read").is_none());
        assert!(
            store
                .remove_plugin_versions("title", None)
                .await
                .expect("remove")
                .is_empty()
        );
        assert_eq!(store.registry_revision().await.expect("revision"), 4);

        assert_eq!(store.shared("scorer").await.expect("read"), None);
        store.set_shared("scorer", Some("mine")).await.expect("set");
        store.set_shared("scorer", None).await.expect("set");
        assert_eq!(
            store.shared("scorer").await.expect("read"),
            Some(Shared {
                value: None,
                revision: 2
            })
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_finishes_once_its_jobs_are_done_and_its_delivery_is_recorded() {
    on_both("batches", |store| async move {
        let batch = NewBatch {
            id: "b1".into(),
            tenant: "acme".into(),
            plugin: "content".into(),
            webhook: Some("http://127.0.0.1:9/hook".into()),
            submitted_at: 1,
            crawl: None,
        };
        let jobs: Vec<NewJob> = (0..3)
            .map(|index| NewJob {
                batch: Some(("b1".into(), index)),
                ..job(&format!("page{index}"), "acme", 1, 0.0, 1)
            })
            .collect();
        store.create_batch(&batch, &jobs).await.expect("stored");
        let stored = store.batch("b1").await.expect("read").expect("the batch");
        assert_eq!(
            (stored.pages, stored.webhook_state.as_deref()),
            (3, Some("pending"))
        );
        assert_eq!(store.batch_counts("b1").await.expect("counts").queued, 3);
        assert!(store.done_batches(10).await.expect("none done").is_empty());

        let running = store.cancel_batch("b1", 5).await.expect("cancelled");
        assert!(running.is_empty());
        assert_eq!(
            store.done_batches(10).await.expect("done"),
            vec!["b1".to_owned()]
        );
        let delivery = Delivery {
            job_id: "b1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            body: b"{}".to_vec(),
            attempts: 0,
            traceparent: None,
        };
        assert!(
            store
                .finish_batch("b1", 6, Some(&delivery))
                .await
                .expect("finished")
        );
        assert!(
            !store
                .finish_batch("b1", 7, Some(&delivery))
                .await
                .expect("asked"),
            "a batch finishes once"
        );
        assert!(store.done_batches(10).await.expect("none left").is_empty());

        let claimed = store
            .claim_deliveries("host", 10, 6, 60_000)
            .await
            .expect("claimed");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].job_id, "b1");
        store
            .delivery_attempted("b1", None, None)
            .await
            .expect("recorded");
        let delivered = store.batch("b1").await.expect("read").expect("the batch");
        assert_eq!(delivered.webhook_state.as_deref(), Some("delivered"));
        assert_eq!(
            (delivered.webhook_attempts, delivered.finished_at),
            (1, Some(6))
        );

        let pages = store.batch_pages("b1", 1, 10).await.expect("pages");
        assert_eq!(
            pages.iter().map(|page| page.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(pages.iter().all(|page| page.state == "cancelled"));
        assert_eq!(
            store
                .forget_batches_finished_before(7)
                .await
                .expect("forgotten"),
            1
        );
        assert!(store.batch("b1").await.expect("read").is_none());
    })
    .await;
}
