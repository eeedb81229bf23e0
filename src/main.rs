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

/// jemalloc's built-in options (read once, before the first allocation; `MALLOC_CONF` in the
/// environment still overrides them, e.g. `MALLOC_CONF=narenas:64` on a large server under heavy
/// API load). Each thread's cache keeps freed small objects for reuse and holds on to them while
/// the thread idles; a node with 20 pods has some 40 threads (tokio's blocking pool after a
/// burst), and caching only objects up to 1 KiB rather than 32 KiB cut the server's settled RSS
/// there by about 4 MiB. Two arenas rather than jemalloc's four per CPU: each arena keeps its own
/// partly used pages, and with two the node benchmark's skiff RSS with 20 pods went from
/// 58.6-59.9 to 55.0-55.4 MiB; threads still allocate small objects from their caches without
/// a lock.
#[cfg(not(target_env = "msvc"))]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8; 26] = b"tcache_max:1024,narenas:2\0";

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
        // Blocking-pool threads (SQLite reads, file work) go after 2 s idle rather than 10 s: the
        // pool hands work to idle threads in turn, so after a burst a slow trickle of work keeps
        // every thread alive, each with its stack and allocator cache.
        .thread_keep_alive(std::time::Duration::from_secs(2))
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
