//! `deploy/`: the CloudFormation templates are linted (cfn-lint; parliament on every policy
//! document through `deploy/lint_policies.py`) and deployed on loopback with `deploy/deploy.sh`,
//! as a user runs it: the key and partner stacks into LocalStack's CloudFormation (KMS, IAM),
//! the decrypt and edge stacks into moto's server (Lambda, IAM, logs, S3: LocalStack cannot
//! create Lambda functions without the network). `tests/support/deploy_check.py` then reads back
//! what was created. CloudFront and Lambda@Edge replication exist on neither: the distribution
//! is checked by cfn-lint only (deploy/README.md says so).
#![cfg(unix)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use localstack::LocalStack;

/// The `bin/` of the deployment tools' virtualenv (`aws`, `cfn-lint`, `moto_server`).
fn tools_bin() -> PathBuf {
    let python = PathBuf::from(Tool::Deploy.program().expect("FLE_DEPLOY_PYTHON"));
    python.parent().unwrap().to_path_buf()
}

/// `PATH` with the tools' `bin/` first, so `deploy.sh` finds that `aws`.
fn tools_path() -> String {
    format!(
        "{}:{}",
        tools_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn templates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    assert_eq!(
        out.iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "decrypt.yaml",
            "deployer.yaml",
            "edge.yaml",
            "key.yaml",
            "partner-access.yaml"
        ]
    );
    out
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cfn_lint(paths: &[PathBuf]) -> Output {
    Command::new(tools_bin().join("cfn-lint"))
        .args(paths)
        .output()
        .unwrap()
}

fn lint_policies(paths: &[PathBuf]) -> Output {
    Tool::Deploy
        .command()
        .arg(root().join("deploy/lint_policies.py"))
        .args(paths)
        .output()
        .unwrap()
}

/// A copy of `deploy/NAME` with `from` replaced by `to` (which must occur), in `dir`.
fn broken_copy(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("deploy").join(name)).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    let path = dir.join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn templates_pass_cfn_lint_and_a_broken_template_does_not() {
    require!(Tool::Deploy);
    let out = cfn_lint(&templates());
    assert!(out.status.success(), "cfn-lint: {}", show(&out));

    // The linter really reads them: an invalid runtime is reported.
    let dir = tempfile::tempdir().unwrap();
    let broken = broken_copy(
        dir.path(),
        "edge.yaml",
        "Runtime: !Ref Runtime",
        "Runtime: nodejs99.x",
    );
    let out = cfn_lint(&[broken]);
    assert!(!out.status.success(), "cfn-lint passed nodejs99.x");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nodejs99.x"),
        "{}",
        show(&out)
    );
}

#[test]
fn what_no_local_service_creates_is_checked_in_the_templates() {
    require!(Tool::Deploy);
    let out = check(&["static", root().join("deploy").to_str().unwrap()]);
    assert!(
        out.starts_with("deployer: covers every") && out.contains("\nstatic: "),
        "{out}"
    );
}

