use std::process::ExitCode;

use clap::Parser;
use weather_archive::{Cli, Job};

#[tokio::main]
async fn main() -> ExitCode {
    weather_common::allocator::configure();
    weather_common::init_logging();
    let settings = match Cli::parse().job() {
        Ok(Job::Archive(settings)) => *settings,
        Ok(Job::Maintain(settings)) => return report(weather_archive::maintain(settings).await),
        Err(e) => e.exit(),
    };
    report(weather_archive::run(settings, weather_common::shutdown::signal()).await)
}

/// Prints what a job did on stdout, or its error on stderr, and says how it went.
fn report(outcome: anyhow::Result<impl std::fmt::Display>) -> ExitCode {
    match outcome {
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
