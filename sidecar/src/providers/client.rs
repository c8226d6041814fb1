//! The HTTP client every model call goes through: hyper-util's pooled client over rustls, with
//! HTTP/2 where the provider's TLS offers it (ALPN) and HTTP/1.1 otherwise, plain HTTP for
//! loopback and OpenAI-compatible servers. A backend's extra headers are added to each request
//! here, so no provider needs to know of them; the attempt's trace context too.
//!
//! Why not reqwest: its per-request machinery cost more than a bare hyper send whole
//! (tests/bench/profile.md). reqwest stays for the token exchanges and the control plane, where
//! its conveniences pay and the calls are rare. Behaviour kept from the reqwest client: the same
//! trust store and verifier (the platform's, through rustls-platform-verifier), no redirects
//! followed (a key must never follow one to another host), `accept: */*`, a request's own
//! headers winning over the backend's extra ones.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, header::Entry};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::{ProviderError, TimeoutPhase};

/// A backend's extra header, ready to send.
pub type ExtraHeader = (http::HeaderName, http::HeaderValue);

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host: enough for a busy pod's concurrency to find warm
/// connections, bounded so that a burst does not leave thousands of idle sockets behind.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
/// TCP keepalive, as reqwest set it: a dead peer of an idle pooled connection is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// Why the client could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the TLS trust store is unavailable: {0}")]
pub struct ClientError(String);

/// A cloneable, pooled client for one connect timeout and one set of extra headers.
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: Arc<[ExtraHeader]>,
}

impl std::fmt::Debug for UpstreamClient {
    // Header values may be secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("UpstreamClient").field("headers", &names).finish()
    }
}

impl UpstreamClient {
    /// A client whose connections must be up within `connect_timeout`, sending `headers` with
    /// every request that does not set them itself.
    pub fn new(connect_timeout: Duration, headers: Vec<ExtraHeader>) -> Result<Self, ClientError> {
        Ok(Self::with_tls(connect_timeout, headers, tls_config()?))
    }

    /// [`UpstreamClient::new`] with its TLS settings given.
    fn with_tls(connect_timeout: Duration, headers: Vec<ExtraHeader>, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        // The TLS layer takes https:// URLs; this one only connects.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(https);
        Self {
            pool,
            headers: headers.into(),
        }
    }

    /// A client with a ten-second connect timeout and no extra headers, for tests.
    #[cfg(test)]
    pub fn plain() -> Self {
        Self::new(Duration::from_secs(10), Vec::new()).expect("the TLS trust store loads")
    }

    /// Sends `request` with the backend's extra headers and the trace context added; answers
    /// once the response head has arrived. A failure is classified as reqwest's was: a connect
    /// timeout is a first-byte timeout, a refused or unreachable host a connect error, anything
    /// after the connection was made an interruption.
    pub async fn send(&self, mut request: http::Request<Bytes>) -> Result<Response, ProviderError> {
        let headers = request.headers_mut();
        for (name, value) in self.headers.iter() {
            if let Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value.clone());
            }
        }
        headers
            .entry(http::header::ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        crate::telemetry::attempt::traced_request(&mut request);
        self.pool
            .request(request.map(Full::new))
            .await
            .map(Response)
            .map_err(|e| send_error(&e))
    }
}

/// A `POST` of `body` as JSON to `url`.
pub fn post_json(url: &http::Uri, body: &impl serde::Serialize) -> Result<http::Request<Bytes>, ProviderError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| ProviderError::Interrupted(format!("the request could not be encoded: {e}")))?;
    post(url, Bytes::from(body))
}

/// A `POST` of JSON `body` (already encoded) to `url`.
pub fn post(url: &http::Uri, body: Bytes) -> Result<http::Request<Bytes>, ProviderError> {
    if url.scheme().is_none() || url.authority().is_none() {
        return Err(bad_url(&url.to_string()));
    }
    http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body)
        .map_err(|e| ProviderError::Interrupted(format!("the request could not be built: {e}")))
}

/// `url` as an absolute URI for [`post`], or the error every call to it fails with. Text a URI
/// refuses (a model name with a space, say) is read as a URL, percent-encoded as reqwest sent it.
pub fn uri(url: &str) -> Result<http::Uri, ProviderError> {
    match http::Uri::try_from(url) {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => Ok(uri),
        _ => reqwest::Url::parse(url)
            .ok()
            .and_then(|parsed| http::Uri::try_from(parsed.as_str()).ok())
            .ok_or_else(|| bad_url(url)),
    }
}

