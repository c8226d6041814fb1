//! Real sockets on port 0, real hyper clients. Every wait is bounded by [`BOUND`], which only a
//! broken behaviour reaches; timeouts under test are short, and nothing sleeps to synchronize.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use http::{StatusCode, Version, header::HOST};
use http_body_util::{BodyExt as _, Empty, Full, channel::Channel};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::mpsc,
    task::JoinHandle,
};

use super::*;

/// The bound on every wait: reached only when the behaviour under test is broken.
const BOUND: Duration = Duration::from_secs(10);
/// A timeout under test: short, so that the test is quick.
const SHORT: Duration = Duration::from_millis(100);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("still waiting after the bound")
}

/// Settings as the sidecar's, with a grace period no test waits out.
fn options() -> Options {
    Options {
        tls: None,
        header_read_timeout: Duration::from_secs(30),
        max_head_bytes: Some(64 << 10),
        max_concurrent_streams: Some(256),
        nodelay: true,
        grace: BOUND * 6,
    }
}

/// A server running on a port of its own.
struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start<H, F, B>(handler: H, options: Options) -> Running
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, handler, options, shutdown.clone()));
    Running { addr, shutdown, task }
}

impl Running {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Returns once the port refuses connections: the server has stopped accepting and, in the
    /// same step, told its connections to drain.
    async fn refused(&self) {
        within(async {
            while TcpStream::connect(self.addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// Waits for `serve` to return.
    async fn stopped(self) {
        within(self.task).await.unwrap();
    }
}

/// Sends `GET path` over `io` in `version` and returns the response (its head).
async fn get<I>(io: I, version: Version, path: &str) -> hyper::Result<Response<Incoming>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let req = Request::get(format!("http://localhost{path}"))
        .header(HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    if version == Version::HTTP_2 {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        sender.send_request(req).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        sender.send_request(req).await
    }
}

async fn text(response: Response<Incoming>) -> String {
    let body = within(response.into_body().collect()).await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Answers with the request's method, path and version.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let line = format!("{} {} {:?}", req.method(), req.uri().path(), req.version());
    Response::new(Full::new(Bytes::from(line)))
}

#[tokio::test]
async fn serves_http1_and_http2_over_plain_tcp() {
    let server = start(echo, options()).await;
    for (version, expected) in [
        (Version::HTTP_11, "GET /a HTTP/1.1"),
        (Version::HTTP_2, "GET /a HTTP/2.0"),
    ] {
        let response = within(get(server.connect().await, version, "/a")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, expected);
    }
    server.shutdown.cancel();
    server.stopped().await;
}

/// Answers with the [`Peer`] the request carries.
async fn peer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let peer = req.extensions().get::<Peer>().map(|Peer(addr)| addr.to_string());
    Response::new(Full::new(Bytes::from(peer.unwrap_or_else(|| "none".to_owned()))))
}

#[tokio::test]
async fn every_request_carries_the_address_of_its_connections_peer() {
    let server = start(peer, options()).await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let tcp = server.connect().await;
        let client = tcp.local_addr().unwrap();
        let response = within(get(tcp, version, "/")).await.unwrap();
        assert_eq!(text(response).await, client.to_string());
    }
    server.shutdown.cancel();
    server.stopped().await;
}

/// A server config for `localhost` and a client that trusts it and offers `alpn`.
fn certificates(alpn: &[u8]) -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
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
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![alpn.to_vec()];
    (Arc::new(server), tokio_rustls::TlsConnector::from(Arc::new(client)))
}

fn with_tls(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Options {
    Options {
        tls: Some(Tls {
            config,
            handshake_timeout,
        }),
        ..options()
    }
}

#[tokio::test]
async fn serves_http1_and_http2_over_tls() {
    for (alpn, version, expected) in [
        (&b"http/1.1"[..], Version::HTTP_11, "GET /b HTTP/1.1"),
        (b"h2", Version::HTTP_2, "GET /b HTTP/2.0"),
    ] {
        let (config, connector) = certificates(alpn);
        let server = start(echo, with_tls(config, BOUND)).await;
        let localhost = ServerName::try_from("localhost").unwrap();
        let tls = within(connector.connect(localhost, server.connect().await))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let response = within(get(tls, version, "/b")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, expected);
        server.shutdown.cancel();
        server.stopped().await;
    }
}

#[tokio::test]
async fn a_client_stalling_its_tls_handshake_is_dropped() {
    let (config, _) = certificates(b"h2");
    let server = start(echo, with_tls(config, SHORT)).await;
    let mut silent = server.connect().await;
    let mut answer = Vec::new();
    within(silent.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, b"");
    server.shutdown.cancel();
    server.stopped().await;
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let handler = move |req| {
        counted.fetch_add(1, Ordering::Relaxed);
        echo(req)
    };
    let server = start(
        handler,
        Options {
            header_read_timeout: SHORT,
            ..options()
        },
    )
    .await;
    let mut slow = server.connect().await;
    slow.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n").await.unwrap();
    let mut answer = Vec::new();
    within(slow.read_to_end(&mut answer)).await.unwrap();
    // Closed without an answer (hyper sends none on a header timeout), the handler never called.
    assert_eq!(answer, b"");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    server.shutdown.cancel();
    server.stopped().await;
}

/// Shutdown comes while a streamed answer is half sent: the stream finishes, then `serve` returns
/// long before its grace period is over, and the port refuses new connections.
async fn shutdown_lets_an_in_flight_stream_finish(version: Version) {
    let (streams, mut streaming) = mpsc::unbounded_channel();
    let handler = move |_req| {
        let (sender, body) = Channel::<Bytes>::new(1);
        let _ = streams.send(sender);
        async move { Response::new(body) }
    };
    let server = start(handler, options()).await;
    let response = within(get(server.connect().await, version, "/stream")).await.unwrap();
    let mut body = response.into_body();
    let mut stream = within(streaming.recv()).await.unwrap();
    stream.send_data(Bytes::from("first ")).await.unwrap();
    let first = within(body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first ");

    server.shutdown.cancel();
    server.refused().await;
    stream.send_data(Bytes::from("last")).await.unwrap();
    drop(stream);
    let rest = within(body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "last");
    server.stopped().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_http1_stream_finish() {
    shutdown_lets_an_in_flight_stream_finish(Version::HTTP_11).await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_http2_stream_finish() {
    shutdown_lets_an_in_flight_stream_finish(Version::HTTP_2).await;
}

/// Shutdown comes while a request never answers: after the grace period its connection is
/// closed, its handler dropped, and `serve` returns.
async fn shutdown_closes_what_remains_after_the_grace_period(version: Version) {
    // Every handler holds a sender: the receiver sees a message per request, and `None` once
    // every handler (and the server holding the handler) is gone.
    let (alive, mut handlers) = mpsc::channel::<()>(1);
    let handler = move |_req| {
        let alive = alive.clone();
        async move {
            let _ = alive.send(()).await;
            std::future::pending::<Response<Empty<Bytes>>>().await
        }
    };
    let server = start(
        handler,
        Options {
            grace: SHORT,
            ..options()
        },
    )
    .await;
    let client = server.connect().await;
    let response = tokio::spawn(get(client, version, "/never"));
    within(handlers.recv()).await.unwrap();

    server.shutdown.cancel();
    server.stopped().await;
    // How the client words a closed connection is hyper's business (incomplete message for
    // HTTP/1, broken pipe for HTTP/2); that it gets no answer is ours.
    let answer = within(response).await.unwrap();
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(within(handlers.recv()).await, None);
}

#[tokio::test]
async fn shutdown_closes_an_unfinished_http1_request_after_the_grace_period() {
    shutdown_closes_what_remains_after_the_grace_period(Version::HTTP_11).await;
}

#[tokio::test]
async fn shutdown_closes_an_unfinished_http2_request_after_the_grace_period() {
    shutdown_closes_what_remains_after_the_grace_period(Version::HTTP_2).await;
}
