//! A spinner with the current stage and the elapsed time, shown on standard error only when the work
//! has taken more than a second and standard error is a terminal.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The delay before anything is drawn.
const DELAY: Duration = Duration::from_secs(1);

/// A progress indicator for one command.
pub struct Progress {
    bar: ProgressBar,
    stop: Option<mpsc::Sender<()>>,
    waiter: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the clock; `enabled = false` (`--quiet`) never draws.
    pub fn start(enabled: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        if !enabled {
            return Progress { bar, stop: None, waiter: None };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let b = bar.clone();
        let waiter = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(DELAY) {
                // Draws only if standard error is a terminal.
                b.set_draw_target(ProgressDrawTarget::stderr());
                b.enable_steady_tick(Duration::from_millis(120));
                let _ = rx.recv();
            }
        });
        Progress { bar, stop: Some(tx), waiter: Some(waiter) }
    }

    /// Names the current stage ("reading x.npy", "computing cross_entropy", …).
    pub fn stage(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Stops and erases the indicator.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.close();
    }
}
