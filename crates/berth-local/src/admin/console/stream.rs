//! `GET /v1/events/stream`: the event log as server-sent events, for the
//! console's live views. Each message's data is one event as `/v1/events`
//! gives it. The ledger is the source: the stream reads what was appended
//! since its last look, twice a second, so it shows every event in order
//! whoever wrote it (the controller, a handler, `berth up`'s loops).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use berth_core::ledger::Ledger;
use futures_util::stream::Stream;
use serde::Deserialize;

use super::super::{ApiError, AppState};
use crate::host::HostRuntime;

const LOOK: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
pub struct StreamQuery {
    /// Start after this sequence number; default: only events from now on.
    after: Option<u64>,
}

pub async fn events<R: HostRuntime>(
    State(app): State<AppState<R>>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let ledger = std::sync::Arc::clone(&app.platform.ledger);
    let start = match q.after {
        Some(after) => after,
        None => ledger.last_event_seq().map_err(ApiError::internal)?,
    };
    let stream =
        futures_util::stream::unfold((ledger, start, Vec::new()), |(ledger, mut after, mut queued)| async move {
            loop {
                if let Some(event) = queued.pop() {
                    return Some((Ok(event), (ledger, after, queued)));
                }
                tokio::time::sleep(LOOK).await;
                match ledger.events(after, None, 1000).await {
                    Ok(events) => {
                        if let Some(last) = events.last() {
                            after = last.seq;
                        }
                        // Popped from the end: kept newest first.
                        queued = events
                            .iter()
                            .rev()
                            .filter_map(|e| Event::default().id(e.seq.to_string()).json_data(e).ok())
                            .collect();
                    }
                    Err(e) => tracing::warn!(error = %e, "event stream: cannot read the ledger"),
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
