//! Cold start: the configuration and keys named by the environment, turned into one
//! [`Decryptor`] and the defaults of the events. Built once per process with
//! [`DecryptorBuilder`], as `fle decrypt` builds its decryptor.

use std::fmt;
use std::path::PathBuf;

use fle_decryptor::{BuildError, Decryptor, DecryptorBuilder, Mode, OnError};
use fle_shared::KeyId;

/// What the function serves every invocation with.
#[derive(Debug)]
pub struct Setup {
    /// The decryptor: keyring, key provider, KMS budget, field restriction.
    pub decryptor: Decryptor,
    /// Mode of events that name none (`[decrypt] mode`, default JSON).
    pub mode: Mode,
    /// Error policy of events that name none (`[decrypt] on_error`, default fail).
    pub on_error: OnError,
}

/// Where the configuration comes from: the environment variables the function reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `FLE_CONFIG`: the configuration file.
    pub config: Option<PathBuf>,
    /// `LAMBDA_TASK_ROOT`: where `fle.toml` is looked for without `FLE_CONFIG`.
    pub task_root: Option<PathBuf>,
    /// `FLE_PRIVATE_KEY`: a local private key (PEM, PKCS#8) instead of KMS.
    pub private_key: Option<PathBuf>,
    /// `FLE_KEY_ID`: the key id of `FLE_PRIVATE_KEY` (default `01`).
    pub key_id: Option<String>,
}

