//! The `lily` binary: the command line ([`cli`]) over the `lily` library.

mod cli;

use clap::Parser;

fn main() {
    restore_sigpipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LILY_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .init();
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => std::process::exit(cli::usage_error(e)),
    };
    std::process::exit(cli::run(args));
}

/// Colour in log lines only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>): `lily jobs serve 2>file` writes plain text.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Let `lily … | head` end quietly like other Unix tools instead of
/// panicking on a closed pipe.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: runs first thing in `main`, before any other thread exists;
    // it only resets SIGPIPE to its default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}
