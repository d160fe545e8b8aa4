use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match fitlink::cli::Cli::parse().run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(fitlink::cli::exit_code(&e))
        }
    }
}
