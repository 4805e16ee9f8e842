//! The real binary against a Lambda Runtime API served on loopback by this test: it fetches an
//! invocation, answers it through the runtime, and a bad configuration stops it at start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// Serves `event` once on GET .../invocation/next, sends the posted response on `tx`, then
/// holds further `next` calls open until the test ends.
fn serve(listener: TcpListener, event: String, tx: mpsc::Sender<(String, Vec<u8>)>) {
    let mut served = false;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(req) = read_request(&mut reader) {
            if req.method == "GET" && req.path.ends_with("/runtime/invocation/next") {
                if served {
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                served = true;
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 30_000;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-1\r\n\
                     lambda-runtime-deadline-ms: {deadline}\r\n\
                     lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:111122223333:function:fle-edge\r\n\
                     content-length: {}\r\n\r\n",
                    event.len()
                );
                writer.write_all(head.as_bytes()).unwrap();
                writer.write_all(event.as_bytes()).unwrap();
            } else {
                let _ = tx.send((req.path.clone(), req.body));
                writer
                    .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
            }
        }
    }
}

fn start(config: &Path, api: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fle-edge-lambda"))
        .env("FLE_CONFIG", config)
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "fle-edge")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn answers_an_invocation_through_the_runtime_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap()
        ),
    )
    .unwrap();
    let event =
        std::fs::read_to_string(root().join("tests/fixtures/events/reference-3x6.json")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve(listener, event, tx));

    let mut child = start(&config, &api);
    let (path, body) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no response from the function");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-1/response");
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(request["body"]["action"], "replace");
    let data = request["body"]["data"].as_str().unwrap();
    assert_eq!(data.matches("#01#").count(), 18);
    assert!(!data.contains("123-45-6789"));
}

#[test]
fn an_invalid_configuration_stops_the_function_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(&config, "[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let mut child = start(&config, &api);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("no keys"), "{err}");
}
