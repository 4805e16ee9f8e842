//! The real binary against a Lambda Runtime API served on loopback by this test: it fetches an
//! invocation, answers it through the runtime, and a bad configuration stops it at start.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fle_test_support::{root, runtime_api};

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
    let (api, rx) = runtime_api::fake_runtime(&[serde_json::from_str(&event).unwrap()]);

    let mut child = start(&config, &api);
    let posted = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no response from the function");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        (posted.outcome.as_str(), posted.request_id.as_str()),
        ("response", "req-1")
    );
    let request = posted.body;
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
