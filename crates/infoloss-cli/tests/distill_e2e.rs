//! End to end: a shortened `infoloss distill` on the embedded digits writes the table, the plot and
//! results.json, and the distilled student beats chance (10%) by a wide margin.

use std::process::Command;

#[test]
fn shortened_distill_runs_end_to_end() {
    let out = std::env::temp_dir().join(format!("infoloss-distill-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_infoloss"))
        .args(["distill", "--epochs", "6", "--repeats", "1", "--threads", "2", "--quiet", "--seed", "3"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run infoloss distill");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "distill failed: {}\n{stdout}", String::from_utf8_lossy(&run.stderr));
    for name in [
        "teacher",
        "student, all labels",
        "student, labeled only",
        "student + KD",
        "student + KD, top-k cache",
        "student + UDA",
    ] {
        assert!(stdout.contains(name), "table lacks {name:?}:\n{stdout}");
    }
    assert!(
        stdout.contains("test acc") && stdout.contains("against the student on 50 labels alone"),
        "{stdout}"
    );

    let svg = std::fs::read_to_string(out.join("distill.svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("test accuracy") && svg.contains("student + KD"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results written"))
            .expect("valid JSON");
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 6);
    let acc = |name: &str| {
        runs.iter().find(|r| r["name"] == name).and_then(|r| r["test_acc"].as_f64()).expect("run present")
    };
    assert!(acc("teacher") > 0.9, "teacher accuracy {}", acc("teacher"));
    assert!(acc("student + KD") > 0.6, "distilled student accuracy {}", acc("student + KD"));
    let topk = acc("student + KD, top-k cache");
    assert!(topk > 0.6, "student distilled from the top-3 cache: accuracy {topk}");
    // the cache is there, whole, with the teacher's top-3
    let cache = infoloss_cache::CacheReader::open(&out.join("teacher-cache")).expect("teacher cache written");
    cache.verify().expect("a sound cache");
    assert_eq!((cache.index().k, cache.index().vocab_size, cache.index().complete), (3, 10, true));
    for r in runs {
        assert_eq!(r["curve"].as_array().map(Vec::len), Some(6), "one curve point per epoch");
    }
    // Deterministic for a given seed: a second run gives the same numbers.
    let again = Command::new(env!("CARGO_BIN_EXE_infoloss"))
        .args([
            "distill",
            "--epochs",
            "6",
            "--repeats",
            "1",
            "--threads",
            "2",
            "--quiet",
            "--seed",
            "3",
            "--json",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run infoloss distill again");
    let j2: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON on stdout");
    for (a, b) in runs.iter().zip(j2["runs"].as_array().expect("runs")) {
        assert_eq!(a["test_acc"], b["test_acc"], "run {} is not deterministic", a["name"]);
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_options_are_one_clear_line() {
    for (args, needle) in [
        (vec!["distill", "--epochs", "0"], "invalid --epochs 0"),
        (vec!["distill", "--temperature=-1"], "invalid --temperature -1"),
        (vec!["distill", "--alpha", "1.5"], "invalid --alpha 1.5"),
        (vec!["distill", "--data", "/nonexistent/file.csv"], "/nonexistent/file.csv: cannot read"),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_infoloss")).args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line expected, got {err:?}");
    }
}
