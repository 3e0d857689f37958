//! The execution graph a blueprint compiles to.

use super::council::CouncilBindings;
use crate::sandbox::Perms;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Specialist,
    Synthesizer,
    Step,
}

/// A directory a node asks for (granted only if policy allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirRequest {
    /// Relative to the root.
    pub path: String,
    pub guest: String,
    pub perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub runnable: String,
    pub role: Role,
    pub dirs: Vec<DirRequest>,
    pub env: Vec<String>,
}

/// What a blueprint's execute needs beyond the nodes, parsed and checked
/// once, when the bindings are compiled.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Settings {
    #[default]
    None,
    Council(CouncilBindings),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    pub blueprint: String,
    #[serde(skip)]
    pub settings: Settings,
    pub nodes: Vec<Node>,
    /// (from node, to node): `to` consumes `from`'s output.
    pub edges: Vec<(String, String)>,
}

impl Graph {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}
