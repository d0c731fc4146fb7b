//! Per-client token buckets on endpoints that attract brute force and abuse.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::app::AppState;
use crate::config::RateLimitSettings;
use crate::error::{ApiError, ApiResult};

/// One bucket per key (client address, user, publisher).
pub struct Bucket<K: std::hash::Hash + Eq + Clone = IpAddr>(DefaultKeyedRateLimiter<K>);

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    fn new(per: Duration, count: u32) -> Self {
        let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
        // Refill evenly over the period, allowing a burst of the whole allowance.
        let quota = Quota::with_period(per / count.get())
            .unwrap_or_else(|| Quota::per_second(count))
            .allow_burst(count);
        Self(RateLimiter::keyed(quota))
    }

    /// Takes a token for `key`, or answers 429 with the wait in `Retry-After`.
    pub fn check_key(&self, key: &K) -> ApiResult<()> {
        self.0.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs_f64().ceil() as u64)
        })
    }

    fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

impl Bucket<IpAddr> {
    /// Takes a token for `client`'s network ([`network_of`]), or answers 429 with the wait in
    /// `Retry-After`.
    pub fn check(&self, client: ClientIp) -> ApiResult<()> {
        self.check_key(&network_of(client.0))
    }
}

/// The rate-limit key of a client address: an IPv4 address itself, and the /64 of an IPv6
/// one. A /64 is the smallest network an ISP routes to one subscriber (RFC 6177) and one
/// interface can pick any address in it (privacy addresses, RFC 8981), so a key per /128
/// would hand one client 2^64 buckets. An IPv4-mapped IPv6 address is its IPv4 address, so a
/// dual-stack listener does not give one client two keys.
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !(u128::from(u64::MAX))).into()),
        },
    }
}

/// The buckets, one per protected action.
pub struct RateLimits {
    /// Account registration.
    pub register: Bucket,
    /// Password logins.
    pub login: Bucket,
    /// Refresh-token exchanges: every CLI command makes one, so the allowance is larger than
    /// for password guesses.
    pub refresh: Bucket,
    /// API token creation.
    pub token_create: Bucket,
    /// Uploads by one user (keyed by user id).
    pub publish_by_user: Bucket<i64>,
    /// Uploads into one publisher (keyed by publisher id).
    pub publish_by_publisher: Bucket<i64>,
    /// Abuse reports by one user (keyed by user id).
    pub abuse_reports_by_user: Bucket<i64>,
    /// Plugin searches with text: each reads every plugin's name and description.
    pub search: Bucket,
}

impl RateLimits {
    /// Builds the buckets from settings.
    pub fn new(s: &RateLimitSettings) -> Self {
        Self {
            register: Bucket::new(Duration::from_secs(3600), s.register_per_hour),
            login: Bucket::new(Duration::from_secs(60), s.login_per_minute),
            refresh: Bucket::new(Duration::from_secs(60), s.refresh_per_minute),
            token_create: Bucket::new(Duration::from_secs(3600), s.token_create_per_hour),
            publish_by_user: Bucket::new(Duration::from_secs(3600), s.publish_per_hour_per_user),
            publish_by_publisher: Bucket::new(
                Duration::from_secs(3600),
                s.publish_per_hour_per_publisher,
            ),
            abuse_reports_by_user: Bucket::new(Duration::from_secs(3600), s.abuse_reports_per_hour),
            search: Bucket::new(Duration::from_secs(60), s.search_per_minute),
        }
    }

    /// Drops idle buckets so the key maps do not grow without bound.
    pub fn shrink(&self) {
        for bucket in [
            &self.register,
            &self.login,
            &self.refresh,
            &self.token_create,
            &self.search,
        ] {
            bucket.shrink();
        }
        self.publish_by_user.shrink();
        self.publish_by_publisher.shrink();
        self.abuse_reports_by_user.shrink();
    }
}

/// The client address used as a rate-limit key: the peer address, or, when
/// `http.trust_forwarded_for` is set, the last `X-Forwarded-For` entry: the one the trusted
/// proxy appended. Entries before it come from the client and can be forged. Several header
/// lines make one list, in order (RFC 9110 §5.3), so the last entry is the last line's: a
/// proxy that adds a line of its own (HAProxy's `option forwardfor`) leaves a client's forged
/// line first.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if app.settings.http.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Ok(Self(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> ClientIp {
        ClientIp(text.parse().unwrap())
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_bucket() {
        let bucket = Bucket::new(Duration::from_secs(3600), 1);
        bucket.check(ip("2001:db8:1:2::1")).unwrap();
        bucket
            .check(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"))
            .unwrap_err();
        bucket.check(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn an_ipv4_address_is_its_own_key_also_when_mapped_into_ipv6() {
        let bucket = Bucket::new(Duration::from_secs(3600), 1);
        bucket.check(ip("192.0.2.1")).unwrap();
        bucket.check(ip("::ffff:192.0.2.1")).unwrap_err();
        bucket.check(ip("192.0.2.2")).unwrap();
        bucket.check(ip("::ffff:192.0.2.3")).unwrap();
        bucket.check(ip("192.0.2.3")).unwrap_err();
    }
}
