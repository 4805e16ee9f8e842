//! The configuration of the Lambda@Edge package: validated and self-contained.
//!
//! Lambda@Edge has no environment variables and the package holds no key files, so the
//! configuration shipped next to the wasm core carries every public key inline
//! (`public_key_pem`) and nothing the edge does not use (`kms_key_id`, other tables). Used by
//! `fle bundle-config` and by the `fle-bundle-config` binary that
//! `edge-encryptor/build-lambda-edge.sh` runs (it needs neither the AWS SDK nor tokio).
//!
//! ```no_run
//! # fn main() -> Result<(), fle_edge_encryptor::bundle::BundleError> {
//! let text = fle_edge_encryptor::bundle::bundle_config_text("fle.toml".as_ref())?;
//! assert!(text.contains("public_key_pem"));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use fle_shared::backend::rustcrypto::RustCryptoBackend;

use crate::{ConfigError, EdgeEncryptor};

/// Why a configuration could not be bundled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The configuration file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not a valid edge configuration (keys, `[edge]` table).
    #[error("config {}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// The configuration is not a TOML table.
    #[error("config {}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// The configuration has no `[edge]` table.
    #[error("config {}: [edge] table", path.display())]
    MissingEdge {
        /// The file.
        path: PathBuf,
    },
    /// The bundled configuration could not be written as TOML.
    #[error("writing the bundled configuration as TOML")]
    Serialize(#[source] toml::ser::Error),
}

/// Reads the configuration file at `path` (`[[keys]]` and `[edge]`), validates it as the edge
/// does (relative key paths resolve against the file's directory) and returns it as TOML text:
/// a comment line naming `path`, then every key with its id, markers and public key inline
/// (`public_key_pem`), then the `[edge]` table as written. Everything else (`kms_key_id`, other
/// tables) is left out.
pub fn bundle_config_text(path: &Path) -> Result<String, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let edge = EdgeEncryptor::from_toml_str(&text, base, &RustCryptoBackend).map_err(|source| {
        BundleError::Config {
            path: path.to_owned(),
            source,
        }
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|source| BundleError::Toml {
        path: path.to_owned(),
        source,
    })?;
    let edge_table = table
        .remove("edge")
        .ok_or_else(|| BundleError::MissingEdge {
            path: path.to_owned(),
        })?;
    let keys: Vec<toml::Value> = edge
        .keyring()
        .keys()
        .iter()
        .map(|k| {
            let mut entry = toml::Table::new();
            entry.insert("id".into(), k.id().as_str().into());
            entry.insert("prefix".into(), k.markers().prefix.as_str().into());
            entry.insert("suffix".into(), k.markers().suffix.as_str().into());
            entry.insert("public_key_pem".into(), k.public_key().to_pem().into());
            entry.insert("envelope".into(), k.envelope().to_string().into());
            toml::Value::Table(entry)
        })
        .collect();
    let mut bundled = toml::Table::new();
    bundled.insert("keys".into(), toml::Value::Array(keys));
    bundled.insert("edge".into(), edge_table);
    let body = toml::to_string(&bundled).map_err(BundleError::Serialize)?;
    Ok(format!(
        "# Bundled by `fle bundle-config` from {}: keys inline, validated.\n{body}",
        path.display()
    ))
}
