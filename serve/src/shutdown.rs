//! Graceful shutdown: one watch channel tells every open connection first to finish what it
//! serves and take nothing new (drain), then, once the grace period is over, to close.
//!
//! Not hyper-util's `GracefulShutdown`: it can only ask connections to finish, and closing
//! what remains after the grace period would take a second signal, checked beside the first
//! on every wake-up of every connection. One channel carrying both phases keeps that to one
//! check, as with hyper-util's.

use std::{fmt::Display, net::SocketAddr, pin::pin, time::Duration};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

/// What open connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serve requests as they come.
    Serving,
    /// Finish the requests in flight, take no new ones, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Drives `connection` to its end, or until `phase` says to close it (by dropping it).
pub(crate) async fn watch<C>(connection: C, mut phase: watch::Receiver<Phase>, peer: SocketAddr)
where
    C: GracefulConnection,
    C::Error: Display,
{
    let mut connection = pin!(connection);
    let ended = tokio::select! {
        biased;
        ended = connection.as_mut() => ended,
        // An error here means the server is gone without a word: drain, as for a shutdown.
        _ = phase.changed() => {
            if *phase.borrow_and_update() == Phase::Closing {
                return;
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                biased;
                ended = connection.as_mut() => ended,
                Ok(()) = phase.changed() => return,
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Tells every open connection to drain, waits for them for up to `grace`, then closes the
/// ones that remain and waits for them to be gone.
pub(crate) async fn drain(phase: watch::Sender<Phase>, grace: Duration) {
    phase.send_replace(Phase::Draining);
    if tokio::time::timeout(grace, phase.closed()).await.is_ok() {
        return;
    }
    tracing::warn!(?grace, "grace period over; closing the remaining connections");
    phase.send_replace(Phase::Closing);
    phase.closed().await;
}
