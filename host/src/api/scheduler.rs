//! `GET /v1/scheduler` (the queue and the scorer), `PUT /v1/scheduler/scorer` (`{"plugin": NAME}`,
//! a plugin with the scorer role) and `DELETE /v1/scheduler/scorer` (back to the built-in score).
//! Changing the scorer needs the admin token. The setting is kept in the store: every host of a
//! farm follows it, and it outlives a restart.

use std::sync::Arc;

use axum::Json;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Admin;
use super::request::RequestBody;
use super::{ApiError, AppState};
use crate::plugin::ScorerPlugin;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScorerRequest {
    plugin: String,
}

#[utoipa::path(
    get,
    path = "/v1/scheduler",
    tag = "operations",
    summary = "The scheduler's queue, classes and scorer",
    responses(
        (status = 200, description = "The figures", body = serde_json::Value),
    )
)]
pub async fn show(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "scorer": scorer_name(&state),
        "queue": state.executor.scheduler().status(),
    }))
}

#[utoipa::path(
    put,
    path = "/v1/scheduler/scorer",
    tag = "operations",
    summary = "Set the scorer plugin (admin token)",
    request_body(content = serde_json::Value, description = "`{plugin}`: a plugin with the scorer role"),
    responses(
        (status = 200, description = "The scorer in use", body = serde_json::Value),
    )
)]
pub async fn set_scorer(
    _: Admin,
    State(state): State<AppState>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let request: ScorerRequest = super::request::parse(&body)?;
    let scorer = ScorerPlugin::new(state.plugins(), &request.plugin)?;
    state.plugins().share_scorer(Some(&request.plugin)).await?;
    state
        .executor
        .scheduler()
        .set_scorer(Some(Arc::new(scorer)));
    Ok(Json(json!({ "scorer": scorer_name(&state) })))
}

#[utoipa::path(
    delete,
    path = "/v1/scheduler/scorer",
    tag = "operations",
    summary = "Go back to the built-in scores (admin token)",
    responses(
        (status = 200, description = "The scorer in use", body = serde_json::Value),
    )
)]
pub async fn clear_scorer(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    state.plugins().share_scorer(None).await?;
    state.executor.scheduler().set_scorer(None);
    Ok(Json(json!({ "scorer": null })))
}

fn scorer_name(state: &AppState) -> Option<String> {
    state
        .executor
        .scheduler()
        .scorer()
        .map(|scorer| scorer.name())
}
