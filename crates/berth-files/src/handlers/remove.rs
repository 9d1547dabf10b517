//! `DELETE /files/{name}`: removes a file here and on any member holding it.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{blocking, Shared};
use crate::cluster::is_local_scope;
use crate::error::ApiError;
use crate::name::FileName;

pub async fn delete_file(
    state: Shared,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(raw) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = FileName::parse(&raw)?;
    let volume = state.volume.clone();
    let target = name.clone();
    // Only the local delete is gated: members delete under their own gates.
    let slot = state.quiesce.enter().await;
    let mut found = blocking(move || {
        // The slot ends with the work, even if the request is dropped meanwhile.
        let result = volume.delete(&target);
        drop(slot);
        result
    })
    .await?
    .map_err(|e| ApiError::io(name.as_str(), &e))?;
    if let Some(cluster) = state.cluster.as_ref().filter(|_| !is_local_scope(&headers)) {
        let members = cluster.members().await;
        let others: Vec<&String> = members.iter().filter(|m| m.as_str() != cluster.me()).collect();
        let answers =
            join_all(others.iter().map(|m| cluster.short_request(Method::DELETE, m, &["files", name.as_str()]).send()))
                .await;
        found |= answers.iter().any(|a| matches!(a, Ok(r) if r.status().is_success()));
        // Every member that answered, this one included.
        let answered = 1 + answers.iter().filter(|a| matches!(a, Ok(r) if !r.status().is_server_error())).count();
        let missing = cluster.expected().max(members.len()).saturating_sub(answered);
        if !found && missing > 0 {
            // Not a 404: the name may live on a member being replaced.
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{name} is on none of the members that answer, and {missing} member(s) of the service do not \
                     answer (being started or replaced); retry in a moment"
                ),
            ));
        }
    }
    if !found {
        return Err(ApiError::not_found(name.as_str()));
    }
    tracing::info!(file = %name, "file deleted");
    Ok(Json(json!({ "message": "File deleted", "filename": name.as_str() })))
}
