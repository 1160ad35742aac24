use std::process::ExitCode;

use clap::Parser;
use weather_consumer::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    weather_common::allocator::configure();
    weather_common::init_logging();
    let mut cli = Cli::parse();
    if let Some(Command::Status(args)) = cli.command.take() {
        let json = args.json;
        let status = tokio::task::spawn_blocking(move || weather_consumer::status::status(&args)).await;
        return report(status, |status| match json {
            true => serde_json::to_string_pretty(status).expect("a status always serializes") + "\n",
            false => status.to_string(),
        });
    }
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(e) => e.exit(),
    };
    if settings.dry_run {
        return report(tokio::task::spawn_blocking(move || weather_consumer::dry_run(&settings)).await, |p| {
            p.to_string()
        });
    }
    report(Ok(weather_consumer::run(settings, weather_common::shutdown::signal()).await), |s| s.to_string())
}

/// Prints what a command produced on stdout, or its error on stderr, and says how it went.
fn report<T>(outcome: Result<anyhow::Result<T>, tokio::task::JoinError>, show: impl FnOnce(&T) -> String) -> ExitCode {
    match outcome {
        Ok(Ok(value)) => {
            print!("{}", show(&value));
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("panicked: {e}");
            ExitCode::FAILURE
        }
    }
}
