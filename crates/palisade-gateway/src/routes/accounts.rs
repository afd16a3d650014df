//! The accounts' routes (the accounts feature, [`crate::accounts`]): the
//! bank account of the seeds, event-sourced.
//!
//! | request | what |
//! |---|---|
//! | `POST /api/accounts` | opens an account (`{"owner": "..."}`, optional); `201` with its `id` |
//! | `POST /api/accounts/{id}/deposits` | `{"cents": n}`; `200` with the stream's `version` and the event's `position` |
//! | `POST /api/accounts/{id}/withdrawals` | `{"cents": n}`; an overdraft is `409` (`urn:palisade:problem:overdraft`) with the `balance` |
//! | `GET /api/accounts/{id}` | the balance from the read model; `?min_position=N` waits (at most `wait_ms`, default [`DEFAULT_WAIT_MS`], at most [`MAX_WAIT_MS`]) until the read model has reached position `N`, else `503` (`urn:palisade:problem:read-model-behind`) |
//! | `GET /api/accounts/{id}/events` | the account's stream (`?from=<version>&max=<n>`, at most [`MAX_EVENTS`]) |
//!
//! An `Idempotency-Key` header (1 to [`MAX_KEY_LEN`] visible ASCII
//! characters) on a `POST` becomes the command's id, scoped to the account
//! and the operation: the same request sent twice writes once and answers
//! the first outcome again, with `Idempotency-Replayed: true`. On
//! `POST /api/accounts` it also names the account (the id is a hash of the
//! key), so a replayed open answers the same account.
//!
//! Every refusal is `application/problem+json`: a bad id (1 to
//! [`MAX_ID_LEN`] of `A-Z a-z 0-9 _ -`) or body `400`, an amount out of
//! `1..=MAX_CENTS` `422`, an unknown account `404`; the store down, slow or
//! behind an open breaker `503` with `Retry-After` (nothing written).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{HeaderName, LOCATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade::cqrs::{Command, CommandError, CommandOutcome};
use palisade::http::{Problem, rejection_problem};
use serde::Deserialize;

use crate::accounts::{
    AccountCommand, AccountError, AccountEvent, Accounts, MAX_CENTS, millis_since_epoch,
};
use crate::state::AppState;

/// The longest account id.
pub(crate) const MAX_ID_LEN: usize = 64;
/// The longest `Idempotency-Key`.
pub(crate) const MAX_KEY_LEN: usize = 128;
/// The longest owner name.
pub(crate) const MAX_OWNER_LEN: usize = 200;
/// The most events `GET /api/accounts/{id}/events` returns at once.
pub(crate) const MAX_EVENTS: usize = 1000;
/// How long `GET /api/accounts/{id}?min_position=N` waits by default.
pub(crate) const DEFAULT_WAIT_MS: u64 = 2000;
/// The longest it waits.
pub(crate) const MAX_WAIT_MS: u64 = 10_000;

/// A refusal answered before any command: a problem response, boxed.
type Refusal = Box<Response>;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");

/// `/api/accounts` and below.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/accounts", post(open))
        .route("/api/accounts/{id}", get(balance))
        .route("/api/accounts/{id}/deposits", post(deposit))
        .route("/api/accounts/{id}/withdrawals", post(withdraw))
        .route("/api/accounts/{id}/events", get(events))
}

fn bad_request(title: &'static str, detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, title)
        .kind("bad-request")
        .detail(detail)
        .into_response()
}

fn accounts(state: &AppState) -> Result<&Accounts, Refusal> {
    state.accounts().ok_or_else(|| {
        Box::new(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "accounts unavailable")
                .kind("accounts-unavailable")
                .detail("the accounts' event store is not open")
                .into_response(),
        )
    })
}

/// A valid account id, else a `400`.
fn account_id(path: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    let Ok(Path(id)) = path else {
        return Err(Box::new(bad_request(
            "invalid account id",
            "the account id is not valid UTF-8",
        )));
    };
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(Box::new(bad_request(
            "invalid account id",
            format!("an account id is 1 to {MAX_ID_LEN} of A-Z, a-z, 0-9, `_` and `-`"),
        )))
    }
}

