//! AWS KMS `Decrypt` with `RSAES_OAEP_SHA_256` (version-1 envelopes and version-2 data keys) and
//! `DeriveSharedSecret` with `ECDH` (version-2 `hpke-p256` encapsulations), always with the
//! explicit KMS key id the keyring configures for the envelope's key.

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_kms::types::{
    EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType,
};
use fle_shared::{
    p256_spki_der, Envelope, EnvelopeV2, KeyEntry, KeyId, KeyKind, Keyring, Plaintext, PublicKey,
    RsaPublicKey, V2Secret,
};
use zeroize::Zeroizing;

use crate::provider::{DecapsulateFuture, DecryptFuture, ErrorClass, KeyProvider, ProviderError};

/// Decrypts through AWS KMS. The `KeyId` sent is always the `kms_key_id` the keyring configures
/// for the envelope's key (never derived from the ciphertext), and the algorithm always
/// `RSAES_OAEP_SHA_256`.
///
/// Each key can have its own client ([`KmsKeyProvider::for_keyring`]): its region (taken from
/// the key ARN unless set), endpoint, and credentials (optionally an assumed role).
#[derive(Clone)]
pub struct KmsKeyProvider {
    default: aws_sdk_kms::Client,
    per_key: HashMap<KeyId, aws_sdk_kms::Client>,
}