/// Why the function refuses to start: one line, no secrets (never a key, never plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// A [`SetupError`] from any message, folded to one line (TOML errors span several).
fn refuse(message: impl fmt::Display) -> SetupError {
    let message = message.to_string();
    SetupError(
        message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Sources {
    /// Reads `FLE_CONFIG`, `LAMBDA_TASK_ROOT`, `FLE_PRIVATE_KEY` and `FLE_KEY_ID`.
    pub fn from_env() -> Self {
        let path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        Sources {
            config: path("FLE_CONFIG"),
            task_root: path("LAMBDA_TASK_ROOT"),
            private_key: path("FLE_PRIVATE_KEY"),
            key_id: std::env::var_os("FLE_KEY_ID").map(|v| v.to_string_lossy().into_owned()),
        }
    }

    /// The configuration file of the KMS mode: `FLE_CONFIG`, else `fle.toml` in the task root,
    /// else in the working directory.
    pub fn config_path(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        self.task_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("fle.toml")
    }

    /// Builds the decryptor. With `FLE_PRIVATE_KEY`: a local provider holding that key for
    /// `FLE_KEY_ID`, over the keyring of `FLE_CONFIG` if given (which must hold that key with the
    /// same public key), else a keyring of that key alone. Without it: KMS over the
    /// configuration file's keyring, at least one of whose keys must have a `kms_key_id`.
    /// The `[decrypt]` table's fields and member-name setting apply in both modes, and its
    /// rate and concurrency make the function's KMS budget (else the process-wide default).
    pub async fn build(self) -> Result<Setup, SetupError> {
        let builder = match &self.private_key {
            Some(key_path) => {
                let id: KeyId = self
                    .key_id
                    .as_deref()
                    .unwrap_or("01")
                    .parse()
                    .map_err(|e| refuse(format!("FLE_KEY_ID: {e}")))?;
                let builder = DecryptorBuilder::from_private_key_file(key_path, id);
                match &self.config {
                    Some(path) => builder.keyring_file(path),
                    None => builder,
                }
            }
            None => {
                if self.key_id.is_some() {
                    return Err(refuse(
                        "FLE_KEY_ID names the key of FLE_PRIVATE_KEY, which is not set",
                    ));
                }
                DecryptorBuilder::from_config_file(self.config_path())
            }
        };
        let parts = builder.build().await.map_err(explain)?;
        let (mode, on_error) = (parts.config.mode, parts.config.on_error);
        Ok(Setup {
            decryptor: parts.decryptor().map_err(explain)?,
            mode,
            on_error,
        })
    }
}

/// A builder's refusal in the function's terms: the environment variable at fault first.
fn explain(error: BuildError) -> SetupError {
    match error {
        BuildError::ReadPrivateKey { .. }
        | BuildError::PrivateKey { .. }
        | BuildError::KeyMismatch { .. } => refuse(format!("FLE_PRIVATE_KEY: {error}")),
        BuildError::NoSuchKey { .. } => refuse(format!("{error} (FLE_PRIVATE_KEY, FLE_KEY_ID)")),
        other => refuse(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("fle.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn demo_key() -> Option<PathBuf> {
        Some(root().join("keys/demo-01.key.pem"))
    }

    #[test]
    fn config_path_prefers_fle_config_then_the_task_root() {
        let mut s = Sources {
            task_root: Some("/var/task".into()),
            ..Sources::default()
        };
        assert_eq!(s.config_path(), Path::new("/var/task/fle.toml"));
        s.config = Some("/etc/fle.toml".into());
        assert_eq!(s.config_path(), Path::new("/etc/fle.toml"));
        assert_eq!(Sources::default().config_path(), Path::new("./fle.toml"));
    }

    #[test]
    fn a_private_key_alone_is_a_keyring_of_that_key() {
        let setup = block_on(
            Sources {
                private_key: demo_key(),
                key_id: Some("07".into()),
                ..Sources::default()
            }
            .build(),
        )
        .unwrap();
        let keys = setup.decryptor.keyring().keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].id().as_str(), "07");
        assert_eq!((setup.mode, setup.on_error), (Mode::Json, OnError::Fail));
    }

    #[test]
    fn a_private_key_with_a_config_takes_its_keyring_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[[keys]]\nid = \"02\"\npublic_key = {:?}\n\
                 [decrypt]\nmode = \"text\"\non_error = \"redact\"\n",
                root().join("keys/demo-01.pub.pem"),
                root().join("tests/fixtures/keys/rsa-3072.pub.pem"),
            ),
        );
        let setup = block_on(
            Sources {
                config: Some(config.clone()),
                private_key: demo_key(),
                ..Sources::default()
            }
            .build(),
        )
        .unwrap();
        assert_eq!(setup.decryptor.keyring().keys().len(), 2);
        assert_eq!((setup.mode, setup.on_error), (Mode::Text, OnError::Redact));

        // The private key must be the config's key of that id.
        let err = block_on(
            Sources {
                config: Some(config.clone()),
                private_key: demo_key(),
                key_id: Some("02".into()),
                ..Sources::default()
            }
            .build(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not the private key of key 02"), "{err}");
        let err = block_on(
            Sources {
                config: Some(config),
                private_key: demo_key(),
                key_id: Some("03".into()),
                ..Sources::default()
            }
            .build(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no key 03"), "{err}");
    }

    #[test]
    fn the_encapsulation_limit_comes_from_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n",
            root().join("keys/demo-01.pub.pem")
        );
        let limit = |table: &str| {
            let config = write_config(dir.path(), &format!("{keyring}{table}"));
            block_on(
                Sources {
                    config: Some(config),
                    private_key: demo_key(),
                    ..Sources::default()
                }
                .build(),
            )
            .map(|setup| {
                [Mode::Json, Mode::Form, Mode::Text]
                    .map(|m| setup.decryptor.max_encapsulations_per_document(m))
            })
            .map_err(|e| e.to_string())
        };
        // Unset: 256 for JSON and form bodies, no limit for text (a log of many requests).
        let default = Some(fle_decryptor::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT);
        assert_eq!(limit(""), Ok([default, default, None]));
        // Set: every mode, text included.
        assert_eq!(
            limit("[decrypt]\nmax_encapsulations_per_document = 3\n"),
            Ok([Some(3); 3])
        );
        let err = limit("[decrypt]\nmax_encapsulations_per_document = 0\n").unwrap_err();
        assert!(
            err.contains("max_encapsulations_per_document must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn refusals_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let build = |sources: Sources| block_on(sources.build()).unwrap_err().to_string();
        let keyring = format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n",
            root().join("keys/demo-01.pub.pem")
        );

        let config = write_config(dir.path(), &keyring);
        let err = build(Sources {
            config: Some(config),
            ..Sources::default()
        });
        assert!(err.contains("no key has a kms_key_id"), "{err}");

        let config = write_config(dir.path(), &format!("{keyring}[decrypt]\nmode = ["));
        let err = build(Sources {
            config: Some(config),
            private_key: demo_key(),
            ..Sources::default()
        });
        assert!(err.contains("fle.toml") && !err.contains('\n'), "{err}");

        let err = build(Sources {
            task_root: Some(dir.path().join("missing")),
            ..Sources::default()
        });
        assert!(
            err.contains("reading config") && err.contains("missing/fle.toml"),
            "{err}"
        );

        let err = build(Sources {
            private_key: Some(root().join("keys/demo-01.pub.pem")),
            ..Sources::default()
        });
        assert!(err.starts_with("FLE_PRIVATE_KEY"), "{err}");

        let err = build(Sources {
            private_key: demo_key(),
            key_id: Some("not a key id".into()),
            ..Sources::default()
        });
        assert!(err.starts_with("FLE_KEY_ID"), "{err}");

        let err = build(Sources {
            key_id: Some("01".into()),
            ..Sources::default()
        });
        assert!(err.contains("FLE_PRIVATE_KEY, which is not set"), "{err}");
    }
}
