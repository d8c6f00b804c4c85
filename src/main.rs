use clap::Parser;

/// Pages of rows are allocated on one thread and freed on another, which glibc's allocator
/// handles slowly. Without transparent huge pages (`no_thp`), because a 2 MiB page given back
/// and touched again comes zeroed whole. It also stands in for the C library's `malloc`
/// (`override`), which the bundled SQLite allocates through on its connection threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    billpush::cli::logging::init();
    let cli = billpush::cli::Cli::parse();
    match billpush::cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
