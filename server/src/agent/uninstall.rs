//! `caasd uninstall`: what `install.sh --uninstall` runs once caasd, its gateway and the agent
//! have stopped. The firewall rules that confine an installation's containers stay while those
//! run (a stop of caasd or the agent, even a clean one, keeps them: apps keep running); with
//! the platform gone nothing serves them, so the containers are stopped (kept, with their data,
//! for a reinstall to adopt) and then the rules are removed.

use super::firewall;
use crate::docker::Engine;
use crate::labels;
use anyhow::Context;
use std::path::Path;

/// The installation's cluster id, from the identity its agent keeps (`DIR/agent/identity.json`
/// on the control plane's host, `DIR/identity.json` on an agent's). `None`: no agent ran here.
fn cluster_of(data_dir: &Path) -> anyhow::Result<Option<String>> {
    for path in [
        data_dir.join("agent/identity.json"),
        data_dir.join("identity.json"),
    ] {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let id: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let cluster = id["cluster_id"].as_str().unwrap_or_default();
        // It becomes iptables arguments and a label filter: letters and digits only.
        anyhow::ensure!(
            !cluster.is_empty() && cluster.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{} holds no cluster id",
            path.display()
        );
        return Ok(Some(cluster.to_string()));
    }
    Ok(None)
}

pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    let Some(cluster) = cluster_of(data_dir)? else {
        println!(
            "No agent ran with {}: no containers or firewall rules to remove",
            data_dir.display()
        );
        return Ok(());
    };
    match Engine::connect().await {
        Ok(engine) => {
            let running: Vec<String> = engine
                .list_containers(&[(labels::CLUSTER, &cluster)])
                .await?
                .into_iter()
                .filter(|c| c.running)
                .map(|c| c.id)
                .collect();
            let stops = running.iter().map(|id| engine.stop(id, 10));
            for (id, r) in running
                .iter()
                .zip(futures_util::future::join_all(stops).await)
            {
                if let Err(e) = r {
                    eprintln!("caasd: stopping container {id}: {e}");
                }
            }
            println!(
                "Stopped {} container(s) of installation {cluster} (kept: a reinstall adopts them)",
                running.len()
            );
        }
        Err(e) => eprintln!("caasd: Docker is not answering ({e}); no container was stopped"),
    }
    let short: String = cluster.chars().take(8).collect();
    match firewall::remove(&cluster, &labels::bridge(&cluster)) {
        Ok(true) => println!("Removed the firewall chains CAAS-{short}-IN and CAAS-{short}-FWD"),
        Ok(false) => println!("No firewall chains of installation {cluster} were left"),
        Err(e) => anyhow::bail!("removing the firewall chains CAAS-{short}-IN/-FWD: {e}"),
    }
    Ok(())
}
