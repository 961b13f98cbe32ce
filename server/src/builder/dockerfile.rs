//! The Dockerfile path: a source with a `Dockerfile` at its root is built by the engine, with the
//! build memory limit, into a tag of its own until the release is recorded. Its web process is
//! the image's own `CMD` unless a `Procfile` says otherwise, and its commands run as written (no
//! `caas-launch`: the image is the user's, not a slug on the stack). Its `RUN` steps run on the
//! installation's network, like buildpack builds.

use super::output::Output;
use super::upload::Prepared;
use super::{file_stream, internal, procfile, tarball, BuildError, Builder, Image};
use caas_api::WEB;
use futures_util::StreamExt;

impl Builder {
    pub(super) async fn dockerfile_build(
        &self,
        p: &Prepared,
        out: &mut Output,
    ) -> Result<Image, BuildError> {
        out.line("-----> Dockerfile detected: building it with the Docker engine")
            .await;
        let context = p.dir.join("context.tar");
        let src = p.dir.join("src");
        let ctx = context.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = tarball::TarWriter::create(&ctx)?;
            // The context's root is `.`: entries are named as in the source folder.
            w.tree(&src, ".", tarball::ROOT)?;
            w.finish()
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let tag = self.names.build_tag(&p.app, p.number);
        let image_labels = self.names.image_labels(&p.app, p.number);
        // The installation's network, as buildpack builds: its firewall rules keep `RUN` steps
        // from caasd's API and link-local addresses, which the engine's default build network
        // would not.
        let network = self.ensure_network().await?;
        let mut chunks = Box::pin(self.engine.build_image(
            file_stream(&context).await?,
            &tag,
            self.settings.memory_mb,
            &image_labels,
            &network,
        ));
        let mut lines = Lines::default();
        while let Some(item) = chunks.next().await {
            match item {
                Ok(text) => {
                    for line in lines.push(&text) {
                        out.line(&format!("       {line}")).await;
                    }
                }
                Err(e) => {
                    if let Some(line) = lines.rest() {
                        out.line(&format!("       {line}")).await;
                    }
                    return Err(BuildError::Failed(format!(
                        "the Dockerfile build failed: {e}"
                    )));
                }
            }
        }
        let id = self
            .engine
            .image_id(&tag)
            .await
            .map_err(internal)?
            .ok_or_else(|| BuildError::Failed("the Dockerfile build produced no image".into()))?;
        let procfile = std::fs::read_to_string(p.dir.join("src/Procfile")).ok();
        let mut process_types: std::collections::BTreeMap<_, _> =
            procfile::process_types(procfile.as_deref(), None)
                .map_err(|e| BuildError::Failed(e.to_string()))?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
        process_types.entry(WEB.to_string()).or_insert(None);
        Ok(Image {
            id,
            process_types,
            launcher: false,
        })
    }
}

/// The engine's build output comes in chunks that need not end at a line's end; the build's
/// output is lines.
#[derive(Default)]
struct Lines {
    pending: String,
}

impl Lines {
    /// The lines `chunk` completes, without their line ends.
    fn push(&mut self, chunk: &str) -> Vec<String> {
        self.pending.push_str(chunk);
        let mut done = Vec::new();
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            done.push(line.trim_end().to_string());
        }
        done
    }

    /// What is left of an unfinished last line, when it says anything.
    fn rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.trim().is_empty()).then(|| rest.trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_lines() {
        let mut l = Lines::default();
        let table: [(&str, &[&str]); 4] = [
            ("Step 1/2 : FROM x\nStep 2", &["Step 1/2 : FROM x"]),
            ("/2 : RUN y", &[]),
            ("\r\n\n ---> abc\n", &["Step 2/2 : RUN y", "", " ---> abc"]),
            ("Successfully", &[]),
        ];
        for (chunk, want) in table {
            assert_eq!(l.push(chunk), want, "{chunk:?}");
        }
        assert_eq!(l.rest().as_deref(), Some("Successfully"));
        assert_eq!(l.rest(), None);
        l.push("  \n");
        l.push("   ");
        assert_eq!(l.rest(), None, "blank rests say nothing");
    }
}
