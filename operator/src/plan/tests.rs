#![allow(clippy::unwrap_used)]

use sluice_crds::ModelRoute;

use super::*;
use crate::usage::ledger::{PodGrant, RouteTotals};

const NS: &str = "team";

fn key(name: &str) -> ObjectKey {
    ObjectKey {
        namespace: NS.into(),
        name: name.into(),
    }
}

fn route(name: &str, extra: &str) -> Arc<AcceptedRoute> {
    let models = if extra.contains("models:") {
        String::new()
    } else {
        format!("  models: [{name}-model]\n")
    };
    let text = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{models}  backends: [{{name: sim, provider: simulator, model: sim-1}}]\n{extra}"
    );
    let r: ModelRoute = serde_saphyr::from_str(&text).unwrap();
    Arc::new(AcceptedRoute {
        key: key(name),
        generation: 1,
        spec: r.spec,
        credentials: BTreeMap::new(),
        header_values: Default::default(),
    })
}

fn budget(limit: &str) -> BudgetSpec {
    serde_json::from_value(serde_json::json!({"limitUSD": limit, "period": "daily", "timeZone": "Europe/Berlin"}))
        .unwrap()
}

fn sidecar(uid: &str) -> Sidecar {
    Sidecar {
        uid: uid.into(),
        name: format!("pod-{uid}"),
        labels: BTreeMap::from([("app".to_owned(), "bot".to_owned())]),
    }
}

fn usd(micros: u64) -> MicroUsd {
    MicroUsd::new(micros)
}

/// 12:00 in Berlin on 2026-11-21; the day began at 2026-11-20T23:00:00Z.
fn noon() -> Timestamp {
    "2026-11-21T11:00:00Z".parse().unwrap()
}

struct World {
    routes: Vec<Arc<AcceptedRoute>>,
    budgets: BTreeMap<ObjectKey, BudgetSpec>,
    pods: BTreeMap<String, BTreeMap<String, String>>,
    sidecars: Vec<Sidecar>,
    route_totals: BTreeMap<String, RouteTotals>,
}

impl World {
    fn new(routes: Vec<Arc<AcceptedRoute>>, limit: &str, uids: &[&str]) -> Self {
        let sidecars: Vec<Sidecar> = uids.iter().map(|u| sidecar(u)).collect();
        Self {
            routes,
            budgets: BTreeMap::from([(key("b"), budget(limit))]),
            pods: sidecars.iter().map(|s| (s.uid.clone(), s.labels.clone())).collect(),
            sidecars,
            route_totals: BTreeMap::new(),
        }
    }

    fn plan(&self, now: Timestamp, ledger: &BTreeMap<String, BudgetTotals>) -> Plan {
        plan(
            &Inputs {
                namespace: NS,
                now,
                routes: &self.routes,
                budgets: &self.budgets,
                pods: &self.pods,
                sidecars: &self.sidecars,
                route_totals: &self.route_totals,
            },
            ledger,
        )
    }
}

fn allowance_of(p: &SidecarPlan) -> MicroUsd {
    p.snapshot.budgets.iter().find(|b| b.key == key("b")).unwrap().allowance
}

#[test]
fn limit_shares_split_the_route_limit_evenly_and_sum_to_it() {
    let world = World::new(
        vec![route(
            "chat",
            "  rateLimit: {requestsPerMinute: 90, tokensPerMinute: 1000}\n",
        )],
        "10",
        &["a", "b", "c"],
    );
    let plan = world.plan(noon(), &BTreeMap::new());
    let shares: Vec<LimitShare> = plan.sidecars.iter().map(|p| p.snapshot.routes[0].share).collect();
    assert_eq!(
        shares,
        vec![
            LimitShare {
                requests_per_minute: Some(30),
                tokens_per_minute: Some(334),
            },
            LimitShare {
                requests_per_minute: Some(30),
                tokens_per_minute: Some(333),
            },
            LimitShare {
                requests_per_minute: Some(30),
                tokens_per_minute: Some(333),
            },
        ]
    );
    let requests: u32 = shares.iter().filter_map(|s| s.requests_per_minute).sum();
    assert_eq!(requests, 90);
    // The remainder goes to the first pods: the parts sum to the limit, never past it.
    let tokens: u32 = shares.iter().filter_map(|s| s.tokens_per_minute).sum();
    assert_eq!(tokens, 1000);
}

