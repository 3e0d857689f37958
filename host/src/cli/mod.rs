//! The `lily` command line: parses arguments and renders results. All the
//! work happens in the library.

/// `println!` for the CLI: every line passes through
/// [`lily::text::terminal`], so no string from a guest (or a file) can
/// drive the operator's terminal.
macro_rules! outln {
    () => { println!() };
    ($($t:tt)*) => { println!("{}", lily::text::terminal(&format!($($t)*))) };
}

/// `print!` for the CLI, escaped like [`outln!`].
macro_rules! out {
    ($($t:tt)*) => { print!("{}", lily::text::terminal(&format!($($t)*))) };
}

/// `eprintln!` for the CLI, escaped like [`outln!`].
macro_rules! errln {
    () => { eprintln!() };
    ($($t:tt)*) => { eprintln!("{}", lily::text::terminal(&format!($($t)*))) };
}

mod approvals;
mod export;
mod generate;
mod init;
mod jobs;
mod llm;
mod mcp;
mod misc;
mod progress;
pub mod render;
mod runctl;
mod schedule;
mod timeline;

use clap::{Args, Parser, Subcommand};
use lily::error::{ErrorCode, LilyError};
use lily::workspace::Root;
use std::path::PathBuf;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: an internal or I/O error without a stable code.
pub const EXIT_INTERNAL: i32 = 1;
/// Exit status: the run was cancelled (Ctrl-C / SIGTERM).
pub const EXIT_CANCELLED: i32 = 130;
/// `lily jobs status` when no scheduler runs for the root (like
/// `systemctl is-active`: a health check).
pub const EXIT_NOT_RUNNING: i32 = 3;
/// A run that completed `partial` (some step failed; the blueprint went on).
pub const EXIT_PARTIAL: i32 = 4;

/// Process exit status for an error code (see `docs/runbook.md`).
pub fn exit_code(code: ErrorCode) -> i32 {
    code.exit_status()
}

#[derive(Debug, Parser)]
#[command(name = "lily", version, about = "Run repeatable jobs whose steps are sandboxed WebAssembly components", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The Lily root (the directory holding .lily/); default: nearest ancestor with .lily/
    #[arg(long, global = true, env = "LILY_ROOT")]
    pub root: Option<PathBuf>,
    /// Where job specs are discovered (default: jobs_path in .lily/config.yaml, else .lily/jobs)
    #[arg(long, global = true, env = "LILY_JOBS_DIR")]
    pub jobs_dir: Option<PathBuf>,
    /// Machine-readable JSON output
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create .lily/ with a starter policy, an example job and an example workspace (never overwrites)
    Init,
    /// Initialise (if needed) and run the example council job `demo`
    Demo,
    /// Job specs and runs
    #[command(subcommand)]
    Jobs(jobs::JobsCmd),
    /// Blueprints (code-defined recipes)
    #[command(subcommand)]
    Blueprints(misc::BlueprintsCmd),
    /// Runnables (WebAssembly components)
    #[command(subcommand)]
    Runnables(misc::RunnablesCmd),
    /// The capability policy (.lily/policy.yaml)
    #[command(subcommand)]
    Policy(misc::PolicyCmd),
    /// Approval requests for proposed side effects
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCmd),
    /// Model aliases of .lily/config.yaml (lily:runnable/llm)
    #[command(subcommand)]
    Llm(llm::LlmCmd),
    /// Serve exposed jobs and runnables to AI agents over MCP (mcp: in .lily/config.yaml)
    #[command(subcommand)]
    Mcp(mcp::McpCmd),
    /// Export the root's jobs to another engine (Kubernetes CronJobs)
    #[command(subcommand)]
    Export(export::ExportCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell, e.g. `lily completions bash > ~/.local/share/bash-completion/completions/lily`
        shell: clap_complete::Shell,
    },
    /// Print the man page of lily (roff); with --out DIR, write one page per command into DIR
    Man {
        /// Write lily.1, lily-jobs.1, lily-jobs-run.1, … into this directory (created if missing)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft 2020-12) of a job spec, the policy, the config or a run receipt
    Schema {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["job", "policy", "config", "receipt"]))]
        kind: String,
    },
}

/// Exit status of a usage error (from the argument parser).
pub const EXIT_USAGE: i32 = 2;

/// Report an argument-parser error: clap's text, or — when the command
/// line asks for `--json` — one JSON object on stdout like every other
/// error (`code` = `usage_error`, exit 2). `--help` and `--version` print
/// as usual.
pub fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let wants_json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !wants_json || informational {
        e.exit();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let message = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
    let rest: Vec<&str> = lines.collect();
    let v = serde_json::json!({
        "code": "usage_error",
        "message": message,
        "hint": (!rest.is_empty()).then(|| rest.join("\n")),
        "details": {"kind": e.kind().as_str()},
    });
    outln!("{}", lily::text::json_pretty(&v));
    EXIT_USAGE
}

/// Run a parsed command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return EXIT_INTERNAL;
        }
    };
    let g = cli.global.clone();
    let result = rt.block_on(async move {
        match cli.command {
            Command::Init => init::init(&g),
            Command::Demo => init::demo(&g).await,
            Command::Jobs(c) => jobs::run(&g, c).await,
            Command::Blueprints(c) => misc::blueprints(&g, c).await,
            Command::Runnables(c) => misc::runnables(&g, c).await,
            Command::Policy(c) => misc::policy(&g, c).await,
            Command::Approvals(c) => approvals::run(&g, c),
            Command::Llm(c) => llm::run(&g, c).await,
            Command::Mcp(c) => mcp::run(&g, c).await,
            Command::Export(c) => export::run(&g, c),
            Command::Completions { shell } => generate::completions(&g, shell),
            Command::Man { out } => generate::man(&g, out.as_deref()),
            Command::Schema { kind } => generate::schema(&kind),
        }
    });
    // Do not wait for blocked guest threads on exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            render::error(&e, cli.global.json);
            exit_code(e.code)
        }
    }
}

/// Find the root for commands that need one.
pub fn root(g: &Global) -> Result<Root, LilyError> {
    let cwd = std::env::current_dir().map_err(|e| LilyError::new(ErrorCode::JobNotFound, format!("cannot read the working directory: {e}")))?;
    Root::discover(g.root.as_deref(), &cwd, g.jobs_dir.as_deref())
}
