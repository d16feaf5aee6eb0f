//! The `samtykke` binary: a thin wrapper around [`samtykke::cli::run`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match samtykke::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
