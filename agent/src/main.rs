//! The `rangefleet` binary: everything lives in the library; see `cli.rs`.

fn main() {
    std::process::exit(rangefleet::cli::main());
}
