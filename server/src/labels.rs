//! The labels caas puts on Docker objects, in one place: the agent finds its containers by them,
//! the builder its build containers and images, a destroy what an app leaves behind. Values are
//! checked names (apps, process types) or ids caas made, never user text.

/// The installation (cluster id): installations sharing one Docker engine never touch each
/// other's objects.
pub const CLUSTER: &str = "caas.cluster";
/// The host (agent) that runs a container.
pub const HOST: &str = "caas.host";
/// The allocation a container runs: a restarted agent adopts what runs by it.
pub const ALLOC: &str = "caas.alloc";
pub const APP: &str = "caas.app";
/// `vN`.
pub const RELEASE: &str = "caas.release";
pub const PROCESS: &str = "caas.process";
/// `web.1`.
pub const INSTANCE: &str = "caas.instance";
/// The build number of a build container or the image it made.
pub const BUILD: &str = "caas.build";

/// The network every container of an installation runs on (apps and builds): a bridge whose
/// containers cannot reach each other (inter-container traffic off), so one app cannot reach
/// another's containers; the gateway reaches them from the host. Its Linux interface is named
/// [`bridge`] so firewall rules can match it (at most 15 characters).
pub fn network(cluster: &str) -> String {
    format!("caas-{}", short(cluster))
}

/// The Linux bridge interface of [`network`].
pub fn bridge(cluster: &str) -> String {
    format!("caas{}", short(cluster))
}

fn short(cluster: &str) -> String {
    cluster.chars().take(8).collect()
}

/// An add-on's own network: its service and the instances of the apps it is attached to join
/// it, nothing else (see docs/architecture.md, "Add-ons reach only their apps").
pub fn addon_network(cluster: &str, addon: &str) -> String {
    format!("{ADDON_NETWORK_PREFIX}{}-{addon}", short(cluster))
}

const ADDON_NETWORK_PREFIX: &str = "caas-addon-";

/// The Linux bridge interface of an add-on's network: `cad`, the installation, and four
/// characters of a hash of the add-on's name (15 in all, Linux's limit), so that one firewall
/// rule matches every add-on bridge of the installation ([`addon_bridges`]). The host has an
/// address on each (Docker gives internal bridges one too): without the rule, an instance on an
/// add-on's network could reach caasd's API there.
pub fn addon_bridge(cluster: &str, addon: &str) -> String {
    use sha2::Digest;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let hash = sha2::Sha256::digest(addon.as_bytes());
    let tail: String = hash[..4]
        .iter()
        .map(|b| DIGITS[*b as usize % DIGITS.len()] as char)
        .collect();
    format!("cad{}{tail}", short(cluster))
}

/// The `iptables -i` pattern that matches every [`addon_bridge`] of the installation.
pub fn addon_bridges(cluster: &str) -> String {
    format!("cad{}+", short(cluster))
}

pub fn is_addon_network(name: &str) -> bool {
    name.starts_with(ADDON_NETWORK_PREFIX)
}

/// An add-on's service container, and its volume.
pub fn addon_container(cluster: &str, addon: &str) -> String {
    format!("caas-{}-addon-{addon}", short(cluster))
}

/// The add-on a service container, volume or network is for.
pub const ADDON: &str = "caas.addon";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addon_bridges_fit_linux_names_and_one_pattern() {
        let b = addon_bridge("0123456789abcdef", "shop-db");
        assert_eq!(b.len(), 15, "{b}");
        assert!(b.starts_with(addon_bridges("0123456789abcdef").trim_end_matches('+')));
        assert_ne!(b, addon_bridge("0123456789abcdef", "shop-cache"));
        assert_ne!(b, bridge("0123456789abcdef"));
    }
}
