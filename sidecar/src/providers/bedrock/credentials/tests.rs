//! Which source a backend's environment picks, and the cache's freshness and single flight.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::Notify,
};

use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
}

#[test]
fn a_secret_wins_over_the_pods_identity() {
    let secret = ApiKey::new("[default]\naws_access_key_id = AKID\naws_secret_access_key = s\n");
    let env = env_of(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
    ]);
    assert!(matches!(
        Source::resolve(Some(&secret), None, "us-east-1", env),
        Source::Static(_)
    ));
}

#[test]
fn web_identity_goes_to_the_regional_sts_unless_an_endpoint_is_set() {
    let env = env_of(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
    ]);
    let Source::WebIdentity(identity) = Source::resolve(None, None, "eu-west-3", env) else {
        panic!("expected web identity");
    };
    assert_eq!(identity.endpoint, "https://sts.eu-west-3.amazonaws.com");
    assert_eq!(identity.session_name, "sluice-sidecar");

    let env = env_of(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2/sts"),
    ]);
    let Source::WebIdentity(identity) = Source::resolve(None, None, "eu-west-3", env) else {
        panic!("expected web identity");
    };
    assert_eq!(
        identity.endpoint, "http://127.0.0.1:2/sts",
        "the service's own endpoint wins"
    );
}

#[test]
fn pod_identity_is_used_without_irsa_and_nothing_is_a_clear_error() {
    let env = env_of(&[(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.23/v1/credentials",
    )]);
    assert!(matches!(
        Source::resolve(None, None, "us-east-1", env),
        Source::Container(_)
    ));

    let Source::Unavailable(e) = Source::resolve(None, None, "us-east-1", env_of(&[])) else {
        panic!("expected no credentials");
    };
    assert!(e.0.contains("AWS_ROLE_ARN"), "{e}");
}

#[test]
fn temporary_credentials_are_stale_within_the_refresh_margin() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let expiring = |after: Duration| Credentials::new("ASIA", "s", Some("t".into()), Some(now + after), "test");
    assert!(fresh(&expiring(REFRESH_MARGIN + Duration::from_secs(1)), now));
    assert!(!fresh(&expiring(REFRESH_MARGIN), now));
    assert!(fresh(&Credentials::new("AKID", "s", None, None, "test"), now));
}

#[tokio::test]
async fn callers_at_once_share_one_fetch_and_then_the_cached_credentials() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/credentials", listener.local_addr().unwrap());
    let fetches = std::sync::Arc::new(AtomicUsize::new(0));
    let release = std::sync::Arc::new(Notify::new());
    let (count, gate) = (fetches.clone(), release.clone());
    let server = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            // Answer only once both callers are waiting.
            gate.notified().await;
            let body = r#"{"AccessKeyId":"ASIAPOD","SecretAccessKey":"pod-secret","Token":"pod-token","Expiration":"2099-01-01T00:00:00Z"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    let cache = Cache::new(
        Source::Container(sts::ContainerEndpoint {
            url,
            token_file: None,
            token: None,
        }),
        reqwest::Client::new(),
    );
    let now = SystemTime::now();

    let mut first = std::pin::pin!(cache.get(now));
    let mut second = std::pin::pin!(cache.get(now));
    assert!(futures::poll!(first.as_mut()).is_pending());
    assert!(futures::poll!(second.as_mut()).is_pending());
    release.notify_one();
    let (a, b) = tokio::join!(first, second);

    assert_eq!(a.unwrap().access_key_id(), "ASIAPOD");
    assert_eq!(b.unwrap().session_token(), Some("pod-token"));
    assert_eq!(cache.get(now).await.unwrap().access_key_id(), "ASIAPOD");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    server.abort();
}
