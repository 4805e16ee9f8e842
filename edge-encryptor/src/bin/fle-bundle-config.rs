//! `fle-bundle-config --config FILE` (or `fle-bundle-config FILE`): prints the configuration
//! validated and self-contained for the Lambda@Edge package, exactly as `fle bundle-config`
//! does, without building the `fle` command line (AWS SDK, tokio). Run by
//! `edge-encryptor/build-lambda-edge.sh`.
//!
//! Exit status: 0 on success, 2 on bad usage or a configuration that cannot be bundled.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fle-bundle-config --config FILE";

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => PathBuf::from(path),
        [path] if !path.to_string_lossy().starts_with('-') => PathBuf::from(path),
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match fle_edge_encryptor::bundle::bundle_config_text(&path) {
        Ok(text) => text,
        Err(e) => {
            // The whole chain, like `fle`'s `{:#}`: "config fle.toml: field x uses key 02, ...".
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            eprintln!("fle-bundle-config: {message}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("fle-bundle-config: writing stdout: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
