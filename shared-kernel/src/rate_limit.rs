//! Rate limits per client: each caller gets a sustained rate and a burst; beyond them it
//! gets a 429 problem with `Retry-After`. The client is the subject of a valid bearer
//! token, or the peer address of a request without one, so one tenant's flood does not
//! eat another's budget and an anonymous flood is bounded too.

use crate::problem::Problem;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

/// `HTTP__RATE_LIMIT_PER_SEC` and `HTTP__RATE_LIMIT_BURST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second a client may sustain.
    pub per_sec: u32,
    /// Requests a client may send at once after being idle.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_sec: 500,
            burst: 1_000,
        }
    }
}

/// Clients tracked before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The limiter a server shares between its workers.
pub struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl ClientLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let per_sec = NonZeroU32::new(limit.per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `client` may go on, else the whole seconds it should wait (at least 1).
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if self.limiter.len() > MAX_TRACKED_CLIENTS {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
            })
    }
}

/// Who a request counts against: the token's subject when the token is valid, else the
/// peer address.
async fn client_of(req: &ServiceRequest) -> String {
    match crate::auth::caller_of(req.request()).await {
        Ok(caller) => format!("sub:{}", caller.subject),
        Err(_) => format!(
            "ip:{}",
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    }
}

/// Answers 429 with `Retry-After` to a client beyond its rate. Health, metrics and the
/// documents are never limited.
pub async fn limit_rate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limited = req.path().starts_with("/v1/");
    let verdict = match req.app_data::<web::Data<ClientLimiter>>().cloned() {
        Some(limiter) if limited => limiter.check(&client_of(&req).await),
        _ => Ok(()),
    };
    if let Err(wait_secs) = verdict {
        metrics::counter!("http_requests_rate_limited_total").increment(1);
        let problem = Problem::of(
            "rate-limited",
            "this client sent more requests than its rate allows; retry after the given delay",
        );
        let mut res = actix_web::ResponseError::error_response(&problem);
        if let Ok(value) = HeaderValue::from_str(&wait_secs.to_string()) {
            res.headers_mut().insert(RETRY_AFTER, value);
        }
        return Ok(req.into_response(res).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_burst_then_waits() {
        let limiter = ClientLimiter::new(RateLimit {
            per_sec: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("sub:alice"), Ok(()));
        }
        let wait = limiter.check("sub:alice").unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        // Another client is not affected by alice's burst.
        assert_eq!(limiter.check("sub:bob"), Ok(()));
    }
}
