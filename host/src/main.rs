//! The `airlock` command line.

mod cli;

/// mimalloc rather than the system allocator: at 64 concurrent calls the
/// profile had glibc's malloc and free, with their arena-lock wake-ups, at
/// 15 % of the process's CPU; the benchmark measures with the same choice.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