#[test]
fn every_policy_document_passes_parliament_with_every_finding_explained() {
    require!(Tool::Deploy);
    let out = lint_policies(&templates());
    assert!(out.status.success(), "lint_policies.py: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // 5 templates; key policies and roles under every combination of their conditions.
    assert!(
        text.contains("policy documents in 5 templates") && text.contains(" 0 unexplained"),
        "{text}"
    );

    // A policy mistake is found: a misspelt action, and a wildcard action.
    let dir = tempfile::tempdir().unwrap();
    let typo = broken_copy(
        dir.path(),
        "decrypt.yaml",
        "Action: kms:Decrypt",
        "Action: kms:Decrypts",
    );
    let out = lint_policies(&[typo]);
    assert!(!out.status.success(), "an unknown action passed");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("UNKNOWN_ACTION"),
        "{}",
        show(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let star = broken_copy(
        dir.path(),
        "partner-access.yaml",
        "Action: kms:Decrypt",
        "Action: \"kms:*\"",
    );
    let out = lint_policies(&[star]);
    assert!(!out.status.success(), "kms:* passed: {}", show(&out));
}

/// moto's server on a free loopback port; stopped (its process group) on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(tools_bin().join("moto_server"));
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut moto = Moto {
            child: command.spawn().expect("moto_server"),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

/// Runs `deploy/deploy.sh STEPS` against `endpoint` with `env`; panics with its output on failure.
fn deploy_sh(endpoint: &str, steps: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(root().join("deploy/deploy.sh"));
    command
        .args(steps)
        .env_clear()
        .env("PATH", tools_path())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("FLE_POLL_SECONDS", "1");
    for var in [
        "CARGO_HOME",
        "RUSTUP_HOME",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    assert!(out.status.success(), "deploy.sh {steps:?}: {}", show(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn check(args: &[&str]) -> String {
    let out = Tool::Deploy
        .command()
        .arg(root().join("tests/support/deploy_check.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy_check.py {args:?}: {}",
        show(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The permissions boundary `deploy.sh deployer` creates, in LocalStack's and moto's accounts.
const BOUNDARY_LS: &str = "arn:aws:iam::000000000000:policy/fle-role-boundary";
const BOUNDARY_MOTO: &str = "arn:aws:iam::123456789012:policy/fle-role-boundary";

fn write_json(dir: &Path, name: &str, value: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// One key kind end to end: key (and, for RSA, partner) stack into LocalStack, both packages
/// built from the key's public key, decrypt and edge stacks into moto, everything read back.
fn deploy_key_kind(ls: &LocalStack, moto: &Moto, spec: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    let build_s = build.to_str().unwrap();
    let region = "eu-west-1";
    let prefix = format!("fle-{tag}");
    let alias = format!("alias/fle-{tag}");
    let admin = "arn:aws:iam::000000000000:role/fle-deployer";
    let rsa = spec != "ECC_NIST_P256";
    // The organisation options with the RSA key; without them (the other branches) for P-256.
    let org = if rsa { "o-a1b2c3d4e5" } else { "" };
    let decrypt_function = format!("fle-decrypt-{tag}");
    let edge_function = format!("fle-edge-{tag}");
    let partner_role = format!("fle-partner-{tag}");
    let external_id = format!("external-id-{tag}-{}", std::process::id());
    let external_file = dir.path().join("external-id");
    std::fs::write(&external_file, format!("{external_id}\n")).unwrap();
    let external_s = external_file.to_str().unwrap();

    let mut env = vec![
        ("FLE_REGION", region),
        ("FLE_STACK_PREFIX", prefix.as_str()),
        ("FLE_KEY_SPEC", spec),
        ("FLE_KEY_ALIAS", alias.as_str()),
        ("FLE_KEY_ADMIN_ARNS", admin),
        ("FLE_BUILD_ROLE_ARN", admin),
        ("FLE_ORG_ID", org),
        ("FLE_DECRYPT_FUNCTION", decrypt_function.as_str()),
        ("FLE_EDGE_FUNCTION", edge_function.as_str()),
        ("FLE_BUILD_DIR", build_s),
        ("FLE_BIN", env!("CARGO_BIN_EXE_fle")),
        ("FLE_FIELDS", "ssn,email,$.card.number"),
        ("FLE_ENVELOPE", if rsa { "v1" } else { "v2" }),
        // deploy/build-decrypt-lambda.sh in the dev profile: the binary the tests built.
        ("FLE_CARGO_PROFILE", "dev"),
    ];
    let mut steps = vec!["key"];
    if rsa {
        env.extend([
            ("FLE_PARTNER_ACCOUNT_ID", "444455556666"),
            ("FLE_PARTNER_ROLE", partner_role.as_str()),
            ("FLE_EXTERNAL_ID_FILE", external_s),
        ]);
        steps.extend(["package", "partner"]);
    }
    let out = deploy_sh(&ls.endpoint, &steps, &env);
    assert!(
        !out.contains(&external_id),
        "deploy.sh printed the external ID"
    );
    let key_arn = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("deploy.sh printed no key")
        .to_owned();

    let mut roles = vec![format!(
        "arn:aws:iam::000000000000:role/{decrypt_function}-role-{region}"
    )];
    if rsa {
        roles.push(format!("arn:aws:iam::000000000000:role/{partner_role}"));
    }
    let expect = write_json(
        dir.path(),
        "key.json",
        serde_json::json!({
            "key_spec": spec, "alias": alias, "admins": [admin], "build_role": admin,
            "decrypt_roles": roles, "org": org, "boundary": BOUNDARY_LS,
            "partner_account": if rsa { Some("444455556666") } else { None },
            "external_id": external_id,
        }),
    );
    eprint!(
        "{}",
        check(&["key", &ls.endpoint, region, &prefix, &expect])
    );
    if rsa {
        eprint!("{}", check(&["packages", &ls.endpoint, &key_arn, build_s]));
    } else {
        // LocalStack 4.7's GetPublicKey leaves out KeyAgreementAlgorithms for KEY_AGREEMENT keys
        // (AWS always sends ["ECDH"]), and `fle keys fetch` refuses such an answer. So the
        // packages of a P-256 key are built from the test suite's KMS-wire server, which answers
        // as AWS does, under the stack's key ARN, with a real P-256 key.
        let refused = Command::new(env!("CARGO_BIN_EXE_fle"))
            .args(["keys", "fetch", "--key-id", &key_arn, "--dir"])
            .arg(dir.path().join("refused"))
            .args(["--kms-endpoint", &ls.endpoint])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("ECDH is not among"),
            "LocalStack now sends KeyAgreementAlgorithms? fetch the P-256 key from it: {}",
            show(&refused)
        );
        let private =
            fle_shared::P256PrivateKey::from_pem(&read(&root().join("keys/demo-02.key.pem")))
                .unwrap();
        let wire = kms_wire::KmsWire::start(vec![(key_arn.clone(), private)], Duration::ZERO);
        let mut package_env = env.clone();
        package_env.push(("FLE_KEY_ARN", key_arn.as_str()));
        eprint!("{}", deploy_sh(&wire.endpoint, &["package"], &package_env));
        eprint!(
            "{}",
            check(&["packages", &wire.endpoint, &key_arn, build_s])
        );
    }

    // The functions, into moto: the key stays in LocalStack, named by its ARN.
    let buckets = [
        (format!("fle-artifacts-{tag}-eu"), region),
        (format!("fle-artifacts-{tag}-use1"), "us-east-1"),
    ];
    for (bucket, bucket_region) in &buckets {
        let mut command = Command::new(tools_bin().join("aws"));
        command
            .args([
                "s3api",
                "create-bucket",
                "--bucket",
                bucket,
                "--region",
                bucket_region,
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_CONFIG_FILE", "/dev/null");
        if *bucket_region != "us-east-1" {
            command.args([
                "--create-bucket-configuration",
                &format!("LocationConstraint={bucket_region}"),
            ]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "create-bucket: {}", show(&out));
    }
    env.extend([
        ("FLE_KEY_ARN", key_arn.as_str()),
        ("FLE_ARTIFACT_BUCKET", buckets[0].0.as_str()),
        ("FLE_EDGE_ARTIFACT_BUCKET", buckets[1].0.as_str()),
    ]);
    deploy_sh(&moto.endpoint, &["decrypt", "edge"], &env);
    let expect = write_json(
        dir.path(),
        "lambdas.json",
        serde_json::json!({
            "key_spec": spec, "key_arn": key_arn, "org": org, "log_retention": 30,
            "boundary": BOUNDARY_MOTO,
            "decrypt_function": decrypt_function, "edge_function": edge_function,
            "build_dir": build_s,
        }),
    );
    let lambdas = check(&["lambdas", &moto.endpoint, region, &prefix, &expect]);
    // Idempotent: the same packages deployed again change nothing (no new edge version).
    deploy_sh(&moto.endpoint, &["decrypt", "edge"], &env);
    let again = check(&["lambdas", &moto.endpoint, region, &prefix, &expect]);
    assert_eq!(
        again, lambdas,
        "a second deployment of the same packages changed something"
    );
    eprint!("{lambdas}");
    // The edge function lives in us-east-1 whatever FLE_REGION says (the check looks there).
    assert!(lambdas.contains("edge function: nodejs22.x"), "{lambdas}");
}

#[test]
fn deploy_sh_deploys_every_stack_on_loopback_and_they_hold_what_the_templates_say() {
    require!(Tool::Deploy, Tool::LocalStack);
    let ls = LocalStack::start_services("kms,sts,iam,cloudformation");
    let moto = Moto::start();
    // Once per account, as an administrator: the deployer policy and the roles' boundary.
    for endpoint in [&ls.endpoint, &moto.endpoint] {
        let out = deploy_sh(
            endpoint,
            &["deployer"],
            &[
                ("FLE_REGION", "eu-west-1"),
                ("FLE_ARTIFACT_BUCKET", "fle-artifacts-eu"),
                ("FLE_EDGE_ARTIFACT_BUCKET", "fle-artifacts-use1"),
            ],
        );
        assert!(out.contains("role boundary: arn:aws:iam::"), "{out}");
    }
    deploy_key_kind(&ls, &moto, "RSA_2048", "rsa");
    deploy_key_kind(&ls, &moto, "ECC_NIST_P256", "p256");
}
