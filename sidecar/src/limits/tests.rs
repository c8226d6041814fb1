use super::*;

fn share(requests: Option<u32>, tokens: Option<u32>) -> LimitShare {
    LimitShare {
        requests_per_minute: requests,
        tokens_per_minute: tokens,
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_100_under_60_per_minute_admits_exactly_60() {
    let limits = RouteLimits::new("team-a/chat".into(), share(Some(60), None), None);
    let now = Instant::now();
    let results: Vec<_> = (0..100).map(|_| limits.admit(ANONYMOUS, 10, now)).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 60);
    let refusal = results.into_iter().find_map(Result::err).unwrap();
    assert_eq!(refusal.limit, "route team-a/chat requests per minute");
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_share_of_zero_refuses_every_request_with_a_retry_after_of_a_minute() {
    // The operator gave the whole route limit to other pods (more pods than the limit).
    let limits = RouteLimits::new("team-a/chat".into(), share(Some(0), None), None);
    let refusal = limits.admit(ANONYMOUS, 10, Instant::now()).unwrap_err();
    assert_eq!(refusal.limit, "route team-a/chat requests per minute");
    assert_eq!(refusal.retry_after, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_new_share_keeps_what_was_used_and_never_hands_out_a_fresh_minute() {
    let now = Instant::now();
    let limits = RouteLimits::new("r".into(), share(Some(10), None), None);
    for _ in 0..10 {
        limits.admit(ANONYMOUS, 1, now).unwrap();
    }
    // Grown to 40 with the 10 spent: nothing now, then 40 a minute.
    let grown = limits.reshared("r".into(), share(Some(40), None), None, now);
    assert_eq!(grown.level(now).requests.unwrap().available, 0.0);
    let refusal = grown.admit(ANONYMOUS, 1, now).unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_millis(1500));
    // Shrunk from 40 (unused) to 5: full at 5, not 40.
    let unused = RouteLimits::new("r".into(), share(Some(40), None), None);
    let shrunk = unused.reshared("r".into(), share(Some(5), None), None, now);
    assert_eq!(shrunk.level(now).requests.unwrap().available, 5.0);
}

#[tokio::test(start_paused = true)]
async fn token_limits_are_corrected_by_real_usage() {
    let limits = RouteLimits::new("r".into(), share(None, Some(100)), None);
    let now = Instant::now();
    // Estimated 4 tokens each, but each answer really used 62.
    for _ in 0..2 {
        limits.admit(ANONYMOUS, 4, now).unwrap().settle(Some(62), now);
    }
    let refusal = limits.admit(ANONYMOUS, 4, now).unwrap_err();
    assert_eq!(refusal.limit, "route r tokens per minute");
    // 100 - 124 = -24; 28 tokens at 100/min take 16.8 s.
    assert!((refusal.retry_after.as_secs_f64() - 16.8).abs() < 1e-6);
    // A failed request gives its estimate back.
    let limits = RouteLimits::new("r".into(), share(None, Some(100)), None);
    limits.admit(ANONYMOUS, 90, now).unwrap().settle(None, now);
    assert_eq!(limits.level(now).tokens.unwrap().available, 100.0);
}

#[tokio::test(start_paused = true)]
async fn per_user_limits_isolate_users_and_a_refusal_charges_nothing() {
    let per_user = PerUserLimit {
        requests_per_minute: Some(2),
        tokens_per_minute: None,
        requests_per_day: None,
    };
    let limits = RouteLimits::new("r".into(), share(Some(100), None), Some(per_user));
    let now = Instant::now();
    assert!(limits.admit("alice", 1, now).is_ok());
    assert!(limits.admit("alice", 1, now).is_ok());
    let refusal = limits.admit("alice", 1, now).unwrap_err();
    assert_eq!(refusal.limit, "user \"alice\" requests per minute");
    assert_eq!(refusal.retry_after, Duration::from_secs(30));
    assert!(limits.admit("bob", 1, now).is_ok());
    // Three admitted: alice's refused request was given back to the route bucket.
    assert_eq!(limits.level(now).requests.unwrap().available, 97.0);
}

#[tokio::test(start_paused = true)]
async fn requests_per_day_refuse_with_the_wait_for_the_next_one() {
    let per_user = PerUserLimit {
        requests_per_minute: Some(100),
        tokens_per_minute: None,
        requests_per_day: Some(2),
    };
    let limits = RouteLimits::new("r".into(), LimitShare::default(), Some(per_user));
    let now = Instant::now();
    limits.admit("carol", 1, now).unwrap();
    limits.admit("carol", 1, now).unwrap();
    let refusal = limits.admit("carol", 1, now).unwrap_err();
    assert_eq!(refusal.limit, "user \"carol\" requests per day");
    assert_eq!(refusal.retry_after, Duration::from_secs(12 * 3600));
}

#[tokio::test(start_paused = true)]
async fn the_retry_after_is_the_longest_wait_of_all_refusing_buckets() {
    let per_user = PerUserLimit {
        requests_per_minute: Some(1),
        tokens_per_minute: None,
        requests_per_day: Some(1),
    };
    let limits = RouteLimits::new("r".into(), share(Some(60), None), Some(per_user));
    let now = Instant::now();
    limits.admit("dan", 1, now).unwrap();
    let refusal = limits.admit("dan", 1, now).unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(86_400));
}
