//! `lily export k8s`: write the Kubernetes objects for the root's jobs.

use super::{EXIT_OK, Global, render};
use clap::Subcommand;
use lily::error::{ErrorCode, LilyError};
use lily::export::k8s::{self, K8sOptions};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Kubernetes: a CronJob per cron job, a Job template per manual job, a ConfigMap, a Dockerfile and a kustomization.yaml (docs/kubernetes.md)
    K8s {
        /// The container image holding the `lily` binary (built from the generated Dockerfile)
        #[arg(long)]
        image: String,
        /// Namespace of every object
        #[arg(long)]
        namespace: Option<String>,
        /// The run store the pods use (passed as LILY_STORE); default: an emptyDir per pod
        #[arg(long)]
        store: Option<String>,
        /// Directory to write into (created; files in it are replaced)
        #[arg(long, default_value = "lily-k8s")]
        out: PathBuf,
    },
}

pub fn run(g: &Global, cmd: ExportCmd) -> Result<i32, LilyError> {
    let root = super::root(g)?;
    match cmd {
        ExportCmd::K8s { image, namespace, store, out } => {
            if let Some(ns) = &namespace
                && k8s::dns_name(ns).map(|n| n != format!("lily-{ns}")).unwrap_or(true)
            {
                return Err(LilyError::new(
                    ErrorCode::JobInvalidSpec,
                    format!("namespace {ns:?} is not a DNS label (lower-case letters, digits, '-')"),
                ));
            }
            let e = k8s::export(&root, &K8sOptions { image, namespace, store })?;
            for (rel, text) in &e.files {
                let path = out.join(rel);
                let io = |err: std::io::Error| LilyError::new(ErrorCode::JobExecutionFailed, format!("cannot write {}: {err}", path.display()));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                lily::util::atomic_write(&path, text.as_bytes()).map_err(io)?;
            }
            if g.json {
                render::json(&json!({"out": out, "files": e.files.keys().collect::<Vec<_>>(), "names": e.names, "warnings": e.warnings}));
            } else {
                for rel in e.files.keys() {
                    outln!("wrote {}", out.join(rel).display());
                }
                for w in &e.warnings {
                    errln!("warning: {w}");
                }
                outln!(
                    "\nnext: build the image (see {}), then `kubectl apply -k {}`",
                    out.join("Dockerfile").display(),
                    out.display()
                );
            }
            Ok(EXIT_OK)
        }
    }
}
