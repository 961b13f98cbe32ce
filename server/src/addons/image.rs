//! The image of each kind of add-on service: the stack image plus the kind's Debian packages and
//! `service.sh` as `caas-addon`, built by the engine once per recipe (tag `caas/addon-KIND:HASH`,
//! HASH over the stack image's id, the Dockerfile and the script), like the stack image itself.
//! Nothing comes from a registry: `apt-get` in the build reaches Debian's mirror as the stack's
//! builds do.

use super::Recipe;
use crate::docker::{Engine, EngineError};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const SERVICE_SH: &str = include_str!("service.sh");
/// The build's memory limit: apt and dpkg, nothing heavy.
const BUILD_MEMORY_MB: u64 = 1024;

pub struct Images {
    /// The stack image reference (`caasd --stack-image`).
    pub stack_image: String,
    /// One build at a time: two first creates of one kind build once.
    lock: tokio::sync::Mutex<()>,
}

impl Images {
    pub fn new(stack_image: String) -> Self {
        Images {
            stack_image,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The image id of `r`'s service, built first when missing (`progress` is told so, and
    /// hears the build's steps).
    pub async fn ensure(
        &self,
        engine: &Engine,
        r: Recipe,
        progress: &impl Fn(String),
    ) -> Result<String, EngineError> {
        let _one = self.lock.lock().await;
        let stack = engine.image_id(&self.stack_image).await?.ok_or_else(|| {
            EngineError::Other(format!(
                "the stack image {} is missing: build it with stack/build.sh (install.sh does)",
                self.stack_image
            ))
        })?;
        let dockerfile = dockerfile(&stack, r);
        let hash = hex::encode(Sha256::digest(format!("{dockerfile}\n{SERVICE_SH}")));
        let tag = format!("caas/addon-{}:{}", r.kind, &hash[..12]);
        if let Some(id) = engine.image_id(&tag).await? {
            return Ok(id);
        }
        progress(format!(
            "building the {} image from Debian packages ({}): once per recipe, a minute or two",
            r.kind, r.packages
        ));
        let context =
            Bytes::from(context(&dockerfile).map_err(|e| EngineError::Other(e.to_string()))?);
        let labels = HashMap::from([("caas.addon.recipe".to_string(), hash[..12].to_string())]);
        let mut steps = Box::pin(engine.build_image(
            futures_util::stream::once(async move { context }),
            &tag,
            BUILD_MEMORY_MB,
            &labels,
            // Our own recipe of Debian packages, no user code: the engine's default network
            // (user builds run on the installation's, behind its firewall rules).
            "default",
        ));
        while let Some(line) = steps.next().await {
            let line = line?;
            let line = line.trim();
            if line.starts_with("Step ") {
                progress(format!("building the {} image: {line}", r.kind));
            }
        }
        engine
            .image_id(&tag)
            .await?
            .ok_or_else(|| EngineError::Other(format!("the build of {tag} made no image")))
    }
}

fn dockerfile(stack_id: &str, r: Recipe) -> String {
    format!(
        "FROM {stack_id}\n\
         USER root\n\
         RUN mkdir -p /etc/postgresql-common \\\n \
         && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \\\n \
         && apt-get update \\\n \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages} \\\n \
         && rm -rf /var/lib/apt/lists/*\n\
         COPY caas-addon /usr/local/bin/caas-addon\n\
         RUN chmod 755 /usr/local/bin/caas-addon \\\n \
         && install -d -m 700 -o {user} -g {user} /var/lib/caas-addon\n\
         USER {user}\n",
        packages = r.packages,
        user = r.user,
    )
}

/// The build context: the Dockerfile and the service script, as a tar.
fn context(dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, text, mode) in [
        ("Dockerfile", dockerfile, 0o644),
        ("caas-addon", SERVICE_SH, 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, text.as_bytes())?;
    }
    tar.into_inner()
}