#[test]
fn two_pods_with_skewed_demand_get_shares_that_follow_it_and_sum_to_the_limit() {
    use crate::usage::ledger::{Demand, PodDemand};
    let mut world = World::new(
        vec![route(
            "chat",
            "  rateLimit: {requestsPerMinute: 60, tokensPerMinute: 10000}\n",
        )],
        "10",
        &["a", "b"],
    );
    let demand = |requests, tokens| PodDemand {
        recent: Demand { requests, tokens },
        // The window in progress does not move shares: they change once per sizing window.
        window: Demand {
            requests: 1_000,
            tokens: 0,
        },
    };
    world.route_totals.insert(
        "chat".into(),
        RouteTotals {
            demand: BTreeMap::from([("a".into(), demand(45, 9_000)), ("b".into(), demand(5, 0))]),
            ..RouteTotals::default()
        },
    );
    let plan = world.plan(noon(), &BTreeMap::new());
    let shares: Vec<LimitShare> = plan.sidecars.iter().map(|p| p.snapshot.routes[0].share).collect();
    // Requests: floors of 3, the other 54 split 45:5 (48.6 and 5.4). Tokens: floors of 500,
    // the other 9000 all to a.
    assert_eq!(
        shares,
        [
            LimitShare {
                requests_per_minute: Some(52),
                tokens_per_minute: Some(9_500),
            },
            LimitShare {
                requests_per_minute: Some(8),
                tokens_per_minute: Some(500),
            },
        ]
    );
}

#[test]
fn fifty_pods_under_ten_requests_a_minute_share_ten_not_fifty() {
    let uids: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    let uids: Vec<&str> = uids.iter().map(String::as_str).collect();
    let world = World::new(
        vec![route("chat", "  rateLimit: {requestsPerMinute: 10}\n")],
        "10",
        &uids,
    );
    let plan = world.plan(noon(), &BTreeMap::new());
    let parts: Vec<u32> = plan
        .sidecars
        .iter()
        .map(|p| p.snapshot.routes[0].share.requests_per_minute.unwrap())
        .collect();
    assert_eq!(parts[..10], [1; 10]);
    assert_eq!(parts.iter().sum::<u32>(), 10);
}

#[test]
fn a_stored_pod_without_a_sidecar_still_takes_its_share() {
    let mut world = World::new(
        vec![route("chat", "  rateLimit: {requestsPerMinute: 10}\n")],
        "10",
        &["a"],
    );
    world.pods.insert("stored".into(), sidecar("stored").labels);
    let plan = world.plan(noon(), &BTreeMap::new());
    assert_eq!(plan.sidecars.len(), 1);
    assert_eq!(plan.sidecars[0].snapshot.routes[0].share.requests_per_minute, Some(5));
}

#[test]
fn allowances_give_each_pod_an_equal_share_of_what_is_left() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "10", &["a", "b"]);
    let plan = world.plan(noon(), &BTreeMap::new());
    // Granted, and held back from the snapshots until the ledger holding it is persisted.
    let granted: Vec<MicroUsd> = plan.sidecars.iter().map(allowance_of).collect();
    assert_eq!(granted, vec![MicroUsd::ZERO, MicroUsd::ZERO]);
    assert!(plan.ledger_changed);
    let mut budgets = plan.budgets.clone();
    mark_persisted(&mut budgets, &written(&plan.budgets));
    let persisted = world.plan(noon(), &budgets);
    let granted: Vec<MicroUsd> = persisted.sidecars.iter().map(allowance_of).collect();
    assert_eq!(granted, vec![usd(5_000_000), usd(5_000_000)]);
    let totals = &plan.budgets["b"];
    assert_eq!(totals.period_start, Some("2026-11-20T23:00:00Z".parse().unwrap()));
    assert_eq!(totals.pods["a"].granted, usd(5_000_000));
    assert_eq!(totals.pods["b"].granted, usd(5_000_000));
    assert_eq!(plan.outstanding["b"], usd(10_000_000));
}

#[test]
fn grants_never_pass_the_limit_and_a_settled_plan_changes_nothing() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "10", &["a", "b"]);
    let start: Timestamp = "2026-11-20T23:00:00Z".parse().unwrap();
    // $4 spent, $2 of it by `a`, whose grant of $3 has $1 left (under half its $3 target).
    let ledger = BTreeMap::from([(
        "b".to_owned(),
        BudgetTotals {
            period_start: Some(start),
            spent: usd(4_000_000),
            pods: BTreeMap::from([
                (
                    "a".to_owned(),
                    PodGrant {
                        granted: usd(3_000_000),
                        spent: usd(2_000_000),
                        ..PodGrant::default()
                    },
                ),
                (
                    "b".to_owned(),
                    PodGrant {
                        granted: usd(5_000_000),
                        spent: usd(2_000_000),
                        ..PodGrant::default()
                    },
                ),
            ]),
            ..BudgetTotals::default()
        },
    )]);
    let plan = world.plan(noon(), &ledger);
    // Left: $10 − $4 = $6, $3 a pod. `a` has $1 headroom: topped up by $2 out of the free
    // $6 − ($1 + $3) = $2, to $5 (pushed once persisted). `b` has $3 headroom, at its
    // target: unchanged.
    let granted: Vec<MicroUsd> = plan.sidecars.iter().map(allowance_of).collect();
    assert_eq!(granted, vec![usd(3_000_000), usd(5_000_000)]);
    assert_eq!(plan.budgets["b"].pods["a"].granted, usd(5_000_000));
    assert_eq!(plan.outstanding["b"], usd(6_000_000));
    assert_eq!(plan.budgets["b"].spent + plan.outstanding["b"], usd(10_000_000));
    assert!(plan.ledger_changed);
    let again = world.plan(noon(), &plan.budgets);
    assert!(!again.ledger_changed);
    assert_eq!(again.budgets, plan.budgets);
}

