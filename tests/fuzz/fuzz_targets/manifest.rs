//! A manifest file as the sidecar's local mode reads it: multi-document YAML, typed and
//! validated (`sluice_crds::manifest::parse_manifests`). What it accepts must survive a JSON
//! round trip (how the API server stores it) and still validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_crds::{
    Budget, ModelRoute,
    manifest::{Manifest, parse_manifests},
    validation::{validate_budget, validate_model_route},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let manifests = match parse_manifests(text) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for manifest in manifests {
        match manifest {
            Manifest::ModelRoute(route) => {
                let json = serde_json::to_value(&*route).expect("a route serializes");
                let back: ModelRoute = serde_json::from_value(json).expect("a route reads back");
                validate_model_route(&back.spec).expect("a valid route stays valid");
            }
            Manifest::Budget(budget) => {
                let json = serde_json::to_value(&*budget).expect("a budget serializes");
                let back: Budget = serde_json::from_value(json).expect("a budget reads back");
                validate_budget(&back.spec).expect("a valid budget stays valid");
            }
            Manifest::Secret(_) | Manifest::Ignored { .. } => {}
        }
    }
});
