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
        if self.docker.inspect_network(name, None).await.is_ok() {
            return Ok(());
        }
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
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created meanwhile by another task of this installation.
            Err(e) if self.docker.inspect_network(name, None).await.is_ok() => {
                tracing::debug!("network {name}: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
