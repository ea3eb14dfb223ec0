//! The plugin host against real components built from `tests/guests`: fuel, epochs, memory and
//! output limits, traps, instance waits, CPU slots, load-time refusals, verification, scorers, and
//! upload validation over random bytes.

use super::*;
use crate::job::Produced;
use crate::testing::eventually;

/// A plugin host with the default settings, adjusted by `adjust`.
fn host_with(adjust: impl FnOnce(&mut PluginSettings)) -> PluginHost {
    let mut settings = PluginSettings::default();
    adjust(&mut settings);
    PluginHost::new(settings, Metrics::new()).expect("the plugin host starts")
}

fn guest(host: &PluginHost, name: &str) -> Arc<Plugin> {
    let bytes = pagewright_test_guests::bytes(name);
    host.load(name, &bytes).expect("the guest loads")
}

fn job() -> JobContext {
    JobContext::new(1, Instant::now() + Duration::from_secs(60))
}

#[tokio::test]
async fn a_loop_runs_out_of_fuel_having_used_all_of_it() {
    let host = host_with(|settings| settings.fuel = 100_000_000);
    let spin = guest(&host, "spin");
    let (result, usage) = host.extract_without_page(&spin, "{}", job()).await;
    assert!(
        matches!(result, Err(PluginError::OutOfFuel { .. })),
        "{result:?}"
    );
    assert_eq!(usage.fuel, 100_000_000);
}

