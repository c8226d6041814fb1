//! The Bedrock upstream's side of AWS authentication: it knows one long-term test key
//! ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]) and the temporary keys it issued, checks each
//! Converse request's SigV4 signature by signing the request again (with the field's signer)
//! and comparing, and issues temporary keys at its STS (`AssumeRoleWithWebIdentity`, checking
//! the web identity token) and container credentials endpoints, as AWS answers them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::json;

use crate::http::{Body, json_response, raw_response};

/// The long-term key id a test's credentials file holds.
pub const ACCESS_KEY_ID: &str = "AKIASLUICETEST000001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "sluice/Test+Secret/Key/0000000000000000001";
/// The web identity token the STS endpoint accepts (the content of the pod's token file).
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.sluice-test-service-account.signature";
/// The authorization token the container credentials endpoint accepts.
pub const CONTAINER_TOKEN: &str = "sluice-test-pod-identity-token";
/// The path of the STS endpoint (`AWS_ENDPOINT_URL_STS=http://ADDR/sts`).
pub const STS_PATH: &str = "/sts";
/// The path of the container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub const CONTAINER_PATH: &str = "/container-credentials";

/// A temporary key the upstream issued.
#[derive(Debug, Clone)]
struct Issued {
    secret: String,
    token: String,
    expired: bool,
}

/// The keys the upstream accepts, and what it issued.
#[derive(Debug, Default)]
pub struct Keys(Mutex<KeyState>);

#[derive(Debug, Default)]
struct KeyState {
    issued: HashMap<String, Issued>,
    exchanges: usize,
}

impl Keys {
    /// How many temporary keys STS or the container endpoint issued.
    pub fn exchanges(&self) -> usize {
        self.0.lock().map(|s| s.exchanges).unwrap_or_default()
    }

