//! What the request span learns from the pipeline once a request is admitted to its route: the
//! pipeline's types turned into `telemetry`'s (which sits below `route` and cannot name them).

use crate::{
    config::ActiveConfig,
    route::{Route, facts::Body},
    telemetry::{self, Asked, Routed},
};

/// Names the request span for the operation and model, with its route, budget and user.
pub(super) fn admitted(config: &ActiveConfig, route: &Route, model: &str, body: Body<'_>, user: Option<&str>) {
    let routed = Routed {
        route: &route.key,
        budget: route.budget.as_ref(),
        user,
        user_labels: config.recorder.user_labels,
    };
    telemetry::admitted(routed, model, asked(body));
}

/// The request as its span reads it.
fn asked(body: Body<'_>) -> Asked<'_> {
    match body {
        Body::Chat(r) => Asked::Chat(r),
        Body::Completions(r) => Asked::Completions(r),
        Body::Embeddings(r) => Asked::Embeddings(r),
    }
}