#[test]
fn a_new_period_starts_from_nothing_spent() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "10", &["a"]);
    let yesterday: Timestamp = "2026-11-19T23:00:00Z".parse().unwrap();
    let ledger = BTreeMap::from([(
        "b".to_owned(),
        BudgetTotals {
            period_start: Some(yesterday),
            spent: usd(9_000_000),
            pods: BTreeMap::from([(
                "a".to_owned(),
                PodGrant {
                    granted: usd(10_000_000),
                    spent: usd(9_000_000),
                    ..PodGrant::default()
                },
            )]),
            ..BudgetTotals::default()
        },
    )]);
    let plan = world.plan(noon(), &ledger);
    let totals = &plan.budgets["b"];
    assert_eq!(totals.period_start, Some("2026-11-20T23:00:00Z".parse().unwrap()));
    assert_eq!(totals.spent, MicroUsd::ZERO);
    assert_eq!(totals.pods["a"].spent, MicroUsd::ZERO);
    assert_eq!(totals.pods["a"].granted, usd(10_000_000));
    // The new period's grant names its period; until persisted it is not pushed.
    let config = &plan.sidecars[0].snapshot.budgets[0];
    assert_eq!(config.allowance, MicroUsd::ZERO);
    assert_eq!(
        config.allowance_period_start,
        Some("2026-11-20T23:00:00Z".parse().unwrap())
    );
    assert!(plan.ledger_changed);
}

#[test]
fn a_route_claiming_a_served_model_is_left_out_and_named() {
    let world = World::new(
        vec![
            route("a-first", "  models: [shared]\n"),
            route("b-second", "  models: [shared]\n"),
        ],
        "10",
        &["a"],
    );
    let plan = world.plan(noon(), &BTreeMap::new());
    assert_eq!(plan.sidecars[0].snapshot.routes.len(), 1);
    assert_eq!(plan.sidecars[0].conflicts, vec![key("b-second")]);
}

/// A ledger of budget `b` in today's period, persisted, with these pods' (granted, spent).
fn today(spent: u64, pods: &[(&str, u64, u64)]) -> BTreeMap<String, BudgetTotals> {
    BTreeMap::from([(
        "b".to_owned(),
        BudgetTotals {
            period_start: Some("2026-11-20T23:00:00Z".parse().unwrap()),
            spent: usd(spent),
            pods: pods
                .iter()
                .map(|(uid, granted, spent)| {
                    let grant = PodGrant {
                        granted: usd(*granted),
                        spent: usd(*spent),
                        ..PodGrant::default()
                    };
                    ((*uid).to_owned(), grant)
                })
                .collect(),
            ..BudgetTotals::default()
        },
    )])
}

#[test]
fn an_ask_is_topped_up_out_of_free_money_only_and_pushed_once_persisted() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "10", &["a", "b"]);
    // $10: `a` spent its $2, `b` holds $3 of which it spent $1. Free: 10 − 3 − 2 = $5.
    let mut ledger = today(3_000_000, &[("a", 2_000_000, 2_000_000), ("b", 3_000_000, 1_000_000)]);
    // `a` holds $2 and asks for $6 more: $8 in all.
    ledger.get_mut("b").unwrap().pods.get_mut("a").unwrap().asked = usd(8_000_000);
    let plan = world.plan(noon(), &ledger);
    let totals = &plan.budgets["b"];
    // Sizing first: target headroom (10 − 3) / 2 = $3.50, `a` has none: +$3.50 of the free $5;
    // the ask then takes the $1.50 left: $2 + $3.50 + $1.50 = $7. Nothing is free after.
    assert_eq!(totals.pods["a"].granted, usd(7_000_000));
    assert_eq!(totals.pods["a"].asked, MicroUsd::ZERO, "an ask is answered once");
    assert_eq!(totals.spent + plan.outstanding["b"], usd(10_000_000));
    // Not pushed before the ledger is written; pushed after.
    assert_eq!(allowance_of(&plan.sidecars[0]), usd(2_000_000));
    let mut budgets = plan.budgets.clone();
    mark_persisted(&mut budgets, &written(&plan.budgets));
    let again = world.plan(noon(), &budgets);
    assert_eq!(allowance_of(&again.sidecars[0]), usd(7_000_000));
    assert!(!again.ledger_changed);
}

