//! A Google service-account key (the JSON file Google issues) and the OAuth 2.0 JWT-bearer grant
//! that trades it for an access token: an RS256-signed assertion naming the account, the
//! `cloud-platform` scope and the key's `token_uri`, POSTed there as a form.
//!
//! The private key never leaves this module: [`ServiceAccount`]'s `Debug` shows the account and
//! key id only, and a key that does not parse is refused with the field's name, never its value
//! (serde's messages quote the values they reject).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The scope Vertex AI calls need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The grant type of the JWT-bearer flow (RFC 7523), form-encoded.
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// How long an assertion is good for: Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A service-account key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not JSON, or a field missing or of the wrong type.
    #[error("the service-account key is not a key file as Google issues it: {0}")]
    Malformed(String),
    /// A key of another kind (an external-account configuration, a user's credentials).
    #[error("the credentials are of type {0:?}; the vertex provider takes service_account keys")]
    NotServiceAccount(String),
    /// `private_key` is not an RSA private key in PEM.
    #[error("the service-account key's private_key is not an RSA private key in PEM")]
    PrivateKey,
    /// The assertion could not be signed.
    #[error("the token request could not be signed with the service-account key")]
    Signing,
}

/// The fields of a key file the grant uses; the others (project, client id, …) are ignored.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key_id: String,
    private_key: String,
    token_uri: String,
}

/// A parsed service-account key, ready to sign assertions.
pub struct ServiceAccount {
    client_email: String,
    key_id: String,
    token_uri: String,
    signing_key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("key_id", &self.key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The claims of a JWT-bearer assertion, in the order Google documents them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The service account's email.
    pub iss: String,
    /// The scopes asked for, space-separated.
    pub scope: String,
    /// The token endpoint.
    pub aud: String,
    /// When the assertion stops being good, Unix seconds.
    pub exp: u64,
    /// When it was made, Unix seconds.
    pub iat: u64,
}

impl ServiceAccount {
    /// Parses a key file's text.
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let file: KeyFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            KeyError::Malformed(if path == "." {
                "not a JSON object with client_email, private_key_id, private_key and token_uri".to_owned()
            } else {
                format!("field {path} is missing or not a string")
            })
        })?;
        if file.kind != "service_account" {
            return Err(KeyError::NotServiceAccount(file.kind));
        }
        let signing_key = EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|_| KeyError::PrivateKey)?;
        Ok(Self {
            client_email: file.client_email,
            key_id: file.private_key_id,
            token_uri: file.token_uri,
            signing_key,
        })
    }

    /// Where the assertion is traded for a token.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The assertion's claims for one made at `now` (Unix seconds).
    pub fn claims(&self, now: u64) -> Claims {
        Claims {
            iss: self.client_email.clone(),
            scope: SCOPE.to_owned(),
            aud: self.token_uri.clone(),
            exp: now + ASSERTION_LIFETIME_SECS,
            iat: now,
        }
    }

    /// The signed assertion (RS256, `kid` the key's id) for one made at `now`.
    pub fn assertion(&self, now: u64) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &self.claims(now), &self.signing_key).map_err(|_| KeyError::Signing)
    }

    /// The form body of the token request carrying `assertion`: a JWT is base64url and dots,
    /// which a form carries as they are.
    pub fn token_request_body(assertion: &str) -> String {
        format!("grant_type={GRANT_TYPE}&assertion={assertion}")
    }
}