/// The `Idempotency-Key`, if any and valid, else a `400`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key.to_owned())),
        _ => Err(Box::new(bad_request(
            "invalid Idempotency-Key",
            format!("an Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ))),
    }
}

/// The body as JSON of `T`: `400` if it is not JSON (or cut short), `422`
/// if it is JSON of another shape (a missing field, a string for a
/// number, a number past `i64`), `413` over the body limit.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Refusal> {
    let body = body.map_err(|rejection| {
        Box::new(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            crate::proxy::errors::body_too_large(None).into_response()
        } else {
            bad_request("unreadable body", rejection.body_text())
        })
    })?;
    serde_json::from_slice(&body).map_err(|err| {
        Box::new(if err.is_data() {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid request")
                .kind("invalid-request")
                .detail(err.to_string())
                .into_response()
        } else {
            bad_request("invalid JSON", err.to_string())
        })
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    cents: i64,
}

/// An account id from an `Idempotency-Key`: 16 hex digits of its FNV-1a
/// hash, the same on every instance.
fn id_from_key(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let accounts = match accounts(&state) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(res) => return *res,
    };
    let empty = body.as_ref().is_ok_and(Bytes::is_empty);
    let owner = if empty {
        None
    } else {
        match json_body::<OpenBody>(body) {
            Ok(b) => b.owner,
            Err(res) => return *res,
        }
    };
    let owner = owner.unwrap_or_default();
    if owner.chars().count() > MAX_OWNER_LEN {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid request")
            .kind("invalid-request")
            .detail(format!("`owner` is at most {MAX_OWNER_LEN} characters"))
            .into_response();
    }
    let id = key
        .as_deref()
        .map_or_else(|| format!("{:016x}", fastrand::u64(..)), id_from_key);
    let mut command = Command::new(
        id.clone(),
        AccountCommand::Open {
            owner: owner.clone(),
        },
    );
    if let Some(key) = &key {
        command = command.id(format!("open:{id}:{key}"));
    }
    match accounts.send(command).await {
        Ok(Ok(outcome)) => {
            let mut res = (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({
                    "id": id,
                    "owner": owner,
                    "version": outcome.version(),
                    "position": outcome.position(),
                    "replayed": outcome.already_stored(),
                })),
            )
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/api/accounts/{id}")) {
                res.headers_mut().insert(LOCATION, location);
            }
            replayed(&mut res, &outcome);
            res
        }
        Ok(Err(refused)) => refusal(&refused),
        Err(err) => failure(&*err),
    }
}

async fn deposit(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    money(&state, path, &headers, body, "deposit").await
}

async fn withdraw(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    money(&state, path, &headers, body, "withdraw").await
}

/// A deposit or a withdrawal.
async fn money(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    op: &'static str,
) -> Response {
    let accounts = match accounts(state) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let id = match account_id(path) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let key = match idempotency_key(headers) {
        Ok(key) => key,
        Err(res) => return *res,
    };
    let cents = match json_body::<AmountBody>(body) {
        Ok(b) => b.cents,
        Err(res) => return *res,
    };
    if cents <= 0 || cents > MAX_CENTS {
        return refusal(&AccountError::InvalidAmount { cents });
    }
    let command = if op == "deposit" {
        AccountCommand::Deposit { cents }
    } else {
        AccountCommand::Withdraw { cents }
    };
    let mut command = Command::new(id.clone(), command);
    if let Some(key) = &key {
        command = command.id(format!("{op}:{id}:{key}"));
    }
    match accounts.send(command).await {
        Ok(Ok(outcome)) => {
            // A replay answers what was stored the first time.
            let cents = outcome
                .events()
                .iter()
                .find_map(|event| match event {
                    AccountEvent::Deposited { cents } | AccountEvent::Withdrawn { cents } => {
                        Some(*cents)
                    }
                    AccountEvent::Opened { .. } => None,
                })
                .unwrap_or(cents);
            let mut res = axum::Json(serde_json::json!({
                "account": id,
                "cents": cents,
                "version": outcome.version(),
                "position": outcome.position(),
                "replayed": outcome.already_stored(),
            }))
            .into_response();
            replayed(&mut res, &outcome);
            res
        }
        Ok(Err(refused)) => refusal(&refused),
        Err(err) => failure(&*err),
    }
}

fn replayed(res: &mut Response, outcome: &CommandOutcome<AccountEvent>) {
    if outcome.already_stored() {
        res.headers_mut()
            .insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    }
}

/// The domain's refusal as a problem.
fn refusal(refused: &AccountError) -> Response {
    let problem = match refused {
        AccountError::NotOpen => {
            Problem::new(StatusCode::NOT_FOUND, "no such account").kind("account-not-found")
        }
        AccountError::AlreadyOpen => {
            Problem::new(StatusCode::CONFLICT, "account already open").kind("account-already-open")
        }
        AccountError::InvalidAmount { cents } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid amount")
                .kind("invalid-amount")
                .extension("cents", *cents)
                .extension("max_cents", MAX_CENTS)
        }
        AccountError::BalanceOverflow { balance, requested } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "balance overflow")
                .kind("balance-overflow")
                .extension("balance", *balance)
                .extension("requested", *requested)
        }
        AccountError::Overdraft { balance, requested } => {
            Problem::new(StatusCode::CONFLICT, "insufficient funds")
                .kind("overdraft")
                .extension("balance", *balance)
                .extension("requested", *requested)
        }
    };
    problem.detail(refused.to_string()).into_response()
}

