//! `siembridge run -f DIR|FILE`: the operator's rendering plus the collector in one process.
//!
//! It reads the same LogSource, ConsumerGroup and SiemDestination YAML a user would
//! `kubectl apply` (multi-document files; folders: their `*.yaml`/`*.yml` files in name order),
//! renders every collector with [`crate::render`] for [`RenderTarget::Standalone`], and runs them
//! all in this process with file checkpoints under the state directory. Secrets are read from
//! the environment (`SIEMBRIDGE_SECRET_<NAME>_<KEY>`), so `kind: Secret` documents are skipped.
//!
//! Every object is validated as the API server would on `kubectl apply --validate=strict`
//! ([`crate::api::validation`]): unknown fields, schema bounds and the CEL rules, with the field
//! path in the error. Two objects of one kind with one name are an error naming both places;
//! LogSources and ConsumerGroups keep their state under `<state dir>/sb-ls-<name>` (`sb-cg-`), so
//! their names must be unique across namespaces too.
//!
//! A run ends with an error when a collector stopped with records it neither delivered nor
//! dead-lettered (the drain timeout passed, or a dead-letter write failed): those records are read
//! again from the checkpoint next time, and the error says how many.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::ResourceExt;
use serde::Deserialize;

use crate::api::validation::SchemaValidator;
use crate::api::{ConsumerGroup, LogSource, SiemDestination, GROUP, VERSION};
use crate::collector::{shutdown_on_signals, Collector};
use crate::render::{render_consumer_group, render_log_source, RenderTarget, RenderedCollector};

/// Options of `siembridge run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Manifest files or folders (LogSource, ConsumerGroup, SiemDestination YAML).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Folder of checkpoints, dead letters and reports.
    #[arg(long, default_value = ".siembridge", env = "SIEMBRIDGE_STATE_DIR")]
    pub state_dir: std::path::PathBuf,
    /// Forget the checkpoints of these collectors and read their sources from the start.
    #[arg(long)]
    pub from_start: bool,
}

/// Why the manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: document {document}: {message}")]
    Yaml {
        path: String,
        line: usize,
        document: usize,
        message: String,
    },
    #[error("{path}: document {document}: {message}")]
    Invalid {
        path: String,
        document: usize,
        message: String,
    },
    #[error("{path}: document {document}: unknown kind {kind:?} (apiVersion {api_version:?}); expected LogSource, ConsumerGroup or SiemDestination of {GROUP}/{VERSION}")]
    UnknownKind {
        path: String,
        document: usize,
        kind: String,
        api_version: String,
    },
    #[error("{kind} {name:?} is declared twice: {first} and {second}{why}")]
    Duplicate {
        kind: String,
        name: String,
        /// `file document N` of each declaration.
        first: String,
        second: String,
        why: &'static str,
    },
}

