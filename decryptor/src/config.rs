//! The `[decrypt]` table of the configuration file: how the CLI and the decrypt Lambda decrypt,
//! and how they reach KMS for each key.
//!
//! Every setting is optional; the keys and their `kms_key_id`s come from the `[[keys]]` of the
//! same file:
//!
//! ```toml
//! [decrypt]
//! mode = "json"                      # json | form | text (default json)
//! on_error = "fail"                  # fail | leave | redact (default fail)
//! fields = ["ssn", "$.card.number"]  # decrypt only whole values here; envelopes elsewhere are reported
//! decrypt_member_names = false       # envelopes in JSON member names (default false: reported)
//! region = "eu-west-1"               # default: from each key's ARN, else the environment's
//! endpoint = "https://vpce-...kms.eu-west-1.vpce.amazonaws.com"   # LocalStack, VPC endpoints
//! concurrency = 16                   # KMS calls in flight at once, across every document
//! rate_per_second = 400              # KMS calls a second, across every document
//! # max_encapsulations_per_document = 1024   # version-2 KMS calls one document may cost (else
//! #   refused); unset: 256 for json and form, no limit for text; set: every mode, text included
//!
//! [decrypt.keys."02"]                # per key: a key in another account, through a role
//! role_arn = "arn:aws:iam::444455556666:role/fle-decrypt"
//! external_id_env = "FLE_EXTERNAL_ID"   # or external_id_file = "/run/secrets/external-id"
//! session_name = "orders-api"
//! ```
//!
//! `role_arn`, `external_id_env`/`external_id_file`, `session_name`, `region` and `endpoint`
//! may also stand in `[decrypt]` itself, for every key. The external ID is a secret: it is never
//! read from the file itself (`external_id = "..."` is refused), only from the environment
//! variable or file named, and never logged.
//!
//! `max_encapsulations_per_document` (at least 1) bounds what one hostile document can cost:
//! each distinct (key, encapsulation) of its version-2 envelopes is one KMS call, counted before
//! any call (those already in the decryptor's secret cache count too); version-1 envelopes are
//! not counted. A document over the limit is refused whole, whatever `on_error`, with no KMS
//! call ([`DocumentError::TooManyEncapsulations`](crate::DocumentError::TooManyEncapsulations)).
//! Unset, JSON and form documents (one record, one request) get the default,
//! [`DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT`](crate::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT)
//! (256), and text documents get no limit: a text
//! document (a log, a region of about 1 MiB of a text stream) holds the lines of many
//! requests, one encapsulation each, so what it costs is bounded only by the process's KMS
//! budget (`concurrency`, `rate_per_second`). Set, the value applies to every mode, text
//! included ([`Decryptor::max_encapsulations_per_document`](crate::Decryptor::max_encapsulations_per_document)).

use std::collections::HashMap;
use std::path::Path;

use fle_shared::body::{FieldSelector, SelectorError};
use fle_shared::KeyId;
use serde::Deserialize;

use crate::document::{Mode, OnError, UnknownName};
use crate::kms::{AssumeRole, KmsConfig, KmsSettings, SecretSource};

/// The `[decrypt]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DecryptConfig {
    /// Default mode of the front ends.
    pub mode: Mode,
    /// Default error policy of the front ends.
    pub on_error: OnError,
    /// Fields decryption is restricted to (`None`: schema-blind).
    pub fields: Option<Vec<FieldSelector>>,
    /// Whether envelopes in JSON member names are decrypted (`decrypt_member_names`, default
    /// false); see [`Decryptor::decrypt_member_names`](crate::Decryptor::decrypt_member_names).
    pub decrypt_member_names: bool,
    /// KMS settings per key.
    pub kms: KmsConfig,
    /// Most KMS calls in flight at once, across every document decrypted with the budget this
    /// table makes ([`KmsBudget::from_config`](crate::KmsBudget::from_config)), if set.
    pub concurrency: Option<usize>,
    /// KMS calls a second, across every document decrypted with the budget this table makes,
    /// if set.
    pub rate_per_second: Option<f64>,
    /// Most distinct version-2 encapsulations (one KMS call each) one document may hold, in
    /// every mode (`max_encapsulations_per_document`, at least 1), if set. Unset (`None`), the
    /// decryptor's own policy stands:
    /// [`DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT`](crate::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT)
    /// for JSON and form documents, no limit for text; see
    /// [`Decryptor::max_encapsulations_per_document`](crate::Decryptor::max_encapsulations_per_document).
    pub max_encapsulations_per_document: Option<usize>,
}

