// mimalloc instead of glibc's malloc: loading a 4000-generator manifest and walking its
// store is allocation-bound, and glibc spent a quarter of `vars check`'s time in
// malloc/free/consolidation there (perf, issue 6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Die quietly when stdout is a closed pipe (`vars list | head`), as Unix tools do,
    // instead of panicking in println!. Output is only printed after stores are committed.
    // SAFETY: called first thing, before any thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(vars::cli::main());
}
