//! AWS KMS `Decrypt` with `RSAES_OAEP_SHA_256` and the explicit KMS key id of the envelope's key.

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::EncryptionAlgorithmSpec;
use fle_shared::{Envelope, KeyEntry, KeyId, Plaintext};

use crate::provider::{DecryptFuture, ErrorClass, KeyProvider, ProviderError};

/// Decrypts through AWS KMS. The `KeyId` sent is always the `kms_key_id` the keyring configures
/// for the envelope's key (never derived from the ciphertext), and the algorithm always
/// `RSAES_OAEP_SHA_256`.
#[derive(Debug, Clone)]
pub struct KmsKeyProvider {
    client: aws_sdk_kms::Client,
}

impl KmsKeyProvider {
    /// A provider over an existing KMS client (endpoint, region, credentials and retry policy are
    /// the client's).
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KmsKeyProvider { client }
    }

    /// A provider over the default AWS configuration chain (environment, profile, IMDS, ...),
    /// with an optional region and endpoint override (LocalStack, VPC endpoints).
    pub async fn from_env(region: Option<String>, endpoint_url: Option<String>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_kms::config::Builder::from(&shared);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        Self::new(aws_sdk_kms::Client::from_conf(config.build()))
    }
}

impl KeyProvider for KmsKeyProvider {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        Box::pin(async move {
            let id = key.id();
            let kms_key_id = key
                .kms_key_id()
                .ok_or_else(|| ProviderError::NotConfigured {
                    key: id.clone(),
                    what: "no kms_key_id",
                })?;
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
            let output = self
                .client
                .decrypt()
                .key_id(kms_key_id)
                .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
                .ciphertext_blob(Blob::new(rsa_ciphertext.clone()))
                .send()
                .await
                .map_err(|e| classify(id, &e))?;
            let plaintext = output.plaintext.ok_or_else(|| ProviderError::Failed {
                key: id.clone(),
                class: ErrorClass::Transient,
                code: "EmptyResponse".into(),
                message: "KMS returned no plaintext".into(),
            })?;
            Ok(Plaintext::from(plaintext.into_inner()))
        })
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
