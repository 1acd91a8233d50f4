//! Timing: medians of repeated calls, alternated calls, and the copy a time is compared with.

use std::time::{Duration, Instant};

use rayon::prelude::*;

/// The median of `v` (not empty), in seconds.
fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// The median seconds of `reps` calls of `f`, after one warm-up call.
pub(super) fn time_reps(reps: usize, f: impl FnMut()) -> f64 {
    time_reps_prepared(reps, || {}, f)
}

/// [`time_reps`] with `prepare` run before each call, outside the timing.
pub(super) fn time_reps_prepared(reps: usize, mut prepare: impl FnMut(), mut f: impl FnMut()) -> f64 {
    prepare();
    f(); // warm-up: page faults, caches, thread pool start
    median(
        (0..reps.max(1))
            .map(|_| {
                prepare();
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// The seconds of each of `fs` in each of `reps` rounds (`[round][f]`), run in turn so that a noisy host
/// slows them alike.
pub(super) fn time_alternating(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    fs.iter_mut().for_each(|f| f()); // warm-up
    (0..reps.max(1))
        .map(|_| {
            fs.iter_mut()
                .map(|f| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                })
                .collect()
        })
        .collect()
}

/// The median of `v` (not empty).
pub(super) fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median time of copying `bytes` bytes (parallel over the current pool, like the ops).
pub(super) fn copy_time(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 8;
    let src: Vec<u64> = (0..n as u64).collect();
    let mut dst = vec![0u64; n];
    let chunk = (n / (4 * rayon::current_num_threads()).max(1)).max(1 << 16);
    time_reps(reps, || {
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
    })
}
