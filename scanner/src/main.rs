//! `plugstore-scanner`: the scan worker and its analysis child; see [`plugstore_scanner::cli`].

fn main() -> std::process::ExitCode {
    plugstore_scanner::cli::main(std::env::args_os(), Vec::new())
}
