use clap::Parser;

fn main() {
    quiet_broken_pipe();
    let cli = cardplan::cli::Cli::parse();
    if let Err(e) = cardplan::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// `cardplan … | head` closes stdout early; `println!` then panics with "Broken pipe". That is
/// the reader's choice, not a bug: exit quietly as other Unix tools do. Every other panic still
/// reports itself, as an internal error (exit code 1).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("internal error (a bug in cardplan; please report it):");
        default(info);
        std::process::exit(cardplan::error::EXIT_INTERNAL);
    }));
}
