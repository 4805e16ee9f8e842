//! A multi-GB input streams through `fle decrypt` with bounded memory.
//!
//! 2 GiB of JSON Lines (override with `FLE_BIG_MIB`), generated on the fly into the process's
//! stdin, one distinct envelope per MiB; its stdout is compared, as it arrives, with the
//! expected plaintext. Peak RSS is measured twice: by polling the kernel's high-water mark
//! (`VmHWM` in /proc/PID/status) while the job runs, and by the job's own `--json` summary.
//! Nothing touches the disk. Run with `--nocapture` to see the figures.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fle_command, root};
use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey};

/// Bytes of filler per block (about 1 MiB).
const BLOCK: usize = 1 << 20;
/// The bound asserted on peak RSS.
const MAX_RSS: u64 = 128 << 20;

fn filler() -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK + 256);
    let mut i = 0;
    while out.len() < BLOCK {
        writeln!(
            out,
            r#"{{"i":{i},"name":"no secret here","plan":"gold","tags":["a","b"],"note":"lorem ipsum dolor sit amet, consectetur adipiscing elit"}}"#
        )
        .unwrap();
        i += 1;
    }
    out
}

fn ssn(block: usize) -> String {
    format!("123-45-{block:06}")
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line[6..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[test]
fn multi_gb_input_streams_with_bounded_rss() {
    let blocks: usize = std::env::var("FLE_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let filler = Arc::new(filler());

    let mut child = fle_command(root())
        .args([
            "decrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--format",
            "jsonl",
            "--kms-rps",
            "1000000",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();

    // Input: per block, one line with a fresh envelope, then the filler.
    let mut stdin = child.stdin.take().unwrap();
    let headers: Vec<String> = (0..blocks)
        .map(|b| {
            let mut envelope = String::new();
            key.encrypt_into("ssn", ssn(b).as_bytes(), &mut envelope)
                .unwrap();
            format!("{{\"block\":{b},\"ssn\":\"{envelope}\"}}\n")
        })
        .collect();
    let total_in: u64 = headers
        .iter()
        .map(|h| (h.len() + filler.len()) as u64)
        .sum();
    let writer = {
        let filler = filler.clone();
        std::thread::spawn(move || {
            for header in headers {
                stdin.write_all(header.as_bytes()).unwrap();
                stdin.write_all(&filler).unwrap();
            }
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    // Peak RSS, polled.
    let done = Arc::new(AtomicBool::new(false));
    let polled = Arc::new(AtomicU64::new(0));
    let poller = {
        let (done, polled) = (done.clone(), polled.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(hwm) = vm_hwm(pid) {
                    polled.fetch_max(hwm, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Output: compared block by block as it arrives.
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    for b in 0..blocks {
        let header = format!("{{\"block\":{b},\"ssn\":\"{}\"}}\n", ssn(b));
        let want = header.len() + filler.len();
        got.resize(want, 0);
        stdout
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("block {b}: {e}"));
        assert!(
            got[..header.len()] == *header.as_bytes(),
            "block {b} header"
        );
        assert!(got[header.len()..] == filler[..], "block {b} filler");
    }
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes more than expected", rest.len());
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    writer.join().unwrap();
    let errors = errors.join().unwrap();
    assert!(status.success(), "{errors}");

    let summary: serde_json::Value = serde_json::from_str(errors.trim()).unwrap();
    assert_eq!(summary["envelopes"], blocks, "{summary}");
    assert_eq!(summary["decrypted"], blocks);
    assert_eq!(summary["bytes_in"], total_in);
    let reported = summary["peak_rss_bytes"].as_u64().unwrap();
    let polled = polled.load(Ordering::Relaxed);
    eprintln!(
        "{:.2} GiB in {:.1} s ({:.0} MB/s), {blocks} envelopes; peak RSS {:.1} MiB (job's summary), \
         {:.1} MiB (polled)",
        total_in as f64 / (1u64 << 30) as f64,
        elapsed.as_secs_f64(),
        total_in as f64 / 1e6 / elapsed.as_secs_f64(),
        reported as f64 / (1u64 << 20) as f64,
        polled as f64 / (1u64 << 20) as f64,
    );
    // The job reads its high-water mark just before it exits; polling may see a little more.
    assert!(polled > 0, "no RSS polled");
    assert!(
        reported < MAX_RSS,
        "peak RSS {reported} bytes (job's summary)"
    );
    assert!(polled < MAX_RSS, "peak RSS {polled} bytes (polled)");
}
