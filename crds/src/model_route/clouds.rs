//! Settings of the backends reached through a cloud (Azure OpenAI, Bedrock, Vertex AI), and the
//! extra headers any backend may send.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// How to reach a model deployed in Azure OpenAI (provider `azure-openai`); `baseUrl` is the
/// resource's endpoint, such as `https://my-resource.openai.azure.com`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// The deployment: requests go to `/openai/deployments/{deployment}/…?api-version=…`.
    /// Omitted, they go to the v1 API (`/openai/v1/…`) with the backend's `model` in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub deployment: Option<String>,
    /// The `api-version` query parameter, such as `2024-10-21`; required with `deployment`,
    /// optional for the v1 API (`preview` selects its preview features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9.-]+$"))]
    pub api_version: Option<String>,
    /// How the sidecar authenticates.
    #[serde(default)]
    pub auth: AzureAuth,
}

/// How a sidecar proves itself to Azure OpenAI.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AzureAuth {
    /// The resource's key from `credentialsRef`, sent as `api-key`.
    #[default]
    ApiKey,
    /// A Microsoft Entra ID token for the pod's workload identity (`AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`), sent as a bearer token.
    EntraId,
}

/// How to reach Amazon Bedrock's Converse API (provider `bedrock`). Credentials: `credentialsRef`
/// names a Secret key holding an AWS shared-credentials file (`aws_access_key_id`,
/// `aws_secret_access_key`, optionally `aws_session_token`); omitted, the pod's web identity
/// (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, as IRSA sets them) or EKS Pod Identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BedrockSpec {
    /// The AWS region, such as `us-east-1`; the endpoint is `https://bedrock-runtime.{region}.amazonaws.com`
    /// unless `baseUrl` says otherwise.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: String,
    /// The profile to read from the credentials file; `default` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub profile: Option<String>,
}

/// How to reach a model on Google Vertex AI (provider `vertex`). Credentials: `credentialsRef`
/// names a Secret key holding a service-account key (JSON); omitted, the pod's workload identity
/// through the metadata server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VertexSpec {
    /// The Google Cloud project id.
    #[schemars(length(min = 6, max = 30), regex(pattern = r"^[a-z][a-z0-9-]+[a-z0-9]$"))]
    pub project: String,
    /// The region, such as `us-central1`, or `global`; the endpoint is
    /// `https://{region}-aiplatform.googleapis.com` unless `baseUrl` says otherwise.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: String,
    /// Whose model the backend's `model` names: `google` (Gemini, `generateContent`) or
    /// `anthropic` (Claude, `rawPredict`).
    #[serde(default)]
    pub publisher: VertexPublisher,
}

/// The publisher of a Vertex AI model, which decides its wire format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VertexPublisher {
    /// Gemini models, spoken to in Gemini's format.
    #[default]
    Google,
    /// Claude models, spoken to in Anthropic's Messages format.
    Anthropic,
}

/// A header sent with every request to a backend, for a gateway or proxy in front of it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("set exactly one of value and valueFrom"))]
pub struct ExtraHeader {
    /// The header's name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// The value, written here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// The value, read from a Secret of the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// Headers a backend's `headers` may not set: the transport's own, which a proxy cannot mean to
/// replace.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];