#[test]
fn a_grant_raised_while_its_ledger_was_being_written_stays_held_back_by_the_raise() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "10", &["a"]);
    let ledger = today(1_000_000, &[("a", 1_000_000, 1_000_000)]);
    let plan = world.plan(noon(), &ledger);
    // Target: all $9 left for the only pod: granted $10, $9 of it not persisted.
    let writing = written(&ledger);
    let mut budgets = plan.budgets.clone();
    assert_eq!(budgets["b"].pods["a"].granted, usd(10_000_000));
    // The write that lands held the grant as it was before the raise ($1).
    mark_persisted(&mut budgets, &writing);
    assert_eq!(budgets["b"].pods["a"].pushable(), usd(1_000_000));
}

#[test]
fn an_idle_pod_keeps_only_what_it_spent_and_the_busy_one_gets_the_rest() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "1", &["idle", "busy"]);
    // $1: `idle` holds $0.50 and spent $0.10; `busy` spent its $0.50. Nothing free.
    let mut ledger = today(600_000, &[("idle", 500_000, 100_000), ("busy", 500_000, 500_000)]);
    for window in 1..=crate::allowance::IDLE_WINDOWS {
        let plan = world.plan(noon(), &ledger);
        assert_eq!(plan.budgets["b"].pods["idle"].granted, usd(500_000), "window {window}");
        ledger.get_mut("b").unwrap().pods.get_mut("idle").unwrap().idle_windows = window;
    }
    // Idle for three windows: shrunk to its $0.10; its $0.40 goes to `busy`, whose target is
    // (1 − 0.6) / 2 = $0.20 of headroom; it asks for $0.40 more, so it gets all of it.
    ledger.get_mut("b").unwrap().pods.get_mut("busy").unwrap().asked = usd(900_000);
    let plan = world.plan(noon(), &ledger);
    let totals = &plan.budgets["b"];
    assert_eq!(totals.pods["idle"].granted, usd(100_000));
    assert_eq!(totals.pods["busy"].granted, usd(900_000));
    assert_eq!(totals.spent + plan.outstanding["b"], usd(1_000_000));
    // The cut is pushed at once (it needs no persisting); the raise waits for the write.
    let pushed: Vec<MicroUsd> = plan.sidecars.iter().map(allowance_of).collect();
    assert_eq!(pushed, vec![usd(100_000), usd(500_000)]);
    // Still idle: the next plan gives it nothing back, and changes nothing.
    let again = world.plan(noon(), &plan.budgets);
    assert_eq!(again.budgets["b"].pods["idle"].granted, usd(100_000));
    assert!(!again.ledger_changed);
}

#[test]
fn a_snapshot_says_when_the_budget_is_spent() {
    let world = World::new(vec![route("chat", "  budgetRef: {name: b}\n")], "1", &["a"]);
    let plan = world.plan(noon(), &today(1_000_000, &[("a", 1_000_000, 1_000_000)]));
    assert!(plan.sidecars[0].snapshot.budgets[0].exhausted);
    let plan = world.plan(noon(), &today(999_999, &[("a", 1_000_000, 999_999)]));
    assert!(!plan.sidecars[0].snapshot.budgets[0].exhausted);
}

#[test]
fn sidecars_planned_alike_share_one_snapshot_and_the_others_get_their_own() {
    let w = World::new(
        vec![route("r", "  rateLimit: {requestsPerMinute: 10}\n")],
        "100.00",
        &["u1", "u2", "u3"],
    );
    let p = w.plan(noon(), &BTreeMap::new());
    let (a, b, c) = (&p.sidecars[0], &p.sidecars[1], &p.sidecars[2]);
    assert!(Arc::ptr_eq(&b.snapshot, &c.snapshot));
    assert_ne!(a.snapshot.version, b.snapshot.version);
    assert_eq!(a.snapshot.routes[0].share.requests_per_minute, Some(4));
    assert_eq!(b.snapshot.routes[0].share.requests_per_minute, Some(3));
    assert_eq!((b.uid.as_str(), c.uid.as_str()), ("u2", "u3"));
}
