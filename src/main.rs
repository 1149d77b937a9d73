//! Thin binary: parse the command line, hand it to the library, turn errors into exit codes.

use clap::Parser;

fn main() {
    let cli = ccproxy::cli::Cli::parse();
    std::process::exit(ccproxy::main_with(cli));
}
