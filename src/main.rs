fn main() {
    // Die quietly when stdout is a closed pipe (`vars list | head`), as Unix tools do,
    // instead of panicking in println!. Output is only printed after stores are committed.
    // SAFETY: called first thing, before any thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(vars::cli::main());
}
