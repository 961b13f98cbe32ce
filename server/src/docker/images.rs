//! Images: ids, tags, loading and exporting (`docker save`/`load`), commits, Dockerfile builds.

use super::*;

impl Engine {
    /// The content id of an image reference or id, if the engine has it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(None),
                // A malformed reference is "no such image" to the caller.
                EngineError::Other(m) if m.contains("invalid reference") => Ok(None),
                other => Err(other),
            },
        }
    }

    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.docker.tag_image(image, Some(opts)).await?;
        Ok(())
    }

    /// `docker save` of one image, streamed (for agents whose engine lacks it). Runs in a task of
    /// its own that ends with the stream.
    pub fn export_image(&self, id: &str) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let docker = self.docker.clone();
        let id = id.to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut stream = Box::pin(docker.export_image(&id));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(EngineError::from);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// An image's id, tags and labels, if the engine has it.
    pub async fn image_refs(&self, reference: &str) -> Result<Option<ImageRefs>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id.map(|id| ImageRefs {
                id,
                tags: real_tags(img.repo_tags.unwrap_or_default()),
                labels: img.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(None),
                EngineError::Other(m) if m.contains("invalid reference") => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Images (tagged or not) carrying all the given labels.
    pub async fn images_labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<ImageRefs>> {
        let filters: HashMap<String, Vec<String>> = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let opts = ListImagesOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        Ok(self
            .docker
            .list_images(Some(opts))
            .await?
            .into_iter()
            .map(|i| ImageRefs {
                id: i.id,
                tags: real_tags(i.repo_tags),
                labels: i.labels,
            })
            .collect())
    }

    /// Removes a tag, or an image by id, without force: Docker then refuses to take away the
    /// last reference of an image a container still uses (answered as `InUse`), and an image by
    /// id that other tags still name. A reference that is already gone counts as removed.
    pub async fn remove_image(&self, reference: &str) -> Result<Removal> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(Removal::Removed),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(Removal::InUse),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(Removal::Removed),
                other => Err(other),
            },
        }
    }

    /// Removes a tag (and the image, if that was its last tag and nothing uses it).
    pub async fn untag(&self, reference: &str) -> Result<()> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// `docker load` of a `docker save` archive, streamed. Returns the references and ids the
    /// engine reports as loaded.
    pub async fn load_images<S, E>(&self, archive: S) -> Result<Vec<String>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        let mut progress = Box::pin(self.docker.import_image_stream(opts, archive, None));
        let mut loaded = Vec::new();
        while let Some(info) = progress.next().await {
            let info = info.map_err(|e| match e {
                BollardError::DockerStreamError { error } => EngineError::Other(error),
                other => EngineError::from(other),
            })?;
            for line in info.stream.unwrap_or_default().lines() {
                if let Some(name) = line
                    .strip_prefix("Loaded image: ")
                    .or_else(|| line.strip_prefix("Loaded image ID: "))
                {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        Ok(loaded)
    }

    // --- containers -----------------------------------------------------------------------

    /// Makes an image of a container's filesystem with the given run configuration.
    pub async fn commit(&self, id: &str, image: &ImageConfig) -> Result<String> {
        let opts = bollard::query_parameters::CommitContainerOptionsBuilder::new()
            .container(id)
            .pause(false)
            .build();
        let config = bollard::models::ContainerConfig {
            user: image.user.clone(),
            env: Some(image.env.clone()),
            cmd: Some(image.cmd.clone()),
            entrypoint: Some(vec![]),
            working_dir: image.working_dir.clone(),
            labels: Some(image.labels.clone()),
            ..Default::default()
        };
        let created = self.docker.commit_container(opts, config).await?;
        Ok(created.id)
    }

    /// The size of an image, in bytes.
    pub async fn image_size(&self, reference: &str) -> Result<u64> {
        Ok(self
            .docker
            .inspect_image(reference)
            .await?
            .size
            .unwrap_or(0)
            .max(0) as u64)
    }

    /// `docker build` of a context tar, streaming the builder's output. The stream ends with an
    /// error item when the build fails. The build runs in a task of its own that ends with it.
    /// Its `RUN` steps run on `network` (the classic builder takes a network's name; BuildKit
    /// would not, so the build asks for the classic one).
    pub fn build_image<S>(
        &self,
        context: S,
        tag: &str,
        memory_mb: u64,
        labels: &HashMap<String, String>,
        network: &str,
    ) -> impl Stream<Item = Result<String>> + Send + 'static
    where
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .pull("false")
            .memory((memory_mb * 1024 * 1024).min(i32::MAX as u64) as i32)
            .labels(labels)
            .networkmode(network)
            .version(bollard::query_parameters::BuilderVersion::BuilderV1)
            .build();
        // bollard's stream borrows the client; a clone moved into a task lets it outlive `self`.
        let docker = self.docker.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut stream =
                Box::pin(docker.build_image(opts, None, Some(bollard::body_stream(context))));
            loop {
                // A build whose caller went away (cancelled: its app was destroyed) must stop
                // now, not at its next line of output: dropping the request makes the engine
                // cancel the build and remove its step container.
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = tx.closed() => return,
                };
                let Some(item) = item else { return };
                let item = match item {
                    Ok(info) => match info.error_detail.and_then(|d| d.message) {
                        Some(detail) => Err(EngineError::Other(detail)),
                        None => Ok(info.stream.or(info.status).unwrap_or_default()),
                    },
                    Err(BollardError::DockerStreamError { error }) => {
                        Err(EngineError::Other(error))
                    }
                    Err(e) => Err(e.into()),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
