//! Temporary AWS credentials for the pod's identity: STS `AssumeRoleWithWebIdentity` with the
//! token file IRSA mounts (an unsigned form POST answered in XML), and the container credentials
//! endpoint EKS Pod Identity serves (a GET answered in JSON). Errors name what failed and the
//! upstream's own code and message, never a token or key.

use std::{path::PathBuf, time::Duration};

use aws_credential_types::Credentials;
use quick_xml::events::Event;
use serde::Deserialize;
use sluice_crds::ApiKey;

use super::CredentialsError;

/// How long one fetch of credentials may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from STS or the credentials endpoint.
const MAX_ANSWER: usize = 64 << 10;

/// What `AssumeRoleWithWebIdentity` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentity {
    /// The STS endpoint, `https://sts.{region}.amazonaws.com` unless the environment names another.
    pub endpoint: String,
    /// The role to assume (`AWS_ROLE_ARN`).
    pub role_arn: String,
    /// The file holding the token (`AWS_WEB_IDENTITY_TOKEN_FILE`), read at every exchange since
    /// the kubelet rotates it.
    pub token_file: PathBuf,
    /// The session's name (`AWS_ROLE_SESSION_NAME`).
    pub session_name: String,
}

/// EKS Pod Identity's (or ECS's) credentials endpoint.
#[derive(Debug, Clone)]
pub struct ContainerEndpoint {
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub url: String,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at every fetch.
    pub token_file: Option<PathBuf>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, when no file is named.
    pub token: Option<ApiKey>,
}

/// The form body of an `AssumeRoleWithWebIdentity` request.
pub fn assume_role_form(identity: &WebIdentity, token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", &identity.role_arn)
        .append_pair("RoleSessionName", &identity.session_name)
        .append_pair("WebIdentityToken", token)
        .finish()
}

/// Exchanges the pod's web identity token for temporary credentials.
pub async fn assume_role_with_web_identity(
    client: &reqwest::Client,
    identity: &WebIdentity,
) -> Result<Credentials, CredentialsError> {
    let token = read_token(&identity.token_file).await?;
    let request = client
        .post(&identity.endpoint)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(assume_role_form(identity, &token));
    let (status, body) = fetch(request, "STS").await?;
    let body = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let code = element(&body, "Code").unwrap_or_default();
        let message = element(&body, "Message").unwrap_or_default();
        return Err(CredentialsError(format!(
            "STS AssumeRoleWithWebIdentity for {} answered {status}: {code} {message}",
            identity.role_arn
        )));
    }
    parse_assume_role_answer(&body)
}

/// The credentials in an `AssumeRoleWithWebIdentityResponse`.
pub fn parse_assume_role_answer(xml: &str) -> Result<Credentials, CredentialsError> {
    let field =
        |name: &str| element(xml, name).ok_or_else(|| CredentialsError(format!("the STS answer has no {name}")));
    let expiry = parse_expiration(&field("Expiration")?)?;
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("SessionToken")?),
        Some(expiry),
        "sluice-web-identity",
    ))
}

/// The answer of a container credentials endpoint.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerAnswer {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Fetches credentials from the container credentials endpoint.
pub async fn container_credentials(
    client: &reqwest::Client,
    endpoint: &ContainerEndpoint,
) -> Result<Credentials, CredentialsError> {
    let mut request = client.get(&endpoint.url);
    let token = match (&endpoint.token_file, &endpoint.token) {
        (Some(file), _) => Some(read_token(file).await?),
        (None, Some(token)) => Some(token.expose().to_owned()),
        (None, None) => None,
    };
    if let Some(token) = token {
        let mut value = http::HeaderValue::from_str(&token)
            .map_err(|_| CredentialsError("the container authorization token is not a header value".into()))?;
        value.set_sensitive(true);
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let (status, body) = fetch(request, "the container credentials endpoint").await?;
    if !status.is_success() {
        return Err(CredentialsError(format!(
            "the container credentials endpoint answered {status}"
        )));
    }
    let answer: ContainerAnswer = serde_json::from_slice(&body)
        // serde's message may quote a value, which may be a key: only where it broke is told.
        .map_err(|e| {
            CredentialsError(format!(
                "the container credentials answer is malformed ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
    let expiry = answer.expiration.as_deref().map(parse_expiration).transpose()?;
    Ok(Credentials::new(
        answer.access_key_id,
        answer.secret_access_key,
        answer.token.filter(|t| !t.is_empty()),
        expiry,
        "sluice-container",
    ))
}

/// A token file's content, trimmed.
async fn read_token(path: &PathBuf) -> Result<String, CredentialsError> {
    let token = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| CredentialsError(format!("cannot read the token file {}: {e}", path.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(CredentialsError(format!("the token file {} is empty", path.display())));
    }
    Ok(token.to_owned())
}

/// Sends a request and reads its bounded answer within [`FETCH_TIMEOUT`].
async fn fetch(request: reqwest::RequestBuilder, what: &str) -> Result<(http::StatusCode, Vec<u8>), CredentialsError> {
    let work = async {
        let mut resp = request
            .send()
            .await
            .map_err(|e| CredentialsError(format!("cannot reach {what}: {}", crate::wire::with_causes(&e))))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CredentialsError(format!("{what} broke off: {e}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(CredentialsError(format!(
                    "{what} answered more than {MAX_ANSWER} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| CredentialsError(format!("{what} did not answer within {FETCH_TIMEOUT:?}")))?
}

/// An ISO 8601 instant (`2026-12-06T13:00:00Z`) as a time.
fn parse_expiration(text: &str) -> Result<std::time::SystemTime, CredentialsError> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(std::time::SystemTime::from)
        .map_err(|_| CredentialsError(format!("the credentials' expiration {text:?} is not a time")))
}

/// The text of the first element named `name` in `xml`, entities resolved.
fn element(xml: &str, name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == name.as_bytes() => inside = true,
            Event::End(e) if inside && e.local_name().as_ref() == name.as_bytes() => {
                return Some(text.trim().to_owned());
            }
            Event::Text(t) if inside => text.push_str(&t.decode().ok()?),
            Event::CData(t) if inside => text.push_str(&t.decode().ok()?),
            Event::GeneralRef(r) if inside => {
                let reference = format!("&{};", r.decode().ok()?);
                text.push_str(&quick_xml::escape::unescape(&reference).ok()?);
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
