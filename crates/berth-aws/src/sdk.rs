//! Small translations shared by the adapters: SDK errors into core's
//! `PortError` (retryable or not), and SDK times into chrono's.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use berth_core::PortError;
use chrono::{DateTime, Utc};

/// Error codes that mean "try again later".
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "ServerException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "VolumeInUse",
    "IncorrectState",
    "SnapshotCreationPerVolumeRateExceeded",
];

/// An SDK error as a port error: service errors by their code, transport
/// errors (timeouts, refused connections) as retryable.
pub fn port_error<E, R>(what: &str, err: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("unknown");
            let message = format!("{what}: {code}: {}", e.message().unwrap_or("no message"));
            if RETRYABLE.contains(&code) {
                PortError::retryable(message)
            } else {
                PortError::permanent(message)
            }
        }
        _ => {
            let detail = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
            if detail.contains("loading credentials") || detail.contains("CredentialsNotLoaded") {
                // The SDK's own text is a page of nested errors; the cause is one line.
                return PortError::permanent(format!(
                    "{what}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                     or AWS_PROFILE, and AWS_REGION"
                ));
            }
            PortError::retryable(format!("{what}: {detail}"))
        }
    }
}

/// The error code of a service error, if it is one.
pub fn code<E, R>(err: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

pub fn time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
