//! Values of caasd's flags that carry their unit: sizes (`512M`, `2G`) and durations (`15s`,
//! `2m`), as Kubernetes and Nomad operators write them. A bare number keeps the unit the flag had
//! before it took units (MB for sizes, seconds for durations), so existing command lines and
//! service files keep working.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const MB: u64 = 1024 * 1024;

/// A size in bytes, written `512M`, `1.5G`, `2048K`, `512MB`, `512MiB` or a bare number of MB.
/// Units are powers of 1024, as everywhere in caas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole MB, rounded down.
    pub fn mb(self) -> u64 {
        self.0 / MB
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid size {s:?}: use a number with K, M or G (e.g. 512M, 2G)");
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let factor = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "M" | "MB" | "MIB" => MB,
            "K" | "KB" | "KIB" => 1024,
            "G" | "GB" | "GIB" => 1024 * MB,
            "T" | "TB" | "TIB" => 1024 * 1024 * MB,
            "B" => 1,
            _ => return Err(bad()),
        };
        if !number.is_finite() || number < 0.0 {
            return Err(bad());
        }
        Ok(Size((number * factor as f64).round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&caas_api::format_bytes(self.0))
    }
}

/// A duration with its unit (`90s`, `2m`, `1h 30m`, `500ms`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use e.g. 90s or 2m"))
}

/// A memory size for a container: Docker refuses less than 6 MB.
pub fn parse_memory(s: &str) -> Result<Size, String> {
    let size: Size = s.parse()?;
    if size.bytes() < 6 * MB {
        return Err(format!(
            "{s:?} is too little memory for a container: give at least 6M"
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_bare_numbers_are_mb() {
        for (text, bytes) in [
            ("512", 512 * MB),
            ("512M", 512 * MB),
            ("512m", 512 * MB),
            ("512MB", 512 * MB),
            ("512MiB", 512 * MB),
            ("2G", 2048 * MB),
            ("1.5G", 1536 * MB),
            ("64K", 64 * 1024),
            ("100B", 100),
            (" 8G ", 8192 * MB),
        ] {
            assert_eq!(text.parse::<Size>(), Ok(Size(bytes)), "{text}");
        }
        for bad in ["", "M", "-1M", "12X", "1..5G", "1 2M", "G5"] {
            assert!(bad.parse::<Size>().is_err(), "{bad:?}");
        }
        assert_eq!(Size(512 * MB).mb(), 512);
        assert_eq!(Size(512 * MB).to_string(), "512.0 MB");
    }

    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn container_memory_has_a_floor() {
        assert!(parse_memory("4M").is_err());
        assert_eq!(parse_memory("6M"), Ok(Size(6 * MB)));
    }
}
