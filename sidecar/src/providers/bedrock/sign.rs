//! SigV4 signing of a request with the field's signer (`aws-sigv4`, as the AWS SDK uses it):
//! every header the request carries is signed, and `x-amz-date`, `authorization` and (with a
//! session token) `x-amz-security-token` are added, the secret ones marked sensitive so that no
//! debug output shows them.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign as sigv4_sign},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// A request that could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request could not be signed: {0}")]
pub struct SignError(String);

/// Signs `request` for `service` in `region` at `time` with `credentials`.
pub fn sign(
    request: &mut http::Request<Bytes>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), SignError> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            value
                .to_str()
                .map(|v| (name.as_str(), v))
                .map_err(|_| SignError(format!("header {name} is not text")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let (new_headers, _query) = instructions.into_parts();
    for header in new_headers {
        let name = HeaderName::from_static(header.name());
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| SignError(format!("the {name} the signer made is not a header value")))?;
        // The token and the signature are credentials; the date is not.
        value.set_sensitive(header.sensitive() || name == http::header::AUTHORIZATION);
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// AWS's documented example: `GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`
    /// at 2015-08-30T12:36:00Z with key `AKIDEXAMPLE` in us-east-1 (the IAM example of the
    /// Signature Version 4 reference).
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const CANONICAL_REQUEST: &str = "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
        content-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\n\
        x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const CANONICAL_REQUEST_HASH: &str = "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
    const SIGNATURE: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_time() -> SystemTime {
        let at: jiff::Timestamp = "2015-08-30T12:36:00Z".parse().unwrap();
        SystemTime::from(at)
    }

    #[test]
    fn the_documented_iam_example_gets_the_documented_canonical_request_and_signature() {
        let mut request = http::Request::get("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08")
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .body(Bytes::new())
            .unwrap();
        let credentials = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "test");
        sign(&mut request, &credentials, "us-east-1", "iam", example_time()).unwrap();

        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            request.headers()["authorization"],
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={SIGNATURE}"
            )
            .as_str()
        );
        assert!(request.headers()["authorization"].is_sensitive());
        // The documented canonical request hashes to the documented value, and its string to sign
        // signed with the documented key is the signature the signer put on the request.
        let hash = format!("{:x}", Sha256::digest(CANONICAL_REQUEST.as_bytes()));
        assert_eq!(hash, CANONICAL_REQUEST_HASH);
        let string_to_sign = format!("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n{hash}");
        let key = v4::generate_signing_key(SECRET, example_time(), "us-east-1", "iam");
        assert_eq!(v4::calculate_signature(key, string_to_sign.as_bytes()), SIGNATURE);
    }

    #[test]
    fn a_session_token_is_sent_as_a_sensitive_signed_header() {
        let mut request = http::Request::post("https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let credentials = Credentials::new("ASIAEXAMPLE", SECRET, Some("the-token".into()), None, "test");
        sign(&mut request, &credentials, "us-east-1", "bedrock", example_time()).unwrap();

        let token = &request.headers()["x-amz-security-token"];
        assert_eq!(token, "the-token");
        assert!(token.is_sensitive());
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
    }
}
