//! Operator-managed certificates (DESIGN §7): a CA and a serving certificate kept in one Secret
//! shared by the replicas, the serving certificate re-issued (same CA) before it expires, and
//! the CA written into the webhook configuration's `caBundle` and handed to the
//! [`crate::ca_publisher`] (which puts it where the sidecars mount it).
//!
//! Every replica runs this, leader or not, so a follower taking over already serves the current
//! certificate. Writes are optimistic: the Secret is created only if absent and replaced only
//! at the `resourceVersion` read, so when two replicas race, one wins and the other reads the
//! winner's certificate at its next poll. The Secret is polled rather than watched: a rotation
//! is due long before expiry, and a poll also repairs a `caBundle` reset by hand or by a
//! re-applied manifest.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::MutatingWebhookConfiguration, core::v1::Secret},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::certs::{self, CertError, SwappableCert};

/// The CA certificate's key in the Secret.
pub const CA_CERT: &str = "ca.crt";
/// The CA private key's key in the Secret.
pub const CA_KEY: &str = "ca.key";
/// The serving certificate's key in the Secret.
pub const TLS_CERT: &str = "tls.crt";
/// The serving private key's key in the Secret.
pub const TLS_KEY: &str = "tls.key";

/// Why managed certificates could not be set up or kept current.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// Making, reading or loading a certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The caBundle patch could not be built.
    #[error("building the caBundle patch: {0}")]
    Patch(#[from] serde_json::Error),
    /// The renewal window is not shorter than the lifetime: every certificate would be due at once.
    #[error("--cert-renew-before ({renew_before:?}) must be shorter than --cert-lifetime ({lifetime:?})")]
    Window {
        /// The renewal window.
        renew_before: Duration,
        /// The certificate lifetime.
        lifetime: Duration,
    },
    /// Creating the Secret kept conflicting with something else writing it.
    #[error("Secret {0} could not be created or read")]
    Contended(String),
}

/// What the operator is told about its certificates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Secret (the operator's own).
    pub namespace: String,
    /// Name of the Secret.
    pub secret_name: String,
    /// MutatingWebhookConfiguration whose `caBundle`s are kept equal to the CA.
    pub webhook_config_name: Option<String>,
    /// Names the serving certificate is valid for.
    pub names: Vec<String>,
    /// Lifetime of a serving certificate.
    pub lifetime: Duration,
    /// A serving certificate is re-issued when it expires within this.
    pub renew_before: Duration,
}

