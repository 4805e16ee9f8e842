//! Building a decryptor from what a front end is given: a configuration file, a local private
//! key, or a KMS key id. The CLI (`fle decrypt`, `reencrypt`, `verify`) and the decrypt Lambda
//! both start here, so the two set up keys, KMS clients and the `[decrypt]` table the same way.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fle_shared::{KeyEntry, KeyId, Keyring, KeyringError, PrivateKey, PrivateKeyError};
use zeroize::Zeroizing;

use crate::budget::{BudgetError, KmsBudget};
use crate::config::{DecryptConfig, DecryptConfigError};
use crate::document::Decryptor;
use crate::kms::{region_from_arn, KmsConfig, KmsKeyProvider, KmsSettingsError};
use crate::local::LocalKeyProvider;
use crate::provider::KeyProvider;

/// Where the keys that open envelopes come from: exactly one source, chosen by the
/// constructor, with optional KMS overrides and an extra public key.
///
/// | constructor | keyring | provider | `[decrypt]` table |
/// |---|---|---|---|
/// | [`from_config_file`](Self::from_config_file) | the file's `[[keys]]` | [`KmsKeyProvider::for_keyring`] | the file's |
/// | [`from_private_key_file`](Self::from_private_key_file), [`from_private_key`](Self::from_private_key) | that key alone, or the [`keyring_file`](Self::keyring_file)'s | [`LocalKeyProvider`] | defaults, or the keyring file's |
/// | [`from_kms_key`](Self::from_kms_key) | that key alone, its public key read with `GetPublicKey` | [`KmsKeyProvider::from_env`] | defaults |
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use fle_decryptor::DecryptorBuilder;
///
/// let parts = DecryptorBuilder::from_config_file("/etc/fle/fle.toml")
///     .region("eu-west-1")
///     .build()
///     .await?;
/// let (mode, on_error) = (parts.config.mode, parts.config.on_error);
/// let decryptor = parts.decryptor()?;
/// let out = decryptor.decrypt("{}", mode, on_error).await?;
/// # drop(out);
/// # Ok(()) }
/// ```
#[must_use]
pub struct DecryptorBuilder {
    source: Source,
    keyring_file: Option<PathBuf>,
    region: Option<String>,
    endpoint: Option<String>,
    extra: Option<KeyEntry>,
    max_encapsulations: Option<usize>,
}

enum Source {
    Config(PathBuf),
    PrivateKeyFile(PathBuf, KeyId),
    PrivateKey(PrivateKey, KeyId),
    Kms(String, KeyId),
}

/// Paths and ids only: never key material.
impl fmt::Debug for DecryptorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Config(path) => format!("config file {}", path.display()),
            Source::PrivateKeyFile(path, id) => {
                format!("private key file {} for key {id}", path.display())
            }
            Source::PrivateKey(key, id) => format!("{key:?} for key {id}"),
            Source::Kms(kms, id) => format!("KMS key {kms} for key {id}"),
        };
        f.debug_struct("DecryptorBuilder")
            .field("source", &source)
            .field("keyring_file", &self.keyring_file)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("extra", &self.extra.as_ref().map(|e| e.id().as_str()))
            .field("max_encapsulations", &self.max_encapsulations)
            .finish()
    }
}

impl DecryptorBuilder {
    fn with_source(source: Source) -> Self {
        DecryptorBuilder {
            source,
            keyring_file: None,
            region: None,
            endpoint: None,
            extra: None,
            max_encapsulations: None,
        }
    }

    /// A configuration file: its `[[keys]]` (each opened through KMS with its `kms_key_id`)
    /// and its optional `[decrypt]` table (KMS settings per key, fields, defaults, budget).
    pub fn from_config_file(path: impl Into<PathBuf>) -> Self {
        Self::with_source(Source::Config(path.into()))
    }

    /// A local private key (PEM, unencrypted: PKCS#8 RSA or P-256, or SEC 1 P-256) read from
    /// `path`, for the key `key_id`: the external-key-pair mode. No KMS.
    pub fn from_private_key_file(path: impl Into<PathBuf>, key_id: KeyId) -> Self {
        Self::with_source(Source::PrivateKeyFile(path.into(), key_id))
    }

