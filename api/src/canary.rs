//! Canary (grey) releases: a release run beside the serving one with a share of the requests,
//! then promoted or aborted (`/v1/apps/{app}/canary`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// The request header that sends a request to one release (`v8`), canary or not.
pub const RELEASE_HEADER: &str = "x-caas-release";
/// The cookie that keeps a browser on one release while a `--sticky` canary runs.
pub const RELEASE_COOKIE: &str = "caas_release";

/// How much worse than the stable release a canary's p95 may be.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Increase {
    /// Milliseconds more.
    Ms(u64),
    /// Percent more.
    Percent(f64),
}

impl Increase {
    /// `200ms`, `1s`, `50%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid --max-p95-increase {:?}: give a duration (200ms, 1s) or a percentage (50%)",
                text.chars().take(40).collect::<String>()
            )
        };
        if let Some(pct) = text.strip_suffix('%') {
            return match pct.trim().parse::<f64>() {
                Ok(p) if (0.0..=10_000.0).contains(&p) => Ok(Self::Percent(p)),
                _ => Err(bad()),
            };
        }
        let d = crate::checks::parse_duration("--max-p95-increase", text).map_err(|_| bad())?;
        Ok(Self::Ms(d.as_millis() as u64))
    }

    /// The highest p95 allowed beside a stable p95 of `stable_ms`.
    pub fn limit(&self, stable_ms: u64) -> u64 {
        match *self {
            Self::Ms(ms) => stable_ms.saturating_add(ms),
            Self::Percent(p) => stable_ms + ((stable_ms as f64) * p / 100.0).round() as u64,
        }
    }
}

impl std::fmt::Display for Increase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ms(ms) => write!(f, "+{ms}ms"),
            Self::Percent(p) => write!(f, "+{p}%"),
        }
    }
}

/// `--auto`: when the platform promotes or aborts a canary by itself (Flagger's analysis,
/// with Heroku-style flags).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CanaryAuto {
    /// Aborted when its 5xx rate passes the stable release's by more than this many
    /// percentage points (`--max-5xx-increase 1`).
    pub max_5xx_increase: f64,
    /// Aborted when its p95 passes the stable release's by more than this
    /// (`--max-p95-increase 200ms` or `50%`).
    pub max_p95_increase: Increase,
    /// Promoted once it ran this long without being aborted (`--promote-after 5m`), seconds.
    pub promote_after_secs: u64,
    /// Judged only once it answered this many requests (`--min-requests 20`): a handful of
    /// requests says nothing.
    pub min_requests: u64,
}

impl Default for CanaryAuto {
    fn default() -> Self {
        Self {
            max_5xx_increase: 1.0,
            max_p95_increase: Increase::Ms(200),
            promote_after_secs: 300,
            min_requests: 20,
        }
    }
}

/// `POST /v1/apps/{app}/canary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CanaryRequest {
    /// The release to run as the canary; `None`: the newest release that is not serving.
    #[serde(default)]
    pub version: Option<u64>,
    /// Percent of requests it gets, 1 to 99.
    pub weight: u8,
    /// A cookie keeps a browser on the release it first got.
    #[serde(default)]
    pub sticky: bool,
    #[serde(default)]
    pub auto: Option<CanaryAuto>,
}

/// `PATCH /v1/apps/{app}/canary`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CanaryWeight {
    pub weight: u8,
}

/// An app's running canary, as its record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Canary {
    pub version: u64,
    pub weight: u8,
    #[serde(default)]
    pub sticky: bool,
    pub started_at: Timestamp,
    #[serde(default)]
    pub auto: Option<CanaryAuto>,
}

/// One release's requests while a canary runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseFigures {
    pub version: u64,
    /// `stable` or `canary`.
    pub role: String,
    /// Percent of requests it is given.
    pub weight: u8,
    pub requests: u64,
    /// Answers with a 5xx status (the gateway's own 502/504 for it included).
    pub errors_5xx: u64,
    /// p95 latency, ms (upper bound of its bucket); `None` without requests.
    pub p95_ms: Option<u64>,
    /// Its web instances up.
    pub instances_up: u32,
}

impl ReleaseFigures {
    /// The 5xx share of its requests, percent (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors_5xx as f64 * 100.0 / self.requests as f64
        }
    }
}

/// `GET /v1/apps/{app}/canary`: the canary and both releases' figures since it started (the
/// last ten minutes at most).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CanaryStatus {
    pub app: String,
    pub canary: Canary,
    /// The serving release it runs beside.
    pub stable: Option<u64>,
    /// Stable first, then the canary.
    pub releases: Vec<ReleaseFigures>,
    /// What `--auto` decides now, in one line (`None` without `--auto`).
    #[serde(default)]
    pub verdict: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_parse_as_durations_or_percentages() {
        assert_eq!(Increase::parse("200ms"), Ok(Increase::Ms(200)));
        assert_eq!(Increase::parse("1s"), Ok(Increase::Ms(1000)));
        assert_eq!(Increase::parse("50%"), Ok(Increase::Percent(50.0)));
        for bad in ["", "-5%", "x%", "fast", "-1s"] {
            assert!(Increase::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Increase::Ms(200).limit(50), 250);
        assert_eq!(Increase::Percent(50.0).limit(100), 150);
        assert_eq!(Increase::Percent(50.0).to_string(), "+50%");
    }
}
