//! JavaScript runnables: `lily runnables new --lang js` and
//! `lily runnables build` of a `package.json` project (jco componentize).

use super::Built;
use crate::error::LilyError;
use crate::runnables::BuildOptions;
use crate::runnables::scaffold::{ScaffoldError, ScaffoldKind, tool_error};
use std::path::Path;

const NOT_YET: &str = "JavaScript runnables are not supported by this build of lily yet";

pub(in crate::runnables) fn scaffold_files(_name: &str, _kind: ScaffoldKind) -> Result<Vec<(String, String)>, ScaffoldError> {
    Err(ScaffoldError::Unsupported(NOT_YET.into()))
}

pub(in crate::runnables) fn compile(_opts: &BuildOptions, dir: &Path) -> Result<Built, LilyError> {
    Err(tool_error(format!("{}: {NOT_YET}", dir.display())).with_hint("write the runnable in Rust or Python for now (`lily runnables new --lang python`)"))
}
