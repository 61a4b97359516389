// mimalloc instead of glibc's malloc: loading a 4000-generator manifest and walking its
// store is allocation-bound, and glibc spent a quarter of `vars check`'s time in
// malloc/free/consolidation there (perf, issue 6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // mimalloc asks for transparent huge pages on its 2 MiB-aligned segments; for a short-lived
    // process touching a few MiB of each, that doubled peak RSS (B4 generate: 66 MiB, over
    // issue 6's 64 MiB limit; 45 MiB without). Inherited by children (scripts, nix), harmless
    // for them. Best effort: an old kernel without the option changes nothing.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Die quietly when stdout is a closed pipe (`vars list | head`), as Unix tools do,
    // instead of panicking in println!. Output is only printed after stores are committed.
    // SAFETY: called first thing, before any thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(vars::cli::main());
}