    /// A local private key (RSA or P-256) already loaded, for the key `key_id`.
    pub fn from_private_key(key: impl Into<PrivateKey>, key_id: KeyId) -> Self {
        Self::with_source(Source::PrivateKey(key.into(), key_id))
    }

    /// One KMS key (key ARN, key id, alias or alias ARN), for the key `key_id`: its public key
    /// is read once with `GetPublicKey` and checked (`ENCRYPT_DECRYPT`, `RSAES_OAEP_SHA_256`).
    /// The client's region is the ARN's, else [`region`](Self::region), else the
    /// environment's.
    pub fn from_kms_key(kms_key_id: impl Into<String>, key_id: KeyId) -> Self {
        Self::with_source(Source::Kms(kms_key_id.into(), key_id))
    }

    /// With a private key: take the keyring and the `[decrypt]` table from this configuration
    /// file, which must hold the private key's id with its public key (the decrypt Lambda's
    /// `FLE_CONFIG` next to `FLE_PRIVATE_KEY`). Refused with the other sources.
    pub fn keyring_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyring_file = Some(path.into());
        self
    }

    /// The AWS region: for a KMS key id or alias (a key ARN's own region always wins), or, with
    /// a configuration file, for every key instead of the file's. Refused with a private key.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The KMS endpoint (LocalStack, VPC endpoints); with a configuration file, for every key
    /// instead of the file's. Refused with a private key.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// A key added to the keyring (a re-encryption target given by its public key); refused if
    /// its id is already there.
    pub fn extra_key(mut self, entry: KeyEntry) -> Self {
        self.extra = Some(entry);
        self
    }

    /// The most distinct version-2 encapsulations (KMS calls) one document may hold, in every
    /// mode (text included), instead of the `[decrypt]` table's
    /// `max_encapsulations_per_document`, whatever the source; 0 is refused when building.
    /// Set neither here nor in the table, JSON and form documents are limited to
    /// [`DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT`](crate::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT)
    /// and text documents are not limited. See
    /// [`Decryptor::max_encapsulations_per_document`].
    pub fn max_encapsulations_per_document(mut self, limit: usize) -> Self {
        self.max_encapsulations = Some(limit);
        self
    }

    /// Reads the files, checks the keys and builds the provider (KMS clients; for a KMS key,
    /// one `GetPublicKey` call).
    pub async fn build(self) -> Result<DecryptorParts, BuildError> {
        let max_encapsulations = self.max_encapsulations;
        if max_encapsulations == Some(0) {
            return Err(BuildError::Range("max_encapsulations_per_document"));
        }
        let mut parts = self.build_parts().await?;
        if let Some(limit) = max_encapsulations {
            parts.config.max_encapsulations_per_document = Some(limit);
        }
        Ok(parts)
    }

    /// [`build`](Self::build) but for the encapsulation limit.
    async fn build_parts(self) -> Result<DecryptorParts, BuildError> {
        let DecryptorBuilder {
            source,
            keyring_file,
            region,
            endpoint,
            extra,
            max_encapsulations: _,
        } = self;
        let (key, id, key_path) = match source {
            Source::Config(path) => {
                if keyring_file.is_some() {
                    return Err(BuildError::KeyringFileWithoutPrivateKey);
                }
                return from_config(path, region, endpoint, extra).await;
            }
            Source::Kms(kms_key_id, id) => {
                if keyring_file.is_some() {
                    return Err(BuildError::KeyringFileWithoutPrivateKey);
                }
                return from_kms(kms_key_id, id, region, endpoint, extra).await;
            }
            Source::PrivateKeyFile(path, id) => (read_private_key(&path)?, id, Some(path)),
            Source::PrivateKey(key, id) => (key, id, None),
        };
        if region.is_some() {
            return Err(BuildError::NotForPrivateKey { what: "a region" });
        }
        if endpoint.is_some() {
            return Err(BuildError::NotForPrivateKey {
                what: "a KMS endpoint",
            });
        }
        let (keyring, config) = match keyring_file {
            Some(path) => {
                let (keyring, config) = read_config(&path)?;
                match keyring.get(&id) {
                    None => {
                        return Err(BuildError::NoSuchKey {
                            config: path,
                            key: id,
                        })
                    }
                    Some(entry) if entry.public_key() != &key.public_key() => {
                        return Err(BuildError::KeyMismatch {
                            private_key: key_path,
                            key: id,
                            config: path,
                        })
                    }
                    Some(_) => {}
                }
                (with_extra(keyring.keys().to_vec(), extra)?, config)
            }
            None => (
                with_extra(vec![KeyEntry::new(id.clone(), key.public_key())], extra)?,
                DecryptConfig::default(),
            ),
        };
        Ok(DecryptorParts {
            keyring,
            provider: Arc::new(LocalKeyProvider::new(vec![(id, key)])),
            config,
        })
    }
}

