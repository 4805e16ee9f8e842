//! A real LocalStack (KMS and STS) on a free loopback port, started and stopped by the test.
//!
//! The interpreter comes from `FLE_LOCALSTACK_PYTHON` (the test command installs LocalStack into
//! `target/test-env/localstack`); tests start with `require!(Tool::LocalStack)`. Everything
//! LocalStack would fetch from outside (TLS certificate, analytics, DNS server) is disabled:
//! traffic stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

/// A running LocalStack; stopped (its whole process group) on drop.
pub struct LocalStack {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl LocalStack {
    /// Starts LocalStack (KMS and STS) and waits until it answers its health check (at most
    /// 120 s).
    pub fn start() -> LocalStack {
        Self::start_services("kms,sts")
    }

    /// Starts LocalStack with the services named (comma-separated, KMS among them), e.g.
    /// `"kms,sts,iam,cloudformation"` to deploy templates.
    pub fn start_services(services: &str) -> LocalStack {
        let python = crate::tools::Tool::LocalStack.program().unwrap_or_else(|| {
            panic!(
                "FLE_LOCALSTACK_PYTHON is not set: run ./scripts/test-all.sh, which installs LocalStack \
                 into target/test-env/localstack and sets it (start the test with \
                 `require!(Tool::LocalStack)` to skip it instead)"
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("localstack.log")).unwrap();
        let mut command = Command::new(&python);
        command
            .args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SERVICES", services)
            .env("LOCALSTACK_VOLUME_DIR", dir.path())
            .env("FILESYSTEM_ROOT", dir.path())
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DISABLE_EVENTS", "1")
            .env("DNS_ADDRESS", "0")
            .env("API_ENDPOINT", "http://127.0.0.1:9/v1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.to_string_lossy()));
        let mut ls = LocalStack {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !healthy(port) {
            if let Ok(Some(status)) = ls.child.try_wait() {
                let log = std::fs::read_to_string(ls._dir.path().join("localstack.log"))
                    .unwrap_or_default();
                panic!("LocalStack exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "LocalStack did not become healthy in 120 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        ls
    }

    /// A KMS client for this LocalStack (any credentials work), with the SDK's retries off so
    /// tests see each error as it happens.
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        kms_client_for(&self.endpoint)
    }
}

/// A KMS client for `endpoint` with test credentials and no retries.
pub fn kms_client_for(endpoint: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "fle-tests"))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /_localstack/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") && response.contains("\"kms\"")
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // The runtime spawns helpers: signal the whole process group (`--` so the negative
        // group id is not read as an option).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &group])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
