//! The progress line of batch jobs, drawn on a terminal (bytes, envelopes, KMS calls/s, ETA).
//! Nothing is drawn when stderr is not a terminal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fle_batch::Progress;

/// The progress line: a thread redrawing it a few times a second.
pub struct Display {
    state: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    lock: Arc<Mutex<()>>,
}

impl Display {
    /// Starts drawing `progress` on stderr if `terminal`; otherwise does nothing.
    pub fn start(progress: Arc<Progress>, terminal: bool) -> Display {
        let lock = Arc::new(Mutex::new(()));
        if !terminal {
            return Display { state: None, lock };
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, lock2) = (stop.clone(), lock.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
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
                let line = line(&progress, started.elapsed(), rate);
                let _guard = lock2.lock();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
            let _guard = lock2.lock();
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        });
        Display {
            state: Some((stop, handle)),
            lock,
        }
    }

    /// Runs `f` (which prints a line) with the progress line cleared.
    pub fn suspend(&self, f: impl FnOnce()) {
        let _guard = self.lock.lock();
        if self.state.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        f();
    }

    /// Stops drawing and clears the line.
    pub fn stop(&self) {
        if let Some((stop, _)) = &self.state {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.state.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// One progress line.
fn line(p: &Progress, elapsed: Duration, calls_per_second: f64) -> String {
    let bytes = p.bytes();
    let total = p.total();
    let secs = elapsed.as_secs_f64().max(1e-3);
    let speed = bytes as f64 / secs;
    let done = if total > 0 {
        let eta = if bytes > 0 && total > bytes {
            format!(
                ", ETA {}",
                clock(Duration::from_secs_f64(
                    (total - bytes) as f64 / speed.max(1.0)
                ))
            )
        } else {
            String::new()
        };
        format!(
            "{:.1}/{:.1} MB ({:.0}%){eta}",
            bytes as f64 / 1e6,
            total as f64 / 1e6,
            100.0 * bytes as f64 / total as f64
        )
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    };
    format!(
        "{done}, {:.1} MB/s, {} envelopes, {:.0} KMS calls/s",
        speed / 1e6,
        p.envelopes(),
        calls_per_second
    )
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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
    fn line_shows_bytes_envelopes_rate_and_eta() {
        let p = Progress::default();
        p.set_total(10_000_000);
        p.add_bytes(2_500_000);
        p.add_envelopes(7);
        let l = line(&p, Duration::from_secs(5), 123.4);
        assert_eq!(
            l,
            "2.5/10.0 MB (25%), ETA 0:00:15, 0.5 MB/s, 7 envelopes, 123 KMS calls/s"
        );
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}