/// The resources read from the manifests.
#[derive(Debug, Default)]
pub struct Manifests {
    /// LogSources with the folder of the file that declared them (replay paths are relative to it).
    pub log_sources: Vec<(LogSource, PathBuf)>,
    pub consumer_groups: Vec<(ConsumerGroup, PathBuf)>,
    pub destinations: Vec<SiemDestination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Files named by `-f`: files as given; folders' `*.yaml`/`*.yml` files in name order.
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| ManifestError::Io { path, source }
    };
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io(p))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(io(p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Split a YAML stream into documents with the line each starts on (1-based).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

fn yaml_error(path: &Path, document: usize, first_line: usize, e: &serde_yaml::Error) -> ManifestError {
    let line = e.location().map(|l| first_line + l.line() - 1).unwrap_or(first_line);
    // serde_yaml places "at line L column C" (relative to the document) in its message; the
    // absolute line is in front already.
    let message = e.to_string();
    let message = match message.split_once(" at line ") {
        Some((head, tail)) => match tail.split_once(',') {
            Some((_, rest)) => format!("{head},{rest}"),
            None => head.to_string(),
        },
        None => message,
    };
    ManifestError::Yaml {
        path: path.display().to_string(),
        line,
        document,
        message,
    }
}

fn with_namespace<K: kube::Resource>(mut obj: K) -> K {
    if obj.meta().namespace.is_none() {
        obj.meta_mut().namespace = Some("default".to_string());
    }
    obj
}

/// Where an object was declared, for duplicate errors.
fn place(path: &Path, document: usize) -> String {
    format!("{} document {document}", path.display())
}

/// Read every manifest, validated as the API server would validate it.
pub fn load_manifests(paths: &[PathBuf]) -> Result<Manifests, ManifestError> {
    let mut out = Manifests::default();
    let validator = SchemaValidator::new();
    // (kind, namespace or "" where names must be unique across namespaces, name) -> (place, namespace)
    let mut declared: BTreeMap<(String, String, String), (String, String)> = BTreeMap::new();
    for path in manifest_files(paths)? {
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let dir = std::path::absolute(&path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        for (i, (first_line, doc)) in split_documents(&text).into_iter().enumerate() {
            let document = i + 1;
            let invalid = |message: String| ManifestError::Invalid {
                path: path.display().to_string(),
                document,
                message,
            };
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(&doc).map_err(|e| yaml_error(&path, document, first_line, &e))?;
            let meta: TypeMeta = serde_yaml::from_value(yaml.clone()).map_err(|e| invalid(e.to_string()))?;
            let ours = meta.api_version == format!("{GROUP}/{VERSION}");
            match (meta.kind.as_str(), ours) {
                ("LogSource" | "ConsumerGroup" | "SiemDestination", true) => {
                    let object = serde_json::to_value(&yaml).map_err(|e| invalid(e.to_string()))?;
                    let object = validator.validate(object).map_err(|e| invalid(e.to_string()))?;
                    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let namespace = object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string();
                    // Collectors keep their state folder by name alone.
                    let scope = match meta.kind.as_str() {
                        "SiemDestination" => namespace.clone(),
                        _ => String::new(),
                    };
                    let here = place(&path, document);
                    let key = (meta.kind.clone(), scope, name.clone());
                    if let Some((first, first_namespace)) = declared.insert(key, (here.clone(), namespace.clone())) {
                        return Err(ManifestError::Duplicate {
                            kind: meta.kind,
                            name,
                            first,
                            second: here,
                            why: if first_namespace == namespace {
                                ""
                            } else {
                                " (in two namespaces, but a collector keeps its state folder by name alone, so names must be unique across namespaces)"
                            },
                        });
                    }
                    let typed = |e: serde_json::Error| invalid(format!("{} {name:?}: {e}", meta.kind));
                    match meta.kind.as_str() {
                        "LogSource" => {
                            let ls: LogSource = serde_json::from_value(object).map_err(typed)?;
                            out.log_sources.push((with_namespace(ls), dir.clone()));
                        }
                        "ConsumerGroup" => {
                            let cg: ConsumerGroup = serde_json::from_value(object).map_err(typed)?;
                            out.consumer_groups.push((with_namespace(cg), dir.clone()));
                        }
                        _ => {
                            let d: SiemDestination = serde_json::from_value(object).map_err(typed)?;
                            out.destinations.push(with_namespace(d));
                        }
                    }
                }
                ("Secret", _) if meta.api_version == "v1" => {
                    tracing::info!(
                        file = %path.display(),
                        document,
                        "skipping kind Secret: standalone mode reads secrets from environment variables SIEMBRIDGE_SECRET_<NAME>_<KEY>"
                    );
                }
                ("", _) => return Err(invalid("no kind".into())),
                (kind, _) => {
                    return Err(ManifestError::UnknownKind {
                        path: path.display().to_string(),
                        document,
                        kind: kind.to_string(),
                        api_version: meta.api_version,
                    })
                }
            }
        }
    }
    Ok(out)
}

/// Render every collector the manifests describe. Any broken reference is an error: in a
/// terminal, stopping with the message beats running half of what was asked.
pub fn render_all(manifests: &Manifests, state_dir: &Path) -> anyhow::Result<Vec<RenderedCollector>> {
    let mut collectors = Vec::new();
    let log_sources: Vec<LogSource> = manifests.log_sources.iter().map(|(ls, _)| ls.clone()).collect();
    for (ls, dir) in &manifests.log_sources {
        let target = RenderTarget::Standalone {
            state_dir: state_dir.to_path_buf(),
            manifest_dir: dir.clone(),
        };
        if let Some(eh) = &ls.spec.event_hub {
            if !manifests
                .consumer_groups
                .iter()
                .any(|(cg, _)| cg.name_any() == eh.consumer_group_ref && cg.namespace() == ls.namespace())
            {
                anyhow::bail!(
                    "LogSource {}: {}",
                    ls.name_any(),
                    crate::render::RenderError::ConsumerGroupNotFound(
                        eh.consumer_group_ref.clone(),
                        ls.namespace().unwrap_or_default()
                    )
                );
            }
        }
        if let Some(rc) = render_log_source(ls, &manifests.destinations, &target)
            .with_context(|| format!("LogSource {}", ls.name_any()))?
        {
            collectors.push(rc);
        }
    }
    for (cg, dir) in &manifests.consumer_groups {
        let target = RenderTarget::Standalone {
            state_dir: state_dir.to_path_buf(),
            manifest_dir: dir.clone(),
        };
        let (rc, skipped) = render_consumer_group(cg, &log_sources, &manifests.destinations, &target)
            .with_context(|| format!("ConsumerGroup {}", cg.name_any()))?;
        if let Some((ls, e)) = skipped.first() {
            anyhow::bail!("LogSource {ls}: {e}");
        }
        collectors.push(rc);
    }
    Ok(collectors)
}

/// Run every collector the manifests describe until they finish or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let manifests = load_manifests(&args.files)?;
    if manifests.log_sources.is_empty() {
        anyhow::bail!(
            "no LogSource in {}",
            args.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let state_dir =
        std::path::absolute(&args.state_dir).with_context(|| format!("state dir {}", args.state_dir.display()))?;
    let collectors = render_all(&manifests, &state_dir)?;
    if args.from_start {
        for rc in &collectors {
            if let crate::config::CheckpointConfig::File { dir } = &rc.config.checkpoint {
                match std::fs::remove_dir_all(dir) {
                    Ok(()) => tracing::info!(collector = %rc.name, "checkpoints removed (--from-start)"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("removing checkpoints {dir}")),
                }
            }
        }
    }
    let shutdown = shutdown_on_signals();
    tracing::info!(collectors = collectors.len(), state_dir = %state_dir.display(), "standalone run starting");
    // On a terminal: a live progress line drawn from the report files, written every second.
    let progress = crate::progress::enabled().then(|| {
        let reports = collectors
            .iter()
            .filter_map(|rc| match &rc.config.report {
                Some(crate::config::ReportTarget::File { path }) => Some(PathBuf::from(path)),
                _ => None,
            })
            .collect();
        let stop = tokio_util::sync::CancellationToken::new();
        (tokio::spawn(crate::progress::show(reports, stop.clone())), stop)
    });
    let runs = collectors.into_iter().map(|rc| {
        let shutdown = shutdown.clone();
        let every_second = progress.is_some();
        async move {
            let name = rc.name.clone();
            let mut collector = Collector::new(rc.config);
            if every_second {
                collector = collector.with_report_interval(crate::progress::INTERVAL);
            }
            let result = collector.run(shutdown).await;
            (name, result)
        }
    });
    let results = futures::future::join_all(runs).await;
    if let Some((task, stop)) = progress {
        stop.cancel();
        let _ = task.await;
    }
    let mut failed = Vec::new();
    for (name, result) in results {
        match result {
            Ok(summary) if summary.shortfall().is_some() => {
                let message = summary.shortfall().unwrap_or_default();
                tracing::error!(collector = %name, undelivered = summary.undelivered,
                    dead_letter_failures = summary.dead_letter_failures, "{message}");
                failed.push(format!("collector {name}: {message}"));
            }
            Ok(summary) => tracing::info!(
                collector = %name,
                units = summary.units,
                records = summary.records,
                finished = summary.source_finished,
                fully_checkpointed = summary.fully_checkpointed,
                "collector done{}",
                if summary.units == 0 && summary.source_finished {
                    " (nothing new since the checkpoint; --from-start replays from the beginning)"
                } else {
                    ""
                }
            ),
            Err(e) => {
                tracing::error!(collector = %name, error = %e, "collector failed");
                failed.push(format!("collector {name}: {e}"));
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => anyhow::bail!("{}", failed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_with_their_first_line() {
        let docs = split_documents("a: 1\n---\n# only a comment\n---\nb: 2\nc: 3\n");
        assert_eq!(docs, vec![(1, "a: 1\n".to_string()), (5, "b: 2\nc: 3\n".to_string())]);
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_kind_names_file_and_document() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        );
        let err = load_manifests(&[p]).unwrap_err().to_string();
        assert!(err.contains("m.yaml: document 2: unknown kind \"Deployment\""), "{err}");
    }

    #[test]
    fn bad_yaml_reports_the_absolute_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.yaml",
            "apiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata: {name: d}\nspec: {stdout: {}}\n---\napiVersion: siembridge.io/v1alpha1\nkind: SiemDestination\nmetadata:\n  name: [unclosed\n",
        );
        let err = load_manifests(&[p]).unwrap_err();
        match &err {
            ManifestError::Yaml { line, document, .. } => {
                assert_eq!(*document, 2);
                assert!((9..=10).contains(line), "{err}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn dangling_destination_is_a_render_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "ls.yaml",
            "apiVersion: siembridge.io/v1alpha1\nkind: LogSource\nmetadata: {name: entra}\nspec:\n  replay: {paths: [records]}\n  destinations: [{name: missing}]\n",
        );
        let m = load_manifests(&[p]).unwrap();
        let err = format!("{:#}", render_all(&m, dir.path()).unwrap_err());
        assert!(err.contains("SiemDestination \"missing\" not found"), "{err}");
    }
}