    /// Every issued key is expired from now on: requests signed with one get 403
    /// `ExpiredTokenException`.
    pub fn expire_issued(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.issued.values_mut().for_each(|k| k.expired = true);
        }
    }

    /// The secrets and session tokens issued, for tests that look for leaks.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|s| {
                s.issued
                    .values()
                    .flat_map(|k| [k.secret.clone(), k.token.clone()])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn issue(&self) -> Credentials {
        let Ok(mut s) = self.0.lock() else {
            return Credentials::new("poisoned", "poisoned", None, None, "upstream");
        };
        s.exchanges += 1;
        let n = s.exchanges;
        let key_id = format!("ASIASLUICETEST{n:06}");
        let issued = Issued {
            secret: format!("sts/Temporary+Secret/{n:06}/0000000000000000"),
            token: format!("IQoJb3JpZ2luX2VjEsluiceTestSessionToken{n:06}"),
            expired: false,
        };
        let credentials = Credentials::new(&key_id, &issued.secret, Some(issued.token.clone()), None, "upstream");
        s.issued.insert(key_id, issued);
        credentials
    }

    /// `None` when the request is signed with a known, current key; else the 403 AWS answers.
    pub fn check(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response<Body>> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(authorization) = header("authorization") else {
            return Some(denied(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let Some(parsed) = parse_authorization(authorization) else {
            return Some(denied(
                "IncompleteSignatureException",
                "The Authorization header is malformed",
            ));
        };
        let (secret, token) = if parsed.key_id == ACCESS_KEY_ID {
            (SECRET_ACCESS_KEY.to_owned(), None)
        } else {
            let issued = self.0.lock().ok().and_then(|s| s.issued.get(&parsed.key_id).cloned());
            let Some(issued) = issued else {
                return Some(denied(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ));
            };
            if issued.expired {
                return Some(denied(
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ));
            }
            (issued.secret, Some(issued.token))
        };
        if token.is_some() && header("x-amz-security-token") != token.as_deref() {
            return Some(denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
        let Some(time) = header("x-amz-date").and_then(parse_amz_date) else {
            return Some(denied(
                "IncompleteSignatureException",
                "x-amz-date is missing or malformed",
            ));
        };
        let host = header("host").unwrap_or_default();
        let signed: Vec<(&str, &str)> = parsed
            .signed_headers
            .iter()
            .filter_map(|name| Some((name.as_str(), header(name)?)))
            .collect();
        let credentials = Credentials::new(&parsed.key_id, &secret, token, None, "upstream");
        let expected = signature(
            method,
            &format!("http://{host}{path}"),
            &signed,
            body,
            &credentials,
            &parsed.region,
            &parsed.service,
            time,
        );
        if expected.as_deref() != Some(authorization) {
            return Some(denied(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS \
                 Secret Access Key and signing method.",
            ));
        }
        None
    }

    /// STS's `AssumeRoleWithWebIdentity`: the form must carry the expected token.
    pub fn assume_role(&self, form: &str) -> Response<Body> {
        let fields: HashMap<String, String> = form_urlencoded::parse(form.as_bytes()).into_owned().collect();
        let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
        if field("Action") != "AssumeRoleWithWebIdentity" || field("RoleArn").is_empty() {
            return sts_error("InvalidAction", "Could not find operation for this request");
        }
        if field("WebIdentityToken") != WEB_IDENTITY_TOKEN {
            return sts_error(
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider",
            );
        }
        let credentials = self.issue();
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials>\
             <SessionToken>{}</SessionToken><SecretAccessKey>{}</SecretAccessKey>\
             <Expiration>{}</Expiration><AccessKeyId>{}</AccessKeyId></Credentials>\
             <AssumedRoleUser><Arn>{}/{}</Arn></AssumedRoleUser></AssumeRoleWithWebIdentityResult>\
             <ResponseMetadata><RequestId>mock-sts</RequestId></ResponseMetadata>\
             </AssumeRoleWithWebIdentityResponse>",
            credentials.session_token().unwrap_or_default(),
            credentials.secret_access_key(),
            an_hour_from_now(),
            credentials.access_key_id(),
            field("RoleArn"),
            field("RoleSessionName"),
        );
        raw_response(StatusCode::OK, "text/xml", &xml)
    }

    /// EKS Pod Identity's credentials endpoint: the request must carry the expected token.
    pub fn container(&self, authorization: Option<&str>) -> Response<Body> {
        if authorization != Some(CONTAINER_TOKEN) {
            return json_response(
                StatusCode::FORBIDDEN,
                &json!({"message": "invalid authorization token"}),
            );
        }
        let credentials = self.issue();
        json_response(
            StatusCode::OK,
            &json!({
                "AccessKeyId": credentials.access_key_id(),
                "SecretAccessKey": credentials.secret_access_key(),
                "Token": credentials.session_token(),
                "AccountId": "123456789012",
                "Expiration": an_hour_from_now(),
            }),
        )
    }
}

/// What an `Authorization` header says.
struct Authorization {
    key_id: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
}

fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut fields = HashMap::new();
    for part in rest.split(", ") {
        let (name, value) = part.split_once('=')?;
        fields.insert(name, value);
    }
    let scope: Vec<&str> = fields.get("Credential")?.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some(Authorization {
        key_id: (*key_id).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers: fields.get("SignedHeaders")?.split(';').map(str::to_owned).collect(),
    })
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", text).ok()?;
    Some(SystemTime::from(
        civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp(),
    ))
}

/// The `Authorization` header the field's signer puts on this request.
#[allow(clippy::too_many_arguments)]
fn signature(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Option<String> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let request = SignableRequest::new(method, uri, headers.iter().copied(), SignableBody::Bytes(body)).ok()?;
    let (instructions, _) = sign(request, &params).ok()?.into_parts();
    instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.to_owned())
}

fn an_hour_from_now() -> String {
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    later.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// AWS's JSON error with its type in `x-amzn-errortype`.
pub fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let mut response = json_response(status, &json!({"message": message}));
    if let Ok(value) = hyper::header::HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn denied(kind: &str, message: &str) -> Response<Body> {
    aws_error(StatusCode::FORBIDDEN, kind, message)
}

fn sts_error(code: &str, message: &str) -> Response<Body> {
    let xml = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error><RequestId>mock-sts</RequestId></ErrorResponse>"
    );
    raw_response(StatusCode::BAD_REQUEST, "text/xml", &xml)
}
