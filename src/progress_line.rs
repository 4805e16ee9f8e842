//! The progress line of batch jobs, drawn on a terminal by `indicatif` (bytes, %, ETA, MB/s,
//! envelopes, KMS calls/s). Nothing is drawn when stderr is not a terminal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fle_batch::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress line: an `indicatif` bar fed from the job's counters by a ticker thread.
pub struct Display {
    bar: ProgressBar,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Display {
    /// Starts drawing `progress` on stderr if `terminal`; otherwise does nothing.
    pub fn start(progress: Arc<Progress>, terminal: bool) -> Display {
        if !terminal {
            return Display {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(style(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, bar2) = (stop.clone(), bar.clone());
        let handle = std::thread::spawn(move || {
            let mut calls_then = (0u64, Instant::now());
            let mut rate = 0.0;
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = Instant::now();
                let calls = progress.calls();
                let span = now.duration_since(calls_then.1).as_secs_f64();
                if span >= 1.0 {
                    rate = (calls - calls_then.0) as f64 / span;
                    calls_then = (calls, now);
                }
                // The total is known once the job has planned its inputs (0 for stdin).
                if progress.total() > 0 && bar2.length() != Some(progress.total()) {
                    bar2.set_length(progress.total());
                    bar2.set_style(style(true));
                }
                bar2.set_position(progress.bytes());
                bar2.set_message(message(progress.envelopes(), rate));
            }
        });
        Display {
            bar,
            ticker: Some((stop, handle)),
        }
    }

    /// Runs `f` (which prints a line) with the progress line cleared.
    pub fn suspend(&self, f: impl FnOnce()) {
        self.bar.suspend(f);
    }

    /// Stops drawing and clears the line.
    pub fn stop(&self) {
        if let Some((stop, _)) = &self.ticker {
            stop.store(true, Ordering::Relaxed);
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
        self.bar.finish_and_clear();
    }
}

/// Bytes, with the total, % and ETA when the total is known, speed, then the counters.
fn style(total: bool) -> ProgressStyle {
    ProgressStyle::with_template(if total {
        "{decimal_bytes}/{decimal_total_bytes} ({percent}%), ETA {eta}, {decimal_bytes_per_sec}, {msg}"
    } else {
        "{decimal_bytes}, {decimal_bytes_per_sec}, {msg}"
    })
    .expect("a valid template")
}

/// The counters after the bar's own bytes, %, ETA and speed.
fn message(envelopes: u64, calls_per_second: f64) -> String {
    format!("{envelopes} envelopes, {calls_per_second:.0} KMS calls/s")
}

/// Standard error for a job's messages while the progress line may be drawn: whole lines
/// only, each written with the progress line cleared first.
pub struct LineStderr<'a> {
    display: &'a Display,
    pending: Vec<u8>,
}

impl<'a> LineStderr<'a> {
    /// Messages around `display`.
    pub fn new(display: &'a Display) -> Self {
        LineStderr {
            display,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let lines: Vec<u8> = self.pending.drain(..upto).collect();
        let mut result = Ok(());
        self.display.suspend(|| {
            let mut err = std::io::stderr().lock();
            result = err.write_all(&lines).and_then(|()| err.flush());
        });
        result
    }
}

impl Write for LineStderr<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last) = memchr::memrchr(b'\n', &self.pending) {
            self.emit(last + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let n = self.pending.len();
        if n > 0 {
            self.emit(n)?;
        }
        Ok(())
    }
}

impl Drop for LineStderr<'_> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shows_envelopes_and_call_rate() {
        assert_eq!(message(7, 123.4), "7 envelopes, 123 KMS calls/s");
        // Not a terminal: nothing is drawn, and messages still go through.
        let d = Display::start(Arc::new(Progress::default()), false);
        let mut ran = false;
        d.suspend(|| ran = true);
        d.stop();
        assert!(ran);
    }
}
