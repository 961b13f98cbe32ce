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

pub fn is_addon_network(name: &str) -> bool {
    name.starts_with(ADDON_NETWORK_PREFIX)
}

/// An add-on's service container, and its volume.
pub fn addon_container(cluster: &str, addon: &str) -> String {
    format!("caas-{}-addon-{addon}", short(cluster))
}

/// The add-on a service container, volume or network is for.
pub const ADDON: &str = "caas.addon";
