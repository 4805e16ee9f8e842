//! The external helpers some tests need, found once per process.
//!
//! A test that needs one starts with [`require!`](crate::require!) (or [`require`]): when the
//! tool is missing, a one-line message goes to stderr and the test returns early (it passes), so
//! a plain `cargo test` works on a machine without them. With `FLE_REQUIRE_ALL=1` (set by
//! `scripts/test-all.sh`, the README's test command) a missing tool fails the test instead.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// An external helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `$FLE_PYTHON`: Python with pyca/cryptography and pyhpke (and pycryptodome, boto3 for the
    /// benchmarks' peers): `target/test-env/venv`. Required to be set; no fallback.
    Python,
    /// `$FLE_LOCALSTACK_PYTHON`: Python with LocalStack: `target/test-env/localstack`.
    LocalStack,
    /// Node.js 20 or later: `$FLE_NODE`, else `node` on `PATH`.
    Node,
    /// The openssl command line: `$FLE_OPENSSL`, else `openssl` on `PATH`.
    OpenSsl,
    /// `$FLE_DEPLOY_PYTHON`: Python with cfn-lint, parliament, moto's server and the AWS CLI
    /// (`target/test-env/deploy`), for the deployment templates' tests. Its `bin/` holds
    /// `aws`, `cfn-lint` and `moto_server`.
    Deploy,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 5] = [
        Tool::Python,
        Tool::LocalStack,
        Tool::Node,
        Tool::OpenSsl,
        Tool::Deploy,
    ];

    /// The variable that names the program.
    pub fn var(self) -> &'static str {
        match self {
            Tool::Python => "FLE_PYTHON",
            Tool::LocalStack => "FLE_LOCALSTACK_PYTHON",
            Tool::Node => "FLE_NODE",
            Tool::OpenSsl => "FLE_OPENSSL",
            Tool::Deploy => "FLE_DEPLOY_PYTHON",
        }
    }

    /// The program to run: the variable's value, else (`node`, `openssl`) the name on `PATH`.
    /// `None` for the Python tools when their variable is unset.
    pub fn program(self) -> Option<OsString> {
        match std::env::var_os(self.var()).filter(|v| !v.is_empty()) {
            Some(p) => Some(p),
            None => match self {
                Tool::Python | Tool::LocalStack | Tool::Deploy => None,
                Tool::Node => Some("node".into()),
                Tool::OpenSsl => Some("openssl".into()),
            },
        }
    }

    /// A command for the tool. Panics when it is not configured: call [`require`] first.
    pub fn command(self) -> Command {
        let program = self
            .program()
            .unwrap_or_else(|| panic!("{} is not set: {}", self.var(), self.install_hint()));
        Command::new(program)
    }

    /// Whether the tool runs (checked once per process).
    pub fn available(self) -> bool {
        static FOUND: [OnceLock<bool>; Tool::ALL.len()] =
            [const { OnceLock::new() }; Tool::ALL.len()];
        *FOUND[self as usize].get_or_init(|| self.probe())
    }

    fn probe(self) -> bool {
        let Some(program) = self.program() else {
            return false;
        };
        let args: &[&str] = match self {
            Tool::Python => &["-c", "import cryptography, pyhpke"],
            Tool::LocalStack => &["-c", "import localstack"],
            Tool::Node => &["--version"],
            Tool::OpenSsl => &["version"],
            Tool::Deploy => &["-c", "import cfnlint, parliament, moto, awscli, boto3"],
        };
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// What is missing, in a few words.
    fn missing(self) -> String {
        match self {
            Tool::Python => format!(
                "{} (Python with cryptography and pyhpke) not set or not working",
                self.var()
            ),
            Tool::LocalStack => format!(
                "{} (Python with LocalStack) not set or not working",
                self.var()
            ),
            Tool::Node => format!("node not found (PATH, or {})", self.var()),
            Tool::OpenSsl => format!("openssl not found (PATH, or {})", self.var()),
            Tool::Deploy => format!(
                "{} (Python with cfn-lint, parliament, moto and the AWS CLI) not set or not working",
                self.var()
            ),
        }
    }

    fn install_hint(self) -> &'static str {
        "scripts/test-all.sh installs it"
    }
}

/// Whether `tool` is available. When it is not: prints `skipped: <what>; scripts/test-all.sh
/// installs it` on stderr (straight to the stream, past the test harness's capture) and
/// returns `false`, or panics when `FLE_REQUIRE_ALL=1`.
pub fn require(tool: Tool) -> bool {
    if tool.available() {
        return true;
    }
    require_that(
        false,
        &format!("{}; {}", tool.missing(), tool.install_hint()),
    )
}

/// [`require`] for a condition of a test's own (a tool this module does not know): `true` when
/// `ok`; otherwise `skipped: <what>` on stderr and `false`, or a panic when `FLE_REQUIRE_ALL=1`.
pub fn require_that(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("FLE_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("FLE_REQUIRE_ALL=1 but {what}");
    }
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => format!("{name}: "),
        _ => String::new(),
    };
    let _ = writeln!(std::io::stderr(), "{test}skipped: {what}");
    false
}

/// [`require`] for each tool; `true` when all are available (every missing one is reported).
pub fn require_all(tools: &[Tool]) -> bool {
    let mut all = true;
    for &tool in tools {
        all &= require(tool);
    }
    all
}
