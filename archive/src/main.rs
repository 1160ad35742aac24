use std::process::ExitCode;

use clap::Parser;
use weather_archive::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    weather_common::init_logging();
    let settings = match Cli::parse().settings() {
        Ok(settings) => settings,
        Err(e) => e.exit(),
    };
    match weather_archive::run(settings, weather_common::shutdown::signal()).await {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
