//! `fle keys`: generate local key pairs, fetch KMS public keys, list a keyring.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fle_decryptor::KmsKeyProvider;
use fle_shared::{KeyEntry, KeyId, Keyring, OaepPrivateKey, P256PrivateKey, PublicKey};

/// `fle keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a local key pair (demos, the external-key-pair mode): ID.key.pem (mode 0600)
    /// and ID.pub.pem in --dir, and print its `[[keys]]` entry. RSA keys write envelope
    /// version 1 unless the entry says `envelope = "v2"`; P-256 keys always write version 2.
    ///
    /// Example: fle keys generate --id 02 --bits 3072 --dir keys
    ///          fle keys generate --id 03 --type p256
    #[command(verbatim_doc_comment)]
    Generate {
        /// Key id (also names the files and the markers #ID# ... #DI#).
        #[arg(long)]
        id: String,
        /// Key type.
        #[arg(long = "type", value_enum, default_value_t = KeyType::Rsa)]
        key_type: KeyType,
        /// RSA modulus size: 2048, 3072 or 4096 [default: 2048].
        #[arg(long)]
        bits: Option<usize>,
        /// Directory for the PEM files.
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
    /// Fetch a KMS key's public key (GetPublicKey) into ID.pub.pem in --dir and print its
    /// `[[keys]]` entry. Takes ENCRYPT_DECRYPT RSA keys with RSAES_OAEP_SHA_256 (envelope
    /// version 1, or 2 with `envelope = "v2"`) and KEY_AGREEMENT ECC_NIST_P256 keys with ECDH
    /// (envelope version 2); refuses others.
    ///
    /// Example: fle keys fetch --key-id arn:aws:kms:eu-west-1:111122223333:key/1234abcd-... --id 03
    #[command(verbatim_doc_comment)]
    Fetch {
        /// The KMS key (ARN, key id or alias).
        #[arg(long, value_name = "ARN")]
        key_id: String,
        /// The keyring id to give it.
        #[arg(long, default_value = "01")]
        id: String,
        /// Directory for the PEM file.
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
        /// KMS endpoint (LocalStack, VPC endpoints).
        #[arg(long, value_name = "URL")]
        kms_endpoint: Option<String>,
        /// AWS region for a key id or alias (a key ARN's own region always wins).
        #[arg(long, value_name = "R")]
        region: Option<String>,
    },
    /// List the keys of a configuration file: id, markers, size, KMS key id.
    ///
    /// Example: fle keys list --config fle.toml
    #[command(verbatim_doc_comment)]
    List {
        /// Configuration file with `[[keys]]`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `fle keys generate --type`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA (envelope versions 1 and 2).
    Rsa,
    /// EC P-256 (envelope version 2, `hpke-p256`).
    P256,
}

/// Runs a `fle keys` subcommand, writing results to `out`.
pub fn run(command: &KeysCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate {
            id,
            key_type,
            bits,
            dir,
        } => {
            let id: KeyId = id.parse()?;
            let (public, pem): (PublicKey, _) = match key_type {
                KeyType::Rsa => {
                    let (private, pem) = OaepPrivateKey::generate(bits.unwrap_or(2048))?;
                    (private.public_key().clone().into(), pem)
                }
                KeyType::P256 => {
                    if bits.is_some() {
                        bail!("--bits is for RSA keys; a P-256 key has no size to choose");
                    }
                    let (private, pem) = P256PrivateKey::generate()?;
                    (private.public_key().clone().into(), pem)
                }
            };
            let key_path = dir.join(format!("{id}.key.pem"));
            let pub_path = dir.join(format!("{id}.pub.pem"));
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_new(&key_path, pem.as_bytes(), true)?;
            write_new(&pub_path, public.to_pem().as_bytes(), false)?;
            entry(out, &KeyEntry::new(id, public), &pub_path)
        }
        KeysCommand::Fetch {
            key_id,
            id,
            dir,
            kms_endpoint,
            region,
        } => {
            let id: KeyId = id.parse()?;
            let region = fle_decryptor::kms::region_from_arn(key_id)
                .map(str::to_owned)
                .or_else(|| region.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let public: PublicKey = runtime.block_on(async {
                let provider = KmsKeyProvider::from_env(region, kms_endpoint.clone()).await;
                KmsKeyProvider::public_key(provider.client(&id), key_id).await
            })?;
            let pub_path = dir.join(format!("{id}.pub.pem"));
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_new(&pub_path, public.to_pem().as_bytes(), false)?;
            entry(
                out,
                &KeyEntry::new(id, public).with_kms_key_id(key_id.clone()),
                &pub_path,
            )
        }
        KeysCommand::List { config } => {
            let keyring = Keyring::from_toml_file(config)
                .with_context(|| format!("config {}", config.display()))?;
            writeln!(out, "id\tprefix\tsuffix\tkey\tenvelope\tkms_key_id")?;
            for key in keyring.keys() {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.id(),
                    key.markers().prefix.as_str(),
                    key.markers().suffix.as_str(),
                    key.public_key().describe(),
                    key.envelope(),
                    key.kms_key_id().unwrap_or("-")
                )?;
            }
            Ok(())
        }
    }
}

/// Prints the `[[keys]]` entry of a key whose public key is at `path`.
fn entry(out: &mut dyn Write, key: &KeyEntry, path: &Path) -> anyhow::Result<()> {
    writeln!(out, "[[keys]]")?;
    writeln!(out, "id = {:?}", key.id().as_str())?;
    writeln!(out, "public_key = {:?}", path.display().to_string())?;
    if let Some(kms) = key.kms_key_id() {
        writeln!(out, "kms_key_id = {kms:?}")?;
    }
    Ok(())
}

/// Writes a new file (never overwrites), readable by the owner only when `private`.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let _ = private;
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists; not overwriting it", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