/// What a call to an unusable URL fails with: an interruption, as reqwest refused one.
pub fn bad_url(url: &str) -> ProviderError {
    ProviderError::Interrupted(format!("the upstream URL {url:?} is not an absolute http(s) URL"))
}

/// An upstream's answer whose head has arrived; its body is read by `body::read_body` or
/// streamed by `body::body_stream`.
#[derive(Debug)]
pub struct Response(http::Response<hyper::body::Incoming>);

impl Response {
    /// Its status.
    pub fn status(&self) -> http::StatusCode {
        self.0.status()
    }

    /// Its headers.
    pub fn headers(&self) -> &http::HeaderMap {
        self.0.headers()
    }

    /// Its body, as it arrives.
    pub fn into_body(self) -> hyper::body::Incoming {
        self.0.into_body()
    }
}

/// The TLS settings reqwest's `rustls` feature used: the installed crypto provider (else
/// aws-lc-rs), TLS 1.2 and 1.3, the platform's verifier. Built once: loading the trust store
/// reads the system's certificates.
fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, ClientError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
            let verifier =
                rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| ClientError(e.to_string()))?;
            Ok(rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth())
        })
        .clone()
}

/// Classifies a failed send.
fn send_error(e: &hyper_util::client::legacy::Error) -> ProviderError {
    if timed_out(e) {
        ProviderError::Timeout(TimeoutPhase::FirstByte)
    } else if e.is_connect() {
        ProviderError::Connect(crate::wire::with_causes(e))
    } else {
        ProviderError::Interrupted(crate::wire::with_causes(e))
    }
}

/// Whether anything in the error's chain is a timeout (the connect timeout is an I/O one).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_scheme_or_host_is_refused_before_anything_is_sent() {
        for url in ["/v1/chat/completions", "localhost:8080", "not a url"] {
            let result = uri(url).and_then(|u| post(&u, Bytes::new()));
            assert!(
                matches!(result, Err(ProviderError::Interrupted(_))),
                "{url}: {result:?}"
            );
        }
    }

    #[test]
    fn an_extra_header_secret_is_never_in_debug_output() {
        let mut value = HeaderValue::from_static("s3cret");
        value.set_sensitive(true);
        let client = UpstreamClient::new(
            Duration::from_secs(1),
            vec![(http::HeaderName::from_static("x-proxy-key"), value)],
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret") && shown.contains("x-proxy-key"), "{shown}");
    }

    #[test]
    fn a_connect_timeout_is_a_first_byte_timeout_and_a_refusal_a_connect_error() {
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(timed_out(&timeout));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!timed_out(&refused));
    }

    /// A loopback TLS server for `127.0.0.1` offering h2 and http/1.1 that answers each request
    /// with its HTTP version, and a client config that trusts it.
    async fn tls_upstream() -> (std::net::SocketAddr, rustls::ClientConfig) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service =
                        hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                            let version = format!("{:?}", request.version());
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(version))))
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (addr, client)
    }

    #[tokio::test]
    async fn a_provider_offering_http2_over_tls_is_spoken_to_in_http2() {
        let (addr, trusting) = tls_upstream().await;
        let client = UpstreamClient::with_tls(Duration::from_secs(5), Vec::new(), trusting);
        let request = post(
            &uri(&format!("https://{addr}/v1/chat/completions")).unwrap(),
            Bytes::new(),
        )
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

        let response = tokio::time::timeout_at(deadline, client.send(request))
            .await
            .unwrap()
            .unwrap();
        let body = super::super::read_body(response, 1024, deadline).await.unwrap();

        assert_eq!(body, Bytes::from_static(b"HTTP/2.0"));
    }

    #[tokio::test]
    async fn a_certificate_the_platform_does_not_trust_is_a_connect_error() {
        let (addr, _) = tls_upstream().await;
        let client = UpstreamClient::new(Duration::from_secs(5), Vec::new()).unwrap();
        let request = post(
            &uri(&format!("https://{addr}/v1/chat/completions")).unwrap(),
            Bytes::new(),
        )
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

        let error = tokio::time::timeout_at(deadline, client.send(request))
            .await
            .unwrap()
            .unwrap_err();

        assert!(
            matches!(&error, ProviderError::Connect(why) if why.contains("certificate")),
            "{error:?}"
        );
    }
}
