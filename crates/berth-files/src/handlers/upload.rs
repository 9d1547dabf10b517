//! `POST /upload` (multipart, as the blog's `curl -F file=@x`) and
//! `PUT /files/{name}` (raw body): uploads streamed to disk in constant memory.
//!
//! An upload is made durable before it is answered: bytes stream through a
//! bounded channel to a writer thread that appends them to a temporary file;
//! once the body ended, the optional client checksum is compared, and only
//! then is the file fsynced and renamed over its name (see `volume.rs`). Any
//! failure on the way (size limit, full volume, stalled client, bad checksum,
//! dropped connection) removes the temporary file and leaves the previous
//! version of the name untouched. In a cluster, a name that lives on another
//! member, or that rendezvous hashing places there, is streamed to it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Multipart, Path};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{blocking, Shared};
use crate::cluster::{is_local_scope, owner};
use crate::error::ApiError;
use crate::name::FileName;
use crate::quiesce::WriteSlot;
use crate::volume::{Committed, PendingUpload, UploadError};

/// Chunks in flight between the network and the writer thread; bounds the
/// memory an upload can hold whatever the client's speed.
const CHANNEL_CHUNKS: usize = 16;
/// Slack for the multipart envelope when checking Content-Length up front.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Most a refused upload is read on for, so its client sees the answer.
const LINGER_TIME: Duration = Duration::from_secs(3);
const LINGER_BYTES: i64 = 64 << 20;

const CHECKSUM_HEADER: HeaderName = HeaderName::from_static("x-checksum-sha256");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

pub async fn upload_multipart(
    state: Shared,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|_| {
        ApiError::bad_request("expected a multipart/form-data body with a 'file' field (curl -F file=@PATH)")
    })?;
    // The digest of a multipart request covers the envelope, so only the
    // per-file header applies here.
    let expected = parse_checksum(&headers, false)?;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let Some(field) = field else {
            return Err(ApiError::bad_request("No file provided: send the file in a multipart field named 'file'"));
        };
        if field.name() != Some("file") {
            continue;
        }
        let raw = field.file_name().unwrap_or_default().to_owned();
        if raw.is_empty() {
            return Err(ApiError::bad_request(no_file_name(field.headers())));
        }
        let name = FileName::parse(&raw)?;
        let body = field.map_err(std::io::Error::other).boxed();
        return receive(&state, &headers, name, body, expected, StatusCode::OK, MULTIPART_OVERHEAD).await;
    }
}

/// Why a `file` field has no name: none was given, or one that is not
/// UTF-8 (the multipart parser drops it), which a user fixes by renaming.
fn no_file_name(headers: &HeaderMap) -> &'static str {
    let disposition = headers.get(axum::http::header::CONTENT_DISPOSITION).map(|v| v.as_bytes()).unwrap_or_default();
    let given = disposition.windows(9).any(|w| w.eq_ignore_ascii_case(b"filename="));
    match given && std::str::from_utf8(disposition).is_err() {
        true => "the file name is not UTF-8: file names are UTF-8 text; rename the file and upload it again",
        false => "No selected file: the 'file' field has no filename",
    }
}

pub async fn put_file(
    state: Shared,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(raw) = name.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = FileName::parse(&raw)?;
    let expected = parse_checksum(&headers, true)?;
    let body = body.into_data_stream().map_err(std::io::Error::other).boxed();
    receive(&state, &headers, name, body, expected, StatusCode::CREATED, 0).await
}

/// Stores `body` under `name` here or on the member that should hold it.
/// `created` is the status for a name that did not exist before; `overhead`
/// the bytes of envelope around the content in the declared length.
async fn receive(
    state: &Shared,
    headers: &HeaderMap,
    name: FileName,
    body: BoxStream<'_, Result<Bytes, std::io::Error>>,
    expected: Option<[u8; 32]>,
    created: StatusCode,
    overhead: u64,
) -> Result<Response, ApiError> {
    let mut inbound = Inbound {
        stream: body,
        received: 0,
        polled: false,
        max: state.config.max_upload,
        idle: state.config.body_idle_timeout,
    };
    let result = async {
        check_declared_length(state, headers, overhead)?;
        if let Some(member) = remote_placement(state, headers, &name).await? {
            return forward(state, &member, &name, &mut inbound, expected, created).await;
        }
        let done = store_local(state, name.clone(), &mut inbound, expected).await?;
        let status = if done.replaced { StatusCode::OK } else { created };
        tracing::info!(file = %name, size = done.size, replaced = done.replaced, "file stored");
        Ok((
            status,
            Json(json!({
                "message": "File uploaded successfully",
                "filename": name.as_str(),
                "size": done.size,
                "path": done.path.display().to_string(),
            })),
        )
            .into_response())
    }
    .await;
    if let Err(e) = &result {
        // A client waiting for "100 Continue" has sent nothing yet: a refusal
        // before the body was read needs no lingering.
        let waiting = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if e.status != StatusCode::REQUEST_TIMEOUT && (inbound.polled || !waiting) {
            inbound.linger().await;
        }
    }
    result
}

