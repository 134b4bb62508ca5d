use std::process::ExitCode;

fn main() -> ExitCode {
    karo::cli::main()
}
