//! The `skiff` executable: parse the command line, set up logging, run, map errors to exit codes.

mod admin_api;
mod certificate;
mod secrets_encrypt;

use clap::Parser;
use skiff::cli::{Cli, Command, args_with_config_file};

/// jemalloc returns freed memory to the kernel far better than glibc malloc under many threads
/// (see the dependency's note in Cargo.toml).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // containerd's shim runs the container log driver as `skiff _SKIFF_LOG_DRIVER <path>`:
    // answer before any other parsing, logging or async runtime (one small process per container).
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some(skiff::kubelet::logs::driver::ARG) {
        return match skiff::kubelet::logs::driver::run(&raw) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skiff log driver: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let (argv, ignored) = match args_with_config_file(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    for key in ignored {
        tracing::warn!(
            key,
            "ignoring config file key that this command does not know"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skiff: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => skiff::server::run(args).await,
            Command::SecretsEncrypt(args) => secrets_encrypt::run(args).await,
            Command::Certificate(args) => certificate::run(args).await,
            Command::Agent(args) => skiff::agent::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("skiff: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