/// Key ids and regions only: the clients' own `Debug` would show credentials providers, and with
/// them an assumed role's external ID.
impl std::fmt::Debug for KmsKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let region = |c: &aws_sdk_kms::Client| c.config().region().map(|r| r.to_string());
        f.debug_struct("KmsKeyProvider")
            .field("default_region", &region(&self.default))
            .field(
                "keys",
                &self
                    .per_key
                    .iter()
                    .map(|(id, c)| (id.as_str(), region(c)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KmsKeyProvider {
    /// A provider over an existing KMS client for every key (endpoint, region, credentials and
    /// retry policy are the client's; turn the SDK's retries off, the engine retries).
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KmsKeyProvider {
            default: client,
            per_key: HashMap::new(),
        }
    }

    /// A provider over the default AWS configuration chain (environment, profile, IMDS, ...),
    /// with an optional region and endpoint override (LocalStack, VPC endpoints). One client for
    /// every key; the SDK's own retries are off.
    pub async fn from_env(region: Option<String>, endpoint_url: Option<String>) -> Self {
        let settings = KmsSettings {
            region,
            endpoint_url,
            assume_role: None,
        };
        let shared = settings.sdk_config(None).await;
        Self::new(aws_sdk_kms::Client::from_conf(kms_builder(&shared).build()))
    }

    /// A provider with one client per key of `keyring` that has a `kms_key_id`: settings from
    /// `settings.key(id)`, the region from the key's ARN (whatever the settings say: an ARN is
    /// only valid in its region) or else the settings', and the
    /// role assumed first when configured (credentials refreshed automatically before they
    /// expire). Keys that share settings and region share a client. Refused when no key has a
    /// `kms_key_id` (nothing could be decrypted).
    pub async fn for_keyring(
        keyring: &Keyring,
        settings: &KmsConfig,
    ) -> Result<Self, KmsSettingsError> {
        if !keyring.keys().iter().any(|k| k.kms_key_id().is_some()) {
            return Err(KmsSettingsError::NoKmsKeys);
        }
        let mut base = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.default.region {
            base = base.region(aws_config::Region::new(region.clone()));
        }
        let base = base.load().await;
        let mut default = None;
        let mut per_key = HashMap::new();
        let mut shared: Vec<(KmsSettings, Option<String>, aws_sdk_kms::Client)> = Vec::new();
        for entry in keyring.keys() {
            let Some(kms_key_id) = entry.kms_key_id() else {
                continue;
            };
            let key_settings = settings.key(entry.id());
            // A full ARN can only be used in its own region.
            let region = region_from_arn(kms_key_id)
                .map(str::to_owned)
                .or_else(|| key_settings.region.clone());
            if let Some((_, _, client)) = shared
                .iter()
                .find(|(s, r, _)| s == &key_settings && r == &region)
            {
                per_key.insert(entry.id().clone(), client.clone());
                continue;
            }
            let resolved = KmsSettings {
                region: region.clone(),
                ..key_settings.clone()
            };
            let sdk = resolved.sdk_config(Some(&base)).await;
            let client = client_for(&sdk, &resolved).await?;
            default.get_or_insert_with(|| client.clone());
            per_key.insert(entry.id().clone(), client.clone());
            shared.push((key_settings, region, client));
        }
        let default = match default {
            Some(client) => client,
            None => aws_sdk_kms::Client::new(&base),
        };
        Ok(KmsKeyProvider { default, per_key })
    }

    /// The client used for `key`.
    pub fn client(&self, key: &KeyId) -> &aws_sdk_kms::Client {
        self.per_key.get(key).unwrap_or(&self.default)
    }

    /// Fetches the public key of a KMS key (`GetPublicKey`) and checks that it can be used for
    /// fle: key usage `ENCRYPT_DECRYPT` with `RSAES_OAEP_SHA_256` among its algorithms (RSA of
    /// 2048 bits or more: envelope versions 1 and 2), or `KEY_AGREEMENT` with `ECDH` on
    /// `ECC_NIST_P256` (envelope version 2).
    pub async fn public_key(
        client: &aws_sdk_kms::Client,
        kms_key_id: &str,
    ) -> Result<PublicKey, KmsSettingsError> {
        let out = client
            .get_public_key()
            .key_id(kms_key_id)
            .send()
            .await
            .map_err(|e| KmsSettingsError::GetPublicKey {
                key_id: kms_key_id.to_owned(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        let refuse = |why: String| KmsSettingsError::Unusable {
            key_id: kms_key_id.to_owned(),
            why,
        };
        let der = out
            .public_key()
            .ok_or_else(|| refuse("KMS returned no public key".into()))?;
        match out.key_usage() {
            Some(KeyUsageType::EncryptDecrypt) => {
                if !out
                    .encryption_algorithms()
                    .contains(&EncryptionAlgorithmSpec::RsaesOaepSha256)
                {
                    return Err(refuse(
                        "RSAES_OAEP_SHA_256 is not among its algorithms".into(),
                    ));
                }
                RsaPublicKey::from_spki_der(der.as_ref())
                    .map(PublicKey::Rsa)
                    .map_err(|e| refuse(e.to_string()))
            }
            Some(KeyUsageType::KeyAgreement) => {
                if out.key_spec() != Some(&KeySpec::EccNistP256) {
                    return Err(refuse(format!(
                        "a KEY_AGREEMENT key of spec {}: only ECC_NIST_P256 is supported",
                        out.key_spec().map_or("unknown", |k| k.as_str())
                    )));
                }
                if !out
                    .key_agreement_algorithms()
                    .contains(&KeyAgreementAlgorithmSpec::Ecdh)
                {
                    return Err(refuse(
                        "ECDH is not among its key agreement algorithms".into(),
                    ));
                }
                fle_shared::P256PublicKey::from_spki_der(der.as_ref())
                    .map(PublicKey::P256)
                    .map_err(|e| refuse(e.to_string()))
            }
            other => Err(refuse(format!(
                "key usage is {}, not ENCRYPT_DECRYPT (RSA) or KEY_AGREEMENT (P-256)",
                other.map_or("unknown", |u| u.as_str())
            ))),
        }
    }
}

/// The region of a KMS key or alias ARN (`arn:aws:kms:REGION:ACCOUNT:key/...`).
///
/// ```
/// use fle_decryptor::kms::region_from_arn;
/// assert_eq!(region_from_arn("arn:aws:kms:eu-west-1:111122223333:key/1234"), Some("eu-west-1"));
/// assert_eq!(region_from_arn("alias/fle"), None);
/// ```
pub fn region_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_partition), Some("kms"), Some(region)) if !region.is_empty() => {
            Some(region)
        }
        _ => None,
    }
}

/// How to reach KMS for a key: region, endpoint, and a role to assume first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsSettings {
    /// Region for keys given by key id or alias; a key ARN's own region always wins. Default:
    /// the environment's.
    pub region: Option<String>,
    /// Endpoint override (LocalStack, VPC endpoints); also used for STS when a role is assumed.
    pub endpoint_url: Option<String>,
    /// A role to assume before calling KMS (cross-account keys).
    pub assume_role: Option<AssumeRole>,
}