/// The request body, read with the size limit and the stall timeout applied.
struct Inbound<'a> {
    stream: BoxStream<'a, Result<Bytes, std::io::Error>>,
    received: u64,
    /// Whether the body was read at all (after which "100 Continue" was sent).
    polled: bool,
    max: u64,
    idle: Duration,
}

impl Inbound<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        self.polled = true;
        match tokio::time::timeout(self.idle, self.stream.next()).await {
            Err(_) => Err(ApiError::timeout("the request body (the client stalled)")),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(ApiError::bad_request(format!("upload interrupted: {e}"))),
            Ok(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.max {
                    return Err(ApiError::too_large(self.max));
                }
                Ok(Some(chunk))
            }
        }
    }

    /// Reads and discards what the client still sends after a refusal, for a
    /// bounded time and size, so that it reads the error instead of a reset
    /// connection (as nginx's lingering close does).
    async fn linger(&mut self) {
        let discard = async {
            let mut left: i64 = LINGER_BYTES;
            while left > 0 {
                match self.stream.next().await {
                    Some(Ok(chunk)) => left -= chunk.len() as i64,
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, discard).await;
    }
}

/// An upload with the quiesce slot it was started under. Fields drop in
/// order, so an aborted upload removes its temporary file before the slot
/// ends, wherever it is dropped (a cancelled request, a blocking task's
/// unclaimed output): a quiesce never sees a write still running.
struct Gated {
    upload: PendingUpload,
    _slot: WriteSlot,
}

/// Writes the body into this volume and commits it, under a quiesce slot.
async fn store_local(
    state: &Shared,
    name: FileName,
    inbound: &mut Inbound<'_>,
    expected: Option<[u8; 32]>,
) -> Result<Committed, ApiError> {
    let volume = state.volume.clone();
    let label = name.to_string();
    // Taken before the volume is touched and before the body is read: a held
    // upload waits here while its client is paused by TCP flow control.
    let slot = state.quiesce.enter().await;
    let gated = blocking(move || volume.begin_upload(name).map(|upload| Gated { upload, _slot: slot }))
        .await?
        .map_err(|e| ApiError::io("storage path", &e))?;

    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let hash = expected.is_some();
    let writer = tokio::task::spawn_blocking(move || {
        // Moves the whole of `gated` (slot included) into the thread, not
        // only the field used below.
        let mut gated = gated;
        let upload = &mut gated.upload;
        let mut hasher = hash.then(Sha256::new);
        let mut batch: Vec<Bytes> = Vec::with_capacity(CHANNEL_CHUNKS);
        while let Some(first) = rx.blocking_recv() {
            // Whatever else has arrived goes into the same write(2).
            batch.push(first);
            while batch.len() < CHANNEL_CHUNKS {
                match rx.try_recv() {
                    Ok(chunk) => batch.push(chunk),
                    Err(_) => break,
                }
            }
            let slices: Vec<&[u8]> = batch.iter().map(|b| b.as_ref()).collect();
            upload.write_chunks(&slices)?;
            if let Some(h) = hasher.as_mut() {
                slices.iter().for_each(|c| h.update(c));
            }
            batch.clear();
        }
        Ok::<_, UploadError>((gated, hasher.map(|h| <[u8; 32]>::from(h.finalize()))))
    });

    let counter = state.metrics.upload_bytes.clone();
    let read_result = loop {
        match inbound.next().await {
            Ok(Some(chunk)) => {
                counter.inc_by(chunk.len() as u64);
                if tx.send(chunk).await.is_err() {
                    break Ok(()); // the writer stopped: its error is reported below
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    let written =
        writer.await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("writer failed: {e}")));
    // A read error wins: the writer only stopped because the body did.
    read_result?;
    let (gated, digest) = written?.map_err(|e| upload_error(&label, e))?;
    if let (Some(want), Some(got)) = (expected, digest) {
        if want != got {
            return Err(ApiError::bad_request(format!(
                "checksum mismatch: the client sent sha-256 {} but the server received {}; nothing was stored",
                hex::encode(want),
                hex::encode(got)
            )));
        }
    }
    blocking(move || {
        let Gated { upload, _slot: slot } = gated;
        let committed = upload.commit();
        drop(slot);
        committed
    })
    .await?
    .map_err(|e| ApiError::io(&label, &e))
}

fn upload_error(name: &str, err: UploadError) -> ApiError {
    match err {
        UploadError::Capacity(cap) => {
            ApiError::volume_full(&format!("storing this upload would exceed the volume's capacity of {cap} bytes"))
        }
        UploadError::Io(e) => ApiError::io(name, &e),
    }
}

/// Refuses up front a body whose declared length cannot fit.
fn check_declared_length(state: &Shared, headers: &HeaderMap, overhead: u64) -> Result<(), ApiError> {
    let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(());
    };
    if len > state.config.max_upload + overhead {
        return Err(ApiError::too_large(state.config.max_upload));
    }
    if state.cluster.is_none() {
        if let Ok(free) = state.volume.free() {
            if len.saturating_sub(overhead) > free {
                return Err(ApiError::volume_full(&format!("the upload needs {len} bytes, {free} are free")));
            }
        }
    }
    Ok(())
}

/// The client's SHA-256 of the content, from `x-checksum-sha256` (hex or
/// base64) or, for raw bodies, `Content-Digest: sha-256=:BASE64:` (RFC 9530).
fn parse_checksum(headers: &HeaderMap, content_digest: bool) -> Result<Option<[u8; 32]>, ApiError> {
    if let Some(v) = headers.get(CHECKSUM_HEADER) {
        let text = v.to_str().unwrap_or_default().trim();
        let bytes = hex::decode(text).ok().or_else(|| STANDARD.decode(text).ok());
        return match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(d) => Ok(Some(d)),
            None => Err(ApiError::bad_request("x-checksum-sha256 must be a SHA-256 in hex or base64")),
        };
    }
    if !content_digest {
        return Ok(None);
    }
    let Some(v) = headers.get(CONTENT_DIGEST) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default();
    for item in text.split(',') {
        let Some((alg, value)) = item.trim().split_once('=') else {
            continue;
        };
        if alg.trim().eq_ignore_ascii_case("sha-256") {
            let b64 = value.trim().trim_matches(':');
            return match STANDARD.decode(b64).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(d) => Ok(Some(d)),
                None => Err(ApiError::bad_request("Content-Digest sha-256 must be base64 between colons")),
            };
        }
    }
    Err(ApiError::bad_request("Content-Digest names no sha-256 digest, the only algorithm supported"))
}

