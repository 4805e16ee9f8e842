//! A small KMS-wire-compatible server of the test suite's own: AWS JSON 1.1 on 127.0.0.1,
//! `TrentService.Decrypt` (RSAES_OAEP_SHA_256, with local RSA private keys),
//! `TrentService.DeriveSharedSecret` (ECDH with local P-256 private keys, returning the raw
//! shared secret as AWS KMS does: LocalStack 4.7 returns an HKDF of it instead) and
//! `TrentService.GetPublicKey`, with an injected round-trip latency and scripted faults
//! (`ThrottlingException`, HTTP 5xx, connection resets). The real `aws-sdk-kms` client talks to
//! it, so concurrency, latency and retries are tested as they happen against KMS, which
//! LocalStack (one call at a time) cannot show.
//!
//! Used by the decryptor's, the CLI's and the decrypt Lambda's tests and by the decryption
//! benchmark.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use fle_shared::PrivateKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does to one request instead of answering it normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 `ThrottlingException`.
    Throttle,
    /// HTTP 500 `KMSInternalException`.
    Internal,
    /// HTTP 503 with no KMS error code.
    Unavailable,
    /// The connection is reset (RST) without an answer.
    Reset,
}

/// Counters, readable while the server runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests received (all operations).
    pub requests: AtomicUsize,
    /// `Decrypt` calls answered with a plaintext.
    pub decrypted: AtomicUsize,
    /// `DeriveSharedSecret` calls answered with a shared secret.
    pub derived: AtomicUsize,
    /// Faults injected.
    pub faults: AtomicUsize,
    /// Requests being served right now.
    pub in_flight: AtomicUsize,
    /// Most requests in flight at once.
    pub max_in_flight: AtomicUsize,
}

struct State {
    keys: HashMap<String, PrivateKey>,
    latency: Duration,
    faults: Mutex<VecDeque<Fault>>,
    stats: Stats,
}

/// A running server; it stops when dropped (its runtime thread ends).
pub struct KmsWire {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<State>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl KmsWire {
    /// Starts a server on a free loopback port, on its own thread and runtime, holding `keys`
    /// (KMS key id or ARN → private key, RSA or P-256) and answering each request after
    /// `latency`.
    pub fn start<K: Into<PrivateKey>>(keys: Vec<(String, K)>, latency: Duration) -> KmsWire {
        let state = Arc::new(State {
            keys: keys.into_iter().map(|(id, k)| (id, k.into())).collect(),
            latency,
            faults: Mutex::new(VecDeque::new()),
            stats: Stats::default(),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        std_listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", std_listener.local_addr().unwrap());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(serve(stream, served.clone()));
                        }
                    }
                }
            });
        });
        KmsWire {
            endpoint,
            state,
            _shutdown: tx,
        }
    }

    /// Queues faults: the next requests get them, in order, before normal answers resume.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }
}

/// Serves one connection (HTTP/1.1 keep-alive) until the client closes it.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some((target, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let stats = &state.stats;
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(state.latency).await;
        let fault = state.faults.lock().unwrap().pop_front();
        if fault.is_some() {
            stats.faults.fetch_add(1, Ordering::SeqCst);
        }
        let (status, payload) = match fault {
            Some(Fault::Reset) => {
                stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                // A zero linger makes the close an immediate RST; it never blocks (the
                // deprecation warns about non-zero lingers).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Fault::Throttle) => error(400, "ThrottlingException", "Rate exceeded"),
            Some(Fault::Internal) => error(500, "KMSInternalException", "internal error"),
            Some(Fault::Unavailable) => (503, String::from("{}")),
            None => answer(&state, &target, &body),
        };
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-amz-json-1.1\r\n\
             x-amzn-requestid: fle-test\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        // One write: head and body in two writes met Nagle's algorithm and the client's
        // delayed ACK, adding about 40 ms to every answer (KMS answers in one segment).
        let mut answer = head.into_bytes();
        answer.extend_from_slice(payload.as_bytes());
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Reads one request: its `X-Amz-Target` and body. `None` when the connection ends.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length")?.parse().ok()?;
    let target = header("x-amz-target").unwrap_or_default();
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some((target, body))
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        serde_json::json!({"__type": code, "message": message}).to_string(),
    )
}

