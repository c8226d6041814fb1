use std::net::SocketAddr;

use super::*;

fn peer(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().unwrap())
}

#[test]
fn config_and_budgets_are_for_this_pod_and_probes_and_metrics_for_anyone() {
    for path in ["/config", "/budgets"] {
        assert_eq!(audience(path), Audience::ThisPod, "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/nowhere", "/config/", "/Config"] {
        assert_eq!(audience(path), Audience::Anyone, "{path}");
    }
}

#[test]
fn a_loopback_peer_may_read_config_and_budgets() {
    for addr in [
        "127.0.0.1:50000",
        "127.0.0.2:50000",
        "[::1]:50000",
        "[::ffff:127.0.0.1]:50000",
    ] {
        for path in ["/config", "/budgets"] {
            assert!(allowed(path, peer(addr)), "{path} from {addr}");
        }
    }
}

#[test]
fn a_peer_from_another_pod_or_unknown_may_not_read_config_or_budgets() {
    let others = [
        peer("10.244.0.7:50000"),
        peer("192.0.2.2:50000"),
        peer("0.0.0.0:50000"),
        peer("[::ffff:10.244.0.7]:50000"),
        peer("[fe80::1]:50000"),
        peer("[fd00::7]:50000"),
        None,
    ];
    for other in others {
        for path in ["/config", "/budgets"] {
            assert!(!allowed(path, other), "{path} from {other:?}");
        }
    }
}

#[test]
fn any_peer_may_read_probes_and_metrics() {
    for other in [peer("10.244.0.7:50000"), peer("127.0.0.1:50000"), None] {
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(allowed(path, other), "{path} from {other:?}");
        }
    }
}

#[test]
fn the_refusal_is_a_403_naming_the_path_the_peer_and_the_way_in() {
    let refusal = ApiError::LoopbackOnly {
        path: "/config".into(),
        peer: "10.244.0.7".into(),
    };
    assert_eq!(
        refusal.to_string(),
        "/config is served only to this pod (a loopback peer such as 127.0.0.1), not to 10.244.0.7: it shows \
         every route, price and spend; read it from inside the pod, or through `kubectl port-forward`"
    );
    assert_eq!(refusal.into_response().status(), StatusCode::FORBIDDEN);
}
