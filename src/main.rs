//! `fle`: the command line of fle, field-level encryption for HTTP APIs.

#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Field-level encryption for HTTP APIs: encrypt at the CDN edge, decrypt with AWS KMS.
#[derive(Parser)]
#[command(name = "fle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt a sample record with the built-in demo key, then decrypt it back (no AWS, no network).
    ///
    /// Example: fle demo --backend rustcrypto
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fle: {e:#}");
            ExitCode::FAILURE
        }
    }
}
