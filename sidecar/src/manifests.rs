//! Local mode: the same YAML a cluster would take, read from a directory and watched.
//!
//! Credentials: a backend's `credentialsRef {name, key}` is looked up first in a `Secret`
//! document of the same namespace in the directory (`stringData` over `data`), then in the
//! environment variable `<NAME>_<KEY>` in upper snake case: `{name: openai, key: apiKey}`
//! reads `OPENAI_API_KEY`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use sluice_crds::{
    ApiKey, Budget, BudgetConfig, ConfigSnapshot, ModelRoute, ObjectKey, RouteConfig,
    manifest::{Manifest, ManifestError, parse_manifests},
    validation::{Invalid, validate_references},
};

use crate::config::ConfigStore;

/// Why a manifest directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory or a file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A file holds an invalid document.
    #[error("{}: {source}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ManifestError,
    },
    /// Two documents define the same object.
    #[error("{kind} {key} is defined twice: in {} and {}", first.display(), second.display())]
    Duplicate {
        /// The kind.
        kind: &'static str,
        /// The object.
        key: ObjectKey,
        /// Where it was first defined.
        first: PathBuf,
        /// Where it was defined again.
        second: PathBuf,
    },
    /// A route refers to something missing or unfit.
    #[error("ModelRoute {route}: {source}")]
    References {
        /// The route.
        route: ObjectKey,
        /// What is wrong.
        source: Invalid,
    },
    /// A credential is neither in a Secret nor in the environment.
    #[error(transparent)]
    MissingCredential(Box<MissingCredential>),
}

/// A backend's `credentialsRef` resolved to nothing.
#[derive(Debug, thiserror::Error)]
#[error(
    "ModelRoute {route}: {field}: no Secret {secret:?} with key {key:?} in the manifests, and {env_var} is not set"
)]
pub struct MissingCredential {
    /// The route.
    pub route: ObjectKey,
    /// The reference's field, such as `spec.backends[0].credentialsRef`.
    pub field: String,
    /// The Secret name.
    pub secret: String,
    /// The key in it.
    pub key: String,
    /// The environment variable tried.
    pub env_var: String,
}

/// A loaded directory: the snapshot and what was in it.
#[derive(Debug)]
pub struct Loaded {
    /// The config to apply.
    pub snapshot: ConfigSnapshot,
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Documents of kinds Sluice does not read.
    pub ignored: Vec<(PathBuf, String)>,
}

#[derive(Default)]
struct Collected {
    routes: BTreeMap<ObjectKey, (PathBuf, ModelRoute)>,
    budgets: BTreeMap<ObjectKey, (PathBuf, Budget)>,
    secrets: BTreeMap<ObjectKey, (PathBuf, Secret)>,
    ignored: Vec<(PathBuf, String)>,
}

/// Reads every `*.yaml` / `*.yml` file of `dir` (not recursive) into one snapshot.
pub fn load(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, LoadError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
        move |source| LoadError::Io {
            path: path.to_owned(),
            source,
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut collected = Collected::default();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let documents = parse_manifests(&text).map_err(|source| LoadError::Manifest {
            path: path.clone(),
            source,
        })?;
        for document in documents {
            collected.add(path, document)?;
        }
    }
    let snapshot = collected.snapshot(env)?;
    Ok(Loaded {
        snapshot,
        files,
        ignored: collected.ignored,
    })
}

fn key_of<K: ResourceExt>(object: &K) -> ObjectKey {
    ObjectKey {
        namespace: object.namespace().unwrap_or_else(|| "default".into()),
        name: object.name_any(),
    }
}

impl Collected {
    fn add(&mut self, path: &Path, document: Manifest) -> Result<(), LoadError> {
        fn insert<T>(
            map: &mut BTreeMap<ObjectKey, (PathBuf, T)>,
            kind: &'static str,
            key: ObjectKey,
            path: &Path,
            value: T,
        ) -> Result<(), LoadError> {
            if let Some((first, _)) = map.get(&key) {
                return Err(LoadError::Duplicate {
                    kind,
                    key,
                    first: first.clone(),
                    second: path.to_owned(),
                });
            }
            map.insert(key, (path.to_owned(), value));
            Ok(())
        }
        match document {
            Manifest::ModelRoute(r) => insert(&mut self.routes, "ModelRoute", key_of(&*r), path, *r),
            Manifest::Budget(b) => insert(&mut self.budgets, "Budget", key_of(&*b), path, *b),
            Manifest::Secret(s) => insert(&mut self.secrets, "Secret", key_of(&*s), path, *s),
            Manifest::Ignored { kind } => {
                self.ignored.push((path.to_owned(), kind));
                Ok(())
            }
        }
    }

