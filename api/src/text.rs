//! Text both ends of the wire make the same way.

/// `text` as one segment of a URL path (a host name, a CIDR): bytes outside a small safe set
/// are percent-encoded, so `/` or `?` in it cannot change the route. Wildcards' `*` stays.
pub fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A byte count for people, the same on both ends of the wire: `758 B`, `1.5 KB`, `544.2 MB`
/// (powers of 1024, one decimal).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
