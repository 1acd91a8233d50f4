//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz harness on stable Rust,
//! so every input that once found a bug, or reached new code, stays a regression test in CI.
//!
//! The harness (`tests/fuzz_harness/mod.rs`) is the same code the cargo-fuzz targets in `fuzz/` run; see
//! `fuzz/README.md` for running the fuzzers themselves.

#[path = "fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn committed_corpora_run_without_panics() {
    let mut total = 0;
    for target in fuzz_harness::TARGETS {
        let dir = corpus_dir(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("no corpus for fuzz target {target} at {}", dir.display());
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        assert!(!files.is_empty(), "empty corpus for {target}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            assert!(fuzz_harness::run(target, &data), "unknown target {target}");
            total += 1;
        }
    }
    assert!(total >= fuzz_harness::TARGETS.len());
}

/// A few thousand pseudo-random inputs per target (a fixed xorshift stream), so the harness is exercised
/// beyond the corpus on every test run.
#[test]
fn pseudo_random_inputs_run_without_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for target in fuzz_harness::TARGETS {
        let runs = if *target == "linear" { 150 } else { 600 };
        for _ in 0..runs {
            let len = (next() % 512) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            fuzz_harness::run(target, &data);
        }
    }
}

#[test]
fn unknown_targets_are_reported() {
    assert!(!fuzz_harness::run("no_such_target", &[]));
}

/// The "known core issues" the fuzz harness found (fuzz/README.md): empty inputs whose other dimensions
/// are huge cost nothing to create, but used to abort (allocating one result per empty row) or run for
/// hours (visiting every empty row). Results too large to allocate are now [`Error::TooLarge`], and
/// results that fit are computed without visiting the empty rows.
mod huge_empty_inputs {
    use infoloss::ndarray::{Array2, ArrayD, IxDyn, arr0, arr1};
    use infoloss::{
        CrossEntropyExtrasOptions, CrossEntropyOptions, DistillOptions, Divergence, EntropyOptions, Error,
        GradOutput, JensenShannonOptions, Loss, NllOptions, Reduction, SparseTeacher,
    };

    const BIG: usize = 1 << 28;

