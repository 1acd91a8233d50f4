//! Running a front end's adapter over a fixture file, the tally, and the test-generating macro.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::check::Checker;
use crate::reader::{Case, Fixture, testdata_dir};

/// Every fixture file in `testdata/` (each front end runs all of them; [`assert_every_file_is_listed`] keeps
/// the list complete).
pub const FILES: &[&str] = &[
    "softmax.json",
    "nll_loss.json",
    "cross_entropy.json",
    "kl_div.json",
    "binary_cross_entropy.json",
    "binary_cross_entropy_with_logits.json",
    "info.json",
    "ce_extras.json",
    "linear.json",
    "distill.json",
    "uda.json",
    "linear_distill_topk.json",
    "distill_softcap.json",
];

/// What an adapter did with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The case ran through the front end and compared its results with the checker.
    Ran,
    /// The front end has no API for the case's function (or options); counted, never silently dropped.
    NotSupported,
}

/// Per-function counts of one file.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    passed: usize,
    not_supported: usize,
    failed: usize,
}

/// Runs every case of `testdata/<file>` through `adapter`, writes the tally to
/// `<target>/conformance/<front_end>/<file>` and panics, listing every failing case (field, index, got,
/// expected), if any case failed. `supports(function)` is the front end's declared coverage: a declared
/// function must never answer [`Support::NotSupported`], an undeclared one must.
///
/// The cases run on a thread of their own with a 256 MiB stack: unoptimized builds of the generic kernels take
/// stack frames larger than a test thread's default 2 MiB.
pub fn run_file(
    front_end: &'static str,
    file: &'static str,
    supports: fn(&str) -> bool,
    adapter: fn(&mut Checker, &Case) -> Support,
) {
    let outcome = std::thread::Builder::new()
        .name(format!("{front_end} {file}"))
        .stack_size(256 << 20)
        .spawn(move || run_cases(front_end, file, supports, adapter))
        .expect("spawn the runner thread")
        .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn run_cases(
    front_end: &str,
    file: &str,
    supports: fn(&str) -> bool,
    adapter: fn(&mut Checker, &Case) -> Support,
) {
    let fixture = Fixture::read(file);
    let mut ck = Checker::new();
    let mut per_function: BTreeMap<String, Counts> = BTreeMap::new();
    let mut failures: Vec<String> = vec![];
    for case in &fixture.cases {
        let tol = match case.dtype() {
            "float32" => fixture.tol_f32,
            "float64" => fixture.tol_f64,
            d => panic!("{}: unknown dtype {d}", case.name()),
        };
        ck.begin(case, tol);
        let support = adapter(&mut ck, case);
        let declared = supports(case.function());
        if declared != (support == Support::Ran) {
            ck.fail(format!(
                "{front_end} declares {} {:?} but the adapter answered {support:?}",
                if declared { "support for" } else { "no support for" },
                case.function()
            ));
        }
        let counts = per_function.entry(case.function().to_string()).or_default();
        if !ck.current.is_empty() {
            counts.failed += 1;
            failures.push(format!("FAIL {}\n    {}", case.name(), ck.current.join("\n    ")));
        } else if support == Support::Ran {
            counts.passed += 1;
        } else {
            counts.not_supported += 1;
        }
    }
    let total = per_function.values().fold(Counts::default(), |a, c| Counts {
        passed: a.passed + c.passed,
        not_supported: a.not_supported + c.not_supported,
        failed: a.failed + c.failed,
    });
    write_tally(front_end, &fixture, &per_function, total);
    println!(
        "{front_end} {file}: {} cases: {} passed, {} not supported, {} failed ({} comparisons, {} float32 \
         elements passed via f32_reference)",
        fixture.cases.len(),
        total.passed,
        total.not_supported,
        total.failed,
        ck.comparisons,
        ck.via_f32_reference.len()
    );
    for c in &ck.via_f32_reference {
        println!("    float32 rounding-limited (f32_reference): {c}");
    }
    assert!(
        failures.is_empty(),
        "{front_end} {file}: {} of {} cases failed:\n{}",
        failures.len(),
        fixture.cases.len(),
        failures.join("\n")
    );
}

/// `<target>/conformance/<front_end>/`: `$CARGO_TARGET_DIR` if set, else the workspace's `target/`.
fn tally_dir(front_end: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("target"),
    };
    target.join("conformance").join(front_end)
}

fn write_tally(front_end: &str, fixture: &Fixture, per_function: &BTreeMap<String, Counts>, total: Counts) {
    let functions: serde_json::Map<String, serde_json::Value> = per_function
        .iter()
        .map(|(f, c)| {
            let v =
                serde_json::json!({"passed": c.passed, "not_supported": c.not_supported, "failed": c.failed});
            (f.clone(), v)
        })
        .collect();
    let doc = serde_json::json!({
        "front_end": front_end,
        "file": fixture.file,
        "family": fixture.family,
        "cases": fixture.cases.len(),
        "passed": total.passed,
        "not_supported": total.not_supported,
        "failed": total.failed,
        "functions": functions,
    });
    let dir = tally_dir(front_end);
    // the tally is a report for the table, not part of the verdict: a read-only target dir only loses the table
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(&fixture.file), format!("{doc:#}\n"));
    }
}

/// The JSON files in `testdata/` are exactly [`FILES`].
pub fn assert_every_file_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(testdata_dir())
        .expect("testdata/ exists")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "the fixture files in testdata/ and infoloss_conformance::FILES differ");
}

/// One `#[test]` per fixture file running `$adapter` for front end `$front_end` (see [`run_file`]), plus
/// `every_fixture_file_is_run`. Use inside a module: `fixture_tests!("core", supports, run_case);`.
#[macro_export]
macro_rules! fixture_tests {
    ($front_end:expr, $supports:expr, $adapter:expr) => {
        $crate::fixture_tests!(@files $front_end, $supports, $adapter;
            fixtures_softmax "softmax.json",
            fixtures_nll_loss "nll_loss.json",
            fixtures_cross_entropy "cross_entropy.json",
            fixtures_kl_div "kl_div.json",
            fixtures_binary_cross_entropy "binary_cross_entropy.json",
            fixtures_binary_cross_entropy_with_logits "binary_cross_entropy_with_logits.json",
            fixtures_info "info.json",
            fixtures_ce_extras "ce_extras.json",
            fixtures_linear "linear.json",
            fixtures_distill "distill.json",
            fixtures_uda "uda.json",
            fixtures_linear_distill_topk "linear_distill_topk.json",
            fixtures_distill_softcap "distill_softcap.json",
        );

        #[test]
        fn every_fixture_file_is_run() {
            $crate::assert_every_file_is_listed();
        }
    };
    (@files $front_end:expr, $supports:expr, $adapter:expr; $($test:ident $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                $crate::run_file($front_end, $file, $supports, $adapter);
            }
        )*
    };
}
