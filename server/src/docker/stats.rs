//! A container's resource use, from the engine's stats endpoint (one sample, not a stream).

use super::*;
use bollard::query_parameters::StatsOptionsBuilder;

/// One reading of a container's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU time used since it started, ns.
    pub cpu_nanos: u64,
    /// Memory in use as `docker stats` counts it: the cgroup's usage less its inactive page
    /// cache, bytes.
    pub memory_bytes: u64,
    /// The container's memory limit, bytes (0 when the engine did not say).
    pub memory_limit: u64,
}

impl Engine {
    /// The container's counters now (`one-shot`: the engine does not wait for a second sample,
    /// the caller computes rates from its own previous reading). `None` when it is not running.
    pub async fn usage(&self, id: &str) -> Result<Option<Usage>> {
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = Box::pin(self.docker.stats(id, Some(opts)));
        let Some(stats) = stream.next().await.transpose()? else {
            return Ok(None);
        };
        let cpu = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage);
        let Some(cpu_nanos) = cpu else {
            return Ok(None); // a stopped container has no counters
        };
        let memory = stats.memory_stats.as_ref();
        let usage = memory.and_then(|m| m.usage).unwrap_or(0);
        let inactive = memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|s| {
                s.get("inactive_file")
                    .or_else(|| s.get("total_inactive_file"))
                    .copied()
            })
            .unwrap_or(0);
        Ok(Some(Usage {
            cpu_nanos,
            memory_bytes: usage.saturating_sub(inactive),
            memory_limit: memory.and_then(|m| m.limit).unwrap_or(0),
        }))
    }
}