    fn empty(shape: &[usize]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), Vec::new()).unwrap()
    }

    #[track_caller]
    fn too_large<T: std::fmt::Debug>(r: Result<T, Error>, op: &str) {
        match r {
            Err(Error::TooLarge { op: o, .. }) => assert!(o.starts_with(op), "{o} is not {op}"),
            other => panic!("{op}: expected Error::TooLarge, got {other:?}"),
        }
    }

    fn scalar(l: Loss<f32>) -> f32 {
        l.scalar().expect("a reduced loss")
    }

    #[test]
    fn reductions_over_the_empty_dimension_are_too_large() {
        // [2^28, 0, 2^28] reduced over dimension 1 gives 2^56 values.
        let x = empty(&[BIG, 0, BIG]);
        too_large(infoloss::logsumexp(x.view(), 1), "logsumexp");
        let none = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
        too_large(infoloss::cross_entropy_probs(x.view(), x.view(), &none), "cross_entropy");
        let e = EntropyOptions { base: None, axis: 1 };
        too_large(infoloss::entropy(x.view(), None, &e), "entropy");
        too_large(infoloss::shannon_cross_entropy(x.view(), x.view(), &e), "shannon_cross_entropy");
        let js = JensenShannonOptions { axis: 1, ..Default::default() };
        too_large(infoloss::jensenshannon(x.view(), x.view(), &js), "jensenshannon");
        // The same reductions of a small empty input give torch's values: −inf, −0, 0.
        let s = empty(&[2, 0, 3]);
        assert_eq!(
            infoloss::logsumexp(s.view(), 1).unwrap(),
            ArrayD::from_elem(IxDyn(&[2, 3]), f32::NEG_INFINITY)
        );
        let l = infoloss::cross_entropy_probs(s.view(), s.view(), &none).unwrap().into_array();
        assert_eq!(l.shape(), &[2, 3]);
        assert!(l.iter().all(|v| *v == 0.0 && v.is_sign_negative()), "{l:?}");
        assert_eq!(infoloss::entropy(s.view(), None, &e).unwrap(), ArrayD::<f32>::zeros(IxDyn(&[2, 3])));
        // Too many rows to count at all.
        let y = empty(&[1 << 31, 0, 1 << 31]);
        too_large(
            infoloss::cross_entropy_probs(y.view(), y.view(), &CrossEntropyOptions::default()),
            "cross_entropy",
        );
    }

    #[test]
    fn results_that_fit_are_computed_without_visiting_the_empty_rows() {
        // Each of these used to loop 2^56 times (hours); now they return at once.
        let x = empty(&[BIG, 0, BIG]);
        let start = std::time::Instant::now();
        assert_eq!(infoloss::softmax(x.view(), 1).unwrap().shape(), x.shape());
        assert_eq!(infoloss::log_softmax(x.view(), 1).unwrap().shape(), x.shape());
        assert_eq!(infoloss::softmax_backward(x.view(), x.view(), 1).unwrap().shape(), x.shape());
        let g = arr0(1.0f32);
        let g = g.broadcast(IxDyn(&[BIG, BIG])).unwrap();
        assert_eq!(infoloss::logsumexp_backward(x.view(), g, 1).unwrap().shape(), x.shape());
        // Mean of no element: NaN; sum: −0 (torch: tensor(nan), tensor(-0.)).
        let mean = CrossEntropyOptions::default();
        assert!(scalar(infoloss::cross_entropy_probs(x.view(), x.view(), &mean).unwrap()).is_nan());
        let sum = CrossEntropyOptions { reduction: Reduction::Sum, ..Default::default() };
        let l = scalar(infoloss::cross_entropy_probs(x.view(), x.view(), &sum).unwrap());
        assert!(l == 0.0 && l.is_sign_negative());
        let (l, gx, gt) =
            infoloss::cross_entropy::cross_entropy_probs_with_grads(x.view(), x.view(), &mean).unwrap();
        assert!(scalar(l).is_nan());
        assert_eq!((gx.shape(), gt.shape()), (x.shape(), x.shape()));
        let e = EntropyOptions { base: Some(2.0), axis: 1 };
        let (dp, dq) = infoloss::entropy_backward(x.view(), Some(x.view()), &e, arr0(1.0f32).view()).unwrap();
        assert_eq!((dp.shape(), dq.unwrap().shape()), (x.shape(), x.shape()));
        let js = JensenShannonOptions { axis: 1, ..Default::default() };
        let (dp, dq) =
            infoloss::jensenshannon_backward(x.view(), x.view(), &js, arr0(1.0f32).view()).unwrap();
        assert_eq!((dp.shape(), dq.shape()), (x.shape(), x.shape()));
        assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    }

    #[test]
    fn broadcasts_larger_than_memory_are_too_large() {
        // Two 1-element arrays broadcast to [2^29, 1] and [1, 2^29]: their broadcast has 2^58 elements.
        let one = arr0(0.5f32);
        let p = one.broadcast(IxDyn(&[1 << 29, 1])).unwrap();
        let q = one.broadcast(IxDyn(&[1, 1 << 29])).unwrap();
        too_large(infoloss::rel_entr(p.clone(), q.clone()), "rel_entr");
        too_large(
            infoloss::rel_entr_backward(p.clone(), q.clone(), arr0(1.0f32).view()),
            "rel_entr_backward",
        );
        too_large(infoloss::entropy(p, Some(q), &EntropyOptions { base: None, axis: 0 }), "entropy");
    }

    #[test]
    fn class_index_losses_with_a_huge_broadcast_target_are_too_large() {
        // An input [2^50, 0] with a target broadcast from one `ignore_index` to 2^50 rows.
        let x = empty(&[1 << 50, 0]);
        let t = arr1(&[-100i64]);
        let t = t.broadcast(1 << 50).unwrap();
        too_large(infoloss::cross_entropy(x.view(), t, &CrossEntropyOptions::default()), "cross_entropy");
        too_large(infoloss::nll_loss(x.view(), t, &NllOptions::default()), "nll_loss");
        too_large(
            infoloss::cross_entropy_extras_with_grad(x.view(), t, &CrossEntropyExtrasOptions::default()),
            "cross_entropy_extras",
        );
        // A small one gives torch's NaN (mean of nothing).
        let s = empty(&[3, 0]);
        let t = arr1(&[-100i64, -100, -100]);
        assert!(
            scalar(infoloss::cross_entropy(s.view(), t.view(), &CrossEntropyOptions::default()).unwrap())
                .is_nan()
        );
    }

    #[test]
    fn distillation_of_huge_empty_students_is_too_large() {
        let s = Array2::<f32>::zeros((1 << 50, 0));
        let none = DistillOptions { reduction: Reduction::None, ..Default::default() };
        too_large(infoloss::distill(s.view(), s.view(), None, &none), "distill");
        too_large(infoloss::distill_with_grad(s.view(), s.view(), None, &none), "distill");
        too_large(
            infoloss::uda_consistency_with_grad(s.view(), s.view(), &Default::default()),
            "uda_consistency",
        );
        // Three rows of no class: every row's divergence is 0, with or without the gradient.
        let s = Array2::<f32>::zeros((3, 0));
        let sum = DistillOptions { reduction: Reduction::Sum, ..Default::default() };
        assert_eq!(scalar(infoloss::distill(s.view(), s.view(), None, &sum).unwrap()), 0.0);
        let (l, g) = infoloss::distill_with_grad(s.view(), s.view(), None, &sum).unwrap();
        assert_eq!((scalar(l), g.shape()), (0.0, &[3usize, 0][..]));
    }

    #[test]
    fn topk_distillation_of_zero_classes_agrees_with_its_gradient_version() {
        // The fuzzer's find (corpus/distill/regression-topk-zero-classes-tail): a student [1, 0], k = 0,
        // the tail bucket, total variation, reduction none. `distill_topk` gave NaN, `_with_grad` 0.
        let s = Array2::<f32>::zeros((1, 0));
        let idx = Array2::<i64>::zeros((1, 0));
        let lp = Array2::<f32>::zeros((1, 0));
        let teacher = SparseTeacher { indices: idx.view(), logprobs: lp.view(), add_tail: true };
        let o = DistillOptions {
            divergence: Divergence::TotalVariation,
            reduction: Reduction::None,
            ..Default::default()
        };
        let l = infoloss::distill_topk(s.view(), &teacher, None, &o).unwrap().into_array();
        let (l2, g) = infoloss::distill_topk_with_grad(s.view(), &teacher, None, &o).unwrap();
        assert_eq!(l.as_slice().unwrap(), &[0.0]);
        assert_eq!(l2.into_array().as_slice().unwrap(), &[0.0]);
        assert_eq!(g.shape(), &[1, 0]);
        let b = infoloss::distill_topk_backward(s.view(), &teacher, None, &o, &GradOutput::one()).unwrap();
        assert_eq!(b.shape(), &[1, 0]);
    }
}

/// Replays one input through one target, for analysing a finding on stable Rust:
/// `FUZZ_TARGET=kl_div FUZZ_FILE=fuzz/artifacts/kl_div/crash-… cargo test --release -p infoloss
/// --test integration fuzz_corpus::replay_one -- --ignored --nocapture`.
#[test]
#[ignore = "needs FUZZ_TARGET and FUZZ_FILE"]
fn replay_one() {
    let target = std::env::var("FUZZ_TARGET").expect("set FUZZ_TARGET to a fuzz target's name");
    let file = std::env::var("FUZZ_FILE").expect("set FUZZ_FILE to the input's path");
    let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(fuzz_harness::run(&target, &data), "unknown target {target}");
}
