use std::process::ExitCode;

fn main() -> ExitCode {
    antenne::cli::main()
}
