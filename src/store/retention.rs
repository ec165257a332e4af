//! Keeping the order history to a window: orders processed longer ago than the
//! retention are deleted, in short batches, while the processor runs.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::order::now_ms;

/// How often a running processor prunes. Each pass deletes what aged out since
/// the last, so a pass is small unless the retention was just shortened.
const EVERY: Duration = Duration::from_secs(600);

/// The time (ms since the epoch) before which orders are older than `retention`.
pub fn cutoff_ms(retention: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

/// Prunes `store` to `retention` now and then every [`EVERY`] until `stop`.
/// A failed pass is logged and tried again at the next: the history may grow
/// for a while, but processing goes on.
pub async fn keep(store: Arc<Store>, retention: Duration, stop: CancellationToken) {
    loop {
        match store.prune(cutoff_ms(retention)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                orders = n,
                ?retention,
                "pruned orders older than the retention"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "pruning the order store failed; trying again later")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
