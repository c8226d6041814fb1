//! Reads the YAML a user would `kubectl apply`: typed, validated, with errors that name the field.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::de::DeserializeOwned;

use crate::{
    Budget, ModelRoute,
    validation::{Invalid, validate_budget, validate_model_route},
};

/// One document of a manifest file.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// A `sluice.dev/v1alpha1` ModelRoute.
    ModelRoute(Box<ModelRoute>),
    /// A `sluice.dev/v1alpha1` Budget.
    Budget(Box<Budget>),
    /// A `v1` Secret (credentials).
    Secret(Box<Secret>),
    /// Any other kind, which Sluice does not read.
    Ignored {
        /// The document's `kind`, for the log.
        kind: String,
    },
}

/// Why a manifest file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// A document lacks `kind` or `apiVersion`.
    #[error("document {index}: missing {field}")]
    MissingField {
        /// Position of the document in the file, from 1.
        index: usize,
        /// `kind` or `apiVersion`.
        field: &'static str,
    },
    /// A document does not fit its type.
    #[error("document {index} ({kind}): {path}: {message}")]
    Shape {
        /// Position of the document in the file, from 1.
        index: usize,
        /// The document's kind.
        kind: String,
        /// The JSON path of the offending field.
        path: String,
        /// What serde found wrong.
        message: String,
    },
    /// A document parsed but breaks a rule.
    #[error("{kind} {name}: {source}")]
    Invalid {
        /// The document's kind.
        kind: &'static str,
        /// `namespace/name`.
        name: String,
        /// Every broken rule.
        source: Invalid,
    },
}

const SLUICE_API_VERSION: &str = "sluice.dev/v1alpha1";

/// Parses every document of a (multi-document) YAML text, validating Sluice resources.
pub fn parse_manifests(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let mut out = Vec::with_capacity(documents.len());
    for (i, doc) in documents.into_iter().enumerate() {
        let index = i + 1;
        if doc.is_null() {
            continue;
        }
        let field = |name: &'static str| {
            doc.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or(ManifestError::MissingField { index, field: name })
        };
        let (api_version, kind) = (field("apiVersion")?, field("kind")?);
        let manifest = match (api_version.as_str(), kind.as_str()) {
            (SLUICE_API_VERSION, "ModelRoute") => {
                let route: ModelRoute = typed(index, &kind, doc)?;
                validate_model_route(&route.spec).map_err(|source| invalid("ModelRoute", &route, source))?;
                Manifest::ModelRoute(Box::new(route))
            }
            (SLUICE_API_VERSION, "Budget") => {
                let budget: Budget = typed(index, &kind, doc)?;
                validate_budget(&budget.spec).map_err(|source| invalid("Budget", &budget, source))?;
                Manifest::Budget(Box::new(budget))
            }
            ("v1", "Secret") => Manifest::Secret(Box::new(typed(index, &kind, doc)?)),
            _ => Manifest::Ignored { kind },
        };
        out.push(manifest);
    }
    Ok(out)
}

fn typed<T: DeserializeOwned>(index: usize, kind: &str, doc: serde_json::Value) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(doc).map_err(|e| ManifestError::Shape {
        index,
        kind: kind.to_owned(),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

fn invalid<K: ResourceExt>(kind: &'static str, object: &K, source: Invalid) -> ManifestError {
    let name = format!(
        "{}/{}",
        object.namespace().unwrap_or_else(|| "default".into()),
        object.name_any()
    );
    ManifestError::Invalid { kind, name, source }
}

#[cfg(test)]
mod tests;
