use std::process::ExitCode;

use clap::Parser;
use weather_archive::{Cli, Job};

#[tokio::main]
async fn main() -> ExitCode {
    weather_common::init_logging();
    let settings = match Cli::parse().job() {
        Ok(Job::Archive(settings)) => *settings,
        Ok(Job::Maintain(settings)) => {
            return match weather_archive::maintain(settings).await {
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