impl Default for DecryptConfig {
    fn default() -> Self {
        DecryptConfig {
            mode: Mode::Json,
            on_error: OnError::Fail,
            fields: None,
            decrypt_member_names: false,
            kms: KmsConfig::default(),
            concurrency: None,
            rate_per_second: None,
            max_encapsulations_per_document: None,
        }
    }
}

/// Why a `[decrypt]` table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptConfigError {
    /// The TOML does not parse or has the wrong shape.
    #[error("invalid [decrypt] configuration: {0}")]
    Toml(String),
    /// An external ID written in the file.
    #[error("{0}: the external ID is a secret; use external_id_env = \"VAR\" or external_id_file = \"PATH\" instead of external_id")]
    InlineSecret(String),
    /// Both or neither of two exclusive settings, or a setting without the one it needs.
    #[error("{0}")]
    Conflict(String),
    /// A bad mode or error policy.
    #[error(transparent)]
    Name(#[from] UnknownName),
    /// A bad field selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// A bad key id under `[decrypt.keys]`.
    #[error(transparent)]
    KeyId(#[from] fle_shared::KeyIdError),
    /// A setting out of range.
    #[error("{0} must be at least 1")]
    Range(&'static str),
}

#[derive(Deserialize)]
struct File {
    decrypt: Option<Spec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    mode: Option<String>,
    on_error: Option<String>,
    fields: Option<Vec<String>>,
    decrypt_member_names: Option<bool>,
    concurrency: Option<usize>,
    rate_per_second: Option<f64>,
    max_encapsulations_per_document: Option<usize>,
    #[serde(flatten)]
    kms: KmsSpec,
    #[serde(default)]
    keys: HashMap<String, KmsSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KmsSpec {
    region: Option<String>,
    endpoint: Option<String>,
    role_arn: Option<String>,
    external_id_env: Option<String>,
    external_id_file: Option<String>,
    session_name: Option<String>,
    /// Refused with a helpful message.
    external_id: Option<toml::Value>,
}

impl DecryptConfig {
    /// Reads the `[decrypt]` table of a configuration file's text (absent: the defaults).
    /// Relative `external_id_file` paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, DecryptConfigError> {
        // The parser's message and line only: its snippet of the file could quote a secret
        // someone wrote where it does not belong.
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| {
                text.as_bytes()
                    .iter()
                    .take(span.start)
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            DecryptConfigError::Toml(match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            })
        })?;
        let Some(spec) = file.decrypt else {
            return Ok(DecryptConfig::default());
        };
        let mut keys = HashMap::new();
        for (id, key) in spec.keys {
            let id: KeyId = id.parse()?;
            let settings = key.validate(&format!("[decrypt.keys.\"{id}\"]"), base_dir)?;
            keys.insert(id, settings);
        }
        if spec.concurrency == Some(0) {
            return Err(DecryptConfigError::Range("concurrency"));
        }
        if spec.max_encapsulations_per_document == Some(0) {
            return Err(DecryptConfigError::Range("max_encapsulations_per_document"));
        }
        if spec
            .rate_per_second
            .is_some_and(|r| !(r >= 1.0 && r.is_finite()))
        {
            return Err(DecryptConfigError::Range("rate_per_second"));
        }
        Ok(DecryptConfig {
            mode: spec.mode.as_deref().unwrap_or("json").parse()?,
            on_error: spec.on_error.as_deref().unwrap_or("fail").parse()?,
            fields: spec
                .fields
                .map(|f| f.iter().map(|s| FieldSelector::parse(s)).collect())
                .transpose()?,
            decrypt_member_names: spec.decrypt_member_names.unwrap_or(false),
            kms: KmsConfig {
                default: spec.kms.validate("[decrypt]", base_dir)?,
                keys,
            },
            concurrency: spec.concurrency,
            rate_per_second: spec.rate_per_second,
            max_encapsulations_per_document: spec.max_encapsulations_per_document,
        })
    }
}

