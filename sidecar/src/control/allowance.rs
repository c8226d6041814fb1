//! Asking the operator for more of a budget (DESIGN §6.3): the budget accounts queue an
//! [`Ask`] when their slice runs low or out; each is sent as `POST /v1/allowance`. The larger
//! grant itself arrives in a snapshot (the one ordered source of grants); the answer only tells
//! the account when waiting is over: nothing more was free, or the budget is spent.

use std::time::Duration;

use sluice_crds::control::{ALLOWANCE_PATH, AllowanceAnswer, AllowanceRequest};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{ControlClient, ControlError, locked};
use crate::budget::Ask;

/// How long one ask may take: the operator persists and pushes before it answers.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

impl ControlClient {
    /// Sends each ask as it comes, concurrently, until `shutdown`.
    pub(super) async fn ask_until(&self, mut asks: UnboundedReceiver<Ask>, shutdown: CancellationToken) {
        loop {
            let ask = tokio::select! {
                ask = asks.recv() => match ask {
                    Some(ask) => ask,
                    None => return,
                },
                () = shutdown.cancelled() => return,
            };
            let client = self.clone();
            tokio::spawn(async move { client.ask(ask).await });
        }
    }

    /// Sends one ask and tells its account the answer.
    async fn ask(&self, ask: Ask) {
        let Some(account) = self.shared.store.budgets().get(&ask.budget) else {
            return;
        };
        match self.ask_once(&ask).await {
            Ok(answer) => {
                tracing::debug!(budget = %ask.budget, held = %ask.held, granted = %answer.granted,
                    exhausted = answer.exhausted, "allowance answered");
                account.answered(ask.held, answer.granted, answer.period_start, answer.exhausted);
            }
            Err(e) => {
                tracing::warn!(budget = %ask.budget, error = %e, "asking for more allowance failed");
                account.ask_failed(ask.held);
            }
        }
    }

    async fn ask_once(&self, ask: &Ask) -> Result<AllowanceAnswer, ControlError> {
        let url = locked(&self.shared.url).clone();
        let request = AllowanceRequest {
            budget: ask.budget.clone(),
            held: ask.held,
            wanted: ask.wanted,
        };
        let response = self
            .http()?
            .post(format!("{url}{ALLOWANCE_PATH}"))
            .bearer_auth(self.token()?)
            .timeout(ASK_TIMEOUT)
            .json(&request)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(ControlError::Refused {
                status,
                body: response.text().await.unwrap_or_default(),
            });
        }
        Ok(response.json().await?)
    }
}
