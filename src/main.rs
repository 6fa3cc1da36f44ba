//! The `memsync` command: parses arguments and reports errors as one line.

fn main() {
    let code = memsync::cli::main(std::env::args_os().collect());
    std::process::exit(code);
}