impl KmsSpec {
    fn validate(self, table: &str, base_dir: &Path) -> Result<KmsSettings, DecryptConfigError> {
        if self.external_id.is_some() {
            return Err(DecryptConfigError::InlineSecret(table.to_owned()));
        }
        let external_id = match (self.external_id_env, self.external_id_file) {
            (Some(_), Some(_)) => {
                return Err(DecryptConfigError::Conflict(format!(
                    "{table}: set external_id_env or external_id_file, not both"
                )))
            }
            (Some(var), None) => Some(SecretSource::Env(var)),
            (None, Some(path)) => Some(SecretSource::File(base_dir.join(path))),
            (None, None) => None,
        };
        let assume_role = match self.role_arn {
            Some(role_arn) => Some(AssumeRole {
                role_arn,
                external_id,
                session_name: self.session_name,
            }),
            None if external_id.is_some() || self.session_name.is_some() => {
                return Err(DecryptConfigError::Conflict(format!(
                    "{table}: external_id_env, external_id_file and session_name need role_arn"
                )))
            }
            None => None,
        };
        Ok(KmsSettings {
            region: self.region,
            endpoint_url: self.endpoint,
            assume_role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DecryptConfig, DecryptConfigError> {
        DecryptConfig::from_toml_str(text, Path::new("/etc/fle"))
    }

    #[test]
    fn absent_table_means_defaults() {
        assert_eq!(
            parse("[edge]\nkey = \"01\"\n").unwrap(),
            DecryptConfig::default()
        );
    }

    #[test]
    fn full_table() {
        let c = parse(
            "[decrypt]\nmode = \"form\"\non_error = \"redact\"\nfields = [\"ssn\", \"$.a[*]\"]\n\
             decrypt_member_names = true\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:4566\"\nconcurrency = 4\n\
             max_encapsulations_per_document = 1\n\
             [decrypt.keys.\"02\"]\nrole_arn = \"arn:aws:iam::444455556666:role/r\"\n\
             external_id_file = \"secrets/xid\"\n",
        )
        .unwrap();
        assert_eq!((c.mode, c.on_error), (Mode::Form, OnError::Redact));
        assert_eq!(c.fields.unwrap().len(), 2);
        assert!(c.decrypt_member_names);
        assert_eq!(c.concurrency, Some(4));
        assert_eq!(c.max_encapsulations_per_document, Some(1));
        let k02 = c.kms.key(&"02".parse().unwrap());
        assert_eq!(k02.region.as_deref(), Some("eu-west-1"), "inherited");
        assert_eq!(k02.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        let role = k02.assume_role.unwrap();
        assert_eq!(
            role.external_id,
            Some(SecretSource::File("/etc/fle/secrets/xid".into()))
        );
        assert!(c.kms.key(&"01".parse().unwrap()).assume_role.is_none());
    }

    #[test]
    fn max_encapsulations_per_document_is_unset_by_default_and_refuses_0() {
        // Unset: the decryptor's per-mode default stands (256 for JSON and form, none for text).
        let absent = parse("[decrypt]\nconcurrency = 2\n").unwrap();
        assert_eq!(absent.max_encapsulations_per_document, None);
        assert_eq!(
            DecryptConfig::default().max_encapsulations_per_document,
            None
        );
        let set = parse("[decrypt]\nmax_encapsulations_per_document = 4096\n").unwrap();
        assert_eq!(set.max_encapsulations_per_document, Some(4096));
        let zero = parse("[decrypt]\nmax_encapsulations_per_document = 0\n").unwrap_err();
        assert_eq!(
            zero,
            DecryptConfigError::Range("max_encapsulations_per_document")
        );
        assert_eq!(
            zero.to_string(),
            "max_encapsulations_per_document must be at least 1"
        );
        for bad in ["-1", "\"many\"", "1.5"] {
            let e = parse(&format!(
                "[decrypt]\nmax_encapsulations_per_document = {bad}\n"
            ))
            .unwrap_err();
            assert!(matches!(e, DecryptConfigError::Toml(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn refusals() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        let inline = err("[decrypt]\nrole_arn = \"r\"\nexternal_id = \"s3cr3t\"\n");
        assert!(
            inline.contains("external_id_env") && !inline.contains("s3cr3t"),
            "{inline}"
        );
        assert!(err("[decrypt]\nexternal_id_env = \"X\"\n").contains("need role_arn"));
        assert!(err(
            "[decrypt]\nrole_arn = \"r\"\nexternal_id_env = \"X\"\nexternal_id_file = \"f\"\n"
        )
        .contains("not both"));
        assert!(err("[decrypt]\nmode = \"xml\"\n").contains("json, form or text"));
        assert!(err("[decrypt]\non_error = \"ignore\"\n").contains("fail, leave or redact"));
        assert!(err("[decrypt]\nfields = [\"$\"]\n").contains("selector"));
        assert!(err("[decrypt]\nconcurrency = 0\n").contains("at least 1"));
        assert!(err("[decrypt]\nregoin = \"x\"\n").contains("unknown field"));
        assert!(err("[decrypt.keys.\"bad id!\"]\n").contains("key"));
        // A parse error never quotes the file.
        let quoted = err("[decrypt]\nrole_arn = \"r\"\nexternal_id = s3cr3t\n");
        assert!(
            quoted.contains("line 3") && !quoted.contains("s3cr3t"),
            "{quoted}"
        );
    }
}
