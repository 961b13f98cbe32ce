//! The names of everything the builder keeps of an app: its folder of uploads and logs, its build
//! and slug containers, its cache volume, the tags and labels of the images it builds.
//!
//! They live here, and nowhere else, because three parts must agree on them: a build makes these
//! things, a destroy (`forget.rs`) removes exactly these, and the start (`Builder::recover`) finds
//! what a crash left by them. They are also a contract with existing installations: a renamed
//! cache volume would be an orphan on every engine that has one, so the names do not change from
//! one version of caasd to the next.

use crate::labels;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// App names start with a letter: nothing of an app's is named like this.
const TRASH_PREFIX: &str = ".destroyed-";

#[derive(Debug, Clone)]
pub struct Names {
    /// `DATA_DIR/builds`.
    root: PathBuf,
    /// Several installations may share one engine; every engine-side name carries this.
    cluster_id: String,
}

impl Names {
    pub fn new(root: PathBuf, cluster_id: String) -> Self {
        Self { root, cluster_id }
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Where the app's builds keep their uploads, sources and logs.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join(app)
    }

    /// Build N's upload, source, input and slug; removed when the build ends.
    pub fn build_dir(&self, app: &str, number: u64) -> PathBuf {
        self.app_dir(app).join(number.to_string())
    }

    /// Build N's output, kept across restarts until the app is destroyed.
    pub fn log_path(&self, app: &str, number: u64) -> PathBuf {
        self.app_dir(app).join(format!("{number}.log"))
    }

    /// Where a destroy moves the app's folder before deleting it; `unique` keeps two destroys
    /// of one name apart.
    pub fn trash_dir(&self, app: &str, unique: &str) -> PathBuf {
        self.root.join(format!("{TRASH_PREFIX}{app}-{unique}"))
    }

    pub fn is_trash(file_name: &str) -> bool {
        file_name.starts_with(TRASH_PREFIX)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The app's build cache: a volume per installation and app, mounted at `/cache`.
    pub fn cache_volume(&self, app: &str) -> String {
        format!("caas-cache-{}-{app}", self.cluster_id)
    }

    /// The throw-away container the driver runs in.
    pub fn build_container(&self, app: &str, number: u64) -> String {
        format!("{}{number}", self.app_container_prefixes(app)[0])
    }

    /// The container the slug is laid on and committed from.
    pub fn slug_container(&self, app: &str, number: u64) -> String {
        format!("{}{number}", self.app_container_prefixes(app)[1])
    }

    /// The start of every build and slug container name of this installation. They are found by
    /// name, not by label: the slug container's labels would end up in the app image.
    pub fn container_prefixes(&self) -> [String; 2] {
        ["build", "slug"].map(|kind| format!("caas-{kind}-{}-", self.cluster_id))
    }

    /// The start of the app's build and slug container names; a name is the app's only when the
    /// build number follows (see [`Names::is_numbered`]).
    pub fn app_container_prefixes(&self, app: &str) -> [String; 2] {
        self.container_prefixes().map(|p| format!("{p}{app}-"))
    }

    /// Whether `name` is `prefix` and a build number: `caas-build-C-x-` also begins app `x-y`'s
    /// names, which are not app `x`'s.
    pub fn is_numbered(prefix: &str, name: &str) -> bool {
        name.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_digit()))
    }

    /// The repository of the app's images: `caas/APP`, tagged `vN` per release.
    pub fn image_repo(app: &str) -> String {
        format!("caas/{app}")
    }

    /// The image a release runs.
    pub fn release_image(app: &str, version: u64) -> String {
        format!("{}:v{version}", Self::image_repo(app))
    }

    /// Where a Dockerfile build puts its image until the release is recorded. Tags are shared by
    /// every installation on the engine; this one names the installation too.
    pub fn build_tag(&self, app: &str, number: u64) -> String {
        format!(
            "{}:build-{}-{number}",
            Self::image_repo(app),
            self.cluster_id
        )
    }

    /// Labels of the images builds make. The installation's is what lets a destroy (and the
    /// sweep at start) tell the images it made from images of the same name made elsewhere.
    pub fn image_labels(&self, app: &str, number: u64) -> HashMap<String, String> {
        HashMap::from([
            (labels::CLUSTER.to_string(), self.cluster_id.clone()),
            (labels::APP.to_string(), app.to_string()),
            (labels::BUILD.to_string(), number.to_string()),
        ])
    }

    /// Labels of a build container.
    pub fn build_labels(&self, app: &str, number: u64) -> HashMap<String, String> {
        HashMap::from([
            (labels::CLUSTER.to_string(), self.cluster_id.clone()),
            ("caas.role".to_string(), "build".to_string()),
            (labels::APP.to_string(), app.to_string()),
            (labels::BUILD.to_string(), number.to_string()),
        ])
    }

    /// Labels of the app's cache volume: it outlives every build, so it names none.
    pub fn cache_labels(&self, app: &str) -> HashMap<String, String> {
        HashMap::from([
            (labels::CLUSTER.to_string(), self.cluster_id.clone()),
            ("caas.role".to_string(), "cache".to_string()),
            (labels::APP.to_string(), app.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new(PathBuf::from("/data/builds"), "c1".into())
    }

    #[test]
    fn engine_side_names_stay_what_existing_installations_have() {
        let n = names();
        let table = [
            (n.cache_volume("web"), "caas-cache-c1-web"),
            (n.build_container("web", 7), "caas-build-c1-web-7"),
            (n.slug_container("web", 7), "caas-slug-c1-web-7"),
            (n.build_tag("web", 7), "caas/web:build-c1-7"),
            (Names::release_image("web", 3), "caas/web:v3"),
            (Names::image_repo("web"), "caas/web"),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
        assert_eq!(n.container_prefixes(), ["caas-build-c1-", "caas-slug-c1-"]);
    }

    #[test]
    fn files_live_in_the_app_folder() {
        let n = names();
        assert_eq!(n.log_path("web", 2), Path::new("/data/builds/web/2.log"));
        assert_eq!(n.build_dir("web", 2), Path::new("/data/builds/web/2"));
        let trash = n.trash_dir("web", "ab12");
        assert_eq!(trash, Path::new("/data/builds/.destroyed-web-ab12"));
        let name = trash.file_name().unwrap().to_str().unwrap();
        assert!(Names::is_trash(name));
        assert!(!Names::is_trash("web"));
    }

    #[test]
    fn only_numbered_containers_are_the_apps() {
        let n = names();
        let [build, slug] = n.app_container_prefixes("x");
        let table = [
            (&build, "caas-build-c1-x-12", true),
            (&slug, "caas-slug-c1-x-1", true),
            // App `x-y`'s build, which a destroy of `x` must leave alone.
            (&build, "caas-build-c1-x-y-12", false),
            (&build, "caas-build-c1-x-", false),
            (&build, "caas-build-c1-x-12a", false),
            (&build, "caas-build-c2-x-12", false),
        ];
        for (prefix, name, want) in table {
            assert_eq!(Names::is_numbered(prefix, name), want, "{name}");
        }
    }

    #[test]
    fn the_cache_volume_names_no_build() {
        let labels = names().cache_labels("web");
        assert_eq!(labels.get("caas.role").map(String::as_str), Some("cache"));
        assert!(!labels.contains_key("caas.build"));
    }
}
