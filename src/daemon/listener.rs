//! The daemon's loopback HTTP listener: `GET /metrics` (Prometheus text),
//! `GET /healthz` (200 `ok`, or 503 with the reason) and
//! `POST /trigger/{pair}` (sync that pair now; 202, or 404 for an unknown pair).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::Shared;

pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the listener serves loopback addresses only",
        ));
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/trigger/{pair}", post(trigger))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(bound)
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::global().render(),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    match s.health(chrono::Utc::now().timestamp()) {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        ),
    }
}

async fn trigger(State(s): State<Arc<Shared>>, Path(pair): Path<String>) -> impl IntoResponse {
    if !s.has_pair(&pair) {
        return (StatusCode::NOT_FOUND, "no such pair\n".to_string());
    }
    let _ = s.triggers.send(pair);
    (StatusCode::ACCEPTED, "sync requested\n".to_string())
}
