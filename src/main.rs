use clap::Parser;

fn main() {
    let cli = cardplan::cli::Cli::parse();
    if let Err(e) = cardplan::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
