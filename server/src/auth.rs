//! API tokens: 256 random bits with a recognisable prefix (`caas_` for users, `caasj_` for the
//! join token, `caasa_` for agents) so a leaked one is easy to spot in a log or a repository.
//! The store keeps only the SHA-256 of a token; the token itself is shown once.

//!
//! Tokens are looked up by their hash. That lookup is the comparison: its timing can only tell an
//! attacker about the SHA-256 of their guess, which says nothing about any real token, so no
//! separate constant-time compare is needed.

use sha2::{Digest, Sha256};

pub const ADMIN_PREFIX: &str = "caas_";
pub const JOIN_PREFIX: &str = "caasj_";
pub const AGENT_PREFIX: &str = "caasa_";
pub const GATEWAY_PREFIX: &str = "caasg_";

/// A new token: `prefix` + 64 hex digits of randomness from the OS.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    format!("{prefix}{}", hex::encode(bytes))
}

/// A short random id for records (allocations, hosts): 48 bits, hex.
pub fn short_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

/// The key a token is stored under.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hash_stably() {
        let a = generate(ADMIN_PREFIX);
        let b = generate(ADMIN_PREFIX);
        assert!(a.starts_with("caas_") && a.len() == 5 + 64);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}
