//! Limits on what one client may ask of the API: writes (uploads, edits,
//! cancels) per address and per token, with `429` and `Retry-After` past them,
//! and a cap on open event streams.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{ApiError, AppState};

/// The write limiters: one budget per client address, one per token.
#[derive(Debug)]
pub struct WriteLimits {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_token: Option<DefaultKeyedRateLimiter<String>>,
}

impl WriteLimits {
    /// `per_minute` writes a minute for each address and each token, in bursts
    /// of up to as many; none when `per_minute` is 0.
    pub fn new(per_minute: u32) -> WriteLimits {
        let quota = NonZeroU32::new(per_minute).map(Quota::per_minute);
        WriteLimits {
            by_address: quota.map(RateLimiter::keyed),
            by_token: quota.map(RateLimiter::keyed),
        }
    }

    /// `Err(wait)` when the address or the token has used up its writes.
    fn check(&self, address: Option<IpAddr>, token: Option<&str>) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        let wait = |e: governor::NotUntil<_>| e.wait_time_from(clock.now());
        if let (Some(limiter), Some(ip)) = (&self.by_address, address) {
            limiter.check_key(&ip).map_err(wait)?;
        }
        if let (Some(limiter), Some(token)) = (&self.by_token, token) {
            limiter.check_key(&token.to_string()).map_err(wait)?;
        }
        // Forget clients that have their whole budget back.
        if let Some(l) = &self.by_address
            && l.len() > 10_000
        {
            l.retain_recent();
        }
        if let Some(l) = &self.by_token
            && l.len() > 10_000
        {
            l.retain_recent();
        }
        Ok(())
    }
}

/// Refuses a write past its client's budget: `429` with `Retry-After`.
pub async fn limit_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(wait) = state.write_limits.check(address, token) {
        let seconds = wait.as_secs() + 1;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many writes from this client (at most {} a minute); try again in {seconds} s",
                state.config.writes_per_minute
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    next.run(request).await
}

/// Open event streams: each holds a permit until it ends.
#[derive(Debug)]
pub struct StreamSlots(Arc<tokio::sync::Semaphore>);

impl StreamSlots {
    pub fn new(max: usize) -> StreamSlots {
        StreamSlots(Arc::new(tokio::sync::Semaphore::new(max.max(1))))
    }

    /// A slot for one more stream, or a `503` saying they are all taken.
    pub fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "this server has as many event streams open as it serves; poll \
                 GET /v1/jobs/{id} or try again shortly",
            )
        })
    }
}