    fn snapshot(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConfigSnapshot, LoadError> {
        let mut routes = Vec::with_capacity(self.routes.len());
        for (key, (_, route)) in &self.routes {
            let budget = route.spec.budget_ref.as_ref().and_then(|r| {
                let budget_key = ObjectKey {
                    namespace: key.namespace.clone(),
                    name: r.name.clone(),
                };
                self.budgets.get(&budget_key).map(|(_, b)| &b.spec)
            });
            validate_references(&route.spec, budget).map_err(|source| LoadError::References {
                route: key.clone(),
                source,
            })?;
            // A Secret of the manifests, else the environment variable named after it.
            let resolve = |reference: &sluice_crds::SecretKeyRef, field: String| {
                let secret_key = ObjectKey {
                    namespace: key.namespace.clone(),
                    name: reference.name.clone(),
                };
                self.secrets
                    .get(&secret_key)
                    .and_then(|(_, secret)| secret_value(secret, &reference.key))
                    .or_else(|| env(&env_var_name(&reference.name, &reference.key)))
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| ApiKey::new(v.trim()))
                    .ok_or_else(|| {
                        LoadError::MissingCredential(Box::new(MissingCredential {
                            route: key.clone(),
                            field,
                            secret: reference.name.clone(),
                            key: reference.key.clone(),
                            env_var: env_var_name(&reference.name, &reference.key),
                        }))
                    })
            };
            let mut credentials = BTreeMap::new();
            let mut header_values: BTreeMap<_, BTreeMap<String, ApiKey>> = BTreeMap::new();
            for (index, backend) in route.spec.backends.iter().enumerate() {
                if let Some(reference) = &backend.credentials_ref {
                    let field = format!("spec.backends[{index}].credentialsRef");
                    credentials.insert(backend.name.clone(), resolve(reference, field)?);
                }
                for (h, header) in backend.headers.iter().enumerate() {
                    let Some(reference) = &header.value_from else { continue };
                    let field = format!("spec.backends[{index}].headers[{h}].valueFrom");
                    header_values
                        .entry(backend.name.clone())
                        .or_default()
                        .insert(header.name.clone(), resolve(reference, field)?);
                }
            }
            routes.push(RouteConfig {
                key: key.clone(),
                spec: route.spec.clone(),
                credentials,
                header_values,
                share: Default::default(),
            });
        }
        // Alone, a sidecar is the whole fleet: its allowance is the whole limit and its share
        // of route-wide limits the whole limit.
        for route in &mut routes {
            if let Some(limit) = route.spec.rate_limit {
                route.share.requests_per_minute = limit.requests_per_minute;
                route.share.tokens_per_minute = limit.tokens_per_minute;
            }
        }
        let budgets = self
            .budgets
            .iter()
            .map(|(key, (_, b))| BudgetConfig {
                key: key.clone(),
                spec: b.spec.clone(),
                allowance: b.spec.limit_usd,
                allowance_period_start: None,
                exhausted: false,
            })
            .collect();
        Ok(ConfigSnapshot::new(routes, budgets))
    }
}

/// A key of a Secret: `stringData` wins over `data`, as the API server would merge them.
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// `{name: my-openai, key: apiKey}` → `MY_OPENAI_API_KEY`.
pub fn env_var_name(secret: &str, key: &str) -> String {
    let mut out = String::with_capacity(secret.len() + key.len() + 4);
    for part in [secret, key] {
        if !out.is_empty() {
            out.push('_');
        }
        let mut previous_lower = false;
        for c in part.chars() {
            if c.is_ascii_uppercase() && previous_lower {
                out.push('_');
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            });
        }
    }
    out
}

/// Loads `dir` into `store`, logging what was loaded or exactly what is wrong.
pub fn reload(dir: &Path, store: &ConfigStore) -> bool {
    let loaded = match load(dir, &|name| std::env::var(name).ok()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "manifests refused; the running config stays");
            return false;
        }
    };
    for (path, kind) in &loaded.ignored {
        tracing::debug!(file = %path.display(), kind, "ignored a document of a kind Sluice does not read");
    }
    match store.apply(&loaded.snapshot) {
        Ok(true) => {
            let routes: Vec<String> = loaded
                .snapshot
                .routes
                .iter()
                .map(|r| {
                    let models: Vec<&str> = r.spec.models.iter().map(|m| m.as_str()).collect();
                    format!("{} [{}]", r.key, models.join(", "))
                })
                .collect();
            let budgets: Vec<String> = loaded.snapshot.budgets.iter().map(|b| b.key.to_string()).collect();
            tracing::info!(version = %loaded.snapshot.version, files = loaded.files.len(), routes = ?routes,
                budgets = ?budgets, "config loaded");
            if routes.is_empty() {
                tracing::warn!(dir = %dir.display(), "no ModelRoute found: every model will be refused");
            }
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "manifests refused; the running config stays");
            false
        }
    }
}

/// Whether a change in the watched directory may change what [`load`] reads: a `*.yaml` /
/// `*.yml` file, or the `..data` links through which Kubernetes swaps a mounted ConfigMap or
/// Secret. Other files are not read, and reacting to them would reload in a loop when, say, the
/// sidecar's own log is written into the directory.
fn concerns_manifests(event: &notify::Event) -> bool {
    if event.kind.is_access() {
        return false;
    }
    event.paths.iter().any(|path| {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return true;
        };
        name.starts_with("..") || name.ends_with(".yaml") || name.ends_with(".yml")
    })
}

/// Reloads `dir` whenever a manifest in it changes, until the returned watcher is dropped.
pub fn watch(dir: PathBuf, store: Arc<ConfigStore>) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| concerns_manifests(&e)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Editors write a file in several steps; settle before reading.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let (dir, store) = (dir.clone(), store.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&dir, &store)).await;
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests;