/// An IAM role to assume (STS `AssumeRole`) for a key in another account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    /// The role's ARN.
    pub role_arn: String,
    /// Where the external ID comes from, if the role's trust policy requires one.
    pub external_id: Option<SecretSource>,
    /// The role session name (default `fle-decryptor`).
    pub session_name: Option<String>,
}

/// Where a secret is read from. Never the secret itself: configuration files stay free of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's value.
    Env(String),
    /// A file's content (surrounding whitespace trimmed).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret.
    pub fn read(&self) -> Result<Zeroizing<String>, KmsSettingsError> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
                KmsSettingsError::Secret(format!("environment variable {var} is not set"))
            })?,
            SecretSource::File(path) => {
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    KmsSettingsError::Secret(format!("cannot read {}: {e}", path.display()))
                })?)
            }
        };
        let trimmed = Zeroizing::new(value.trim().to_owned());
        if trimmed.is_empty() {
            return Err(KmsSettingsError::Secret(format!("{self} is empty")));
        }
        Ok(trimmed)
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Settings for every key: defaults, and overrides per key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsConfig {
    /// For keys without their own entry.
    pub default: KmsSettings,
    /// Per key: replaces the default's fields it sets.
    pub keys: HashMap<KeyId, KmsSettings>,
}

impl KmsConfig {
    /// The settings of `key`: its own fields over the defaults.
    pub fn key(&self, key: &KeyId) -> KmsSettings {
        let Some(own) = self.keys.get(key) else {
            return self.default.clone();
        };
        KmsSettings {
            region: own.region.clone().or_else(|| self.default.region.clone()),
            endpoint_url: own
                .endpoint_url
                .clone()
                .or_else(|| self.default.endpoint_url.clone()),
            assume_role: own
                .assume_role
                .clone()
                .or_else(|| self.default.assume_role.clone()),
        }
    }
}

/// Why KMS clients could not be set up, or a KMS key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsSettingsError {
    /// No key of the keyring has a `kms_key_id`.
    #[error("no key has a kms_key_id, so nothing could be decrypted through KMS")]
    NoKmsKeys,
    /// A secret (the external ID) could not be read. Names where it was looked for, never it.
    #[error("external ID: {0}")]
    Secret(String),
    /// `GetPublicKey` failed.
    #[error("KMS GetPublicKey for {key_id} failed: {message}")]
    GetPublicKey {
        /// The KMS key id asked for.
        key_id: String,
        /// KMS's answer.
        message: String,
    },
    /// The KMS key cannot be used by fle.
    #[error("KMS key {key_id} cannot be used: {why}")]
    Unusable {
        /// The KMS key id.
        key_id: String,
        /// Why.
        why: String,
    },
}

impl KmsSettings {
    /// The SDK configuration: `base` (or the default chain) with this region and endpoint.
    async fn sdk_config(&self, base: Option<&SdkConfig>) -> SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        } else if let Some(region) = base.and_then(SdkConfig::region) {
            loader = loader.region(region.clone());
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(credentials) = base.and_then(SdkConfig::credentials_provider) {
            loader = loader.credentials_provider(credentials);
        }
        loader.load().await
    }
}

/// KMS client settings over `sdk`: retries off (the engine retries), bounded timeouts.
fn kms_builder(sdk: &SdkConfig) -> aws_sdk_kms::config::Builder {
    aws_sdk_kms::config::Builder::from(sdk)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
}

