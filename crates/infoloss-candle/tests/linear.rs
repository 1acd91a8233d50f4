//! The fused linear distillations through candle (their PyTorch fixtures run in `fixtures.rs`): a training
//! step of a student body + head against a stored top-k teacher gets the same parameters as the unfused graph
//! (candle's `matmul` + [`distill_topk`]), with and without a bias, over two accumulated micro-batches; the
//! dense-teacher op against [`distill`] of both heads; half precision is refused with a clear error.

use candle_core::{DType, Device, Tensor, Var};
use infoloss_candle::{
    DistillOptions, Divergence, LinearDistillOptions, LinearHead, SparseTeacher, distill, distill_topk,
    linear_distill, linear_distill_topk,
};

const N: usize = 12;
const V: usize = 9;

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    // a small deterministic generator: the test needs varied values, not a distribution
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn opts(chunk: Option<usize>) -> LinearDistillOptions {
    LinearDistillOptions {
        distill: DistillOptions {
            temperature: 2.0,
            alpha: 0.6,
            divergence: Divergence::GeneralizedJsd { beta: 0.3 },
            normalizer: Some(N as f64),
            softcap: Some(3.0),
            ..Default::default()
        },
        chunk_size: chunk,
    }
}

/// Three SGD steps of a `tanh` body and a linear head, two micro-batches each; `fused` picks the op.
fn train(fused: bool, bias: bool, teacher: &SparseTeacher, labels: &Tensor) -> Vec<Vec<f64>> {
    let x = randn(1, &[N, 5]);
    let body = Var::from_tensor(&randn(2, &[5, 4])).unwrap();
    let w = Var::from_tensor(&randn(3, &[V, 4])).unwrap();
    let b = Var::from_tensor(&randn(4, &[V])).unwrap();
    let o = opts(Some(4));
    for _ in 0..3 {
        let mut total: Option<Tensor> = None;
        for rows in [0..N / 2, N / 2..N] {
            let h = x
                .narrow(0, rows.start, rows.len())
                .unwrap()
                .matmul(body.as_tensor())
                .unwrap()
                .tanh()
                .unwrap();
            let stored = SparseTeacher {
                indices: teacher.indices.narrow(0, rows.start, rows.len()).unwrap(),
                logprobs: teacher.logprobs.narrow(0, rows.start, rows.len()).unwrap(),
                add_tail: true,
            };
            let y = labels.narrow(0, rows.start, rows.len()).unwrap();
            let loss = if fused {
                let head =
                    LinearHead { hidden: &h, weight: w.as_tensor(), bias: bias.then(|| b.as_tensor()) };
                linear_distill_topk(&head, &stored, Some(&y), &o).unwrap()
            } else {
                let mut s = h.matmul(&w.as_tensor().t().unwrap()).unwrap();
                if bias {
                    s = s.broadcast_add(b.as_tensor()).unwrap();
                }
                distill_topk(&s, &stored, Some(&y), &o.distill).unwrap()
            };
            total = Some(match total {
                None => loss,
                Some(t) => (t + loss).unwrap(),
            });
        }
        let grads = total.unwrap().backward().unwrap();
        for v in [&body, &w, &b] {
            if let Some(g) = grads.get(v.as_tensor()) {
                v.set(&(v.as_tensor() - (g * 0.5).unwrap()).unwrap()).unwrap();
            }
        }
    }
    [&body, &w, &b].iter().map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
}

#[test]
fn a_training_step_against_a_stored_teacher_matches_the_unfused_graph() {
    let t_logits = randn(5, &[N, V]);
    let lq_full = infoloss_candle::log_softmax(&(t_logits / 2.0).unwrap(), 1).unwrap();
    // the teacher cache's row: its top 3 classes and their log-probabilities at T
    let idx = lq_full.arg_sort_last_dim(false).unwrap().narrow(1, 0, 3).unwrap().contiguous().unwrap();
    let teacher = SparseTeacher { logprobs: lq_full.gather(&idx, 1).unwrap(), indices: idx, add_tail: true };
    let labels = Tensor::from_vec(
        (0..N as i64).map(|i| if i % 5 == 0 { -100 } else { i % V as i64 }).collect(),
        N,
        &Device::Cpu,
    )
    .unwrap();
    for bias in [false, true] {
        let (fused, unfused) = (train(true, bias, &teacher, &labels), train(false, bias, &teacher, &labels));
        for (a, b) in fused.iter().flatten().zip(unfused.iter().flatten()) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "bias {bias}: fused {a} vs unfused {b}");
        }
    }
}

#[test]
fn the_dense_teacher_op_is_distill_of_both_heads() {
    let (xs, ws, bs) = (Var::from_tensor(&randn(6, &[N, 4])).unwrap(), randn(7, &[V, 4]), randn(8, &[V]));
    let (xt, wt) = (randn(9, &[N, 3]), randn(10, &[V, 3]));
    let ws = Var::from_tensor(&ws).unwrap();
    let o = LinearDistillOptions {
        distill: DistillOptions { alpha: 1.0, ..opts(None).distill },
        chunk_size: Some(5),
    };
    let student = LinearHead { hidden: xs.as_tensor(), weight: ws.as_tensor(), bias: Some(&bs) };
    let fused =
        linear_distill(&student, &LinearHead { hidden: &xt, weight: &wt, bias: None }, None, None, &o)
            .unwrap();
    let s = xs.as_tensor().matmul(&ws.as_tensor().t().unwrap()).unwrap().broadcast_add(&bs).unwrap();
    let dense = distill(&s, &xt.matmul(&wt.t().unwrap()).unwrap(), None, &o.distill).unwrap();
    let (a, b) = (fused.to_scalar::<f64>().unwrap(), dense.to_scalar::<f64>().unwrap());
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    let (gf, gd) = (fused.backward().unwrap(), dense.backward().unwrap());
    for v in [&xs, &ws] {
        let a = gf.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let b = gd.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12), "{a:?} vs {b:?}");
    }
}

#[test]
fn half_precision_is_refused_with_a_clear_error() {
    let x = randn(11, &[2, 3]).to_dtype(DType::F16).unwrap();
    let w = randn(12, &[4, 3]).to_dtype(DType::F16).unwrap();
    let teacher = SparseTeacher {
        indices: Tensor::new(&[[0i64, 1], [2, 3]], &Device::Cpu).unwrap(),
        logprobs: Tensor::new(&[[-1.0f32, -2.0], [-0.5, -1.5]], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap(),
        add_tail: false,
    };
    let err =
        linear_distill_topk(&LinearHead { hidden: &x, weight: &w, bias: None }, &teacher, None, &opts(None))
            .unwrap_err()
            .to_string();
    assert!(err.contains("linear_distill_topk") && err.contains("f32 or f64"), "{err}");
}