#[tokio::test]
async fn the_epoch_deadline_stops_a_loop_with_fuel_to_spare() {
    let host = host_with(|settings| {
        settings.fuel = u64::MAX / 2;
        settings.timeout = Duration::from_millis(200);
    });
    let spin = guest(&host, "spin");
    let started = std::time::Instant::now();
    let (result, _) = host.extract_without_page(&spin, "{}", job()).await;
    assert!(
        matches!(result, Err(PluginError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn memory_and_output_limits_are_their_own_errors() {
    let host = host_with(|settings| {
        settings.max_memory_bytes = 16 << 20;
    });
    let bomb = guest(&host, "memory-bomb");
    let (result, _) = host.extract_without_page(&bomb, "{}", job()).await;
    assert!(
        matches!(result, Err(PluginError::MemoryLimit { .. })),
        "{result:?}"
    );

    let host = host_with(|_| {});
    let huge = guest(&host, "huge-output");
    let (result, _) = host.extract_without_page(&huge, "{}", job()).await;
    assert!(
        matches!(
            result,
            Err(PluginError::OutputTooLarge {
                size: 100_000_024,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_servers_memory_budget_bounds_every_plugin_together() {
    let host = host_with(|settings| {
        settings.max_total_memory_bytes = 24 << 20;
    });
    let bomb = guest(&host, "memory-bomb");
    let (result, _) = host.extract_without_page(&bomb, "{}", job()).await;
    assert!(
        matches!(result, Err(PluginError::ServerMemory { .. })),
        "{result:?}"
    );
    // What the bomb held went back with its store.
    assert_eq!(host.inner.memory_budget.used(), 0);
    let noop = guest(&host, "noop");
    let (result, _) = host.extract_without_page(&noop, "{}", job()).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_trap_quotes_what_the_plugin_printed() {
    let host = host_with(|_| {});
    let trap = guest(&host, "trap");
    let (result, _) = host.extract_without_page(&trap, "{}", job()).await;
    let Err(PluginError::Trapped { message, .. }) = result else {
        panic!("expected a trap, got {result:?}");
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("this plugin always panics"), "{message}");
    assert!(!message.contains("RUST_BACKTRACE"), "{message}");
}

/// WASI's filesystem and sockets are linked (toolchains import them whole), with nothing behind them.
#[tokio::test]
async fn a_plugin_can_import_the_filesystem_and_sockets_but_reach_neither() {
    let host = host_with(|_| {});
    let sandbox = guest(&host, "sandbox");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("its address").port();
    let (result, _) = host
        .extract_without_page(&sandbox, &format!(r#"{{"port":{port}}}"#), job())
        .await;
    let Ok(Produced::Json(report)) = result else {
        panic!("expected the guest's report, got {result:?}");
    };
    let report: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    for attempt in ["read", "write", "list", "connect", "lookup"] {
        assert_ne!(report[attempt], "ok", "{attempt} must fail: {report}");
    }
    assert_eq!(report["environment"], 0, "{report}");
    assert_eq!(report["arguments"], 0, "{report}");
    assert!(listener.accept().is_err(), "nothing connected");
    assert!(
        !std::path::Path::new("/tmp/pagewright-sandbox-guest").exists(),
        "nothing was written"
    );
}

#[tokio::test]
async fn calls_wait_for_a_free_instance_within_their_deadline() {
    let host = host_with(|settings| {
        settings.max_instances = 1;
        settings.timeout = Duration::from_millis(1_500);
        settings.fuel = u64::MAX / 2;
    });
    let spin = guest(&host, "spin");
    let noop = guest(&host, "noop");
    let spinning = tokio::spawn({
        let host = host.clone();
        async move { host.extract_without_page(&spin, "{}", job()).await }
    });
    eventually(
        "the loop holds the only instance",
        Duration::from_secs(5),
        || async { (host.usage_now().instances == 1).then_some(()) },
    )
    .await;
    let short = JobContext::new(2, Instant::now() + Duration::from_millis(300));
    let (result, _) = host.extract_without_page(&noop, "{}", short).await;
    assert!(matches!(result, Err(PluginError::Busy)), "{result:?}");
    // Once the loop's deadline frees the instance, the next call gets it.
    let (result, _) = host.extract_without_page(&noop, "{}", job()).await;
    assert_eq!(result.expect("noop runs"), Produced::Text(String::new()));
    let (spun, _) = spinning.await.expect("the spinning task");
    assert!(matches!(spun, Err(PluginError::Timeout { .. })), "{spun:?}");
}

/// Runs a spinning plugin at `spinning` priority on a host with one CPU slot, then a no-op at
/// `priority`; the no-op must finish while the loop still runs.
async fn a_call_gets_the_cpu_from_a_spinning_one(spinning: Priority, priority: Priority) {
    let host = host_with(|settings| {
        settings.workers = 1;
        settings.worker_nodes.clear();
        settings.fuel = u64::MAX / 2;
        settings.timeout = Duration::from_secs(20);
    });
    let spin = guest(&host, "spin");
    let noop = guest(&host, "noop");
    let spinning_call = tokio::spawn({
        let host = host.clone();
        let job = JobContext {
            priority: spinning,
            ..job()
        };
        async move { host.extract_without_page(&spin, "{}", job).await }
    });
    eventually(
        "the loop holds the CPU slot",
        Duration::from_secs(5),
        || async { (host.usage_now().cpu.busy > 0).then_some(()) },
    )
    .await;
    let job = JobContext { priority, ..job() };
    let (result, _) = host.extract_without_page(&noop, "{}", job).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!spinning_call.is_finished(), "the loop is still running");
    assert!(host.usage_now().cpu.preemptions >= 1);
    spinning_call.abort();
}

#[tokio::test]
async fn a_spinning_plugin_gives_its_cpu_slot_to_a_higher_priority_call() {
    let cold = Priority {
        band: 2,
        score: 0.0,
    };
    a_call_gets_the_cpu_from_a_spinning_one(cold, Priority::DEFAULT).await;
}

#[tokio::test]
async fn plugins_of_equal_priority_take_turns_on_the_cpu() {
    a_call_gets_the_cpu_from_a_spinning_one(Priority::DEFAULT, Priority::DEFAULT).await;
}

#[test]
fn components_that_cannot_be_plugins_are_refused_at_load() {
    let host = host_with(|_| {});
    let refused = |bytes: &[u8]| match host.load("bad", bytes) {
        Err(PluginError::Invalid { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let wat = |text: &str| wat::parse_str(text).expect("valid WAT");
    assert!(refused(b"garbage").contains("not a WebAssembly binary"));
    assert!(refused(b"(component)").contains("not a WebAssembly binary"));
    assert!(refused(&wat("(module)")).contains("core WebAssembly module"));
    assert!(refused(&wat("(component)")).contains("exports none of the roles"));
    let http = refused(&wat(
        r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance (export "handle" (func)))))"#,
    ));
    assert!(
        http.contains("`wasi:http/outgoing-handler@0.2.6`") && http.contains("no HTTP requests"),
        "{http}"
    );
    let unknown = refused(&wat(
        r#"(component (import "acme:spy/send@1.0.0" (instance)))"#,
    ));
    assert!(unknown.contains("`acme:spy/send@1.0.0`"), "{unknown}");
    let no_such_role = refused(&wat(r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $x (export "extract" (func $f)))
             (export "pagewright:plugin/extractor@9.0.0" (instance $x)))"#));
    assert!(
        no_such_role.contains("export `pagewright:plugin/extractor@9.0.0` does not match")
            && no_such_role.contains("not version `9.0.0`"),
        "{no_such_role}"
    );
    assert!(host.get("bad").is_err(), "nothing was registered");
}

#[test]
fn imports_are_checked_before_compiling_and_only_the_outer_components() {
    let wat = |text: &str| wat::parse_str(text).expect("valid WAT");
    let refused = validate::check_imports_before_compiling(&wat(
        r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance (export "handle" (func)))))"#,
    ))
    .expect_err("refused without compiling");
    assert!(
        refused.contains("`wasi:http/outgoing-handler@0.2.6`") && refused.contains("no HTTP"),
        "{refused}"
    );
    // What a nested component imports, the outer one gives it: not the host's business.
    validate::check_imports_before_compiling(&wat(
        r#"(component (component $inner (import "wasi:http/outgoing-handler@0.2.6" (instance))))"#,
    ))
    .expect("nested imports are the component's own");
    validate::check_imports_before_compiling(&wat(
        r#"(component (import "pagewright:plugin/log@0.2.0" (instance)))"#,
    ))
    .expect("the host's interfaces are allowed");
}

#[tokio::test]
async fn verifying_a_plugin_checks_its_exports_types_and_start() {
    let host = host_with(|_| {});
    // `extract` exported with the name the WIT gives it, but no parameters and no result.
    let wrong_type = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $x (export "extract" (func $f)))
             (export "pagewright:plugin/extractor@0.1.0" (instance $x)))"#,
    )
    .expect("valid WAT");
    let plugin = host.load("wrong-type", &wrong_type).expect("its names fit");
    let error = host.verify(&plugin).await.expect_err("its types do not");
    let message = error.to_string();
    assert!(
        message.contains("export `pagewright:plugin/extractor@0.1.0`") && message.contains("type"),
        "{message}"
    );
    let noop = guest(&host, "noop");
    host.verify(&noop).await.expect("a good plugin verifies");
}

#[tokio::test]
async fn a_scorer_scores_and_a_page_less_call_is_refused_page_work() {
    let host = host_with(|_| {});
    guest(&host, "stamp");
    let noop = guest(&host, "noop");
    let tour = guest(&host, "page-tour");
    let scorer = ScorerPlugin::new(&host, "stamp").expect("stamp is a scorer");
    let request = crate::sched::ScoreRequest {
        url: "https://example.com/abc".into(),
        origin: "https://example.com".into(),
        plugin: None,
        tenant: "default".into(),
        class: crate::job::Class::Hot,
        number: 0,
        age: Duration::ZERO,
        origin_figures: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let score = crate::sched::Scorer::score(&scorer, request, deadline)
        .await
        .expect("a score");
    assert_eq!(score, "https://example.com/abc".len() as f64);
    // The same call through the host, with what it cost.
    let info = bindings::pagewright::plugin::types::JobInfo {
        url: "https://example.com/abc".into(),
        origin: "https://example.com".into(),
        plugin: None,
        tenant: None,
        class: bindings::pagewright::plugin::types::PriorityClass::Hot,
        priority: None,
        age_ms: 0,
        attempt: 1,
        origin_stats: None,
    };
    let stamp = host.get("stamp").expect("stamp");
    let (score, usage) = host.score(&stamp, info, job()).await;
    assert_eq!(
        score.expect("a score"),
        "https://example.com/abc".len() as f64
    );
    assert!(usage.fuel > 0);

    let (output, _) = host.extract_without_page(&noop, "{}", job()).await;
    assert_eq!(output.expect("noop runs"), Produced::Text(String::new()));

    let (output, _) = host
        .extract_without_page(&tour, r#"{"url": "http://127.0.0.1:9/"}"#, job())
        .await;
    let error = output.expect_err("no page to tour");
    assert!(error.to_string().contains("no page"), "{error}");
    assert!(
        ScorerPlugin::new(&host, "noop").is_err(),
        "a plugin without the scorer role is refused"
    );
}

mod fuzz {
    //! Upload validation over random and mutated bytes: every input is refused or accepted,
    //! none panics or hangs. Bounded by the case counts, so it runs in CI.
    use super::*;
    use proptest::prelude::*;

    fn host() -> &'static PluginHost {
        static HOST: std::sync::OnceLock<PluginHost> = std::sync::OnceLock::new();
        HOST.get_or_init(|| host_with(|_| {}))
    }

    fn noop() -> &'static [u8] {
        static NOOP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        NOOP.get_or_init(|| pagewright_test_guests::bytes("noop"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert!(host().load("fuzz", &bytes).is_err());
        }

        #[test]
        fn a_component_with_a_header_and_random_sections_is_refused(
            body in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
            bytes.extend(body);
            prop_assert!(host().load("fuzz", &bytes).is_err());
        }

        #[test]
        fn mutated_components_are_refused_or_loaded(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            keep in 0.5f64..=1.0,
        ) {
            let mut bytes = noop().to_vec();
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            bytes.truncate((bytes.len() as f64 * keep) as usize);
            // Either answer is fine; a panic or a hang is the failure.
            let _ = host().load("fuzz", &bytes);
        }
    }
}

#[test]
fn plugin_names_are_safe_in_paths() {
    for good in ["links", "my-plugin_2", "0day"] {
        assert!(check_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "../etc",
        "a/b",
        "UPPER",
        "-dash",
        "a b",
        &"x".repeat(65),
    ] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}