fn answer(state: &State, target: &str, body: &[u8]) -> (u16, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error(400, "SerializationException", "body is not JSON");
    };
    let key_id = request["KeyId"].as_str().unwrap_or_default();
    let Some(key) = state.keys.get(key_id) else {
        return error(400, "NotFoundException", "key not found");
    };
    match target {
        "TrentService.Decrypt" => {
            let PrivateKey::Rsa(key) = key else {
                return error(
                    400,
                    "InvalidKeyUsageException",
                    "not an ENCRYPT_DECRYPT key",
                );
            };
            if request["EncryptionAlgorithm"] != "RSAES_OAEP_SHA_256" {
                return error(400, "InvalidCiphertextException", "wrong algorithm");
            }
            let Some(blob) = request["CiphertextBlob"]
                .as_str()
                .and_then(|c| b64.decode(c).ok())
            else {
                return error(400, "ValidationException", "CiphertextBlob missing");
            };
            match key.decrypt(&blob) {
                Ok(plaintext) => {
                    state.stats.decrypted.fetch_add(1, Ordering::SeqCst);
                    let answer = serde_json::json!({
                        "KeyId": key_id,
                        "Plaintext": b64.encode(plaintext.as_bytes()),
                        "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                    });
                    (200, answer.to_string())
                }
                Err(_) => error(400, "InvalidCiphertextException", "decryption failed"),
            }
        }
        "TrentService.DeriveSharedSecret" => {
            let PrivateKey::P256(key) = key else {
                return error(400, "InvalidKeyUsageException", "not a KEY_AGREEMENT key");
            };
            if request["KeyAgreementAlgorithm"] != "ECDH" {
                return error(
                    400,
                    "ValidationException",
                    "KeyAgreementAlgorithm must be ECDH",
                );
            }
            // KMS takes the peer's key as a DER SubjectPublicKeyInfo.
            let Some(spki) = request["PublicKey"]
                .as_str()
                .and_then(|c| b64.decode(c).ok())
                .filter(|der| der.len() == 91 && der[..26] == fle_shared::P256_SPKI_PREFIX)
            else {
                return error(400, "ValidationException", "PublicKey is not a P-256 SPKI");
            };
            match key.diffie_hellman(&spki[26..]) {
                Ok(shared) => {
                    state.stats.derived.fetch_add(1, Ordering::SeqCst);
                    let answer = serde_json::json!({
                        "KeyId": key_id,
                        "SharedSecret": b64.encode(&shared[..]),
                        "KeyAgreementAlgorithm": "ECDH",
                        "KeyOrigin": "AWS_KMS",
                    });
                    (200, answer.to_string())
                }
                Err(_) => error(400, "ValidationException", "not a point on the curve"),
            }
        }
        "TrentService.GetPublicKey" => {
            let public = key.public_key();
            let der = public.spki_der();
            // Key ids ending in "-sign" stand for signing keys, which fle must refuse.
            let answer = match (&public, key_id.ends_with("-sign")) {
                (fle_shared::PublicKey::P256(_), _) => serde_json::json!({
                    "KeyId": key_id,
                    "KeySpec": "ECC_NIST_P256",
                    "KeyUsage": "KEY_AGREEMENT",
                    "KeyAgreementAlgorithms": ["ECDH"],
                    "PublicKey": b64.encode(der),
                }),
                (_, true) => serde_json::json!({
                    "KeyId": key_id,
                    "KeySpec": public.describe().replace('-', "_"),
                    "KeyUsage": "SIGN_VERIFY",
                    "EncryptionAlgorithms": [],
                    "PublicKey": b64.encode(der),
                }),
                (_, false) => serde_json::json!({
                    "KeyId": key_id,
                    "KeySpec": public.describe().replace('-', "_"),
                    "KeyUsage": "ENCRYPT_DECRYPT",
                    "EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"],
                    "PublicKey": b64.encode(der),
                }),
            };
            (200, answer.to_string())
        }
        _ => error(400, "UnknownOperationException", "not implemented here"),
    }
}
