fn main() {
    std::process::exit(vars::cli::main());
}