/// The four PEMs of the Secret.
#[derive(Clone, PartialEq, Eq)]
struct Identity {
    ca_cert: String,
    ca_key: String,
    cert: String,
    key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Identity {
    fn generate(settings: &Settings) -> Result<Self, CertError> {
        let (ca_cert, ca_key) = certs::generate_ca()?;
        let (cert, key) = certs::issue(&ca_cert, &ca_key, &settings.names, settings.lifetime)?;
        Ok(Self {
            ca_cert,
            ca_key,
            cert,
            key,
        })
    }

    /// The Secret's PEMs; `None` when one is missing (then the operator fills it in).
    fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let get = |key: &str| {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|s| !s.is_empty())
        };
        Some(Self {
            ca_cert: get(CA_CERT)?,
            ca_key: get(CA_KEY)?,
            cert: get(TLS_CERT)?,
            key: get(TLS_KEY)?,
        })
    }

    fn into_secret(self, settings: &Settings, resource_version: Option<String>) -> Secret {
        let data = BTreeMap::from([
            (CA_CERT.to_owned(), ByteString(self.ca_cert.into_bytes())),
            (CA_KEY.to_owned(), ByteString(self.ca_key.into_bytes())),
            (TLS_CERT.to_owned(), ByteString(self.cert.into_bytes())),
            (TLS_KEY.to_owned(), ByteString(self.key.into_bytes())),
        ]);
        Secret {
            metadata: ObjectMeta {
                name: Some(settings.secret_name.clone()),
                namespace: Some(settings.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "sluice-operator".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// Whether the serving certificate expires within `window` (or cannot be read, which a
    /// fresh certificate fixes too).
    fn due(&self, window: Duration) -> bool {
        match certs::not_after(self.cert.as_bytes()) {
            Ok(expires) => expires
                .duration_since(SystemTime::now())
                .map_or(true, |left| left <= window),
            Err(e) => {
                tracing::warn!(error = %e, "the stored serving certificate cannot be read; re-issuing it");
                true
            }
        }
    }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Keeps the serving certificate and the webhook's `caBundle` current; see the module docs.
#[derive(Debug)]
pub struct ManagedCerts {
    settings: Settings,
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
    cert: Arc<SwappableCert>,
    /// The CA certificate (PEM) as stored, for whoever publishes it.
    ca: watch::Sender<String>,
    /// The PEM of the certificate being served.
    serving: String,
}

impl ManagedCerts {
    /// Reads the Secret, or creates it with a new CA and certificate, renews the certificate if
    /// it is due, and returns the manager with the TLS config to serve (whose certificate
    /// [`ManagedCerts::run`] swaps on rotation).
    pub async fn start(client: Client, settings: Settings) -> Result<(Self, Arc<rustls::ServerConfig>), ManagedError> {
        if settings.renew_before >= settings.lifetime {
            return Err(ManagedError::Window {
                renew_before: settings.renew_before,
                lifetime: settings.lifetime,
            });
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
        let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client);
        let identity = load_or_create(&secrets, &settings).await?;
        let cert = Arc::new(SwappableCert::new(certs::certified_key(
            identity.cert.as_bytes(),
            identity.key.as_bytes(),
        )?));
        let tls = certs::swappable_server_config(cert.clone())?;
        let mut managed = Self {
            settings,
            secrets,
            webhooks,
            cert,
            ca: watch::channel(identity.ca_cert).0,
            serving: identity.cert,
        };
        // Renew a certificate found near expiry and publish the CA before serving, so that the
        // first handshakes already work; a failure here is retried by `run`.
        if let Err(e) = managed.check().await {
            tracing::warn!(error = %e, "checking the managed certificates");
        }
        tracing::info!(secret = %managed.settings.secret_name, "serving the operator-managed certificate");
        Ok((managed, tls))
    }

    /// The CA certificate (PEM), current whenever the stored one changes.
    pub fn ca(&self) -> watch::Receiver<String> {
        self.ca.subscribe()
    }

    /// Polls until `shutdown`: renews the certificate when due, serves the one in the Secret
    /// (another replica may have renewed it), and keeps the `caBundle` current.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Often enough to renew well inside the window and pick up a peer's rotation promptly;
        // at most a minute, so a long window does not mean a stale follower.
        let every = (self.settings.renew_before / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "checking the managed certificates");
            }
        }
    }

    /// One round: read, renew if due, serve what is stored, publish the CA.
    async fn check(&mut self) -> Result<(), ManagedError> {
        let mut identity = load_or_create(&self.secrets, &self.settings).await?;
        if identity.due(self.settings.renew_before) {
            identity = match self.renew(identity.clone()).await {
                Ok(Some(renewed)) => renewed,
                // Another replica wrote first: serve what is stored now and look again next round.
                Ok(None) => identity,
                Err(e) => return Err(e),
            };
        }
        if identity.cert != self.serving {
            self.cert
                .set(certs::certified_key(identity.cert.as_bytes(), identity.key.as_bytes())?);
            self.serving = identity.cert.clone();
            tracing::info!(secret = %self.settings.secret_name, "now serving the rotated certificate");
        }
        if let Some(name) = &self.settings.webhook_config_name {
            self.publish_ca(name, &identity.ca_cert).await?;
        }
        self.ca.send_if_modified(|ca| {
            let changed = *ca != identity.ca_cert;
            if changed {
                ca.clone_from(&identity.ca_cert);
            }
            changed
        });
        Ok(())
    }

    /// Re-issues the serving certificate from the stored CA and replaces the Secret at the
    /// version read; `None` when someone else changed it first.
    async fn renew(&self, stored: Identity) -> Result<Option<Identity>, ManagedError> {
        let current = self.secrets.get(&self.settings.secret_name).await?;
        if Identity::from_secret(&current).as_ref() != Some(&stored) {
            return Ok(None);
        }
        let (cert, key) = certs::issue(
            &stored.ca_cert,
            &stored.ca_key,
            &self.settings.names,
            self.settings.lifetime,
        )?;
        let renewed = Identity { cert, key, ..stored };
        let secret = renewed
            .clone()
            .into_secret(&self.settings, current.metadata.resource_version.clone());
        match self
            .secrets
            .replace(&self.settings.secret_name, &PostParams::default(), &secret)
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %self.settings.secret_name, "re-issued the serving certificate");
                Ok(Some(renewed))
            }
            Err(e) if is_status(&e, 409) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets every webhook's `caBundle` in the configuration to `ca` where it differs. A
    /// configuration not there yet (the chart creates it alongside the Deployment) is retried
    /// next round.
    async fn publish_ca(&self, name: &str, ca: &str) -> Result<(), ManagedError> {
        let Some(config) = self.webhooks.get_opt(name).await? else {
            tracing::debug!(webhook_config = name, "the webhook configuration does not exist yet");
            return Ok(());
        };
        let want = ByteString(ca.as_bytes().to_vec());
        let mut ops = Vec::new();
        for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
            if webhook.client_config.ca_bundle.as_ref() == Some(&want) {
                continue;
            }
            // `test` makes the patch fail rather than write the wrong entry if the list changed
            // between our read and the patch; `add` sets the field whether or not it is there.
            ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}));
            ops.push(serde_json::json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": serde_json::to_value(&want)?,
            }));
        }
        if ops.is_empty() {
            return Ok(());
        }
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
        self.webhooks
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        tracing::info!(webhook_config = name, "caBundle set to the operator's CA");
        Ok(())
    }
}

/// The stored identity; a missing Secret is created (a replica that loses the race reads the
/// winner's), an incomplete one is filled with a new identity.
async fn load_or_create(secrets: &Api<Secret>, settings: &Settings) -> Result<Identity, ManagedError> {
    for _ in 0..5 {
        match secrets.get_opt(&settings.secret_name).await? {
            Some(secret) => {
                if let Some(identity) = Identity::from_secret(&secret) {
                    return Ok(identity);
                }
                tracing::info!(secret = %settings.secret_name, "the Secret lacks a CA or certificate; generating them");
                let identity = Identity::generate(settings)?;
                let replacement = identity
                    .clone()
                    .into_secret(settings, secret.metadata.resource_version.clone());
                match secrets
                    .replace(&settings.secret_name, &PostParams::default(), &replacement)
                    .await
                {
                    Ok(_) => return Ok(identity),
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let identity = Identity::generate(settings)?;
                match secrets
                    .create(&PostParams::default(), &identity.clone().into_secret(settings, None))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %settings.secret_name, "created a CA and serving certificate");
                        return Ok(identity);
                    }
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(ManagedError::Contended(settings.secret_name.clone()))
}
