use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Pages of rows are allocated on one thread and freed on another; glibc's allocator spent a
/// third of the build's time doing that. Built without transparent huge pages (`no_thp`):
/// mimalloc asked for 2 MiB pages, and each one it gave back and touched again came zeroed whole,
/// 4.5% of a 100k embedded run's CPU samples; without, that run peaks about 35 MB lower. It also
/// stands in for the C library's `malloc` (`override`), which the bundled SQLite allocates
/// through on its connection threads: a 100k embedded run 10% faster (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("BILLPUSH_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = billpush::cli::Cli::parse();
    match billpush::cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
