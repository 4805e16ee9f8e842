//! A Lambda Runtime API served on loopback, for the tests that run the real Lambda binaries
//! (`fle-edge-lambda`, `fle-decrypt-lambda`): queued events on `GET .../invocation/next`, every
//! posted response or error reported back to the test.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// What the function posted back for one invocation.
#[derive(Debug)]
pub struct Posted {
    /// `response` or `error`.
    pub outcome: String,
    /// The invocation's request id (`req-1`, ...).
    pub request_id: String,
    /// The posted JSON (`null` if it was not JSON).
    pub body: Value,
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut len = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

/// Serves one connection: queued events on `GET .../invocation/next` (then holds the call open
/// once the queue is empty), and every posted response or error onto `tx`.
fn serve_connection(
    stream: TcpStream,
    queue: Arc<Mutex<VecDeque<(String, String)>>>,
    tx: mpsc::Sender<Posted>,
) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        if req.method == "GET" && req.path.ends_with("/runtime/invocation/next") {
            let Some((request_id, event)) = queue.lock().unwrap().pop_front() else {
                std::thread::sleep(Duration::from_secs(60));
                return;
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {request_id}\r\n\
                 lambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:111122223333:function:fle-test\r\n\
                 content-length: {}\r\n\r\n",
                event.len()
            );
            writer.write_all(head.as_bytes()).unwrap();
            writer.write_all(event.as_bytes()).unwrap();
        } else {
            // /2018-06-01/runtime/invocation/{id}/response | /error
            let mut segments = req.path.rsplit('/');
            let outcome = segments.next().unwrap_or_default().to_owned();
            let request_id = segments.next().unwrap_or_default().to_owned();
            let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let _ = tx.send(Posted {
                outcome,
                request_id,
                body,
            });
            writer
                .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        }
    }
}

/// A Lambda Runtime API on loopback serving `events` as `req-1`, `req-2`, ...
pub fn fake_runtime(events: &[Value]) -> (String, mpsc::Receiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let queue: VecDeque<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("req-{}", i + 1), e.to_string()))
        .collect();
    let queue = Arc::new(Mutex::new(queue));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (queue, tx) = (queue.clone(), tx.clone());
            std::thread::spawn(move || serve_connection(stream, queue, tx));
        }
    });
    (api, rx)
}