/// A configuration file's keyring, KMS clients and table; `region` and `endpoint` override
/// the file's for every key.
async fn from_config(
    path: PathBuf,
    region: Option<String>,
    endpoint: Option<String>,
    extra: Option<KeyEntry>,
) -> Result<DecryptorParts, BuildError> {
    let (keyring, mut config) = read_config(&path)?;
    let keyring = with_extra(keyring.keys().to_vec(), extra)?;
    override_all(&mut config.kms, region.as_deref(), endpoint.as_deref());
    let provider = KmsKeyProvider::for_keyring(&keyring, &config.kms)
        .await
        .map_err(|source| BuildError::Kms {
            config: Some(path),
            source,
        })?;
    Ok(DecryptorParts {
        keyring,
        provider: Arc::new(provider),
        config,
    })
}

/// One KMS key, its public key fetched.
async fn from_kms(
    kms_key_id: String,
    id: KeyId,
    region: Option<String>,
    endpoint: Option<String>,
    extra: Option<KeyEntry>,
) -> Result<DecryptorParts, BuildError> {
    // A full ARN can only be used in its own region.
    let region = region_from_arn(&kms_key_id).map(str::to_owned).or(region);
    let provider = KmsKeyProvider::from_env(region, endpoint).await;
    let public = KmsKeyProvider::public_key(provider.client(&id), &kms_key_id)
        .await
        .map_err(|source| BuildError::Kms {
            config: None,
            source,
        })?;
    let keyring = with_extra(
        vec![KeyEntry::new(id, public).with_kms_key_id(kms_key_id)],
        extra,
    )?;
    Ok(DecryptorParts {
        keyring,
        provider: Arc::new(provider),
        config: DecryptConfig::default(),
    })
}

