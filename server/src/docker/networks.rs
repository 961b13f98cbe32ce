//! The installation's network (see `labels::network`): created on first use, shared by every
//! container of the installation on this engine.

use super::*;
use bollard::models::NetworkCreateRequest;

impl Engine {
    /// Creates the bridge network `name` (Linux interface `bridge`) with inter-container traffic
    /// off, unless it exists. Safe to race with another caller doing the same.
    pub async fn ensure_isolated_network(
        &self,
        name: &str,
        bridge: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            options: Some(HashMap::from([
                (
                    "com.docker.network.bridge.enable_icc".to_string(),
                    "false".to_string(),
                ),
                (
                    "com.docker.network.bridge.name".to_string(),
                    bridge.to_string(),
                ),
            ])),
            ..Default::default()
        };
        self.create_network_once(request).await
    }

    /// Creates the internal bridge network `name` unless it exists: its containers reach each
    /// other, and nothing else through it (no gateway to the host or beyond).
    pub async fn ensure_internal_network(
        &self,
        name: &str,
        bridge: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(labels),
            // A name the installation's firewall rules match (`labels::addon_bridge`).
            options: Some(HashMap::from([(
                "com.docker.network.bridge.name".to_string(),
                bridge.to_string(),
            )])),
            ..Default::default()
        };
        self.create_network_once(request).await
    }

    /// Creates the network `request` names unless it exists; one that another task of this
    /// installation created meanwhile counts as created.
    async fn create_network_once(&self, request: NetworkCreateRequest) -> Result<()> {
        let name = request.name.clone();
        if self.docker.inspect_network(&name, None).await.is_ok() {
            return Ok(());
        }
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(e) if self.docker.inspect_network(&name, None).await.is_ok() => {
                tracing::debug!("network {name}: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