/// A KMS client for `sdk`: retries off (the engine retries, under its rate limit), bounded
/// timeouts, and the role assumed first if `settings` says so.
async fn client_for(
    sdk: &SdkConfig,
    settings: &KmsSettings,
) -> Result<aws_sdk_kms::Client, KmsSettingsError> {
    let mut config = kms_builder(sdk);
    if let Some(role) = &settings.assume_role {
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.role_arn.clone())
            .session_name(
                role.session_name
                    .clone()
                    .unwrap_or_else(|| "fle-decryptor".into()),
            )
            .configure(sdk);
        if let Some(source) = &role.external_id {
            // The SDK keeps its own copy for refreshes; ours is zeroized here.
            let external_id = source.read()?;
            builder = builder.external_id(external_id.as_str());
        }
        config = config.credentials_provider(builder.build().await);
    }
    Ok(aws_sdk_kms::Client::from_conf(config.build()))
}

/// The configured KMS key of `key`: the only `KeyId` ever sent.
fn kms_key_id(key: &KeyEntry) -> Result<&str, ProviderError> {
    key.kms_key_id()
        .ok_or_else(|| ProviderError::NotConfigured {
            key: key.id().clone(),
            what: "no kms_key_id",
        })
}

impl KmsKeyProvider {
    /// KMS `Decrypt` (`RSAES_OAEP_SHA_256`) of `ciphertext` with `key`'s configured KMS key:
    /// a version-1 envelope's value, or a version-2 encapsulation's wrapped data key.
    async fn rsa_decrypt(
        &self,
        key: &KeyEntry,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let id = key.id();
        let output = self
            .client(id)
            .decrypt()
            .key_id(kms_key_id(key)?)
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
            .ciphertext_blob(Blob::new(ciphertext))
            .send()
            .await
            .map_err(|e| classify(id, &e))?;
        let plaintext = output.plaintext.ok_or_else(|| ProviderError::Failed {
            key: id.clone(),
            class: ErrorClass::Transient,
            code: "EmptyResponse".into(),
            message: "KMS returned no plaintext".into(),
        })?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }
}

impl KeyProvider for KmsKeyProvider {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        Box::pin(async move {
            let id = key.id();
            kms_key_id(key)?;
            let rsa_ciphertext = match envelope {
                Envelope::V1 { rsa_ciphertext } => rsa_ciphertext,
                _ => {
                    return Err(ProviderError::Failed {
                        key: id.clone(),
                        class: ErrorClass::Permanent,
                        code: "UnsupportedEnvelope".into(),
                        message: format!(
                            "envelope version {} is not supported",
                            envelope.version()
                        ),
                    })
                }
            };
            let mut plaintext = self.rsa_decrypt(key, rsa_ciphertext).await?;
            let plaintext = Plaintext::from(std::mem::take(&mut *plaintext));
            if fle_shared::is_v2_data_key(plaintext.as_bytes()) {
                return Err(data_key_as_value(id));
            }
            Ok(plaintext)
        })
    }

    fn decapsulate<'a>(
        &'a self,
        key: &'a KeyEntry,
        token: &'a EnvelopeV2,
    ) -> DecapsulateFuture<'a> {
        Box::pin(async move {
            let id = key.id();
            let kms_key_id = kms_key_id(key)?;
            let permanent = |code: &str, message: String| ProviderError::Failed {
                key: id.clone(),
                class: ErrorClass::Permanent,
                code: code.into(),
                message,
            };
            let empty = || ProviderError::Failed {
                key: id.clone(),
                class: ErrorClass::Transient,
                code: "EmptyResponse".into(),
                message: "KMS returned no secret".into(),
            };
            match (token.kind(), key.public_key()) {
                (KeyKind::Rsa { .. }, PublicKey::Rsa(_)) => {
                    let data_key = self.rsa_decrypt(key, token.encapsulation()).await?;
                    V2Secret::from_unwrapped(&data_key)
                        .map_err(|e| permanent("DecryptionFailed", e.to_string()))
                }
                (KeyKind::P256, PublicKey::P256(recipient)) => {
                    let enc = token.p256_enc().ok_or_else(|| {
                        permanent(
                            "DecryptionFailed",
                            fle_shared::OpenError::InvalidPoint.to_string(),
                        )
                    })?;
                    let output = self
                        .client(id)
                        .derive_shared_secret()
                        .key_id(kms_key_id)
                        .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
                        .public_key(Blob::new(p256_spki_der(&enc)))
                        .send()
                        .await
                        .map_err(|e| classify(id, &e))?;
                    let dh = Zeroizing::new(output.shared_secret.ok_or_else(empty)?.into_inner());
                    V2Secret::from_p256_dh(&dh, &enc, recipient)
                        .map_err(|e| permanent("DecryptionFailed", e.to_string()))
                }
                _ => Err(permanent(
                    "UnsupportedEnvelope",
                    "the envelope's encapsulation does not match the key's type".into(),
                )),
            }
        })
    }
}