/// A private key PEM file, its text zeroized once parsed.
fn read_private_key(path: &Path) -> Result<PrivateKey, BuildError> {
    let pem = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| BuildError::ReadPrivateKey {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    PrivateKey::from_pem(&pem).map_err(|source| BuildError::PrivateKey {
        path: Some(path.to_owned()),
        source,
    })
}

/// `region` and `endpoint`, when given, for every key.
fn override_all(kms: &mut KmsConfig, region: Option<&str>, endpoint: Option<&str>) {
    for settings in std::iter::once(&mut kms.default).chain(kms.keys.values_mut()) {
        if let Some(region) = region {
            settings.region = Some(region.to_owned());
        }
        if let Some(url) = endpoint {
            settings.endpoint_url = Some(url.to_owned());
        }
    }
}

/// The keyring of `keys` and `extra`.
fn with_extra(mut keys: Vec<KeyEntry>, extra: Option<KeyEntry>) -> Result<Keyring, BuildError> {
    if let Some(extra) = extra {
        if keys.iter().any(|k| k.id() == extra.id()) {
            return Err(BuildError::DuplicateKey(extra.id().clone()));
        }
        keys.push(extra);
    }
    Keyring::new(keys).map_err(BuildError::Keyring)
}

/// The keyring and the `[decrypt]` table of one configuration file.
fn read_config(path: &Path) -> Result<(Keyring, DecryptConfig), BuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError::ReadConfig {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let keyring =
        Keyring::from_file_text(path, &text).map_err(|source| BuildError::ConfigKeyring {
            path: path.to_owned(),
            source,
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config =
        DecryptConfig::from_toml_str(&text, base).map_err(|source| BuildError::Config {
            path: path.to_owned(),
            source,
        })?;
    Ok((keyring, config))
}

/// What a [`DecryptorBuilder`] builds: the keyring, the provider and the `[decrypt]` table
/// (defaults when the source has none), for a front end to apply its own options to, or to
/// turn into a [`Decryptor`] at once.
#[non_exhaustive]
pub struct DecryptorParts {
    /// Which markers name which keys (the extra key included).
    pub keyring: Keyring,
    /// KMS or the local private key.
    pub provider: Arc<dyn KeyProvider>,
    /// The `[decrypt]` table: default mode and error policy, fields, member names, KMS
    /// settings, budget settings, the encapsulation limit (the builder's, if given one).
    pub config: DecryptConfig,
}

impl fmt::Debug for DecryptorParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptorParts")
            .field("keys", &self.keyring.keys().len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DecryptorParts {
    /// A decryptor with the table's field restriction, member-name setting and encapsulation
    /// limit, calling the provider through a budget of its own ([`KmsBudget::from_config`])
    /// when the table sets `concurrency` or `rate_per_second`, else through
    /// [`KmsBudget::global`].
    pub fn decryptor(self) -> Result<Decryptor, BuildError> {
        let budget = if self.config.concurrency.is_some() || self.config.rate_per_second.is_some() {
            Arc::new(KmsBudget::from_config(&self.config)?)
        } else {
            KmsBudget::global()
        };
        Ok(self.decryptor_with_budget(budget))
    }

    /// A decryptor with the table's field restriction, member-name setting and encapsulation
    /// limit, calling the provider through `budget` (the table's `concurrency` and
    /// `rate_per_second` are the caller's to apply: see [`KmsBudget::new`]).
    pub fn decryptor_with_budget(self, budget: Arc<KmsBudget>) -> Decryptor {
        Decryptor::new(self.keyring, self.provider)
            .with_table(&self.config)
            .with_budget(budget)
    }
}

/// Why a decryptor could not be built. Names files, key ids and KMS key ids; never key
/// material, secrets or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration file could not be read.
    #[error("reading config {}: {message}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The configuration file's keyring is refused.
    #[error("config {}: {source}", path.display())]
    ConfigKeyring {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyringError,
    },
    /// The configuration file's `[decrypt]` table is refused.
    #[error("config {}: {source}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DecryptConfigError,
    },
    /// The private key file could not be read.
    #[error("reading private key {}: {message}", path.display())]
    ReadPrivateKey {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The private key is refused.
    #[error("private key{}: {source}", shown(path))]
    PrivateKey {
        /// The file, if read from one.
        path: Option<PathBuf>,
        /// Why.
        source: PrivateKeyError,
    },
    /// The keyring file has no key of the private key's id.
    #[error("config {}: has no key {key}, the key of the private key", config.display())]
    NoSuchKey {
        /// The keyring file.
        config: PathBuf,
        /// The private key's id.
        key: KeyId,
    },
    /// The private key is not the private half of the keyring file's key of its id.
    #[error("private key{} is not the private key of key {key} in config {}", shown(private_key), config.display())]
    KeyMismatch {
        /// The private key file, if read from one.
        private_key: Option<PathBuf>,
        /// The key id.
        key: KeyId,
        /// The keyring file.
        config: PathBuf,
    },
    /// The extra key's id is already in the keyring.
    #[error("key {0} is already configured")]
    DuplicateKey(KeyId),
    /// The keyring (with the extra key) is refused, e.g. overlapping markers.
    #[error(transparent)]
    Keyring(KeyringError),
    /// KMS clients could not be set up, or the KMS key cannot be used.
    #[error("{}{source}", config.as_ref().map(|p| format!("config {}: ", p.display())).unwrap_or_default())]
    Kms {
        /// The configuration file, when the KMS settings came from one.
        config: Option<PathBuf>,
        /// Why.
        source: KmsSettingsError,
    },
    /// A KMS setting given with a private key.
    #[error("{what} is a KMS setting; a local private key does not use one")]
    NotForPrivateKey {
        /// Which setting.
        what: &'static str,
    },
    /// A keyring file given without a private key (a configuration file or KMS key brings its
    /// own keyring).
    #[error("a keyring file goes with a private key only")]
    KeyringFileWithoutPrivateKey,
    /// The `[decrypt]` table's concurrency or rate makes no budget.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// A setting given to the builder is out of range
    /// ([`DecryptorBuilder::max_encapsulations_per_document`] 0).
    #[error("{0} must be at least 1")]
    Range(&'static str),
}

/// `" PATH"`, or nothing.
fn shown(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn demo_key() -> PathBuf {
        root().join("keys/demo-01.key.pem")
    }

    fn other_public() -> KeyEntry {
        let pem =
            std::fs::read_to_string(root().join("tests/fixtures/keys/rsa-3072.pub.pem")).unwrap();
        KeyEntry::new(
            "02".parse().unwrap(),
            fle_shared::RsaPublicKey::from_pem(&pem).unwrap(),
        )
    }

    #[test]
    fn a_private_key_alone_with_an_extra_key() {
        let parts = block_on(
            DecryptorBuilder::from_private_key_file(demo_key(), "01".parse().unwrap())
                .extra_key(other_public())
                .build(),
        )
        .unwrap();
        let ids: Vec<&str> = parts
            .keyring
            .keys()
            .iter()
            .map(|k| k.id().as_str())
            .collect();
        assert_eq!(ids, ["01", "02"]);
        assert_eq!(parts.config, DecryptConfig::default());
        let d = parts.decryptor().unwrap();
        assert!(Arc::ptr_eq(d.budget(), &KmsBudget::global()));
    }

    #[test]
    fn a_config_table_makes_its_own_budget_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fle.toml");
        let keyring = format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n",
            root().join("keys/demo-01.pub.pem")
        );
        std::fs::write(
            &path,
            format!(
                "{keyring}[decrypt]\nconcurrency = 3\nrate_per_second = 7\nfields = [\"ssn\"]\n"
            ),
        )
        .unwrap();
        let build = || {
            block_on(
                DecryptorBuilder::from_private_key_file(demo_key(), "01".parse().unwrap())
                    .keyring_file(&path)
                    .build(),
            )
        };
        let d = build().unwrap().decryptor().unwrap();
        assert_eq!((d.budget().concurrency(), d.budget().burst()), (3, 7));
        assert_eq!(d.budget().rate_per_second(), 7.0);

        // A hand-made table the file parser would refuse.
        let mut parts = build().unwrap();
        parts.config.rate_per_second = Some(f64::NAN);
        let err = parts.decryptor().unwrap_err();
        assert!(
            matches!(err, BuildError::Budget(BudgetError::Rate(_))),
            "{err}"
        );
    }

    #[test]
    fn the_encapsulation_limit_flows_from_the_table_or_the_builder() {
        use crate::Mode;
        let id = || -> KeyId { "01".parse().unwrap() };
        // The limit in JSON, form and text mode.
        let limits = |d: &Decryptor| {
            [Mode::Json, Mode::Form, Mode::Text].map(|m| d.max_encapsulations_per_document(m))
        };
        // No table: the per-mode default (none for text).
        let parts =
            block_on(DecryptorBuilder::from_private_key_file(demo_key(), id()).build()).unwrap();
        assert_eq!(parts.config.max_encapsulations_per_document, None);
        let default = Some(crate::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT);
        assert_eq!(
            limits(&parts.decryptor().unwrap()),
            [default, default, None]
        );
        // The table's, through either way of making the decryptor.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fle.toml");
        std::fs::write(
            &path,
            format!(
                "[[keys]]\nid = \"01\"\npublic_key = {:?}\n\
                 [decrypt]\nmax_encapsulations_per_document = 5\n",
                root().join("keys/demo-01.pub.pem")
            ),
        )
        .unwrap();
        let from_file =
            || DecryptorBuilder::from_private_key_file(demo_key(), id()).keyring_file(&path);
        let parts = block_on(from_file().build()).unwrap();
        assert_eq!(parts.config.max_encapsulations_per_document, Some(5));
        let d = parts.decryptor_with_budget(KmsBudget::global());
        assert_eq!(limits(&d), [Some(5); 3], "set: every mode, text included");
        // The builder's wins over the table's, and applies without a table too.
        let parts = block_on(from_file().max_encapsulations_per_document(7).build()).unwrap();
        assert_eq!(parts.config.max_encapsulations_per_document, Some(7));
        assert_eq!(limits(&parts.decryptor().unwrap()), [Some(7); 3]);
        let parts = block_on(
            DecryptorBuilder::from_private_key_file(demo_key(), id())
                .max_encapsulations_per_document(9)
                .build(),
        )
        .unwrap();
        assert_eq!(limits(&parts.decryptor().unwrap()), [Some(9); 3]);
        // 0 is refused.
        let err = block_on(from_file().max_encapsulations_per_document(0).build()).unwrap_err();
        assert!(matches!(err, BuildError::Range(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "max_encapsulations_per_document must be at least 1"
        );
    }

    #[test]
    fn refusals_name_files_and_ids_only() {
        let err = |b: DecryptorBuilder| block_on(b.build()).unwrap_err().to_string();
        let id = || -> KeyId { "01".parse().unwrap() };
        let mut seen = Vec::new();
        let mut check = |e: String, ok: bool| {
            assert!(ok, "{e}");
            seen.push(e);
        };

        let e = err(DecryptorBuilder::from_private_key_file(demo_key(), id()).region("eu-west-1"));
        check(e.clone(), e.starts_with("a region is a KMS setting"));
        let e = err(DecryptorBuilder::from_private_key_file(demo_key(), id()).endpoint("http://x"));
        check(e.clone(), e.contains("KMS endpoint"));
        let e = err(DecryptorBuilder::from_config_file("/nonexistent/fle.toml").keyring_file("x"));
        check(e.clone(), e.contains("private key only"));
        let e = err(DecryptorBuilder::from_config_file("/nonexistent/fle.toml"));
        check(
            e.clone(),
            e.starts_with("reading config /nonexistent/fle.toml"),
        );
        let public = root().join("keys/demo-01.pub.pem");
        let e = err(DecryptorBuilder::from_private_key_file(&public, id()));
        check(
            e.clone(),
            e.starts_with(&format!("private key {}: ", public.display())),
        );
        let e = err(DecryptorBuilder::from_private_key_file(
            "/nonexistent/key.pem",
            id(),
        ));
        check(
            e.clone(),
            e.starts_with("reading private key /nonexistent/key.pem"),
        );
        let dup = KeyEntry::new(id(), other_public().public_key().clone());
        let e = err(DecryptorBuilder::from_private_key_file(demo_key(), id()).extra_key(dup));
        check(e.clone(), e == "key 01 is already configured");

        // A keyring file whose key 01 is another public key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fle.toml");
        std::fs::write(
            &path,
            format!(
                "[[keys]]\nid = \"01\"\npublic_key = {:?}\n",
                root().join("tests/fixtures/keys/rsa-3072.pub.pem")
            ),
        )
        .unwrap();
        let e = err(DecryptorBuilder::from_private_key_file(demo_key(), id()).keyring_file(&path));
        check(
            e.clone(),
            e.contains("is not the private key of key 01 in config"),
        );
        let e = err(
            DecryptorBuilder::from_private_key_file(demo_key(), "03".parse().unwrap())
                .keyring_file(&path),
        );
        check(e.clone(), e.contains("has no key 03"));
        let e = err(DecryptorBuilder::from_config_file(&path));
        check(e.clone(), e.contains("no key has a kms_key_id"));

        // Never key material.
        let private = std::fs::read_to_string(demo_key()).unwrap();
        let body: String = private
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for e in &seen {
            assert!(
                !e.contains(&body[..40]) && !e.contains("PRIVATE KEY-----"),
                "{e}"
            );
        }
    }
}
