//! The token source against a one-answer-per-connection token server on loopback: one fetch for
//! callers arriving together, the token reused, a refused token fetched anew, and a refusal
//! reported without the request's secrets.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::{Notify, Semaphore},
};

use super::*;

const KEY_FILE: &str = include_str!("../../fixtures/vertex/throwaway_test_service_account_key.json");

/// A token server: every connection is one request, answered (once a permit allows) with
/// `status` and `body`, where `{n}` is the connection's number.
struct TokenServer {
    origin: String,
    connections: Arc<AtomicUsize>,
    accepted: Arc<Notify>,
    permits: Arc<Semaphore>,
}

impl TokenServer {
    async fn start(status: &'static str, body: &'static str, permits: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(Notify::new());
        let permits = Arc::new(Semaphore::new(permits));
        let (count, notify, gate) = (Arc::clone(&connections), Arc::clone(&accepted), Arc::clone(&permits));
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                notify.notify_one();
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    // The request fits one read: a small form or a GET.
                    let mut buffer = vec![0; 16 << 10];
                    let _ = socket.read(&mut buffer).await;
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    let body = body.replace("{n}", &n.to_string());
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self {
            origin,
            connections,
            accepted,
            permits,
        }
    }

    fn metadata_source(&self) -> TokenSource {
        let host = self.origin.trim_start_matches("http://");
        TokenSource::new(Origin::metadata(Some(host)), reqwest::Client::new())
    }
}

const GOOD: &str = r#"{"access_token": "ya29.test-{n}", "expires_in": 3599, "token_type": "Bearer"}"#;

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn callers_arriving_during_a_fetch_share_it_and_later_ones_reuse_its_token() {
    let server = TokenServer::start("200 OK", GOOD, 0).await;
    let source = server.metadata_source();

    let first = tokio::spawn({
        let source = source.clone();
        async move { source.token(deadline()).await }
    });
    // The first caller's request is at the server, which holds its answer.
    server.accepted.notified().await;
    let mut second = std::pin::pin!(source.token(deadline()));
    assert!(futures::poll!(&mut second).is_pending());
    server.permits.add_permits(1);
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap());

    assert_eq!(first.expose(), "ya29.test-0");
    assert_eq!(second, first);
    assert_eq!(source.token(deadline()).await.unwrap(), first, "cached");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_vertex_refused_is_replaced_by_a_new_one() {
    let server = TokenServer::start("200 OK", GOOD, 10).await;
    let source = server.metadata_source();
    let old = source.token(deadline()).await.unwrap();

    source.invalidate(&old);
    let new = source.token(deadline()).await.unwrap();

    assert_eq!(new.expose(), "ya29.test-1");
    // A caller still holding the old token does not drop the new one.
    source.invalidate(&old);
    assert_eq!(source.token(deadline()).await.unwrap(), new);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_grant_reports_the_oauth_error_and_never_the_assertion() {
    let body = r#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#;
    let server = TokenServer::start("400 Bad Request", body, 10).await;
    let key = KEY_FILE.replace(
        "https://oauth2.googleapis.com/token",
        &format!("{}/token", server.origin),
    );
    let account = ServiceAccount::parse(&key).unwrap();
    let source = TokenSource::new(Origin::ServiceAccount(account), reqwest::Client::new());

    let error = source.token(deadline()).await.unwrap_err();

    assert_eq!(
        error,
        TokenError::Refused {
            endpoint: format!("{}/token", server.origin),
            status: 400,
            reason: "invalid_grant: Invalid JWT Signature.".into(),
        }
    );
    assert!(!error.to_string().contains("eyJ"), "no JWT in {error}");
}

#[tokio::test]
async fn a_metadata_server_that_is_not_there_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    drop(listener);
    let source = TokenSource::new(Origin::metadata(Some(&host)), reqwest::Client::new());

    let error = source.token(deadline()).await.unwrap_err();

    assert!(matches!(error, TokenError::Unreachable { .. }), "{error}");
}