/// The error for a version-1 envelope that decrypts to a version-2 data key.
pub(crate) fn data_key_as_value(key: &KeyId) -> ProviderError {
    ProviderError::Failed {
        key: key.clone(),
        class: ErrorClass::Permanent,
        code: "DataKeyAsValue".into(),
        message: fle_shared::DecryptError::DataKeyAsValue.to_string(),
    }
}

/// Service error codes worth retrying; every other code is permanent unless its HTTP status is
/// 5xx or 429.
const TRANSIENT_CODES: [&str; 7] = [
    "ThrottlingException",
    "DependencyTimeoutException",
    "KMSInternalException",
    "KmsInternalException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailableException",
];

fn classify<E, R>(key: &KeyId, err: &SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let (class, code, message) = match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownServiceError").to_owned();
            let status = service.raw().status();
            let class =
                if TRANSIENT_CODES.contains(&code.as_str()) || status >= 500 || status == 429 {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                };
            (class, code, e.message().unwrap_or_default().to_owned())
        }
        other => {
            let (class, code) = match other {
                SdkError::TimeoutError(_) => (ErrorClass::Transient, "Timeout"),
                SdkError::DispatchFailure(_) => (ErrorClass::Transient, "DispatchFailure"),
                SdkError::ResponseError(_) => (ErrorClass::Transient, "ResponseError"),
                SdkError::ConstructionFailure(_) => (ErrorClass::Permanent, "ConstructionFailure"),
                _ => (ErrorClass::Transient, "Unknown"),
            };
            (class, code.to_owned(), DisplayErrorContext(err).to_string())
        }
    };
    ProviderError::Failed {
        key: key.clone(),
        class,
        code,
        message,
    }
}

/// The HTTP status of a raw response.
trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_kms::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::decrypt::DecryptError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(code: &str, status: u16) -> SdkError<DecryptError, HttpResponse> {
        let err = DecryptError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("from KMS")
                .build(),
        );
        SdkError::service_error(
            err,
            HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    fn class_of(err: SdkError<DecryptError, HttpResponse>) -> (ErrorClass, String) {
        match classify(&"01".parse().unwrap(), &err) {
            ProviderError::Failed { class, code, .. } => (class, code),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kms_errors_by_documented_class() {
        for code in [
            "InvalidCiphertextException",
            "IncorrectKeyException",
            "AccessDeniedException",
            "DisabledException",
            "NotFoundException",
            "KeyUnavailableException",
            "KMSInvalidStateException",
            "InvalidKeyUsageException",
        ] {
            assert_eq!(
                class_of(service_error(code, 400)),
                (ErrorClass::Permanent, code.to_owned()),
                "{code}"
            );
        }
        for code in [
            "ThrottlingException",
            "DependencyTimeoutException",
            "KMSInternalException",
        ] {
            assert_eq!(
                class_of(service_error(code, 400)).0,
                ErrorClass::Transient,
                "{code}"
            );
        }
        // Unknown codes follow the HTTP status.
        assert_eq!(
            class_of(service_error("SomethingNew", 503)).0,
            ErrorClass::Transient
        );
        assert_eq!(
            class_of(service_error("SomethingNew", 429)).0,
            ErrorClass::Transient
        );
        assert_eq!(
            class_of(service_error("SomethingNew", 400)).0,
            ErrorClass::Permanent
        );
    }

    #[test]
    fn errors_name_the_key_and_code_only() {
        let err = classify(
            &"k1".parse().unwrap(),
            &service_error("IncorrectKeyException", 400),
        );
        assert_eq!(err.to_string(), "key k1: IncorrectKeyException: from KMS");
    }
}
