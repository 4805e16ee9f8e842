//! The batch jobs of the `fle` binary, as whole processes, on JSON Lines files written to an
//! output tree (`fle decrypt FILE --out DIR --overwrite --json`: read, decrypt, write
//! `DIR/FILE.fle-partial`, fsync, rename):
//!
//! - **marker-free** — ~64 MB of realistic ~200-byte records with no envelope (a `#` here and
//!   there), with `--private-key keys/demo-01.key.pem`: the cost of streaming, splitting,
//!   scanning and writing, in MB/s (`Throughput::Bytes`); in the same group and run, on the
//!   same input file and into the same output directory, two baselines spawned the same way:
//!   `cat FILE > DIR/cat.jsonl` (no fsync) and `dd if=FILE of=DIR/dd.jsonl bs=1M conv=fsync`
//!   (fsync of the output, as `fle` does: the fair one). After the group the bench prints
//!   (stderr) the median wall time of each process and the ratios `fle` MB/s ÷ `cat` MB/s
//!   and ÷ `dd` MB/s;
//! - **envelope-dense** — records of 4 distinct envelopes each (4000 envelopes, ~1.5 MB),
//!   encrypted with the library (`FieldEncryptor`, `keys/demo-01.pub.pem`), opened by
//!   `--config` against the test suite's KMS-wire server (`decryptor/tests/support/
//!   kms_wire.rs`) on 127.0.0.1 answering each call after 20 ms, with `--kms-rps 100000
//!   --concurrency 256`: envelopes/s (`Throughput::Elements`) = KMS calls/s, and MB/s;
//! - **envelope-dense, default rate limit** — the first 500 envelopes of the same input with
//!   no `--kms-rps` (250 calls/s after a burst of 50), for comparison.
//!
//! Every iteration's `--json` summary is kept; after each group the bench prints (stderr) one
//! summary and the median `mb_per_second`, `kms_calls_per_second` and the largest
//! `peak_rss_bytes` the process itself reported. Outputs are checked against the clear input
//! before anything is timed.
//!
//! What limits the figures: this is a 2-core machine shared by the `fle` process and, for the
//! dense inputs, the KMS-wire server, which performs a real RSA-2048 OAEP private-key
//! decryption for every call (on a 2-thread runtime, inline). With 256 calls in flight the
//! 20 ms latency is hidden, so the dense figure is bound by CPU — the server's RSA, the AWS
//! SDK's request signing and HTTP on both sides — not by `fle`'s concurrency or by the network
//! (observed with `top`: the bench process, i.e. the server, at 75–95 % of a core, `fle` at
//! 10–40 %; ~2,400–2,900 calls/s). Against real KMS (quota 500/s for RSA keys, the reason
//! for the default of 250/s) the rate limit is the bound. The marker-free figure includes process start-up, the fsync of the
//! 64 MB output and the page cache of the machine's disk.
//!
//! Run: `cargo bench --bench batch` (~1 min). `cargo bench --bench batch -- --test` (CI) runs
//! each benchmark once on small inputs (2 MB, 200 envelopes). `cargo bench --bench batch --
//! marker` runs only the marker-free group (fle, cat and dd).
//!
//! A/B against another build: `FLE_BENCH_BIN=/abs/path/to/fle cargo bench --bench batch`
//! runs that `fle` binary instead of the one built with the bench (`CARGO_BIN_EXE_fle`); the
//! path must be absolute. The binary in use is printed at start. `scripts/bench-batch-ab.sh`
//! alternates two binaries this way.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey};
use fle_test_support::kms_wire;
use serde_json::Value;

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-batch-bench";
const RTT: Duration = Duration::from_millis(20);
/// Encrypted fields per dense record.
const FIELDS: [&str; 4] = ["fname", "lname", "email", "ssn"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo bench -- --test`: run each benchmark once, on small inputs.
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// A small deterministic generator (xorshift), so inputs are the same from run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NAMES: [&str; 8] = [
    "Jo O'Neil",
    "Ana Souza",
    "Li Wei",
    "Sam Smith",
    "Zoë Müller",
    "Raj Patel",
    "Ola Nordmann",
    "Kim Lee",
];
const STATUSES: [&str; 4] = ["paid", "shipped", "refunded", "pending"];

/// One ~200-byte order record with no envelope (JSON, no newline).
fn plain_record(rng: &mut Rng, i: u64, out: &mut String) {
    let name = NAMES[rng.below(8) as usize];
    let status = STATUSES[rng.below(4) as usize];
    write!(
        out,
        r##"{{"id":{i},"ts":"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z","customer":{{"name":"{name}","email":"user{}@example.com"}},"amount":{}.{:02},"currency":"EUR","status":"{status}","tags":["web","#promo{}"],"note":"order #{} via checkout"}}"##,
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(100_000),
        rng.below(10_000),
        rng.below(100),
        rng.below(10),
        rng.below(1_000_000),
    )
    .unwrap();
}

/// JSON Lines of marker-free records, at least `bytes` long.
fn marker_free(bytes: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::with_capacity(bytes + 512);
    let mut i = 0;
    while text.len() < bytes {
        plain_record(&mut rng, i, &mut text);
        text.push('\n');
        i += 1;
    }
    text
}

/// `records` dense records (each with `FIELDS.len()` distinct envelopes), and the same records
/// in clear, as JSON Lines.
fn dense(records: usize) -> (String, String) {
    let public = RsaPublicKey::from_pem(
        &std::fs::read_to_string(root().join("keys/demo-01.pub.pem")).unwrap(),
    )
    .unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut clear, mut encrypted) = (String::new(), String::new());
    for i in 0..records as u64 {
        let values = [
            format!("First{i}"),
            format!("Last{i}"),
            format!("person{i}@example.com"),
            format!(
                "{:03}-{:02}-{:04}",
                rng.below(1000),
                rng.below(100),
                i % 10_000
            ),
        ];
        let tail = format!(
            r#""plan":"gold","amount":{}.{:02},"status":"{}"}}"#,
            rng.below(10_000),
            rng.below(100),
            STATUSES[rng.below(4) as usize]
        );
        write!(clear, r#"{{"id":{i},"#).unwrap();
        write!(encrypted, r#"{{"id":{i},"#).unwrap();
        for (field, value) in FIELDS.iter().zip(&values) {
            write!(clear, r#""{field}":"{value}","#).unwrap();
            write!(encrypted, r#""{field}":""#).unwrap();
            key.encrypt_into(field, value.as_bytes(), &mut encrypted)
                .unwrap();
            encrypted.push_str("\",");
        }
        clear.push_str(&tail);
        clear.push('\n');
        encrypted.push_str(&tail);
        encrypted.push('\n');
    }
    (clear, encrypted)
}

fn aws_env(command: &mut Command) {
    command
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
}

/// The `fle` binary under test: `FLE_BENCH_BIN` (an absolute path) if set, else the one cargo
/// built for this bench.
fn fle_bin() -> PathBuf {
    match std::env::var_os("FLE_BENCH_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_absolute(),
                "FLE_BENCH_BIN must be an absolute path: {path:?}"
            );
            path
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_fle")),
    }
}

/// `fle decrypt KEYS... INPUT --out OUT --overwrite --json EXTRA...`; returns the summary.
fn fle_decrypt(keys: &[&str], input: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut command = Command::new(fle_bin());
    command
        .arg("decrypt")
        .args(keys)
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--overwrite", "--json"])
        .args(extra);
    aws_env(&mut command);
    let output = run_ok(&mut command);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{command:?}: stdout is not one JSON summary ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Prints one summary and the medians of the iterations' own figures.
fn report(name: &str, summaries: &[Value]) {
    let Some(first) = summaries.first() else {
        return;
    };
    let median = |field: &str| {
        let mut v: Vec<f64> = summaries.iter().filter_map(|s| s[field].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let peak = summaries
        .iter()
        .filter_map(|s| s["peak_rss_bytes"].as_u64())
        .max();
    eprintln!("{name}: summary of one run: {first}");
    eprintln!(
        "{name}: over {} runs, median {:.3} s, {:.1} MB/s, {:.0} KMS calls/s; peak RSS {}",
        summaries.len(),
        median("seconds"),
        median("mb_per_second"),
        median("kms_calls_per_second"),
        peak.map_or("n/a".into(), |p| format!("{:.1} MB", p as f64 / 1e6)),
    );
}

/// Runs a baseline process (stdout to `stdout` if given) and checks that it succeeded.
fn baseline(command: &mut Command, stdout: Option<&Path>) {
    command.stdout(match stdout {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    });
    run_ok(command);
}

/// Runs `command` to completion; panics with its stderr unless it succeeded.
fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// User + system CPU time of the waited-for children of this process so far, in seconds
/// (`/proc/self/stat`, Linux only; 10 ms resolution at 100 ticks/s).
fn children_cpu() -> Option<f64> {
    thread_local! {
        static TICKS: f64 = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name; cutime and cstime are fields 16 and 17 of stat(5).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    Some(ticks / TICKS.with(|t| *t))
}

/// Wall and CPU (user + system) times of each run of one process.
#[derive(Default)]
struct Times {
    wall: RefCell<Vec<f64>>,
    cpu: RefCell<Vec<f64>>,
}

impl Times {
    /// Runs `f` (which spawns and waits for one process), recording its times.
    fn run(&self, f: impl FnOnce()) {
        let cpu = children_cpu();
        let start = Instant::now();
        f();
        self.wall.borrow_mut().push(start.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu, children_cpu()) {
            self.cpu.borrow_mut().push(after - before);
        }
    }

    /// Median wall and CPU seconds.
    fn medians(&self) -> Option<(f64, f64)> {
        let median = |v: &RefCell<Vec<f64>>| {
            let mut v = v.borrow().clone();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        (!self.wall.borrow().is_empty()).then(|| (median(&self.wall), median(&self.cpu)))
    }
}

fn write_input(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn bench_marker_free(c: &mut Criterion) {
    let test = test_mode();
    let dir = tempfile::tempdir().unwrap();
    let text = marker_free(if test { 2 << 20 } else { 64 << 20 });
    let input = write_input(dir.path(), "orders.jsonl", &text);
    let out = dir.path().join("out");
    let key = root().join("keys/demo-01.key.pem");
    let keys = ["--private-key", key.to_str().unwrap()];
    eprintln!("fle binary under test: {}", fle_bin().display());
    // The output is the input, byte for byte.
    let first = fle_decrypt(&keys, &input, &out, &[]);
    assert_eq!(first["envelopes"], 0, "{first}");
    assert!(std::fs::read_to_string(out.join("orders.jsonl")).unwrap() == text);
    // The baselines, on the same input, into the same directory.
    let cat_out = out.join("cat.jsonl");
    let dd_out = out.join("dd.jsonl");
    let cat = || baseline(Command::new("cat").arg(&input), Some(&cat_out));
    let dd = || {
        baseline(
            Command::new("dd")
                .arg(format!("if={}", input.display()))
                .arg(format!("of={}", dd_out.display()))
                .args(["bs=1M", "conv=fsync", "status=none"]),
            None,
        )
    };
    cat();
    dd();
    assert!(std::fs::read(&cat_out).unwrap() == text.as_bytes());
    assert!(std::fs::read(&dd_out).unwrap() == text.as_bytes());

    let summaries = RefCell::new(vec![first]);
    let mut group = c.benchmark_group("fle decrypt --out, JSON Lines");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(8));
    let mb = text.len() >> 20;
    let name = format!("marker-free {mb} MB, --private-key");
    let (fle_times, cat_times, dd_times) = (Times::default(), Times::default(), Times::default());
    group.bench_function(&name, |b| {
        b.iter(|| {
            fle_times.run(|| {
                let summary = fle_decrypt(&keys, &input, &out, &[]);
                summaries.borrow_mut().push(summary);
            })
        })
    });
    group.bench_function(
        format!("marker-free {mb} MB, cat FILE > OUT (no fsync)"),
        |b| b.iter(|| cat_times.run(cat)),
    );
    group.bench_function(
        format!("marker-free {mb} MB, dd bs=1M conv=fsync FILE to OUT"),
        |b| b.iter(|| dd_times.run(dd)),
    );
    group.finish();
    let Some(fle) = fle_times.medians() else {
        return; // filtered out
    };
    report(&name, &summaries.borrow());
    // Process times measured here (start-up included), the same way for all three.
    let mb = text.len() as f64 / 1e6;
    for (label, times) in [
        ("fle", &fle_times),
        ("cat (no fsync)", &cat_times),
        ("dd conv=fsync", &dd_times),
    ] {
        let Some((wall, cpu)) = times.medians() else {
            continue;
        };
        let ratio = if label == "fle" {
            String::new()
        } else {
            format!(
                "; fle MB/s / {label} MB/s = {:.3}",
                (mb / fle.0) / (mb / wall)
            )
        };
        eprintln!(
            "marker-free, {label}: median of {} runs: wall {wall:.3} s = {:.1} MB/s, \
             CPU (user+sys) {cpu:.2} s{ratio}",
            times.wall.borrow().len(),
            mb / wall,
        );
    }
}

fn bench_dense(c: &mut Criterion) {
    let test = test_mode();
    let records = if test { 50 } else { 1000 };
    let limited_records = if test { 25 } else { 125 };
    let dir = tempfile::tempdir().unwrap();
    let (clear, encrypted) = dense(records);
    let input = write_input(dir.path(), "people.jsonl", &encrypted);
    // The first `limited_records` lines, for the run at the default rate limit.
    let cut = |text: &str| {
        let end = text
            .match_indices('\n')
            .nth(limited_records - 1)
            .map_or(text.len(), |(i, _)| i + 1);
        text[..end].to_owned()
    };
    let limited_input = write_input(dir.path(), "people-head.jsonl", &cut(&encrypted));
    let private = OaepPrivateKey::from_pem(
        &std::fs::read_to_string(root().join("keys/demo-01.key.pem")).unwrap(),
    )
    .unwrap();
    let wire = kms_wire::KmsWire::start(vec![(ARN.into(), private)], RTT);
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {ARN:?}\n\
             [decrypt]\nendpoint = {:?}\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap(),
            wire.endpoint
        ),
    )
    .unwrap();
    let keys = ["--config", config.to_str().unwrap()];
    let out = dir.path().join("out");
    let fast = ["--kms-rps", "100000", "--concurrency", "256"];

    // Both runs give the clear records back, one KMS call per envelope, before any timing.
    let envelopes = (records * FIELDS.len()) as u64;
    let limited_envelopes = (limited_records * FIELDS.len()) as u64;
    let lines = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = fle_decrypt(&keys, &input, &out, &fast);
    assert_eq!(first["envelopes"], envelopes, "{first}");
    assert_eq!(first["kms_calls"], envelopes, "{first}");
    assert_eq!(
        lines(&std::fs::read_to_string(out.join("people.jsonl")).unwrap()),
        lines(&clear)
    );
    let first_limited = fle_decrypt(&keys, &limited_input, &out, &[]);
    assert_eq!(
        first_limited["kms_calls"], limited_envelopes,
        "{first_limited}"
    );
    assert_eq!(
        lines(&std::fs::read_to_string(out.join("people-head.jsonl")).unwrap()),
        lines(&cut(&clear))
    );

    let summaries = RefCell::new(vec![first]);
    let limited_summaries = RefCell::new(vec![first_limited]);
    let mut group = c.benchmark_group("fle decrypt --config --out, KMS at 20 ms RTT");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(20));
    let name = format!(
        "{envelopes} envelopes ({} KB), --kms-rps 100000 --concurrency 256",
        encrypted.len() >> 10
    );
    group.throughput(Throughput::Elements(envelopes));
    group.bench_function(&name, |b| {
        b.iter(|| {
            let summary = fle_decrypt(&keys, &input, &out, &fast);
            summaries.borrow_mut().push(summary);
        })
    });
    let limited_name = format!("{limited_envelopes} envelopes, default rate limit (250/s)");
    group.throughput(Throughput::Elements(limited_envelopes));
    group.bench_function(&limited_name, |b| {
        b.iter(|| {
            let summary = fle_decrypt(&keys, &limited_input, &out, &[]);
            limited_summaries.borrow_mut().push(summary);
        })
    });
    group.finish();
    report(&name, &summaries.borrow());
    report(&limited_name, &limited_summaries.borrow());
    let stats = wire.stats();
    eprintln!(
        "KMS-wire server: {} Decrypt calls answered, at most {} in flight",
        stats.decrypted.load(std::sync::atomic::Ordering::SeqCst),
        stats
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    );
}

criterion_group!(benches, bench_marker_free, bench_dense);
criterion_main!(benches);