/// The member that should store `name`, or `None` for this one.
async fn remote_placement(state: &Shared, headers: &HeaderMap, name: &FileName) -> Result<Option<String>, ApiError> {
    let Some(cluster) = state.cluster.as_ref().filter(|_| !is_local_scope(headers)) else {
        return Ok(None);
    };
    let volume = state.volume.clone();
    let lookup = name.clone();
    if blocking(move || volume.stat(&lookup)).await?.ok().flatten().is_some() {
        return Ok(None); // an existing name is written where it lives
    }
    let members = cluster.members().await;
    let found = cluster.lookup(name, &members).await;
    if let Some(holder) = found.holder {
        return Ok(Some(holder));
    }
    // A member that does not answer (being replaced) may hold this name:
    // placing it elsewhere would leave two copies, and once that member is
    // back a read could find its older one, an acknowledged write lost
    // (the chaos soak found it). Retry, as a read of the name would.
    let missing = cluster.missing(&members, &found);
    if missing > 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{name} is on none of the members that answer, and {missing} member(s) of the service do not \
                 answer (being started or replaced), so it may be on theirs; retry in a moment"
            ),
        ));
    }
    // Placed among the members that answer and are staying: none goes to
    // a claim being parked.
    let candidates = cluster.placeable(&found.reachable).await;
    let chosen = owner(name, &candidates);
    Ok((chosen != cluster.me()).then(|| chosen.to_owned()))
}

/// Streams the body to `member` as a raw PUT and relays its answer.
async fn forward(
    state: &Shared,
    member: &str,
    name: &FileName,
    inbound: &mut Inbound<'_>,
    expected: Option<[u8; 32]>,
    created: StatusCode,
) -> Result<Response, ApiError> {
    let cluster = state.cluster.as_ref().expect("forward is only called in a cluster");
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    let body = reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut request = cluster.request(Method::PUT, member, &["files", name.as_str()]).body(body);
    if let Some(d) = expected {
        request = request.header(CHECKSUM_HEADER, hex::encode(d));
    }
    let pump = async {
        let tx = tx; // owned by the pump, so the body ends when the pump does
        loop {
            match inbound.next().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    // An error item aborts the request body, so the member
                    // discards its partial upload instead of committing it.
                    let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
                    return Err(e);
                }
            }
        }
    };
    let (pumped, answer) = tokio::join!(pump, request.send());
    pumped?;
    let answer = answer
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("peer {member} did not take the upload: {e}")))?;
    let status = match answer.status().as_u16() {
        201 => created,
        code => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
    };
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("peer {member} answer was cut: {e}")))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