fn unavailable(title: &'static str, kind: &'static str, detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, title)
        .kind(kind)
        .detail(detail)
        .header(RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response()
}

/// The command stack's failure as a problem: the breaker's refusal, the
/// timeout, the store down (`503`, nothing written), an id reused for
/// another command (`409`).
fn failure(err: &(dyn std::error::Error + 'static)) -> Response {
    if let Some(problem) = rejection_problem(err) {
        return problem.into_response();
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        return unavailable(
            "event store timeout",
            "event-store-timeout",
            format!(
                "the command did not complete within {} ms; nothing was written",
                crate::accounts::COMMAND_TIMEOUT.as_millis()
            ),
        );
    }
    if let Some(err) = err.downcast_ref::<CommandError<AccountError>>() {
        tracing::warn!(%err, "accounts: command failed");
        return match err {
            CommandError::Store(store) if !store.is_transient() => {
                Problem::new(StatusCode::CONFLICT, "command refused by the store")
                    .kind("command-refused")
                    .detail(store.to_string())
                    .into_response()
            }
            CommandError::Decode(_) | CommandError::Encode(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "account history unreadable",
            )
            .kind("event-decode")
            .detail(err.to_string())
            .into_response(),
            _ => unavailable(
                "event store unavailable",
                "event-store-unavailable",
                format!("{err}; nothing was written"),
            ),
        };
    }
    tracing::warn!(%err, "accounts: command failed");
    unavailable(
        "event store unavailable",
        "event-store-unavailable",
        format!("{err}; nothing was written"),
    )
}

#[derive(Deserialize)]
struct BalanceQuery {
    min_position: Option<u64>,
    wait_ms: Option<u64>,
}

async fn balance(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Response {
    let accounts = match accounts(&state) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let id = match account_id(path) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let Ok(Query(query)) = query else {
        return bad_request(
            "invalid query",
            "`min_position` and `wait_ms` are whole numbers ≥ 0",
        );
    };
    let projection = accounts.projection();
    if let Some(position) = query.min_position {
        let wait = std::time::Duration::from_millis(
            query.wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS),
        );
        if let Err(behind) = projection.wait_for(position, wait).await {
            return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "read model behind")
                .kind("read-model-behind")
                .detail(behind.to_string())
                .extension("projection", behind.projection())
                .extension("position", behind.position())
                .extension("reached", behind.reached())
                .header(RETRY_AFTER, HeaderValue::from_static("1"))
                .into_response();
        }
    }
    match accounts.balance(&id).await {
        Ok(Some(row)) => axum::Json(serde_json::json!({
            "account": row.account,
            "owner": row.owner,
            "cents": row.cents,
            "checkpoint": projection.checkpoint(),
        }))
        .into_response(),
        Ok(None) => Problem::new(StatusCode::NOT_FOUND, "no such account")
            .kind("account-not-found")
            .detail(format!(
                "no account `{id}` in the read model (at position {})",
                projection.checkpoint()
            ))
            .into_response(),
        Err(err) => unavailable(
            "read model unavailable",
            "read-model-unavailable",
            err.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    from: Option<u64>,
    max: Option<usize>,
}

async fn events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let accounts = match accounts(&state) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let id = match account_id(path) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let Ok(Query(query)) = query else {
        return bad_request("invalid query", "`from` and `max` are whole numbers ≥ 0");
    };
    let from = query.from.unwrap_or(1).max(1);
    let max = query.max.unwrap_or(100).clamp(1, MAX_EVENTS);
    let stream = palisade::cqrs::stream_name::<crate::accounts::Account>(&id);
    let read = match accounts.store().read_stream(&stream, from, max).await {
        Ok(read) => read,
        Err(err) => {
            return unavailable(
                "event store unavailable",
                "event-store-unavailable",
                err.to_string(),
            );
        }
    };
    if read.is_empty() && from == 1 {
        return Problem::new(StatusCode::NOT_FOUND, "no such account")
            .kind("account-not-found")
            .detail(format!("no stream `{stream}`"))
            .into_response();
    }
    let events: Vec<serde_json::Value> = read
        .iter()
        .map(|e| {
            serde_json::json!({
                "position": e.position(),
                "version": e.version(),
                "type": e.event_type(),
                "id": e.id(),
                "schema_version": e.schema_version(),
                "recorded_at_ms": millis_since_epoch(e.recorded_at()),
                "payload": e.payload(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "account": id, "stream": stream, "events": events }))
        .into_response()
}
